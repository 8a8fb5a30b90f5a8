"""Fault injection at every step (issue 11): `forwarder run` is SIGKILLed exactly at one step,
restarted, and must end with exactly one SMS — or, where nothing can tell whether the first
one got through (``receipts: off``), at most two, and the second one counted.

The kill comes from inside (``FORWARDER_CRASH_AT``, ``forwarder/crashpoints.py`` says why);
everything else is real: the daemon process, Dovecot (with an RFC 6154 Sent folder) and the
gateway simulator, which files what it accepts in Sent (``sent_folder``) and delivers the
owner's copy to INBOX (``copy``) before its 250, as the user's SMTP server would.

| point          | the gateway has it | receipts: copy, sent_folder | receipts: off           |
|----------------|--------------------|-----------------------------|-------------------------|
| after_fetch    | no                 | 1 SMS, no doubt             | 1 SMS, no doubt         |
| after_commit   | no                 | 1 SMS, no doubt             | 1 SMS, no doubt         |
| after_sending  | no                 | 1 SMS, no doubt             | 1 SMS, no doubt         |
| after_in_doubt | no                 | 1 SMS: no receipt, resent   | 1 SMS: resent           |
| after_dot      | yes                | 1 SMS: receipt, not resent  | 2 SMS: resent, counted  |
| after_250      | yes                | 1 SMS: receipt, not resent  | 2 SMS: resent, counted  |
"""

from __future__ import annotations

import itertools
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from forwarder import crashpoints
from tests.support.configs import write_config
from tests.support.daemonproc import DaemonProcess
from tests.support.servers import wait_until
from tests.support.servers.dovecot import SENT_FOLDER, DovecotServer
from tests.support.servers.gateway import GatewaySimulator
from tests.support.servers.mails import make_mail

pytestmark = pytest.mark.server
_users = itertools.count(1)

#: Where the gateway already has the request when the process dies.
ACCEPTED = {crashpoints.AFTER_DOT, crashpoints.AFTER_250}
#: Where the row is left in doubt (the in_doubt commit happened, the sent one did not).
IN_DOUBT = {crashpoints.AFTER_IN_DOUBT, crashpoints.AFTER_DOT, crashpoints.AFTER_250}


@pytest.fixture
def dovecot(dovecot_with_sent: DovecotServer) -> DovecotServer:
    return dovecot_with_sent


def expected(point: str, receipts: str) -> tuple[int, dict[str, int]]:
    """(SMS the gateway ends with, doubts by outcome) for a kill at ``point``."""
    if point not in IN_DOUBT:
        return 1, {}
    if point in ACCEPTED:
        return (2, {"resent": 1}) if receipts == "off" else (1, {"receipt": 1})
    return 1, {"resent": 1}


def state(config: Path) -> tuple[list[str], int]:
    """(outbox states, open doubts), read from outside; ([], 0) while the file is busy."""
    try:
        with sqlite3.connect(config.parent / "state.db", timeout=1) as db:
            states = [r[0] for r in db.execute("SELECT state FROM outbox ORDER BY id")]
            try:
                (open_doubts,) = db.execute(
                    "SELECT COUNT(*) FROM doubts WHERE settled_at IS NULL"
                ).fetchone()
            except sqlite3.OperationalError:
                open_doubts = 0
    except sqlite3.OperationalError:
        return [], 0
    return states, open_doubts


def status(config: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "forwarder.cli", "status", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("receipts", ["copy", "sent_folder", "off"])
@pytest.mark.parametrize("point", crashpoints.POINTS)
def test_a_kill_at_each_step_then_a_restart_sends_exactly_once(
    tmp_path: Path, dovecot: DovecotServer, point: str, receipts: str
) -> None:
    user = f"crash{next(_users)}"
    account = SimpleNamespace(
        host=dovecot.host, port=dovecot.port, user=user, password=dovecot.password
    )
    gateway = GatewaySimulator(
        local=(lambda _rcpt, raw: dovecot.append(user, "INBOX", raw))
        if receipts == "copy"
        else None,
        sent=(lambda raw: dovecot.append(user, SENT_FOLDER, raw))
        if receipts == "sent_folder"
        else None,
    )
    delivery = {"receipts": receipts, "receipt_wait": "2s"}
    with gateway:
        config = write_config(tmp_path / "forwarder.yaml", account, gateway, delivery=delivery)
        with DaemonProcess(config, env={crashpoints.ENV: point}) as daemon:
            daemon.wait_for_checkpoint()
            dovecot.append(user, "INBOX", make_mail(f"urgent: killed {point}", "body"))
            assert daemon.proc is not None
            assert daemon.proc.wait(timeout=30) == -signal.SIGKILL
            daemon.proc = None
            assert f"{crashpoints.ENV}={point}: this process kills itself there" in (
                daemon.output()
            )
            if point in ACCEPTED:  # the server finishes what it accepted after the kill
                gateway.wait_for(1)
            else:
                assert gateway.received == []

            del daemon.env[crashpoints.ENV]
            daemon.start()
            wait_until(
                lambda: (found := state(config))[0] == ["sent"] and found[1] == 0,
                30,
                f"the SMS settled after a kill {point} (receipts: {receipts})",
            )
            assert daemon.stop() == 0
        sms_count, outcomes = expected(point, receipts)
        received = gateway.received
    assert len(received) == sms_count
    assert {sms.text.splitlines()[0] for sms in received} == {
        f"Alice Sender: urgent: killed {point}"
    }
    assert all(sms.problems == () for sms in received)
    data = status(config)
    assert data["doubts"] == outcomes
    assert data["outbox"] == {"sent": 1}
    assert data["folders"]["INBOX"]["last_uid"] >= 1
