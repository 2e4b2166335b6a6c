"""Fixtures of the runner's unit tests (helpers live in esd_fixtures.py)."""

from __future__ import annotations

import os
import sys

import pytest

# The helpers module sits next to this file; make it importable however pytest was started.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from esd_fixtures import make_workspace  # noqa: E402


@pytest.fixture
def workspace(tmp_path):
    """A directory holding a package source, built artifacts and an image spec."""
    return make_workspace(tmp_path)
