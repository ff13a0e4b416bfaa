"""The report_fn seam: a clear refusal without a model, the 18-label table with one."""

import numpy as np
import pytest

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import CtvlError
from ctvl.io import Volume
from ctvl.viewer.report_hook import NO_MODEL_MESSAGE, ReportModelMissing, ReportOutput, findings_rows, run_report


def test_without_a_model_nothing_is_read_and_the_message_is_plain():
    def loader():
        raise AssertionError("the upload must not be read when no model exists")

    with pytest.raises(ReportModelMissing) as err:
        run_report(None, loader)
    assert str(err.value) == NO_MODEL_MESSAGE and "\n" not in NO_MODEL_MESSAGE
    assert "No report model bundle is installed" in NO_MODEL_MESSAGE


def test_model_output_becomes_the_findings_table_in_ctrate_order():
    seen = []

    def report_fn(volume):
        seen.append(volume.shape)
        labels = {name: int(name in ("Emphysema", "Cardiomegaly")) for name in reversed(CTRATE_LABELS)}
        return ReportOutput("Emphysema. Cardiomegaly.", labels, probabilities={"Emphysema": 0.91234})

    output, rows = run_report(report_fn, lambda: Volume(np.zeros((4, 4, 2), np.float32), np.eye(4)))
    assert seen == [(4, 4, 2)] and output.text == "Emphysema. Cardiomegaly."
    assert [r[0] for r in rows] == list(CTRATE_LABELS)
    assert {r[0] for r in rows if r[1] == "yes"} == {"Emphysema", "Cardiomegaly"}
    assert rows[CTRATE_LABELS.index("Emphysema")][2] == 0.912 and rows[0][2] == ""


def test_malformed_model_output_is_an_error_not_a_table():
    with pytest.raises(CtvlError, match="missing: Medical material"):
        findings_rows(ReportOutput("x", {"Emphysema": 1}))
    with pytest.raises(CtvlError, match="returned str, not a ReportOutput"):
        run_report(lambda v: "text", lambda: None)
