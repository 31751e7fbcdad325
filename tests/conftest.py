"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
SAMPLES = ROOT / "data_samples"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The real beamline files of ../shared/realdata (see its README).

    Skipped with a clear reason only on a developer's machine without that folder (it is
    not part of this repository); under CI (``CI`` set) its absence fails the tests instead,
    so that no real-data test is ever counted as passed without running.
    """
    if not REALDATA.is_dir():
        message = f"real beamline data folder {REALDATA} is absent"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the real-data tests)")
        pytest.skip(message)
    return REALDATA
