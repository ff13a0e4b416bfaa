"""``ctvl bench quantizers``: the benchmark's rows, files and CLI (a few steps, not the real run)."""

import json

import pytest
import torch

from ctvl.bench.bench_data import METHODS, BenchConfig, BenchData, normalise_hu
from ctvl.bench.quantizers import TinyAutoencoder, evaluate_autoencoder, run_benchmark
from ctvl.cli import main
from ctvl.tokenizers.quantizers import build_quantizer


def tiny_data() -> BenchData:
    gen = torch.Generator().manual_seed(0)
    return BenchData(
        torch.rand(12, 1, 16, 16, generator=gen) * 2 - 1,
        torch.rand(4, 1, 16, 16, generator=gen) * 2 - 1,
        torch.rand(6, 1, 4, 16, 16, generator=gen) * 2 - 1,
        torch.rand(2, 1, 4, 16, 16, generator=gen) * 2 - 1,
        source="random",
    )


def test_normalise_hu():
    assert normalise_hu(torch.tensor([-3000.0, -1000.0, 0.0, 500.0, 2000.0])).tolist() == [-1, -1, 0, 0.5, 1]


@pytest.mark.parametrize("spatial_dims,shape", [(2, (16, 16)), (3, (4, 16, 16))])
@pytest.mark.parametrize("method", list(METHODS))
def test_autoencoder_evaluation_reports_bits_and_usage(spatial_dims, shape, method):
    torch.manual_seed(0)
    kind, kwargs = METHODS[method]
    kwargs = {**kwargs, "spatial_dims": spatial_dims} if kind == "msrvq" else kwargs
    quantizer = build_quantizer(kind, 8, **kwargs) if kind else None
    model = TinyAutoencoder(spatial_dims=spatial_dims, latent_dim=8, width=8, quantizer=quantizer)
    row = evaluate_autoencoder(model, torch.rand(3, 1, *shape) * 2 - 1)
    voxels_per_latent = 4**spatial_dims
    if kind is None:
        assert row["codebook_usage"] is None and row["bits_per_voxel"] == 32 * 8 / voxels_per_latent
    else:
        assert 0 < row["codebook_usage"] <= 1 and row["perplexity"] >= 1
        if kind != "msrvq":  # one ~10-bit index set per latent position
            assert row["bits_per_voxel"] == pytest.approx(quantizer.bits_per_token / voxels_per_latent)
        else:  # coarse scales add indices on top of the full-resolution map
            assert row["bits_per_voxel"] > quantizer.bits_per_token / voxels_per_latent
    assert row["encode_ms"] > 0 and row["decode_ms"] > 0 and row["psnr"] > 0


def test_run_benchmark_rows_and_files(tmp_path):
    cfg = BenchConfig(steps=2, oned_steps=2, oned_patch=4, oned_tokens=4, kept_tokens=(1, 2, 4))
    rows = run_benchmark(cfg, tmp_path, data=tiny_data(), progress=False)
    quant = [r for r in rows if r["kind"] == "quantizer"]
    assert [(r["setting"], r["method"]) for r in quant] == [(s, m) for s in ("2d", "3d") for m in METHODS]
    for r in rows:
        assert {"method", "psnr", "codebook_usage", "bits_per_voxel"} <= set(r)
    oned = [r for r in rows if r["kind"] == "oned"]
    assert [r["kept_tokens"] for r in oned] == [1, 2, 4] * 2
    assert {r["method"] for r in oned} == {"titok-nested-dropout", "titok-tail-drop"}
    saved = json.loads((tmp_path / "quantizers.json").read_text())
    assert saved["results"] == json.loads(json.dumps(rows)) and saved["config"]["steps"] == 2
    for name in ("quantizers.png", "oned_tokens.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_json_on_phantom(tmp_path, capsys):
    code = main(
        [
            "bench",
            "quantizers",
            "--steps",
            "1",
            "--oned-steps",
            "1",
            "--train-cases",
            "1",
            "--oned-train-cases",
            "1",
            "--methods",
            "continuous,lfq",
            "--json",
            "--out",
            str(tmp_path),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = json.loads(captured.out)
    assert [r["method"] for r in rows if r["kind"] == "quantizer"] == ["continuous", "lfq"] * 2
    assert (tmp_path / "quantizers.png").exists() and (tmp_path / "oned_tokens.png").exists()


def test_cli_rejects_unknown_method(tmp_path, capsys):
    assert main(["bench", "quantizers", "--methods", "fsq,pq", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "pq" in err and len(err.strip().splitlines()) == 1
