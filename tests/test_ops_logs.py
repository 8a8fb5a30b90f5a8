"""Log formats: JSON lines that parse, carry the fields where given, and never a secret or a
body; the plain format stays as it was. Through the formatter, then a real ``forwarder run``."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from forwarder import config as config_module
from forwarder.ops.logs import (
    JsonFormatter,
    PlainFormatter,
    Scrubber,
    config_secrets,
    configure_logging,
)
from tests.support.configs import write_config
from tests.support.daemonproc import DaemonProcess
from tests.support.servers.mails import make_mail

SECRET = "hunter2-test-secret"


def record(message: str, *args, level=logging.INFO, exc_info=None, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("forwarder.daemon", level, __file__, 1, message, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def test_a_json_line_has_the_fields_and_only_those() -> None:
    line = JsonFormatter().format(
        record(
            "mail %s: %s",
            "INBOX/42",
            "forward",
            message_id="<a@b>",
            rule="urgent",
            folder="INBOX",
            uid=42,
            sms_id=7,
            body="the whole mail text",
            subject="private",
            password=SECRET,
        )
    )
    assert "\n" not in line
    entry = json.loads(line)
    assert set(entry) == {
        "time",
        "level",
        "logger",
        "message",
        "message_id",
        "rule",
        "folder",
        "uid",
        "sms_id",
    }
    assert entry["level"] == "INFO" and entry["logger"] == "forwarder.daemon"
    assert entry["message"] == "mail INBOX/42: forward"
    assert entry["uid"] == 42 and entry["sms_id"] == 7  # numbers stay numbers
    assert entry["time"].endswith("+00:00")
    assert "whole mail text" not in line and SECRET not in line


def test_absent_fields_are_left_out() -> None:
    entry = json.loads(JsonFormatter().format(record("forwarder started")))
    assert set(entry) == {"time", "level", "logger", "message"}


def test_secrets_are_masked_in_the_message_the_fields_and_the_traceback() -> None:
    scrub = Scrubber([SECRET, "", "api-key-XYZ"])
    try:
        raise RuntimeError(f"server said: LOGIN user {SECRET}")
    except RuntimeError:
        exc_info = sys.exc_info()
    line = JsonFormatter(scrub).format(
        record(
            "login %s failed",
            SECRET,
            level=logging.ERROR,
            exc_info=exc_info,
            message_id=f"<{SECRET}@x>",
            rule="api-key-XYZ",
        )
    )
    entry = json.loads(line)
    assert SECRET not in line and "api-key-XYZ" not in line
    assert entry["message"] == "login *** failed"
    assert "RuntimeError: server said: LOGIN user ***" in entry["exc"]
    assert entry["message_id"] == "<***@x>"


def test_the_plain_format_is_unchanged_but_scrubbed_too() -> None:
    scrub = Scrubber([SECRET])
    line = PlainFormatter(scrub).format(record("mail %s: %s", "INBOX/1", f"skip {SECRET}"))
    assert line == "INFO forwarder.daemon: mail INBOX/1: skip ***"


def test_a_secret_inside_another_is_masked_whole() -> None:
    assert Scrubber(["abc", "xabcx"])("key xabcx and abc") == "key *** and ***"


def test_a_reload_changes_what_is_masked() -> None:
    scrub = Scrubber(["old-password"])
    scrub.update(["new-password"])
    assert scrub("old-password new-password") == "old-password ***"


def test_config_secrets_names_every_secret_of_a_config(tmp_path: Path) -> None:
    path = tmp_path / "forwarder.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "imap": {"host": "imap.example.com", "username": "me", "password": "imap-pw"},
                "smtp": {
                    "host": "smtp.example.com",
                    "from": "me@example.com",
                    "username": "me",
                    "password": "smtp-pw",
                },
                "gateway": {
                    "login": "380501234567",
                    "sender": "Alpha",
                    "mode": "phone",
                    "auth": "api_key",
                    "api_key": "key-123",
                    "recipients": ["380501234568"],
                },
                "health": {"ping_url": "https://hc-ping.com/uuid-1"},
                "rules": [{"name": "all", "action": "forward"}],
            }
        )
    )
    config = config_module.load(path)
    assert sorted(config_secrets(config)) == sorted(
        ["imap-pw", "smtp-pw", "key-123", "https://hc-ping.com/uuid-1"]
    )


def test_configure_logging_rejects_an_unknown_format() -> None:
    with pytest.raises(ValueError):
        configure_logging("INFO", "xml", stream=io.StringIO())


def _json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    return [json.loads(line) for line in lines]  # every line, or this raises


def test_forwarder_run_with_log_format_json_logs_json_lines_without_the_secret(
    tmp_path: Path, imap_user, gateway
) -> None:
    server, user = imap_user.server, imap_user.user
    config = write_config(tmp_path / "forwarder.yaml", imap_user, gateway, log_format="json")
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        server.append(user, "INBOX", make_mail("urgent: disk full", "The body stays private."))
        gateway.wait_for(1)
        daemon.wait_for_checkpoint(above=0)
        assert daemon.stop() == 0
    entries = _json_lines(daemon.output())
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert any(e["message"].startswith("forwarder started") for e in entries)
    assert imap_user.password not in daemon.output()
    assert "The body stays private" not in daemon.output()


def test_the_log_format_flag_overrides_the_config_and_warnings_come_as_json(
    tmp_path: Path,
) -> None:
    """A config with an inline password, readable by all, and a state path that cannot be
    created: the run logs the warning and the error as JSON lines, and exits 75."""
    path = tmp_path / "forwarder.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "imap": {
                    "host": "127.0.0.1",
                    "security": "plain",
                    "username": "me",
                    "password": SECRET,
                },
                "smtp": {"host": "127.0.0.1", "security": "plain", "from": "me@example.com"},
                "gateway": {"login": "380501234567", "sender": "Alpha"},
                "state": "/proc/forwarder-test/state.db",
                "rules": [{"name": "all", "action": "forward"}],
            }
        )
    )
    path.chmod(0o644)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "forwarder.cli",
            "run",
            "--config",
            str(path),
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 75, result.stderr
    entries = _json_lines(result.stderr)
    levels = [e["level"] for e in entries]
    assert levels == ["WARNING", "ERROR"], entries
    assert f"chmod 600 {path}" in entries[0]["message"]
    assert "cannot open the state file" in entries[1]["message"]
    assert SECRET not in result.stderr
