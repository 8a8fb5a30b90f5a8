"""The crash soak, short (bench/soak_crash.py runs the long one by hand): kill -9 of the real
daemon at random moments while important mail streams in; half the kills aimed at the
moment the gateway accepts a request, where a doubt arises. Nothing lost, nothing twice."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.server]
BENCH = Path(__file__).resolve().parent.parent / "bench" / "soak_crash.py"


def _soak():
    spec = importlib.util.spec_from_file_location("soak_crash", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.soak


def test_a_short_crash_soak_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, dovecot_factory
) -> None:
    # dovecot_factory: only for its Dovecot check (skip, or fail in CI); the soak starts its own
    result = _soak()(kills=12, aim=0.5, seed=11, workdir=tmp_path, say=lambda _line: None)
    assert result.mails > 0
    assert result.lost == []
    assert result.duplicates == 0
    assert result.sms == result.mails
    assert set(result.doubts) <= {"receipt", "resent"}  # every doubt settled, none alerted
