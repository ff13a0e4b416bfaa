"""``ctvl encode``, ``ctvl reconstruct``, ``ctvl train tokenizer``: outputs, geometry, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ctvl.cli import main
from ctvl.data.phantom import render_case, write_dataset
from ctvl.data.transforms import PreprocessSpec
from ctvl.io import read_volume, write_nifti
from ctvl.tokenizers.causal3d import Causal3DConfig, Causal3DTokenizer
from ctvl.tokenizers.causal3d.bundle import BUNDLE_FORMAT, tokenizer_export
from ctvl.tokenizers.causal3d.inference import load_tokens
from ctvl.train import save_bundle

SPEC = {**PreprocessSpec.cpu().to_dict(), "size": [32, 32], "depth": 17, "spacing": [11.25, 11.25, 22.5]}
ARCH = {"filters": 4, "channel_mult": [1, 2, 2], "num_res_blocks": 1, "token_channels": 4}


def tiny_bundle(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = Causal3DConfig.cpu(**ARCH)
    export = tokenizer_export("causal3d", config, PreprocessSpec.from_dict(SPEC), stage=1)
    return save_bundle(
        Causal3DTokenizer(config=config), {"format": BUNDLE_FORMAT, "task_name": "tokenizer", "task": export}, folder
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cmds")
    scan = write_nifti(render_case(2, shape=(40, 36, 21)).volume, root / "scan.nii.gz")
    return {"root": root, "scan": scan, "bundle": tiny_bundle(root / "bundle"), "other": tiny_bundle(root / "o", 1)}


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_encode_writes_tokens_spec_and_geometry(files, capsys) -> None:
    out = files["root"] / "tokens.safetensors"
    assert main(["encode", str(files["scan"]), "-o", str(out), "--model", str(files["bundle"])]) == 0
    assert "3 x 4 x 4 tokens" in capsys.readouterr().out
    enc = load_tokens(out)
    assert enc.indices.shape == (3, 4, 4) and enc.codes.shape == (4, 3, 4, 4)
    assert enc.spec == PreprocessSpec.from_dict(SPEC) and enc.source["shape"] == [40, 36, 21]
    assert enc.source["axcodes"] == "LPS" and enc.source["path"].endswith("scan.nii.gz")


def test_reconstruct_on_the_original_grid(files, capsys) -> None:
    out = files["root"] / "recon.nii.gz"
    assert main(["reconstruct", str(files["scan"]), "-o", str(out), "--model", str(files["bundle"])]) == 0
    assert "PSNR" in capsys.readouterr().out
    src, rec = read_volume(files["scan"]), read_volume(out)
    assert rec.shape == src.shape and np.allclose(rec.affine, src.affine, atol=1e-4)
    assert -1000.5 <= rec.data.min() and rec.data.max() <= 1000.5
    tokens = files["root"] / "t.safetensors"
    assert main(["encode", str(files["scan"]), "-o", str(tokens), "--model", str(files["bundle"])]) == 0
    again = files["root"] / "from_tokens.nii.gz"
    assert main(["reconstruct", str(tokens), "-o", str(again), "--model", str(files["bundle"])]) == 0
    np.testing.assert_allclose(read_volume(again).data, rec.data, atol=0.05)
    capsys.readouterr()
    assert main(["reconstruct", str(tokens), "-o", str(again), "--model", str(files["other"])]) == 2
    assert "--model" in one_line_error(capsys)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["encode", "{scan}", "-o", "{root}/t.npy", "--model", "{bundle}"], ".safetensors"),
        (["encode", "{root}/missing.nii.gz", "-o", "{root}/t.safetensors", "--model", "{bundle}"], "missing"),
        (["encode", "{scan}", "-o", "{root}/t.safetensors", "--model", "{root}/nobundle"], "not found"),
        (["reconstruct", "{scan}", "-o", "{root}/r.png", "--model", "{bundle}"], ".nii"),
        (["reconstruct", "{root}/bogus.safetensors", "-o", "{root}/r.nii.gz", "--model", "{bundle}"], "not found"),
    ],
)
def test_bad_input_is_one_line(files, capsys, argv, needle) -> None:
    args = [a.format(**files) for a in argv]
    assert main(args) == 2
    assert needle in one_line_error(capsys)


def test_train_tokenizer_command(tmp_path: Path, capsys) -> None:
    write_dataset(tmp_path / "data", 2, 0, split="train", shape=(24, 24, 9))
    cfg = {
        "steps": 1,
        "batch_size": 1,
        "lr": 1e-3,
        "output_dir": str(tmp_path / "run"),
        "model": ARCH,
        "data": {"root": str(tmp_path / "data"), "preprocessing": SPEC, "stage": 1},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "tokenizer", "--config", str(path), "--stage", "1", "log_every=1"]) == 0
    assert "to step 1" in capsys.readouterr().out
    assert (tmp_path / "run" / "checkpoints" / "step-00000001" / "model.safetensors").is_file()
    assert main(["train", "tokenizer", "--config", str(path), "--stage", "1"]) == 2  # run exists, no --resume
    assert "--resume" in one_line_error(capsys)
    assert main(["train", "tokenizer", "--config", str(path), "--stage", "1", "--resume", "steps=2"]) == 0
    capsys.readouterr()
    assert main(["train", "tokenizer", "--config", str(path), "--stage", "5"]) == 2
    assert "stage" in one_line_error(capsys)
    assert main(["train", "tokenizer", "--config", str(path), "model.filterz=3"]) == 2
    one_line_error(capsys)
