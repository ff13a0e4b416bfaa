"""Tests for ctvl.errors.check_keys: the one unknown-key check every config reader uses."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ctvl.errors import ConfigError, check_keys


@dataclass
class Section:
    alpha: int = 1
    beta: str = "b"


def test_known_keys_pass() -> None:
    check_keys({"alpha": 2}, Section, "section")
    check_keys([], ("x",), "section")
    check_keys({"x": 1, "y": 2}, {"x": 0, "y": 0}, "section")


def test_unknown_key_names_it_and_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        check_keys({"alpha": 2, "gamma": 3}, Section, "section", where="the test config")
    assert str(info.value) == "unknown section key(s) ['gamma'] in the test config; known: alpha, beta"


def test_descriptions_replace_bare_names() -> None:
    with pytest.raises(ConfigError, match=r"known: root: a folder; split: which split"):
        check_keys({"rooot": "x"}, ("root", "split"), "data", describe={"root": "a folder", "split": "which split"})
