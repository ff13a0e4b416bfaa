"""``ctvl eval synthesis`` end to end on tiny artifacts: every metric, baseline and file is there."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ctvl.classify.nets import CTNet3D, FeatureNetConfig, SliceNet2D
from ctvl.cli import main
from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError
from ctvl.eval.features.bundle import save_feature_nets
from ctvl.eval.synthesis import evaluate_synthesis, read_prompts, reconstruction_consistency
from ctvl.synthesis import load_generator


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> dict[str, Path]:
    from tests.report.factory import tiny_dataset

    root = tmp_path_factory.mktemp("eval-synthesis")
    data = tiny_dataset(root / "data", train=6, valid=6)
    torch.manual_seed(0)
    nets = save_feature_nets(
        root / "features",
        ctnet3d=CTNet3D(config=FeatureNetConfig(widths=(8, 16), strides=None, feature_dim=6)).eval(),
        slicenet2d=SliceNet2D(config=FeatureNetConfig(widths=(8,), strides=None, feature_dim=4, norm="group")).eval(),
        thresholds=torch.full((18,), 0.5),
        spec=load_generator(tiny_bundle).spec,
    )
    prompts = root / "prompts.csv"
    with prompts.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt"])
        w.writerows(
            [
                ["a", "right pleural effusion"],
                ["b", "cardiomegaly, emphysema"],
                ["c", "lung nodule"],
                ["d", "no significant abnormality"],
            ]
        )
    return {"root": root, "data": data, "features": nets, "prompts": prompts, "bundle": tiny_bundle}


def test_metrics_baselines_and_files(setup):
    out = setup["root"] / "out"
    m = evaluate_synthesis(
        setup["prompts"],
        out,
        real=setup["data"],
        train=setup["data"],
        generator=setup["bundle"],
        features=setup["features"],
        n_per_prompt=2,
        steps=2,
        cache_dir=None,
        progress=False,
    )
    assert m["n_generated"] == 8 and set(m["fid_2p5d"]) == {"axial", "coronal", "sagittal", "mean"}
    assert m["fid_2p5d"]["mean"] == pytest.approx(sum(m["fid_2p5d"][p] for p in ("axial", "coronal", "sagittal")) / 3)
    assert {"real_vs_real", "reconstruction", "unconditional", "shuffled_prompts"} <= set(m["baselines"])
    rc = m["baselines"]["reconstruction"]
    assert "fid_2p5d" in rc and ("macro" in rc["label_consistency"] or "skipped" in rc["label_consistency"])
    lc = m["label_consistency"]
    assert {"Pleural effusion", "Cardiomegaly", "Emphysema", "Lung nodule"} <= set(lc["labels"])
    assert 0 <= lc["macro"] <= 1 and "real_macro" in lc
    assert m["memorization"]["n_generated"] == 8 and "fid_vs_floor" in m["targets"]
    assert {"metrics.json", "summary.md", "grid.png", "prompts_labels.csv"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2
    with (out / "prompts_labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and rows[0]["prompt:Pleural effusion"] == "1"


def test_cli_and_bad_prompt_files(setup, capsys):
    bad = setup["root"] / "bad.csv"
    bad.write_text("text\nhello\n")
    with pytest.raises(InputError, match="'prompt' column"):
        read_prompts(bad)
    code = main(
        [
            "eval",
            "synthesis",
            "--prompts",
            str(bad),
            "--out",
            str(setup["root"] / "o2"),
            "--real",
            str(setup["data"]),
            "--model",
            str(setup["bundle"]),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "'prompt' column" in err and len(err.splitlines()) == 1
    code = main(
        [
            "eval",
            "synthesis",
            "--prompts",
            str(setup["prompts"]),
            "--out",
            str(setup["root"] / "o3"),
            "--real",
            str(setup["data"]),
            "--model",
            str(setup["bundle"]),
            "--features",
            str(setup["features"]),
            "--steps",
            "1",
        ]
    )
    assert code == 0 and "Label consistency" in capsys.readouterr().out


def test_reconstruction_consistency_scores_each_scan_against_its_own_labels():
    truth = np.zeros((6, 18), dtype=np.int64)
    truth[0, 0] = truth[1, 0] = truth[2, [0, 1, 2, 3]] = 1  # scans 3-5 are normal
    perfect = reconstruction_consistency(truth.copy(), truth, truth)
    assert perfect["label_consistency"]["macro"] == 1.0 and perfect["label_consistency"]["n_generated"] == 3
    few = perfect["label_consistency_1to3"]
    assert few["n_generated"] == 2 and few["labels"] == [CTRATE_LABELS[0]]  # the 4-finding scan is left out
    blind = reconstruction_consistency(np.zeros_like(truth), truth, truth)
    assert blind["label_consistency"]["macro"] == 0.0
    none = reconstruction_consistency(truth, np.zeros_like(truth), np.zeros_like(truth))
    assert "skipped" in none["label_consistency"]
