"""The viewer's shared widgets: the error guard and the three-plane rendering."""

import gradio as gr
import numpy as np
import pytest

from ctvl.errors import InputError
from ctvl.io import Volume
from ctvl.viewer import app  # sets gradio's environment before the widgets import it
from ctvl.viewer.planes import PLANES, ScanView
from ctvl.viewer.widgets import guarded, one_line, render_all


def test_one_line_collapses_whitespace_and_names_empty_errors():
    assert one_line(ValueError("bad\n  header\tvalue")) == "bad header value"
    assert one_line(KeyError()) == "KeyError"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (InputError("not a CT volume", path="x.nii.gz"), "x.nii.gz: not a CT volume"),
        (MemoryError(), "the server ran out of memory for this input; try a smaller scan"),
        (ZeroDivisionError("division\nby zero"), "unexpected ZeroDivisionError: division by zero"),
    ],
)
def test_guarded_turns_every_error_into_one_line_on_the_page(error, message):
    def handler():
        raise error

    with pytest.raises(gr.Error) as caught:
        guarded(handler)()
    assert caught.value.message == message


def test_guarded_passes_results_and_gradio_errors_through():
    assert guarded(lambda x: x + 1)(1) == 2
    with pytest.raises(gr.Error, match="already readable"):
        guarded(lambda: (_ for _ in ()).throw(gr.Error("already readable")))()


def test_render_all_draws_three_planes_or_nothing():
    assert render_all(None, [0, 0, 0], 40, 400, 64) == [None, None, None]
    hu = np.linspace(-1000, 1000, 8 * 10 * 12, dtype=np.float32).reshape(8, 10, 12)
    view = ScanView.from_volume(Volume(hu, np.diag([1.0, 1.0, 2.0, 1.0])))
    images = render_all(view, [view.n_slices(p) // 2 for p in PLANES], 0, 2000, 64)
    assert len(images) == 3 and all(isinstance(im, np.ndarray) and im.dtype == np.uint8 for im in images)
    assert app.render_all is render_all  # still reachable where the app's API documents it
