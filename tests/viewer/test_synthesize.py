"""The Synthesize tab: request checks, the prompt-vs-classifier table, the lazy generator, /synthesize on
loopback through gradio_client (a tiny random generator bundle), the classifier adapter and `ctvl app`."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError
from ctvl.viewer.synthesize import (
    LABEL_HEADERS,
    NO_CLASSIFIER,
    FeatureNetClassifier,
    SynthesisRequest,
    Synthesizer,
    default_classifier,
    label_rows,
    parse_request,
)
from tests.viewer.conftest import free_port

PROMPT = "moderate right pleural effusion, cardiomegaly"


def stand_in_classifier(tensors: torch.Tensor) -> list[dict[str, float]]:
    """Deterministic 'probabilities' from the volume: label k reads the share of voxels above level k."""
    out = []
    for x in tensors:
        levels = torch.linspace(-0.9, 0.9, len(CTRATE_LABELS))
        out.append({name: float((x > lv).float().mean()) for name, lv in zip(CTRATE_LABELS, levels)})
    return out


# --- request checks -------------------------------------------------------------------------------------------


def test_blank_settings_mean_the_bundle_defaults_and_numbers_may_be_strings():
    assert parse_request(None, None, None, None, None) == SynthesisRequest("", 0, None, None, None)
    assert parse_request(PROMPT, "7", "12", "2.5", " ") == SynthesisRequest(PROMPT, 7, 12, 2.5, None)
    assert parse_request("x", 3.0, 5.0, 0, 33.0) == SynthesisRequest("x", 3, 5, 0.0, 33)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("seed", -1, "seed must be a whole number from 0 to 4294967295, got -1"),
        ("seed", 1.5, "seed must be a whole number from 0 to 4294967295, got 1.5"),
        ("seed", "abc", "seed must be a number, got 'abc'"),
        ("steps", 0, "steps must be a whole number from 1 to 100, got 0"),
        ("steps", 1000, "steps must be a whole number from 1 to 100, got 1000"),
        ("guidance", -0.5, "guidance must be from 0 to 20 (0 = unconditional, 1 = no guidance), got -0.5"),
        ("guidance", float("nan"), "guidance must be a finite number, got nan"),
        ("depth", 0, "depth must be a whole number from 1 to 129 slices, got 0"),
        ("depth", 600, "depth must be a whole number from 1 to 129 slices, got 600"),
        ("depth", True, "depth must be a number, got True"),
    ],
)
def test_bad_settings_are_one_line_messages(field, value, message):
    kwargs = {"seed": 0, "steps": None, "guidance": None, "depth": None, field: value}
    with pytest.raises(InputError) as err:
        parse_request(PROMPT, **kwargs)
    assert str(err.value) == message


def test_prompt_must_be_text_of_bounded_length():
    with pytest.raises(InputError, match="at most 2000"):
        parse_request("effusion " * 300)
    with pytest.raises(InputError, match="the prompt must be text"):
        parse_request(["effusion"])


# --- the labels table -----------------------------------------------------------------------------------------


def test_rows_put_the_prompt_beside_the_classifier_with_its_thresholds():
    prompt = {name: int(name == "Cardiomegaly") for name in CTRATE_LABELS}
    probs = {name: 0.4 for name in CTRATE_LABELS}
    rows = label_rows(prompt, probs, thresholds={"Cardiomegaly": 0.3})
    assert [r[0] for r in rows] == list(CTRATE_LABELS) and len(rows[0]) == len(LABEL_HEADERS)
    assert rows[CTRATE_LABELS.index("Cardiomegaly")] == ["Cardiomegaly", "yes", "yes", 0.4]
    assert rows[0] == ["Medical material", "no", "no", 0.4]  # default threshold 0.5
    assert {r[2] for r in label_rows(prompt, None)} == {NO_CLASSIFIER}
    assert {r[1] for r in label_rows(None, probs)} == {"— (no prompt)"}


# --- the lazy generator ---------------------------------------------------------------------------------------


def test_generator_loads_once_across_threads_and_a_failure_is_retried():
    calls = []

    def loader(bundle):
        calls.append(bundle)
        if len(calls) == 1:
            raise InputError("text-to-CT generator bundle not found", path="/nowhere")
        return type("Gen", (), {"generator_id": "g", "source": bundle})()

    synth = Synthesizer(bundle="B", loader=loader)
    with pytest.raises(InputError) as err:
        synth.generator()
    assert (
        str(err.value) == "/nowhere: text-to-CT generator bundle not found (for this viewer: "
        "`ctvl app --generator BUNDLE`)"
    )
    got = []
    threads = [threading.Thread(target=lambda: got.append(synth.generator())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 2 and len({id(g) for g in got}) == 1  # loaded once after the failure, shared


def test_missing_default_generator_names_the_pipeline(tmp_path):
    with pytest.raises(InputError) as err:
        Synthesizer(bundle=tmp_path / "nowhere").generator()
    assert "nowhere: text-to-CT generator bundle not found" in str(err.value) and "\n" not in str(err.value)


# --- the classifier adapter -----------------------------------------------------------------------------------


def test_default_classifier_is_none_without_a_feature_net_bundle(tmp_path):
    assert default_classifier(tmp_path / "no-bundle") is None


def test_feature_net_adapter_reads_18_probabilities_and_refuses_another_grid(tmp_path):
    features = pytest.importorskip("ctvl.eval.features.bundle")
    from ctvl.classify.nets import CTNet3D, FeatureNetConfig, SliceNet2D
    from tests.report.factory import TINY_SPEC

    config = FeatureNetConfig(widths=(8,), strides=None, feature_dim=8, norm="group")
    torch.manual_seed(0)
    folder = features.save_feature_nets(
        tmp_path / "nets",
        ctnet3d=CTNet3D(config=config),
        slicenet2d=SliceNet2D(config=config),
        thresholds=torch.full((18,), 0.25),
        spec=TINY_SPEC,
    )
    classify = default_classifier(folder)
    assert isinstance(classify, FeatureNetClassifier) and classify.thresholds["Emphysema"] == 0.25
    probs = classify(torch.zeros(2, 1, 17, 32, 32))
    assert len(probs) == 2 and list(probs[0]) == list(CTRATE_LABELS) and all(0 < p < 1 for p in probs[0].values())
    with pytest.raises(InputError, match="reads 32 × 32 model-space slices"):
        classify(torch.zeros(1, 1, 17, 64, 64))


# --- with a tiny generator ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    """The tiny random generator of tests/synthesis/factory.py (session fixture of tests/conftest.py)."""
    return tiny_bundle


@pytest.fixture(scope="module")
def synthesizer(bundle):
    return Synthesizer(bundle=bundle, classify=stand_in_classifier)


def test_run_writes_the_nifti_the_cli_writes_with_its_recipe(synthesizer, bundle, tmp_path):
    from ctvl.cli import main
    from ctvl.io import read_volume

    out = synthesizer.run(synthesizer.parse(PROMPT, 5, 3, 2.0, 20), tmp_path / "app")
    assert out.nifti.name == "ctvl_synthetic_seed5.nii.gz" and out.recipe_json.is_file()
    recipe = json.loads(out.recipe_json.read_text())
    assert recipe == out.recipe and (recipe["seed"], recipe["steps"], recipe["guidance"], recipe["depth"]) == (
        5,
        3,
        2.0,
        25,
    )
    assert out.warnings == ["depth 20 is not 1 + 8k slices; generating 25 slices instead"]
    assert out.view.shape == (32, 32, 25) and out.volume.spacing == (12.0, 12.0, 22.5)
    stated = {r[0]: r[1] for r in out.rows}
    assert stated["Pleural effusion"] == stated["Cardiomegaly"] == "yes" and stated["Emphysema"] == "no"
    assert all(r[2] in ("yes", "no") and 0 <= r[3] <= 1 for r in out.rows)
    assert "seed 5, 3 steps, guidance 2, depth 25" in out.summary and "agrees with the prompt on" in out.summary

    cli_out = tmp_path / "cli.nii.gz"  # the CLI calls the same library functions: the same volume
    assert (
        main(
            [
                "synthesize",
                PROMPT,
                "-o",
                str(cli_out),
                "--seed",
                "5",
                "--steps",
                "3",
                "--guidance",
                "2",
                "--depth",
                "20",
                "--model",
                str(bundle),
            ]
        )
        == 0
    )
    app_volume, cli_volume = read_volume(out.nifti), read_volume(cli_out)
    np.testing.assert_array_equal(app_volume.data, cli_volume.data)
    assert json.loads((tmp_path / "cli.json").read_text())["prompt_labels"] == recipe["prompt_labels"]


def test_a_failing_classifier_leaves_the_volume_and_says_why(bundle, tmp_path):
    def broken(tensors):
        raise InputError("weights do not fit")

    out = Synthesizer(bundle=bundle, classify=broken).run(SynthesisRequest("", seed=1, steps=2), tmp_path)
    assert out.view.shape[2] == 17 and {r[2] for r in out.rows} == {"not read"}
    assert out.warnings[0].startswith("empty prompt: sampling the unconditional model")
    assert out.warnings[-1] == "the classifier could not read this volume: weights do not fit"
    assert {r[1] for r in out.rows} == {"— (no prompt)"}


# --- /synthesize on loopback ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(synthesizer):
    from ctvl.viewer.server import serve, stop

    demo = serve(None, port=free_port(), block=False, quiet=True, meteor=False, synthesizer=synthesizer)
    yield demo
    stop(demo)


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served.local_url, verbose=False, download_files=str(Path(served.ctvl_work_dirs.root) / "client"))


def test_api_lists_synthesize_beside_report_and_evaluate(served, client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/report", "/evaluate", "/synthesize"} and not api["unnamed_endpoints"]
    params = [p["parameter_name"] for p in api["named_endpoints"]["/synthesize"]["parameters"]]
    assert params == ["prompt", "seed", "steps", "guidance", "depth"]
    assert {fn.api_name: fn.concurrency_limit for fn in served.fns.values()}["synthesize"] == 1


def test_api_returns_the_nifti_its_recipe_the_table_and_a_summary(client):
    from ctvl.io import read_volume

    files, table, summary = client.predict(PROMPT, 2, 2, None, None, api_name="/synthesize")
    names = sorted(Path(f).name for f in files)
    assert names == ["ctvl_synthetic_seed2.json", "ctvl_synthetic_seed2.nii.gz"]
    volume = read_volume(next(f for f in files if f.endswith(".nii.gz")))
    assert volume.shape == (32, 32, 17) and volume.data.min() >= -1024
    assert table["headers"] == LABEL_HEADERS and [r[0] for r in table["data"]] == list(CTRATE_LABELS)
    assert {r[0]: r[1] for r in table["data"]}["Pleural effusion"] == "yes"
    assert summary.startswith("**Generated** 32 × 32 × 17 voxels at 12 × 12 × 22.5 mm")


def test_bad_settings_are_readable_errors_and_the_server_keeps_serving(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        client.predict(PROMPT, 0, 0, None, None, api_name="/synthesize")
    assert str(err.value) == "steps must be a whole number from 1 to 100, got 0"
    with pytest.raises(AppError, match="depth must be a whole number from 1 to 129 slices, got 1000"):
        client.predict(PROMPT, 0, 2, None, 1000, api_name="/synthesize")
    files, _, _ = client.predict("a pizza", 0, 1, 1, None, api_name="/synthesize")  # still serving
    assert (
        json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())["used_prompt"] == "normal chest CT"
    )


def test_without_a_generator_bundle_the_tab_says_so(tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from ctvl.viewer.server import serve, stop

    demo = serve(
        None,
        port=free_port(),
        block=False,
        quiet=True,
        meteor=False,
        synthesizer=Synthesizer(bundle=tmp_path / "synthesis-phantom-cpu"),
    )
    try:
        with pytest.raises(AppError) as err:
            Client(demo.local_url, verbose=False).predict(PROMPT, 0, None, None, None, api_name="/synthesize")
        assert str(err.value).endswith(
            "synthesis-phantom-cpu: text-to-CT generator bundle not found; or pass "
            "--model BUNDLE (for this viewer: `ctvl app --generator BUNDLE`)"
        )
    finally:
        stop(demo)


# --- ctvl app -------------------------------------------------------------------------------------------------


def test_app_options_choose_the_generator_or_no_tab(monkeypatch, bundle, tmp_path, capsys):
    import ctvl.viewer.server
    from ctvl.cli import main

    seen = []
    monkeypatch.setattr(ctvl.viewer.server, "serve", lambda report_fn=None, **kw: seen.append(kw["synthesizer"]))
    assert main(["app", "--no-report"]) == 0 and isinstance(seen[-1], Synthesizer) and seen[-1].bundle is None
    assert seen[-1]._generator is None  # the default generator loads on the first request
    assert main(["app", "--no-report", "--no-synthesis"]) == 0 and seen[-1] is None
    assert main(["app", "--no-report", "--generator", str(bundle)]) == 0 and seen[-1]._generator is not None
    assert main(["app", "--no-report", "--generator", str(tmp_path / "nowhere")]) == 2 and len(seen) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere: text-to-CT generator bundle not found" in err
