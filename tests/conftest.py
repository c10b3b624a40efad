"""Shared fixtures. Peers live in ``peers.py`` (import it from tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # make ``import peers`` work from tests

from peers import PKI, make_pki  # noqa: E402


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """The test PKI, generated once per xdist worker in its own temp dir."""
    return make_pki(tmp_path_factory.mktemp("pki"))
