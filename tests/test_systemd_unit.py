"""systemd/forwarder.service: notify + watchdog, secrets as credentials, and a sandbox that
``systemd-analyze`` rates at 1.1 at most (checked where systemd-analyze is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[1] / "systemd" / "forwarder.service"
EXPOSURE_LIMIT = 1.1
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_unit_uses_notify_and_the_watchdog() -> None:
    s = settings()
    assert s["Type"] == ["notify"]  # not notify-reload: systemd 252 has no such type
    assert s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] and s["WatchdogSec"][0] != "0"
    assert "RestartSteps" not in s  # systemd 254+


def test_secrets_reach_the_service_only_as_credentials() -> None:
    s = settings()
    assert len(s["LoadCredential"]) == 2
    text = UNIT.read_text().lower()
    assert "environment=" not in text and "environmentfile=" not in text


@needs_analyze
def test_the_exposure_is_at_most_1_1() -> None:
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for forwarder\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= EXPOSURE_LIMIT, result.stdout


@needs_analyze
def test_verify_is_clean_when_the_executable_exists(tmp_path: Path) -> None:
    """``verify`` checks that ExecStart= exists: point it at a stand-in so that anything
    else it says is a real finding."""
    executable = tmp_path / "forwarder"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    unit = tmp_path / "forwarder.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/forwarder", str(executable)))
    result = subprocess.run(
        [ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
