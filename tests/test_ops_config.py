"""The operations settings (log_format, metrics, health, alerts, watchdog): defaults, FILE:LINE
problems, the warning for a secret in a file others can read, and a private state file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from forwarder import config as config_module
from forwarder.config import AlertsConfig, ConfigError, HealthConfig, MetricsConfig
from forwarder.store import Store

PING = "https://hc-ping.com/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"


def write(tmp_path: Path, *extra: str, password: str = "  password: x") -> Path:
    lines = [
        "imap:",
        "  host: imap.example.com",
        "  username: me",
        password,
        "smtp:",
        "  host: smtp.example.com",
        "  from: me@example.com",
        "gateway:",
        '  login: "380501234567"',
        "  sender: MyAlpha",
        *extra,
        "rules: []",
    ]
    path = tmp_path / "forwarder.yaml"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def line_of(path: Path, text: str) -> int:
    return path.read_text().splitlines().index(text) + 1


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    return [str(p) for p in caught.value.problems]


def test_everything_is_off_or_default_unless_set(tmp_path: Path) -> None:
    config = config_module.load(write(tmp_path))
    assert config.log_format == "plain"
    assert config.metrics == MetricsConfig(listen=None, allow_remote=False)
    assert config.health == HealthConfig(ping_url=None)
    assert config.alerts == AlertsConfig(enabled=True, imap_down_after=1800.0)
    assert config.watchdog.round_timeout is None
    assert config.warnings == ()


def test_every_setting_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "log_format: json",
        "metrics:",
        '  listen: "[::1]:9200"',
        "health:",
        f"  ping_url: {PING}",
        "alerts:",
        "  enabled: false",
        "  imap_down_after: 2h",
        "watchdog:",
        "  round_timeout: 20m",
    )
    config = config_module.load(path)
    assert config.log_format == "json"
    assert config.metrics.listen == ("::1", 9200)
    assert config.health.ping_url is not None and config.health.ping_url.reveal() == PING
    assert PING not in repr(config)  # shown like a secret
    assert config.alerts == AlertsConfig(enabled=False, imap_down_after=7200.0)
    assert config.watchdog.round_timeout == 1200.0


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ('"127.0.0.1:9187"', ("127.0.0.1", 9187)),
        ('"localhost:9187"', ("localhost", 9187)),
        ("9187", ("127.0.0.1", 9187)),
        ('"127.0.0.2:1"', ("127.0.0.2", 1)),
    ],
)
def test_loopback_listen_addresses(tmp_path: Path, listen: str, expected) -> None:
    config = config_module.load(write(tmp_path, "metrics:", f"  listen: {listen}"))
    assert config.metrics.listen == expected


@pytest.mark.parametrize(
    "listen", ['"example.com:9187"', '"127.0.0.1:99999"', '"::1:9187"', '"127.0.0.1"', '"a:b"']
)
def test_a_listen_address_that_is_not_one_is_refused_at_its_line(tmp_path: Path, listen) -> None:
    path = write(tmp_path, "metrics:", f"  listen: {listen}")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:{line_of(path, f'  listen: {listen}')}: metrics.listen ")
    assert "HOST:PORT" in problem


def test_the_network_gets_metrics_only_when_the_user_says_so(tmp_path: Path) -> None:
    listen = '  listen: "0.0.0.0:9187"'
    path = write(tmp_path, "metrics:", listen)
    (problem,) = problems(path)
    assert problem == (
        f"{path}:{line_of(path, listen)}: metrics.listen: 0.0.0.0 is not a loopback address, "
        "and /metrics has no password: set metrics.allow_remote: true to serve it to the network"
    )
    path = write(tmp_path, "metrics:", listen, "  allow_remote: true")
    assert config_module.load(path).metrics == MetricsConfig(("0.0.0.0", 9187), True)


def test_a_ping_url_that_is_not_http_is_refused_without_repeating_it(tmp_path: Path) -> None:
    path = write(tmp_path, "health:", "  ping_url: ftp://hc.example/secret-uuid")
    (problem,) = problems(path)
    assert problem.startswith(
        f"{path}:{line_of(path, '  ping_url: ftp://hc.example/secret-uuid')}:"
    )
    assert "secret-uuid" not in problem


def test_other_mistakes_are_reported_at_their_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "log_format: xml",
        "alerts:",
        "  imap_down_after: 0s",
        "  enable: true",
        "watchdog:",
        "  round_timeout: soon",
    )
    found = problems(path)
    assert found == sorted(
        [
            f"{path}:{line_of(path, 'log_format: xml')}: log_format must be one of plain, json, "
            "not 'xml'",
            f"{path}:{line_of(path, '  imap_down_after: 0s')}: alerts.imap_down_after must be "
            "at least 1 seconds",
            f"{path}:{line_of(path, '  enable: true')}: unknown key 'alerts.enable' (did you mean "
            "'enabled'?)",
            f"{path}:{line_of(path, '  round_timeout: soon')}: watchdog.round_timeout must be a "
            "duration like 30, '90s', '3m', '6h', not 'soon'",
        ]
    )


# -- a secret in a file others can read ------------------------------------------------------
def test_an_inline_password_in_a_file_others_can_read_gets_the_chmod(tmp_path: Path) -> None:
    path = write(tmp_path)
    path.chmod(0o644)
    (warning,) = config_module.load(path).warnings
    assert warning == (
        f"{path}:{line_of(path, '  password: x')}: imap.password is written in this file, which "
        f"its group and others can read (mode 0644): run  chmod 600 {path}  (or move the "
        "secret to a *_file setting, e.g. a systemd credential: see README)"
    )
    path.chmod(0o640)
    assert "which its group can read (mode 0640)" in config_module.load(path).warnings[0]
    path.chmod(0o600)
    assert config_module.load(path).warnings == ()


def test_secrets_from_the_environment_or_a_file_do_not_make_the_file_secret(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "imap-password"
    secret.write_text("x\n")
    for line in ("  password: ${IMAP_PW}", f"  password_file: {secret}"):
        path = write(tmp_path, password=line)
        path.chmod(0o644)
        assert config_module.load(path, environ={"IMAP_PW": "x"}).warnings == (), line


def test_forwarder_check_prints_the_warning_and_still_passes(tmp_path: Path) -> None:
    path = write(tmp_path)
    path.chmod(0o604)
    result = subprocess.run(
        [sys.executable, "-m", "forwarder.cli", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"warning: {path}:" in result.stderr
    assert f"which every user can read (mode 0604): run  chmod 600 {path}" in result.stderr
    assert "OK" in result.stdout


def test_the_log_format_flag_is_in_the_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "forwarder.cli", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "--log-format {plain,json}" in result.stdout


# -- the state file ---------------------------------------------------------------------------
def test_a_new_state_file_and_its_directory_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a permissive umask, as an interactive shell has
    try:
        store = Store(tmp_path / "new" / "state.db")
        store.set_meta("x", "1")  # writes the WAL
    finally:
        os.umask(old)
    try:
        mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
        assert mode(tmp_path / "new") == 0o700
        assert mode(tmp_path / "new" / "state.db") == 0o600
        assert mode(tmp_path / "new" / "state.db-wal") == 0o600
    finally:
        store.close()


def test_an_existing_state_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store(path).close()
    path.chmod(0o640)  # the owner's choice (e.g. a group that runs status)
    Store(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
