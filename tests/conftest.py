"""Session fixtures shared across test packages: a tiny generator bundle (tests/synthesis/factory.py), built once."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.synthesis.factory import tiny_generator_bundle

    return tiny_generator_bundle(tmp_path_factory.mktemp("synthesis"))


@pytest.fixture(scope="session")
def tiny_gen(tiny_bundle: Path):
    from ctvl.synthesis import load_generator

    return load_generator(tiny_bundle)
