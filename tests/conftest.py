"""Shared fixtures: the real-data location and small synthetic media."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / ".." / "shared" / "data"


def shared_data(relative: str) -> Path:
    """Path of a real-data file; skips the calling test when ../shared/data is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} (the repo's ../shared/data is absent)")
    return path


def pytest_configure(config):
    """Tiny models run fastest on one thread; this also keeps the 2-core CI machine responsive."""
    import torch

    torch.set_num_threads(1)
