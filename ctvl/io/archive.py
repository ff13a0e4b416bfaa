"""Safe extraction of a ``.zip`` that holds a DICOM series (or one NIfTI file).

Python's ``zipfile.extractall`` sanitises names silently; ctvl refuses instead, because an archive
that tries to write outside its folder is hostile or broken and the person should know. Refused:
absolute member names, drive letters, ``..`` components, symbolic links, encrypted members, and
archives whose content would exceed a byte cap (counted while decompressing, so a zip bomb that
lies in its directory is stopped too). Written by hand because no maintained library does these
checks with one-line errors.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ctvl.errors import InputError

CHUNK = 1 << 20


def unsafe_reason(name: str) -> str | None:
    """Why a zip member name is unsafe to extract, or None when it is fine."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "an absolute path"
    if ".." in PurePosixPath(norm).parts:
        return "a '..' component"
    return None


def extract_zip(path: Path, dest: Path, max_bytes: int) -> list[Path]:
    """Extract every regular file of ``path`` under ``dest`` after checking the whole archive.

    Args:
        path: the .zip file.
        dest: an empty folder to extract into.
        max_bytes: cap on the total uncompressed size.
    Returns:
        The extracted files.
    Raises:
        InputError: corrupt archive, unsafe or encrypted member, or content over ``max_bytes``.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"not a readable zip archive ({exc}); re-download or re-create it", path=path) from exc
    out: list[Path] = []
    with archive:
        members = archive.infolist()
        for info in members:
            name = info.filename
            reason = unsafe_reason(name)
            if reason:
                raise InputError(f"zip member {name!r} has {reason}: refusing to extract this archive", path=path)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise InputError(f"zip member {name!r} is a symbolic link: refusing to extract this archive", path=path)
            if info.flag_bits & 0x1:
                raise InputError(
                    f"zip member {name!r} is encrypted; extract it yourself and pass the folder", path=path
                )
        declared = sum(info.file_size for info in members)
        if declared > max_bytes:
            raise InputError(f"archive expands to {declared:,} bytes, over the cap of {max_bytes:,}", path=path)
        if shutil.disk_usage(dest).free < declared:
            raise InputError(f"not enough free disk space in {dest} to extract {declared:,} bytes", path=path)
        total = 0
        for info in members:
            if info.is_dir():
                continue
            target = dest.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(CHUNK):
                        total += len(chunk)
                        if total > max_bytes:
                            raise InputError(
                                f"archive expands past the cap of {max_bytes:,} bytes (a zip bomb?)", path=path
                            )
                        dst.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
                reason = f"{info.filename!r} ({exc})"
                raise InputError(f"corrupt zip member {reason}; re-create the archive", path=path) from exc
            out.append(target)
    return out
