"""rules.example.yaml documents every feature: it must stay valid and its rule tests must pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "rules.example.yaml"
ENV = {"IMAP_PASSWORD": "x", "SMTP_PASSWORD": "y", "PATH": "/usr/bin:/bin"}


def forwarder(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )


def test_example_config_passes_check() -> None:
    result = forwarder("check", "--config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_example_rule_tests_pass() -> None:
    result = forwarder("test", "--config", str(EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 passed, 0 failed" in result.stdout


def test_missing_secret_variable_is_reported_at_its_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "forwarder.cli", "check", "--config", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 78
    line = next(
        n
        for n, text in enumerate(EXAMPLE.read_text().splitlines(), 1)
        if "${IMAP_PASSWORD}" in text
    )
    assert f"{EXAMPLE}:{line}: environment variable IMAP_PASSWORD is not set" in result.stderr
