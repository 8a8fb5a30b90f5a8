"""Delivery through `forwarder run` as a real process: Dovecot → daemon → gateway simulator.

SIGKILL between the outbox write and the send, SMTP down then up, and a storm with small
limits in each secret-carrying mode, the secret looked for in the log file, the state file
and `status --json`.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from forwarder.cli import main as cli_main
from tests.support.configs import OWNER, write_config
from tests.support.daemonproc import DaemonProcess
from tests.support.delivery import MODES, SECRETS, smtp_settings
from tests.support.servers import wait_until
from tests.support.servers.mails import make_mail


def outbox(config: Path) -> list[dict]:
    state = config.parent / "state.db"
    if not state.exists():
        return []
    try:
        with sqlite3.connect(state, timeout=1) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM outbox ORDER BY id")]
    except sqlite3.OperationalError:  # not created yet
        return []


def wait_for_rows(config: Path, what: str, condition, timeout: float = 15) -> None:
    wait_until(lambda: condition(outbox(config)), timeout, what)


def test_sigkill_between_outbox_write_and_send_sends_once_after_restart(
    tmp_path: Path, imap_user, gateway
) -> None:
    gateway.stop()  # the SMS cannot leave: it stays in the outbox
    config = write_config(tmp_path / "forwarder.yaml", imap_user, gateway)
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        imap_user.server.append(imap_user.user, "INBOX", make_mail("urgent: kill me", "body"))
        wait_for_rows(
            config,
            "the SMS queued and its first send failed",
            lambda rows: rows and rows[0]["retries"] >= 1,
        )
        assert daemon.proc is not None
        daemon.proc.kill()  # SIGKILL: no shutdown, no cleanup
        daemon.proc.wait()
        daemon.proc = None
        assert outbox(config)[0]["state"] == "pending"

        gateway.start()
        daemon.start()
        (sms,) = gateway.wait_for(1)
        wait_for_rows(config, "the SMS marked sent", lambda rows: rows[0]["state"] == "sent")
        assert daemon.stop() == 0
    assert sms.problems == ()
    assert sms.text.startswith("Alice Sender: urgent: kill me")
    assert len(gateway.received) == 1
    assert "1 SMS waiting to retry are due again after the restart" in daemon.output()


def test_smtp_down_then_up_is_delivered_once_by_the_running_daemon(
    tmp_path: Path, imap_user, gateway
) -> None:
    gateway.stop()
    delivery = {"retry_backoff": 1, "retry_backoff_max": 2, "retry_attempts": 1}
    config = write_config(tmp_path / "forwarder.yaml", imap_user, gateway, delivery=delivery)
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        imap_user.server.append(imap_user.user, "INBOX", make_mail("urgent: SMTP down", "body"))
        wait_for_rows(config, "a failed send", lambda rows: rows and rows[0]["retries"] >= 1)
        gateway.start()
        (sms,) = gateway.wait_for(1)
        wait_for_rows(config, "the SMS marked sent", lambda rows: rows[0]["state"] == "sent")
        assert daemon.stop() == 0
    assert sms.problems == ()
    assert len(gateway.received) == 1
    assert gateway.attempts == 1
    assert "not sent yet, will retry" in daemon.output()


@pytest.mark.parametrize(
    ("letter", "tls"), [("a", "starttls"), ("c", "implicit"), ("d", "implicit"), ("e", "starttls")]
)
def test_a_storm_is_limited_and_no_secret_leaves_in_any_mode(
    tmp_path: Path, imap_user, gateway_factory, capsys, letter: str, tls: str
) -> None:
    gateway = gateway_factory(
        tls=tls, owner=OWNER, username="smtp-user", password="smtp-SECRET-pass"
    )
    config = write_config(
        tmp_path / "forwarder.yaml",
        imap_user,
        gateway,
        smtp=smtp_settings(gateway),
        gateway=MODES[letter],
        log_level="DEBUG",
        limits={"per_minute": 3},
    )
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        for n in range(8):
            imap_user.server.append(imap_user.user, "INBOX", make_mail(f"urgent {n}", "body"))
        received = gateway.wait_for(3)
        wait_for_rows(
            config,
            "3 SMS sent and 5 held",
            lambda rows: [r["state"] for r in rows].count("held") == 5,
        )
        assert daemon.stop() == 0
    assert len(gateway.received) == 3
    assert {(s.mode, s.problems, s.encrypted) for s in received} == {(letter, (), True)}

    assert cli_main(["status", "--json", "--config", str(config)]) == 0
    status = capsys.readouterr().out
    assert json.loads(status)["outbox"] == {"sent": 3, "held": 5}
    log = daemon.output()
    assert "SMS sent" in log and "5 SMS held back" in log
    state = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
    for secret in SECRETS:
        assert secret not in log, "a secret reached the daemon's log"
        assert secret not in status, "a secret reached status --json"
        assert secret.encode() not in state, "a secret reached the state file"
