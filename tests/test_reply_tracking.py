"""The reply tracker against real servers: the simulator answers into Dovecot, forwarder reacts."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.configs import write_config
from tests.support.daemonproc import DaemonProcess
from tests.support.servers import wait_until
from tests.support.servers.mails import make_mail, make_message_id

RECIPIENT_A = "380671112233"
RECIPIENT_B = "380931112233"


def forwarder(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder.cli", *args], capture_output=True, text=True, timeout=60
    )


def status(config: Path) -> dict:
    result = forwarder("status", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def replies_recorded(config: Path) -> int:
    state = config.parent / "state.db"
    try:
        with sqlite3.connect(state, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.fixture
def answering_gateway(imap_user, gateway_factory):
    """A gateway simulator whose replies land in the test user's INBOX."""
    server, user = imap_user.server, imap_user.user
    return gateway_factory(deliver=lambda raw: server.append(user, "INBOX", raw))


@pytest.fixture
def answering_tls_gateway(imap_user, gateway_factory):
    """The same over STARTTLS: modes with a secret in the Subject must not travel in clear."""
    server, user = imap_user.server, imap_user.user
    return gateway_factory(tls="starttls", deliver=lambda raw: server.append(user, "INBOX", raw))


@pytest.mark.parametrize(
    ("code", "tie", "charset", "transfer", "html", "tied_by"),
    [
        ("AUTH", "in-reply-to", "utf-8", "8bit", False, "in-reply-to"),
        ("FORBIDDEN", "quote", "windows-1251", "base64", False, "quoted-message-id"),
        ("NO LIST", "none", "utf-8", "quoted-printable", True, "time-order"),
        ("MSG:123", "in-reply-to", "windows-1251", "quoted-printable", True, "in-reply-to"),
        ("BANNED", "quote", "utf-8", "base64", True, "quoted-message-id"),
        ("WEIRD-THING", "in-reply-to", "utf-8", "8bit", False, "in-reply-to"),
    ],
)
def test_each_reply_is_recorded_tied_to_its_sms_and_never_forwarded(
    tmp_path: Path, imap_user, answering_gateway, code, tie, charset, transfer, html, tied_by
) -> None:
    gateway = answering_gateway
    server, user = imap_user.server, imap_user.user
    config = write_config(tmp_path / "f.yaml", imap_user, gateway, gateway={"pause": "1h"})
    gateway.reply_with(code, tie=tie, charset=charset, transfer=transfer, html=html)
    source_id = make_message_id()
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        server.append(user, "INBOX", make_mail("urgent: disk", "full", message_id=source_id))
        gateway.wait_for(1)
        gateway.wait_for_replies(1)
        wait_until(lambda: replies_recorded(config) == 1, 15, "the reply to be recorded")
        daemon.wait_for_checkpoint(above=1)  # the reply (UID 2) was decided too
        assert daemon.stop() == 0

    data = status(config)
    (error,) = data["gateway_errors"]
    expected = code if code != "WEIRD-THING" else "UNKNOWN"
    assert error["code"] == expected
    assert error["message_id"] == source_id
    assert error["tied_by"] == tied_by
    assert len(gateway.received) == 1  # the reply was not forwarded as an SMS
    if code in ("AUTH", "FORBIDDEN", "NO LIST"):
        assert data["circuit"]["code"] == code
    else:
        assert data["circuit"] is None


def test_auth_opens_the_circuit_and_queued_mail_goes_out_after_it_closes(
    tmp_path: Path, imap_user, answering_gateway
) -> None:
    gateway = answering_gateway
    server, user = imap_user.server, imap_user.user
    config = write_config(
        tmp_path / "f.yaml", imap_user, gateway, gateway={"pause": "1h", "probe_wait": 1}
    )
    gateway.reply_with("AUTH")
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        server.append(user, "INBOX", make_mail("urgent one", "first"))
        gateway.wait_for(1)
        wait_until(lambda: status(config)["circuit"] is not None, 15, "the circuit to open")
        server.append(user, "INBOX", make_mail("urgent two", "second"))
        daemon.wait_for_checkpoint(above=2)  # mail two (UID 3) decided and queued, but held
        data = status(config)
        assert data["outbox"].get("pending") == 2  # the refused SMS and the new one
        assert len(gateway.received) == 1
        assert "AUTH" in daemon.output() and daemon.output().count("Sending is paused") == 1

        # The user fixes the password and reloads: one probe goes, then the queue drains.
        daemon.signal(signal.SIGHUP)
        received = gateway.wait_for(3, timeout=20)
        wait_until(lambda: status(config)["circuit"] is None, 15, "the circuit to close")
        assert daemon.stop() == 0
    texts = [sms.text.splitlines()[0] for sms in received]
    assert texts[0] == texts[1] == "Alice Sender: urgent one"  # refused once, sent again
    assert texts[2] == "Alice Sender: urgent two"
    assert status(config)["outbox"] == {"sent": 2}


def test_banned_blocks_only_that_number_until_unblocked(
    tmp_path: Path, imap_user, answering_tls_gateway
) -> None:
    gateway = answering_tls_gateway
    server, user = imap_user.server, imap_user.user
    config = write_config(
        tmp_path / "f.yaml",
        imap_user,
        gateway,
        smtp={"security": "starttls", "ca_file": str(gateway.ca_file)},
        gateway={
            "mode": "phone",
            "auth": "api_key",
            "api_key": "KEY123",
            "recipients": [RECIPIENT_A, RECIPIENT_B],
        },
    )
    gateway.reply_with("BANNED")  # answers the first request, the one to A
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        server.append(user, "INBOX", make_mail("urgent one", "first"))
        first = gateway.wait_for(2)
        assert [sms.phone for sms in first] == [RECIPIENT_A, RECIPIENT_B]
        wait_until(lambda: status(config)["blocked"], 15, "A to be blocked")
        server.append(user, "INBOX", make_mail("urgent two", "second"))
        received = gateway.wait_for(3)
        daemon.wait_for_checkpoint(above=2)
        assert received[2].phone == RECIPIENT_B
        assert [b["recipient"] for b in status(config)["blocked"]] == [RECIPIENT_A]
        assert status(config)["outbox"]["pending"] == 1  # the one for A waits

        result = forwarder("unblock", "--config", str(config), "+380 67 111 22 33")
        assert result.returncode == 0 and "unblocked" in result.stdout
        received = gateway.wait_for(4)
        assert received[3].phone == RECIPIENT_A
        assert daemon.stop() == 0
    assert all(sms.problems == () for sms in received)
    assert "KEY123" not in daemon.output()
    assert b"KEY123" not in (tmp_path / "state.db").read_bytes()
