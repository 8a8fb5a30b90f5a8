"""The ``../shared`` folder beside the repository (the mail corpora), for the tests that read it.

A clone with nothing beside it must still pass ``make test``: there a test that needs the
folder skips, saying why. In CI (env ``CI`` set) the folder is part of the setup, so its
absence fails the test: a corpus test that silently skips there tests nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared"


def shared_dir() -> Path:
    """``../shared``; skips the calling test when it is absent, or fails it when CI is set."""
    if SHARED.is_dir():
        return SHARED
    reason = f"{SHARED} is absent: it holds the shared mail corpora beside the repository"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required when CI is set)")
    pytest.skip(reason)
