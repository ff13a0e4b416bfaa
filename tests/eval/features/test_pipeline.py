"""``pipelines/train_feature_nets.py --quick`` on a tiny phantom set writes results, card, plot and bundle."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from ctvl.data.phantom import write_dataset
from ctvl.eval.features import load_feature_nets

PIPELINE = Path(__file__).resolve().parents[3] / "pipelines" / "train_feature_nets.py"


@pytest.fixture(autouse=True)
def keep_thread_count():
    """The pipeline sets torch's thread count; give the rest of the suite its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def load_pipeline():
    spec = importlib.util.spec_from_file_location("train_feature_nets", PIPELINE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_a_loadable_bundle_and_never_installs(tmp_path, monkeypatch):
    data, test = tmp_path / "data", tmp_path / "test"
    write_dataset(data, 6, 0, split="train", workers=1)
    write_dataset(data, 4, 0, split="valid", workers=1)
    write_dataset(test, 4, 1, split="valid", workers=1)
    pipeline = load_pipeline()
    monkeypatch.setattr(pipeline, "INSTALL_DIR", tmp_path / "must-not-exist")
    out = tmp_path / "out"
    argv = [
        "--quick",
        "--data",
        str(data),
        "--test-data",
        str(test),
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(out),
        "--threads",
        "1",
    ]
    assert pipeline.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["training"]["data"]["train"]["n"] == 6 and results["training"]["quick"]
    for key in ("valid_seed0", "test_seed1"):
        assert 0.0 <= results["heldout"][key]["macro_f1"] <= 1.0 and len(results["heldout"][key]["per_label"]) == 18
    floors = results["heldout"]["floors"]
    assert set(floors["fid_2p5d"]) == {"axial", "coronal", "sagittal", "mean"} and floors["fd_3d"] >= 0
    card = (out / "bundle" / "MODEL_CARD.md").read_text()
    assert "Smoke run" in card and "| **macro** |" in card and "python pipelines/train_feature_nets.py --quick" in card
    assert (out / "bundle" / "per_label_f1.png").read_bytes()[:4] == b"\x89PNG"
    nets = load_feature_nets(out / "bundle")
    assert nets.config["heldout"]["valid_seed0"]["n"] == 4
    assert not (tmp_path / "must-not-exist").exists()
    assert any((tmp_path / "cache").rglob("*.safetensors"))  # the volumes were cached for reuse
