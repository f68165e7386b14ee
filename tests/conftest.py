"""Shared fixtures: paths to the real data under ../shared/data and the bundled sample.

Layer-specific fixtures live next to their tests; keep this file small.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from perfspec.runtime import apply_quiet_defaults

apply_quiet_defaults()

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO_ROOT / "sample"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real corpora beside the checkout; tests needing them skip clearly when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (clone next to the shared/ folder)")
    return SHARED_DATA
