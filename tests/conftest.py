"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
SAMPLES = ROOT / "data_samples"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The real beamline files of ../shared/realdata (see its README).

    Their absence fails the tests that need them (never a skip counted as passed): the
    project's checkout has that folder beside it, as CI does.
    """
    if not REALDATA.is_dir():
        pytest.fail(f"real beamline data folder {REALDATA} is absent: the real-data tests "
                    f"need ../shared/realdata beside the repository")
    return REALDATA
