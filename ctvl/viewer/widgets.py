"""The viewer's shared widgets: the three-plane view with its window controls, and the error guard.

Every tab that shows a volume (Report, Synthesize) builds the same axial / coronal / sagittal images, each
with a slice slider, beside window presets with level / width, and wires them with :func:`wire_planes` to a
``gr.State`` holding a :class:`~ctvl.viewer.planes.ScanView`. :func:`guarded` wraps every handler: a
:class:`~ctvl.errors.CtvlError` becomes its one-line message on the page, anything else a one-line
"unexpected ..." message with the traceback in the server log.

Imported through :mod:`ctvl.viewer.app`, which sets gradio's environment (no telemetry, offline hub) first.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

import gradio as gr

from ctvl.errors import CtvlError
from ctvl.viewer.planes import DEFAULT_PRESET, PLANES, WINDOW_PRESETS, ScanView, preset_for, render_plane

log = logging.getLogger("ctvl.viewer")

PRESET_CHOICES = [*WINDOW_PRESETS, "custom"]


def one_line(exc: BaseException) -> str:
    """An exception as one line: its message with whitespace collapsed, or its type's name."""
    return " ".join(str(exc).split()) or type(exc).__name__


def guarded(fn: Callable) -> Callable:
    """Run ``fn``; input errors become ``gr.Error`` with their message, anything else a one-line error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except CtvlError as exc:
            raise gr.Error(one_line(exc), print_exception=False) from exc
        except MemoryError as exc:
            raise gr.Error(
                "the server ran out of memory for this input; try a smaller scan", print_exception=False
            ) from exc
        except Exception as exc:  # never let a bad input take the server down
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"unexpected {type(exc).__name__}: {one_line(exc)}", print_exception=False) from exc

    return wrapper


def render_all(view: ScanView | None, slices: Sequence[int], level: float, width: float, size: int) -> list:
    """Three images (axial, coronal, sagittal) or three Nones without a scan."""
    if view is None:
        return [None, None, None]
    return [render_plane(view, plane, int(k), float(level), float(width), size) for plane, k in zip(PLANES, slices)]


def slice_slider(n: int | None, value: int = 0) -> gr.Slider:
    """A slice slider for an axis of ``n`` slices (disabled without a scan), set to ``value``."""
    if n is None:
        return gr.Slider(minimum=0, maximum=1, value=0, interactive=False)
    return gr.Slider(minimum=0, maximum=max(n - 1, 0), value=value, interactive=n > 1)


def _slice_renderer(plane: str, size: int) -> Callable:
    def on_slice(view: ScanView | None, index: float, level: float, width: float):
        return None if view is None else render_plane(view, plane, int(index), float(level), float(width), size)

    on_slice.__name__ = f"on_{plane}_slice"
    return on_slice


def window_controls(prefix: str) -> tuple[gr.Radio, gr.Slider, gr.Slider]:
    """Window preset, level and width (HU) controls."""
    level0, width0 = WINDOW_PRESETS[DEFAULT_PRESET]
    preset = gr.Radio(PRESET_CHOICES, value=DEFAULT_PRESET, label="Window", elem_id=f"{prefix}-preset")
    level = gr.Slider(-1500, 3000, value=level0, step=10, label="Level (HU)", elem_id=f"{prefix}-level")
    width = gr.Slider(1, 4000, value=width0, step=10, label="Width (HU)", elem_id=f"{prefix}-width")
    return preset, level, width


def plane_images(prefix: str) -> tuple[list[gr.Image], list[gr.Slider]]:
    """The axial, coronal and sagittal images, each with its slice slider."""
    images, sliders = [], []
    with gr.Row():
        for plane, hint in zip(PLANES, ("inferior → superior", "posterior → anterior", "patient's left → right")):
            with gr.Column(min_width=200):
                images.append(
                    gr.Image(
                        label=plane.capitalize(),
                        type="numpy",
                        format="png",
                        interactive=False,
                        elem_id=f"{prefix}-{plane}",
                    )
                )
                sliders.append(
                    gr.Slider(
                        0,
                        1,
                        value=0,
                        step=1,
                        label=f"{plane} slice ({hint})",
                        interactive=False,
                        elem_id=f"{prefix}-{plane}-slice",
                    )
                )
    return images, sliders


def wire_planes(scan: gr.State, preset, level, width, images, sliders, display_size: int) -> None:
    """Slice sliders, window presets and level/width re-render the planes of the ScanView in ``scan``."""

    def on_preset(name, view, *slices):
        if name not in WINDOW_PRESETS:
            return [gr.update(), gr.update(), gr.update(), gr.update(), gr.update()]
        lv, wd = WINDOW_PRESETS[name]
        return [lv, wd, *render_all(view, slices, lv, wd, display_size)]

    def on_window(view, lv, wd, *slices):
        return [preset_for(lv, wd), *render_all(view, slices, lv, wd, display_size)]

    for plane, slider, image in zip(PLANES, sliders, images):
        slider.input(
            guarded(_slice_renderer(plane, display_size)),
            [scan, slider, level, width],
            image,
            trigger_mode="always_last",
            show_progress="hidden",
            api_visibility="private",
        )
    preset.input(
        guarded(on_preset),
        [preset, scan, *sliders],
        [level, width, *images],
        show_progress="hidden",
        api_visibility="private",
    )
    for control in (level, width):
        control.input(
            guarded(on_window),
            [scan, level, width, *sliders],
            [preset, *images],
            trigger_mode="always_last",
            show_progress="hidden",
            api_visibility="private",
        )
