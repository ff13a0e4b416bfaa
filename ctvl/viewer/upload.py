"""Uploads → volumes: one NIfTI/NRRD/MetaImage file, one .zip (a DICOM series or one image file),
several DICOM slices, or a detached header (.mhd/.nhdr) with its data file(s).

A browser sends a DICOM series as many separate files; :func:`staged_upload` copies them into one
temporary folder so :func:`ctvl.io.read_volume` reads them as a series, exactly as ``ctvl info`` /
``ctvl report`` read a folder. A detached header and its data files are copied under their own
names, so the header finds them. Everything that can go wrong becomes an
:class:`~ctvl.errors.InputError` whose message names the uploaded file (not the server's temporary
path), so the page can show it as it is.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ctvl.errors import CtvlError, InputError
from ctvl.io.volume import Volume
from ctvl.viewer.planes import ScanView

DEFAULT_MAX_UPLOAD_BYTES = 1 << 30  # 1 GiB over all files of one upload
DEFAULT_MAX_VOXELS = 1 << 29  # 2 GiB as float32: 512 x 512 x 2048 or 1024 x 1024 x 512
DETACHED_HEADER_SUFFIXES = (".mhd", ".nhdr")  # headers whose voxels live in other files
UPLOAD_HINT = (
    "a NIfTI, NRRD or MetaImage file, a DICOM .zip, the .dcm files of one series, or a .mhd/.nhdr with its data"
)


@dataclass
class LoadedScan:
    """What the Report tab shows after an upload.

    Attributes:
        view: the volume on its canonical grid, for the three planes.
        info: :func:`ctvl.io.info` of the upload (stored grid, every warning), with ``path``
            replaced by the uploaded file name(s).
    """

    view: ScanView
    info: dict


def upload_paths(value: object) -> list[Path]:
    """Paths of an upload as Gradio passes it (None, a path, a list of paths or file objects).

    Raises:
        InputError: nothing was uploaded.
    """
    items = value if isinstance(value, (list, tuple)) else [] if value is None else [value]
    paths = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("path") or item.get("name")
        elif hasattr(item, "path"):
            item = item.path
        elif hasattr(item, "name") and not isinstance(item, (str, Path)):
            item = item.name
        if item:
            paths.append(Path(str(item)))
    if not paths:
        raise InputError(f"no file uploaded: choose {UPLOAD_HINT}")
    return paths


def describe_upload(paths: Sequence[Path]) -> str:
    """How an upload is named in messages: the file name, or "N DICOM files (a.dcm, ...)"."""
    if len(paths) == 1:
        return paths[0].name
    names = ", ".join(p.name for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
    return f"{len(paths)} files ({names})"


def human_bytes(n: int) -> str:
    """``n`` bytes as "812 B", "3.4 KiB", "1.0 GiB"."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} B"


def check_upload_size(paths: Sequence[Path], max_bytes: int) -> int:
    """Total size of the upload in bytes; refuses uploads over ``max_bytes`` or missing files."""
    total = 0
    for path in paths:
        try:
            total += path.stat().st_size
        except OSError as exc:
            raise InputError(f"uploaded file is gone ({exc.strerror or exc}); upload it again", path=path.name) from exc
    if total > max_bytes:
        raise InputError(
            f"{describe_upload(paths)}: the upload is {human_bytes(total)}, over the viewer's cap of "
            f"{human_bytes(max_bytes)}; crop the scan or start the app with a larger --max-upload-mb"
        )
    return total


@contextmanager
def staged_upload(value: object, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> Iterator[Path]:
    """The path to read for an upload; several files are copied into a temporary folder first.

    Args:
        value: the upload as Gradio passes it (see :func:`upload_paths`).
        max_bytes: cap on the total upload size.
    Yields:
        The single uploaded file, the staged copy of a detached header (its data files beside it), or
        a temporary folder holding the DICOM slices (removed on exit).
    Raises:
        InputError: empty or oversized upload, or several files that are neither the DICOM slices of
        one series nor one detached header with its data.
    """
    from ctvl.io.read import detect_format

    paths = upload_paths(value)
    check_upload_size(paths, max_bytes)
    if len(paths) == 1:
        with readable_errors(paths, None):
            yield paths[0]
        return
    headers = [p for p in paths if p.name.lower().endswith(DETACHED_HEADER_SUFFIXES)]
    if len(headers) == 1:
        with tempfile.TemporaryDirectory(prefix="ctvl-upload-") as tmp:
            folder = Path(tmp) / "image"
            folder.mkdir()
            for path in paths:  # own names: the header refers to its data files by name
                shutil.copyfile(path, folder / path.name)
            with readable_errors(paths, folder, named=True):
                yield folder / headers[0].name
        return
    with readable_errors(paths, None):
        kinds = {p: detect_format(p) for p in paths}
    others = [p.name for p, kind in kinds.items() if kind != "dicom-file"]
    if others:
        raise InputError(
            f"{describe_upload(paths)}: several files must all be DICOM slices of one series, but "
            f"{', '.join(others[:3])} {'is' if len(others) == 1 else 'are'} not; upload a NIfTI, NRRD, MetaImage or "
            ".zip file on its own, or one .mhd/.nhdr header with its data files"
        )
    with tempfile.TemporaryDirectory(prefix="ctvl-upload-") as tmp:
        folder = Path(tmp) / "series"
        folder.mkdir()
        for k, path in enumerate(paths):  # index prefix: browsers may send equal names from different folders
            shutil.copyfile(path, folder / f"{k:05d}_{path.name}")
        with readable_errors(paths, folder):
            yield folder


@contextmanager
def readable_errors(paths: Sequence[Path], folder: Path | None = None, *, named: bool = False) -> Iterator[None]:
    """Rewrite server-side paths in CtvlError messages to the names the person uploaded.

    Args:
        paths: the uploaded files (their full server paths become their names).
        folder: a staging folder holding index-prefixed copies of ``paths`` (or, with ``named``,
            copies under their own names), or None.
        named: the staged copies keep the uploaded names.
    """
    try:
        yield
    except CtvlError as exc:
        message = str(exc)
        if folder is not None and named:
            message = message.replace(f"{folder}/", "").replace(str(folder), "the upload")
        elif folder is not None:
            message = re.sub(re.escape(str(folder)) + r"/\d{5}_", "", message)
            message = message.replace(str(folder), describe_upload(paths))
        for path in paths:
            message = message.replace(str(path), path.name).replace(str(path.parent), "the upload")
        if message == str(exc):
            raise
        raise type(exc)(message) from exc


def load_scan(
    value: object, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_voxels: int = DEFAULT_MAX_VOXELS
) -> LoadedScan:
    """Read an upload for viewing: header info with every warning, and the canonical planes.

    Doubtful data (non-CT modality, double rescaling, slice gaps) is shown with its warnings
    instead of being refused (``strict=False``); :func:`read_upload` is the strict reader that
    report generation uses.

    Args:
        value: the upload (see :func:`upload_paths`).
        max_bytes: cap on the total upload size.
        max_voxels: refuse grids larger than this (checked from the header before reading).
    Returns:
        :class:`LoadedScan`.
    """
    from ctvl.io import info, read_volume

    with staged_upload(value, max_bytes) as path:
        header = info(path, max_voxels=max_voxels)
        volume = read_volume(path, strict=False, max_voxels=max_voxels)
    header["path"] = describe_upload(upload_paths(value))
    return LoadedScan(ScanView.from_volume(volume), header)


def read_upload(
    value: object, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_voxels: int = DEFAULT_MAX_VOXELS
) -> Volume:
    """Read an upload strictly (as ``ctvl report`` reads a path): doubtful inputs are refused."""
    from ctvl.io import read_volume

    with staged_upload(value, max_bytes) as path:
        return read_volume(path, max_voxels=max_voxels)


def _md(text: object) -> str:
    """Escape Markdown control characters in header text."""
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", str(text))


def header_markdown(header: dict) -> str:
    """Markdown table of :func:`ctvl.io.info`'s fields, then its warnings as a list."""
    fmt = lambda vals: " × ".join(f"{v:g}" for v in vals)  # noqa: E731
    resc = header.get("rescale", {})
    rows = [
        ("file", _md(header.get("path", ""))),
        ("format", _md(header.get("format", ""))),
        ("shape (i × j × k)", fmt(header["shape"])),
        ("spacing (mm)", fmt(header["spacing"])),
        ("orientation", _md(header.get("orientation", ""))),
        ("HU range", f"{header['hu_range'][0]:g} … {header['hu_range'][1]:g}"),
        ("modality", _md(header.get("modality", ""))),
    ]
    if header.get("manufacturer"):
        rows.append(("manufacturer", _md(header["manufacturer"])))
    if resc:
        rows.append(
            ("rescale", f"slope {resc['slope']:g}, intercept {resc['intercept']:g} ({_md(resc.get('source', ''))})")
        )
    lines = ["| header | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    warnings = header.get("warnings") or []
    if warnings:
        lines.append(f"**{len(warnings)} warning{'s' if len(warnings) > 1 else ''}:**")
        lines += [f"- ⚠ {_md(w)}" for w in warnings]
    else:
        lines.append("No warnings.")
    return "\n".join(lines)
