"""The text headers of NRRD and MetaImage files, read by ctvl before SimpleITK sees them.

ITK reads these formats well but says little when a file is wrong: a missing detached data file, an
uncompressed file cut short and a corrupt compressed stream come out as "No such file or
directory" or, for the last, as silently wrong voxels (ITK does not check zlib's checksum). This
module reads the header text itself (NRRD: ``field: value`` lines up to a blank line; MetaImage:
``Key = Value`` lines up to ``ElementDataFile``) so those cases become one plain sentence, and it
writes the corrected copy of an NRRD header that ITK would refuse outright.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ctvl.errors import InputError
from ctvl.io.checks import Issue

NRRD_SUFFIXES = (".nrrd", ".nhdr")
METAIMAGE_SUFFIXES = (".mha", ".mhd")
ITK_SUFFIXES = NRRD_SUFFIXES + METAIMAGE_SUFFIXES
HEADER_BYTES = 1 << 20  # a text header longer than this is not a header
PATIENT_SPACES = {
    "left-posterior-superior",
    "right-anterior-superior",
    "left-anterior-superior",
    "lps",
    "ras",
    "las",
}  # NRRD spaces ITK maps to patient LPS (also their "-time" forms)


@dataclass
class TextHeader:
    """The text header of an NRRD or MetaImage file, as written (before ITK interprets it).

    Attributes:
        kind: "nrrd" or "metaimage".
        fields: field name (lower case) -> value, e.g. {"sizes": "64 64 93", "encoding": "raw"}.
        lines: the header's field lines in order (comments and magic dropped).
        data_offset: byte where the image data starts inside the header file (attached data),
            None when the data lives in other files.
        data_files: the detached data files, resolved next to the header (empty when attached).
    """

    kind: str
    fields: dict[str, str]
    lines: list[str]
    data_offset: int | None
    data_files: list[Path] = field(default_factory=list)


def parse_header(path: Path) -> TextHeader:
    """The text header of ``path`` (NRRD by a .nrrd/.nhdr name, else MetaImage).

    Raises:
        InputError: the file cannot be opened or does not start like a header of its format.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER_BYTES)
    except OSError as exc:
        raise InputError(f"cannot open the file ({exc.strerror or exc})", path=path) from exc
    if path.name.lower().endswith(NRRD_SUFFIXES):
        return _parse_nrrd(head, path)
    return _parse_metaimage(head, path)


def _parse_nrrd(head: bytes, path: Path) -> TextHeader:
    if not re.match(rb"NRRD000\d\r?\n", head):
        raise InputError(
            "not an NRRD file (it does not start with 'NRRD000x'); check that it is a complete .nrrd/.nhdr", path=path
        )
    end = re.search(rb"\r?\n\r?\n", head)
    text = head[: end.start() if end else len(head)].decode("latin-1")
    rows = [ln.strip() for ln in text.splitlines()[1:]]
    fields: dict[str, str] = {}
    lines: list[str] = []
    listed: list[str] = []
    for row in rows:
        if listed or (fields.get("data file", "").split()[:1] == ["LIST"]):
            listed.append(row)  # after "data file: LIST" every line names a data file
            continue
        if not row or row.startswith("#") or ":=" in row.split(": ", 1)[0]:
            continue
        key, sep, value = row.partition(": ")
        if not sep:
            raise InputError(
                f"corrupt NRRD header line {row[:40]!r} (no 'field: value'); fix or re-export the file", path=path
            )
        key = key.strip().lower()
        fields["data file" if key == "datafile" else key] = value.strip()
        lines.append(row)
    spec = fields.get("data file")
    if spec is None:
        if end is None:
            raise InputError(
                "NRRD header has no end (no blank line before the data) and no 'data file'; "
                "the file is truncated or not NRRD",
                path=path,
            )
        return TextHeader("nrrd", fields, lines, end.end())
    return TextHeader("nrrd", fields, lines, None, _expand(spec, listed, path.parent))


def _parse_metaimage(head: bytes, path: Path) -> TextHeader:
    fields: dict[str, str] = {}
    lines: list[str] = []
    pos = 0
    listed: list[str] = []
    for raw in head.splitlines(keepends=True):
        pos += len(raw)
        row = raw.decode("latin-1").strip()
        if "elementdatafile" in fields:
            listed.append(row)  # a LIST data file: names follow, one a line
            continue
        if not row:
            continue
        key, sep, value = row.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise InputError(
                "not a MetaImage file (no 'Key = Value' header before the data); check that it is a complete .mha/.mhd",
                path=path,
            )
        fields[key.strip().lower()] = value.strip()
        lines.append(row)
        if key.strip().lower() == "elementdatafile" and value.upper().split()[:1] != ["LIST"]:
            break
    spec = fields.get("elementdatafile")
    if spec is None:
        raise InputError(
            "MetaImage header has no ElementDataFile line: the file is truncated or not MetaImage", path=path
        )
    if spec.upper() == "LOCAL":
        return TextHeader("metaimage", fields, lines, pos)
    return TextHeader("metaimage", fields, lines, None, _expand(spec, listed, path.parent))


def _expand(spec: str, listed: list[str], base: Path) -> list[Path]:
    """Data files from a 'data file' / 'ElementDataFile' value: one name, ``LIST``, or ``fmt min max step``."""
    parts = spec.split()
    if parts and parts[0].upper() == "LIST":
        names = [ln for ln in listed if ln]
    elif len(parts) >= 4 and "%" in parts[0] and all(re.fullmatch(r"-?\d+", p) for p in parts[1:4]):
        lo, hi, step = (int(p) for p in parts[1:4])
        step = step or 1
        names = [parts[0] % i for i in range(lo, hi + (1 if step > 0 else -1), step)]
    else:
        names = [spec]
    return [p if p.is_absolute() else base / p for p in map(Path, names)]


def check_data_files(header: TextHeader, path: Path) -> None:
    """Refuse a header whose detached data file(s) are not there (before ITK says "No such file")."""
    missing = [p for p in header.data_files if not p.is_file()]
    if missing:
        where = f" ({len(missing)} of {len(header.data_files)} missing)" if len(header.data_files) > 1 else ""
        raise InputError(
            f"the data file {missing[0].name} that the header names is missing{where} (looked in {missing[0].parent}); "
            "put the header and its data file(s) in one folder (upload them together, or zip them)",
            path=path,
        )


def check_length(header: TextHeader, path: Path, nbytes: int) -> None:
    """Refuse an uncompressed file shorter than its header says (ITK's own messages are cryptic)."""
    f = header.fields
    if header.kind == "nrrd":
        raw = f.get("encoding", "raw").lower() == "raw" and _int(f, "line skip") == 0
        skip = _int(f, "byte skip")
    else:
        raw = not _compressed(header) and f.get("binarydata", "true").lower() != "false"
        skip = _int(f, "headersize")
    if not raw or skip is None or skip < 0:
        return
    files = header.data_files or [path]
    offset = (header.data_offset or 0) + skip
    each = nbytes // len(files)
    for file in files:
        size = file.stat().st_size
        need = (offset if file == path else skip) + each
        if size < need:
            what = "file" if file == path else f"data file {file.name}"
            raise InputError(
                f"{what} is truncated: {size} bytes on disk, the header needs {need}; re-export or re-download it",
                path=path,
            )


def fixed_nrrd_header(header: TextHeader, path: Path, tmp: Path) -> tuple[Path, Issue | None]:
    """A corrected copy of an NRRD header that gives ``space`` with ``spacings`` (ITK refuses it).

    Args:
        header: the parsed header of ``path``.
        path: the file.
        tmp: a folder for the corrected copy (it names its data files by absolute path).
    Returns:
        (file to read, warning): ``path`` and None when the header needs no correction.
    """
    f = header.fields
    if header.kind != "nrrd" or "spacings" not in f or "space directions" in f:
        return path, None
    if "space" not in f and "space dimension" not in f:
        return path, None
    drop = (
        "space:",
        "space dimension:",
        "space origin:",
        "space units:",
        "measurement frame:",
        "data file:",
        "datafile:",
        "line skip:",
    )
    kept = [ln for ln in header.lines if not ln.lower().startswith(drop)]
    if header.data_files:
        kept += [
            f"line skip: {_int(f, 'line skip') or 0}",
            "data file: LIST",
            *(str(p.resolve()) for p in header.data_files),
        ]
    else:  # attached data: point at the file itself and skip its header lines
        with open(path, "rb") as fh:
            n_lines = fh.read(header.data_offset or 0).count(b"\n")
        kept += [f"line skip: {n_lines + (_int(f, 'line skip') or 0)}", f"data file: {path.resolve()}"]
    fixed = tmp / "fixed.nhdr"
    fixed.write_text("NRRD0004\n" + "\n".join(kept) + "\n", encoding="latin-1")
    space = f.get("space") or f"{f['space dimension']}-dimensional"
    return fixed, Issue(
        f"the NRRD header gives 'space: {space}' with per-axis 'spacings' and no 'space directions' "
        "(the NRRD format forbids this; ITK refuses it): read with the spacings and no orientation, "
        "ITK's default axes (LPS) are used, left/right may be wrong"
    )


def check_compressed(header: TextHeader, path: Path) -> None:
    """Refuse a compressed stream that ends early or fails its checksum (ITK would read garbage voxels).

    Streams through the data once (gzip for NRRD ``encoding: gzip``, zlib or gzip for MetaImage
    ``CompressedData = True``) without keeping the output.
    """
    if header.kind == "nrrd":
        if header.fields.get("encoding", "raw").lower() not in ("gzip", "gz") or _int(header.fields, "line skip") != 0:
            return
        wbits = 16 + zlib.MAX_WBITS
    elif _compressed(header):
        wbits = 32 + zlib.MAX_WBITS  # zlib or gzip header, detected
    else:
        return
    for file in header.data_files or [path]:
        with open(file, "rb") as fh:
            fh.seek(header.data_offset or 0 if file == path else 0)
            stream = zlib.decompressobj(wbits)
            try:
                while not stream.eof and (chunk := fh.read(1 << 20)):
                    while chunk and not stream.eof:
                        stream.decompress(chunk, 1 << 24)  # bounded output: highly compressible air
                        chunk = stream.unconsumed_tail
            except zlib.error as exc:
                raise InputError(
                    f"corrupt compressed image data in {file.name} ({exc}); re-export or re-download it", path=path
                ) from exc
            if not stream.eof:
                raise InputError(
                    f"the compressed image data in {file.name} ends early: the file is truncated; "
                    "re-export or re-download it",
                    path=path,
                )


def _compressed(header: TextHeader) -> bool:
    return header.fields.get("compresseddata", "false").lower() == "true"


def _int(fields: dict[str, str], key: str) -> int | None:
    """An integer header field (0 when absent, None when not an integer)."""
    value = fields.get(key, "0").strip()
    return int(value) if re.fullmatch(r"-?\d+", value) else None


def orientation_issue(header: TextHeader) -> Issue | None:
    """A warning when the header gives no usable patient orientation (ITK then uses identity, i.e. LPS axes)."""
    f = header.fields
    if header.kind == "nrrd":
        space = f.get("space", "").lower().removesuffix("-time")
        if "space directions" not in f:
            if "spacings" in f and ("space" in f or "space dimension" in f):
                return None  # already reported by fixed_nrrd_header
            return Issue(
                "no orientation in the NRRD header (no 'space directions'): ITK's default axes (LPS) are "
                "used, left/right may be wrong"
            )
        if space not in PATIENT_SPACES:
            what = f"space is '{f['space']}'" if "space" in f else "no 'space' field"
            return Issue(
                f"the NRRD header's {what}, not a patient space (LPS/RAS/LAS): its axes are taken as LPS, "
                "left/right may be wrong"
            )
        return None
    if not {"transformmatrix", "rotation", "orientation"} & set(f):
        anat = (
            f" (its AnatomicalOrientation {f['anatomicalorientation']} is not used by ITK)"
            if ("anatomicalorientation" in f)
            else ""
        )
        return Issue(
            f"no orientation in the MetaImage header (no TransformMatrix){anat}: ITK's default axes (LPS) are "
            "used, left/right may be wrong"
        )
    return None
