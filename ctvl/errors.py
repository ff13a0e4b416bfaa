"""Errors that ctvl reports to a person as one line.

Library code raises :class:`CtvlError` (or a subclass) for anything caused by the input: a missing or
corrupt file, data that is not CT, a shape that cannot be handled. The message must name the file (when
there is one), say what is wrong and what to do, in one line. The CLI prints it as ``error: <message>``
and exits with code 2; the viewer shows it in the page.
"""

from __future__ import annotations

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


def check_keys(given: object, known: object, what: str) -> None:
    """Refuse keys a config section does not know (a typo never falls back to a default silently).

    Args:
        given: the keys found (e.g. a YAML mapping).
        known: the keys allowed.
        what: the section, for the message (e.g. ``"synthesis model"``).

    Raises:
        ConfigError: naming the unknown keys and the known ones.
    """
    unknown = sorted(set(given) - set(known))  # type: ignore[call-overload]
    if unknown:
        raise ConfigError(f"unknown {what} key(s) {unknown}; known: {sorted(known)}")  # type: ignore[call-overload]
