"""Errors that ctvl reports to a person as one line.

Library code raises :class:`CtvlError` (or a subclass) for anything caused by the input: a missing or
corrupt file, data that is not CT, a shape that cannot be handled. The message must name the file (when
there is one), say what is wrong and what to do, in one line. The CLI prints it as ``error: <message>``
and exits with code 2; the viewer shows it in the page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path


class CtvlError(Exception):
    """A user-facing, one-line error about the input."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        message = " ".join(str(message).split())  # force one line
        if path is not None:
            message = f"{path}: {message}"
        super().__init__(message)
        self.path = None if path is None else str(path)


class InputError(CtvlError):
    """The input file or folder cannot be used (unreadable, corrupt, unsupported, unsafe)."""


class ConfigError(CtvlError):
    """A configuration file or option is invalid."""


def check_keys(
    given: Iterable[str],
    known: Iterable[str] | type,
    what: str,
    *,
    where: str = "",
    describe: Mapping[str, str] | None = None,
) -> None:
    """Refuse keys a config section does not know (a typo never falls back to a default silently).

    Every config reader (YAML sections, bundle ``config.json`` files) checks its keys with this one
    function, so the messages read alike.

    Args:
        given: the keys found (e.g. a YAML mapping).
        known: the keys allowed, or a dataclass whose field names they are.
        what: the section, for the message (e.g. ``"synthesis model"``).
        where: the file or config, for the message (e.g. ``"the report config"``).
        describe: a one-line description per known key, listed in the message instead of the bare names.

    Raises:
        ConfigError: naming the unknown keys and the known ones.
    """
    if isinstance(known, type) and dataclasses.is_dataclass(known):
        names = {f.name for f in dataclasses.fields(known)}
    else:
        names = set(known)  # type: ignore[arg-type]
    unknown = sorted(set(given) - names)
    if unknown:
        listed = "; ".join(f"{k}: {v}" for k, v in describe.items()) if describe else ", ".join(sorted(names))
        place = f" in {where}" if where else ""
        raise ConfigError(f"unknown {what} key(s) {unknown}{place}; known: {listed}")
