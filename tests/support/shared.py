"""Where ``../shared`` is: the corpora and documents every developer and CI have beside the repo.

A clone with nothing beside it must still pass ``make test``: tests that read ``../shared``
skip there, with the reason.  In CI (env ``CI`` set) the folder is part of the setup, so its
absence fails the test instead of silently testing nothing.  ``FORWARDER_SHARED`` names the
folder elsewhere (a git worktree, which has no ``../shared`` of its own).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def shared_root() -> Path:
    """Where ``../shared`` is meant to be (it may be absent): for building test parameters."""
    return Path(os.environ.get("FORWARDER_SHARED") or ROOT.parent / "shared")


def shared_path(*parts: str) -> Path:
    """``../shared/<parts>`` if it exists; otherwise skip the test (fail it when CI is set)."""
    path = shared_root().joinpath(*parts)
    if path.exists():
        return path
    message = f"{path} is absent: check out the shared folder beside the repository"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
