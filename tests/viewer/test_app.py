"""The viewer's API on loopback through gradio_client: /report and /evaluate, errors, caps, queue."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from ctvl.data.labels import CTRATE_LABELS
from ctvl.eval.labeler import ReportLabeler
from ctvl.eval.reports import evaluate_report_files
from ctvl.viewer.report_hook import NO_MODEL_MESSAGE, ReportOutput
from tests.io.factory import chest_hu, write_nifti_file
from tests.viewer.conftest import free_port
from tests.viewer.test_evaluate import write_csvs


@pytest.fixture(scope="module")
def client(viewer):
    return Client(viewer.local_url, verbose=False, download_files=str(Path(viewer.ctvl_work_dirs.root) / "client"))


def test_binds_loopback_with_a_queue_and_two_public_endpoints(viewer, client):
    assert viewer.local_url.startswith("http://127.0.0.1:")
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/report", "/evaluate"} and not api["unnamed_endpoints"]
    limits = {fn.api_name: fn.concurrency_limit for fn in viewer.fns.values()}
    assert limits["report"] == 1 and limits["evaluate"] == 1
    assert viewer._queue.max_size == 64 and viewer.max_file_size == 1 << 30


def test_report_says_no_model_is_installed(bare_viewer, phantom_nifti):
    client = Client(bare_viewer.local_url, verbose=False)
    with pytest.raises(AppError) as err:
        client.predict([handle_file(str(phantom_nifti))], api_name="/report")
    assert str(err.value) == NO_MODEL_MESSAGE


def test_report_from_the_shipped_model(client, phantom_nifti):
    text, table = client.predict([handle_file(str(phantom_nifti))], api_name="/report")
    assert text.startswith("Findings: ") and "Impression: " in text
    labels = ReportLabeler().label(text.replace("Findings: ", "").replace("Impression: ", ""))
    assert [row[0] for row in table["data"]] == list(CTRATE_LABELS)
    assert {row[0]: int(row[1] == "yes") for row in table["data"]} == labels  # the table says what the text says
    assert all(0.0 <= float(row[2]) <= 1.0 for row in table["data"])  # the label head's probabilities


def test_twenty_concurrent_report_requests_all_succeed(client, phantom_nifti):
    """Load: 20 requests at once on loopback; the queue runs them one at a time and none fails."""
    jobs = [client.submit([handle_file(str(phantom_nifti))], api_name="/report") for _ in range(20)]
    results = [job.result(timeout=600) for job in jobs]
    assert len(results) == 20
    assert len({text for text, _ in results}) == 1  # same scan, deterministic model: the same report
    assert all(len(table["data"]) == 18 for _, table in results)


def test_evaluate_returns_tables_chart_and_results(client, tmp_path):
    pred, ref, labels = write_csvs(tmp_path)
    summary, per_label, chart, files = client.predict(
        handle_file(str(pred)), handle_file(str(ref)), handle_file(str(labels)), api_name="/evaluate"
    )
    expected = evaluate_report_files(pred, ref, tmp_path / "cli", labels_csv=labels, meteor=False)["clinical"]
    table = {row[0]: row[1] for row in summary["data"]}
    assert summary["headers"] == ["metric", "value"] and table["reports"] == 3
    assert table["clinical macro f1"] == pytest.approx(expected["macro_f1"], abs=1e-4)
    assert table["clinical micro f1"] == pytest.approx(expected["micro_f1"], abs=1e-4)
    assert [row[0] for row in per_label["data"]] == list(CTRATE_LABELS)
    assert Path(chart).read_bytes()[:4] == b"\x89PNG"
    names = sorted(Path(f).name for f in files)
    assert names == ["ctvl_eval_results.zip", "metrics.json"]
    with zipfile.ZipFile(next(f for f in files if f.endswith(".zip"))) as zf:
        assert "summary.md" in zf.namelist()


def test_bad_csv_is_a_readable_error_and_the_server_keeps_serving(client, tmp_path):
    pred, ref, _ = write_csvs(tmp_path, labels=False)
    bad = tmp_path / "bad_predictions.csv"
    bad.write_text("name,text\nx,hello\n")
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(bad)), handle_file(str(ref)), None, api_name="/evaluate")
    message = str(err.value)
    assert message.startswith("bad_predictions.csv: no id column found") and "/tmp/" not in message
    with pytest.raises(AppError, match="upload the predictions CSV"):
        client.predict(None, handle_file(str(ref)), None, api_name="/evaluate")
    summary, *_ = client.predict(handle_file(str(pred)), handle_file(str(ref)), None, api_name="/evaluate")
    assert summary["data"][0] == ["reports", 3]


def test_report_hook_with_a_model_and_the_upload_cap(tmp_path):
    """A stand-in model proves the plumbing the real one (ctvl.report) will use."""
    from ctvl.viewer.server import serve, stop

    def report_fn(volume):
        positive = "Emphysema" if float(np.mean(volume.data)) < -300 else "Cardiomegaly"
        return ReportOutput(
            f"{volume.shape} {positive}.",
            {n: int(n == positive) for n in CTRATE_LABELS},
            evidence={positive: (1, 2, 0)},
        )

    demo = serve(report_fn, port=free_port(), block=False, quiet=True, meteor=False, max_upload_bytes=64 << 10)
    try:
        client = Client(demo.local_url, verbose=False)
        small = write_nifti_file(tmp_path / "small.nii.gz", chest_hu((24, 20, 6)))
        text, table = client.predict([handle_file(str(small))], api_name="/report")  # evidence stays in the page
        assert text == "(24, 20, 6) Emphysema."  # mostly air
        assert [row[:2] for row in table["data"] if row[1] == "yes"] == [["Emphysema", "yes"]]
        assert len(table["data"]) == 18
        big = tmp_path / "big.nii"
        big.write_bytes(b"\0" * (65 << 10))
        with pytest.raises(Exception, match="(?i)too large|exceeds|413"):
            client.predict([handle_file(str(big))], api_name="/report")
        text, _ = client.predict([handle_file(str(small))], api_name="/report")  # still serving
        assert text.endswith("Emphysema.")
    finally:
        stop(demo)
