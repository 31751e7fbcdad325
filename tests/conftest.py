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

    Skipped with a clear reason only where that folder is absent (it is not part of this
    repository); on the project machines and in CI it is always there.
    """
    if not REALDATA.is_dir():
        pytest.skip(f"real beamline data folder {REALDATA} is absent")
    return REALDATA
