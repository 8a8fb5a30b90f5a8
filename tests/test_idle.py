"""Push and recovery: IDLE watchers alone, then ``forwarder run`` against real servers while
Dovecot restarts, freezes, refuses the password or shows the wrong certificate.

Daemon tests use a poll interval of 300 s where they must prove IDLE delivered the mail:
the first round runs at start, and the next poll would come long after the deadline.
How fast push is (APPEND → SMS, APPEND → announced, stop → ended) is measured by
``bench/bench_watcher.py``, not asserted here: a busy machine is slow, not wrong.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forwarder.imap.idle import CONNECTED, NEW_MAIL, IdleWatcher
from tests.support.configs import imap_config, write_config
from tests.support.daemonproc import DaemonProcess
from tests.support.idle import Events
from tests.support.servers import wait_until
from tests.support.servers.dovecot import DovecotServer, find_binary
from tests.support.servers.mails import make_mail

NO_POLL = 300  # seconds: a poll interval no test outlives, so what arrives came by IDLE
#: Seconds to wait for an SMS that only IDLE can bring: generous for a busy machine, and
#: far below NO_POLL, so a poll cannot have brought it.
PUSH_TIMEOUT = 60.0


@pytest.fixture
def watch() -> Iterator:
    """``watch(config, folder)`` starts an IdleWatcher; all are stopped after the test."""
    started: list[IdleWatcher] = []

    def start(config, folder: str = "INBOX") -> tuple[IdleWatcher, Events]:
        events = Events()
        watcher = IdleWatcher(config, folder, events)
        started.append(watcher)
        watcher.start()
        return watcher, events

    yield start
    for watcher in started:
        watcher.stop()
        watcher.join(5)
        assert not watcher.alive


def private_account(imap_user, server: DovecotServer):
    return dataclasses.replace(
        imap_user, port=server.port, tls_port=server.tls_port, ca_file=server.ca_file, server=server
    )


# -- the watcher alone ------------------------------------------------------------------------
def test_new_mail_is_announced(imap_user, watch) -> None:
    watcher, events = watch(imap_config(imap_user))
    events.wait_for(CONNECTED)
    imap_user.server.append(imap_user.user, "INBOX", make_mail())
    events.wait_for(NEW_MAIL)
    assert [(folder, event) for folder, event, _ in events.seen] == [
        ("INBOX", CONNECTED),
        ("INBOX", NEW_MAIL),
    ]
    assert watcher.sessions == 1


def test_idle_is_renewed_on_the_same_connection(imap_user, watch) -> None:
    """Renewed faster than Dovecot announces (0.5 s): the news comes with DONE's answer."""
    watcher, events = watch(imap_config(imap_user, idle_renew=0.2))
    events.wait_for(CONNECTED)
    wait_until(lambda: watcher.renewals >= 2, 5, "two renewals")
    imap_user.server.append(imap_user.user, "INBOX", make_mail())
    events.wait_for(NEW_MAIL)
    assert watcher.sessions == 1 and events.count(CONNECTED) == 1


def test_a_restart_is_survived_without_spinning(dovecot_factory, imap_user, watch) -> None:
    server = dovecot_factory(tls=False)
    watcher, events = watch(imap_config(private_account(imap_user, server), timeout=2))
    events.wait_for(CONNECTED)
    cpu = time.process_time()
    server.stop()
    # Lost, noticed, and one reconnection refused: a busy loop would burn all that time.
    wait_until(lambda: watcher.backoff.failures >= 1, 5, "a failed reconnection")
    server.start()
    events.wait_for(CONNECTED, count=2)
    assert time.process_time() - cpu < 0.5
    server.append(imap_user.user, "INBOX", make_mail())
    events.wait_for(NEW_MAIL)


def test_stop_interrupts_a_wait_in_idle(imap_user, watch) -> None:
    """Without the interruption the thread would sit in IDLE for IDLE_SLICE (30 s) or
    idle_renew (600 s here), far longer than the join below waits."""
    watcher, events = watch(imap_config(imap_user, idle_renew=600))
    events.wait_for(CONNECTED)
    watcher.stop()
    watcher.join(5)
    assert not watcher.alive


# -- the daemon -------------------------------------------------------------------------------
def urgent(n: int | str) -> bytes:
    return make_mail(f"urgent {n}", f"body {n}")


def sms_subjects(gateway) -> list[str]:
    return [sms.text.splitlines()[0].removeprefix("Alice Sender: ") for sms in gateway.received]


def test_idle_delivers_in_several_folders(tmp_path: Path, imap_user, gateway):
    server, user = imap_user.server, imap_user.user
    server.create_folder(user, "Alerts")
    config = write_config(
        tmp_path / "forwarder.yaml",
        imap_user,
        gateway,
        imap={"poll_interval": NO_POLL, "folders": ["INBOX", "Alerts"]},
    )
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint("INBOX")
        daemon.wait_for_checkpoint("Alerts")
        daemon.wait_for_meta("idle:Alerts", "connected")
        server.append(user, "Alerts", urgent("in Alerts"))
        gateway.wait_for(1, timeout=PUSH_TIMEOUT)
        server.append(user, "INBOX", urgent("in INBOX"))
        gateway.wait_for(2, timeout=PUSH_TIMEOUT)
        assert daemon.stop() == 0
    assert sms_subjects(gateway) == ["urgent in Alerts", "urgent in INBOX"]


def test_poll_only_when_idle_is_off(tmp_path: Path, imap_user, gateway) -> None:
    config = write_config(
        tmp_path / "forwarder.yaml", imap_user, gateway, imap={"idle": False, "poll_interval": 1}
    )
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        imap_user.server.append(imap_user.user, "INBOX", urgent(1))
        gateway.wait_for(1)
        assert daemon.stop() == 0
    assert "(IDLE off)" in daemon.output() and "IDLE on" not in daemon.output()


def test_a_recreated_folder_is_rebaselined_while_running(tmp_path: Path, imap_user, gateway):
    server, user = imap_user.server, imap_user.user
    server.create_folder(user, "Alerts")
    server.append(user, "Alerts", urgent("old"))
    config = write_config(
        tmp_path / "forwarder.yaml",
        imap_user,
        gateway,
        imap={"poll_interval": 1, "folders": ["Alerts"]},
    )
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint("Alerts")
        # (What was in the folder when it was recreated is tested in test_watcher.py: here
        # a round may run between DELETE and APPEND, and the mail would be new to it.)
        old = daemon.uidvalidity("Alerts")
        server.recreate_folder(user, "Alerts")
        wait_until(lambda: daemon.uidvalidity("Alerts") != old, 15, "a new baseline")
        server.append(user, "Alerts", urgent("new"))
        gateway.wait_for(1)
        assert daemon.stop() == 0
    assert sms_subjects(gateway) == ["urgent new"]


def save_while_stopped(server: DovecotServer, user: str, raw: bytes) -> None:
    """Deliver into a stopped Dovecot's storage, as its LDA would: no IMAP needed."""
    doveadm = find_binary("doveadm")
    if doveadm is None:
        pytest.skip("doveadm is not installed")
    home = server.home_root / user
    subprocess.run(
        [
            doveadm,
            "-c",
            str(server.config_file),
            "-o",
            f"mail_location=sdbox:{home}/mail",
            "-o",
            f"mail_uid={server.accounts.mail_uid}",
            "-o",
            f"mail_gid={server.accounts.mail_gid}",
            "save",
            "-m",
            "INBOX",
        ],
        input=raw,
        env={**os.environ, "HOME": str(home), "USER": user},
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_mail_delivered_while_dovecot_is_down_is_forwarded_once_after(
    tmp_path: Path, dovecot_factory, imap_user, gateway
) -> None:
    server = dovecot_factory(tls=False)
    account = private_account(imap_user, server)
    config = write_config(
        tmp_path / "forwarder.yaml", account, gateway, imap={"poll_interval": NO_POLL}
    )
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        daemon.wait_for_meta("idle:INBOX", "connected")
        server.stop()
        save_while_stopped(server, account.user, urgent("while down"))
        daemon.wait_for_meta("idle:INBOX", "disconnected")
        server.start()
        # No poll for 300 s: the IDLE reconnect is what finds it.
        gateway.wait_for(1, timeout=15)
        server.append(account.user, "INBOX", urgent("after"))
        gateway.wait_for(2, timeout=PUSH_TIMEOUT)
        daemon.wait_for_checkpoint(above=1)
        assert daemon.stop() == 0
    assert sms_subjects(gateway) == ["urgent while down", "urgent after"]


def test_a_frozen_server_is_survived_through_thaw_and_restart(
    tmp_path: Path, dovecot_factory, imap_user, gateway
) -> None:
    server = dovecot_factory(tls=False)
    account = private_account(imap_user, server)
    config = write_config(
        tmp_path / "forwarder.yaml",
        account,
        gateway,
        imap={"poll_interval": 1, "timeout": 1, "idle_renew": 10},
    )
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        server.freeze()
        daemon.wait_for_meta("last_poll_error")  # the round found out, and returned
        server.thaw()
        server.append(account.user, "INBOX", urgent("after thaw"))
        gateway.wait_for(1, timeout=15)
        server.restart()
        server.append(account.user, "INBOX", urgent("after restart"))
        gateway.wait_for(2, timeout=15)
        assert daemon.stop(timeout=10) == 0
    assert sms_subjects(gateway) == ["urgent after thaw", "urgent after restart"]


def test_a_wrong_password_is_reported_once_and_retried_slowly(
    tmp_path: Path, imap_user, gateway
) -> None:
    config = write_config(
        tmp_path / "forwarder.yaml",
        imap_user,
        gateway,
        imap={"password": "wrong", "poll_interval": 1, "folders": ["INBOX", "Other"]},
    )
    log = imap_user.server.log_file
    failures_before = log.read_text().count(f"user=<{imap_user.user}>")
    with DaemonProcess(config) as daemon:
        daemon.wait_for_meta("last_poll_error")
        time.sleep(3)  # not synchronisation: three poll intervals that must stay quiet
        output = daemon.output()
        assert output.count("refused the login") == 1, output
        assert "check imap.username and imap.password" in output and "wrong" not in output
        # One login by the round and one per IDLE folder, then the slow policy (≥ 30 s).
        logins = log.read_text().count(f"user=<{imap_user.user}>") - failures_before
        assert 1 <= logins <= 3 * 2, logins  # Dovecot may log a failed login twice

        # The operator fixes the password and sends SIGHUP: no waiting out the backoff.
        write_config(config, imap_user, gateway, imap={"poll_interval": NO_POLL})
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_checkpoint()
        daemon.wait_for_meta("idle:INBOX", "connected")
        imap_user.server.append(imap_user.user, "INBOX", urgent("after the fix"))
        gateway.wait_for(1, timeout=PUSH_TIMEOUT)
        assert daemon.stop() == 0


def test_tls_with_the_test_ca_delivers_and_a_wrong_ca_is_refused(
    tmp_path: Path, imap_user, gateway
) -> None:
    tls = {"security": "tls", "port": imap_user.tls_port, "poll_interval": NO_POLL}
    good = write_config(
        tmp_path / "good.yaml", imap_user, gateway, imap={**tls, "ca_file": str(imap_user.ca_file)}
    )
    with DaemonProcess(good) as daemon:
        daemon.wait_for_checkpoint()
        daemon.wait_for_meta("idle:INBOX", "connected")
        imap_user.server.append(imap_user.user, "INBOX", urgent("over TLS"))
        gateway.wait_for(1, timeout=PUSH_TIMEOUT)
        assert daemon.stop() == 0

    wrong = tmp_path / "wrong" / "forwarder.yaml"
    wrong.parent.mkdir()
    write_config(
        wrong, imap_user, gateway, imap={**tls, "ca_file": str(imap_user.server.wrong_ca_file)}
    )
    with DaemonProcess(wrong) as daemon:
        daemon.wait_for_meta("last_poll_error")
        imap_user.server.append(imap_user.user, "INBOX", urgent("must not go"))
        assert daemon.stop() == 0
    assert re.search(
        r"ERROR .*certificate was refused .*check imap.host and imap.ca_file", daemon.output()
    )
    assert len(gateway.received) == 1


def test_a_server_without_idle_is_polled(tmp_path: Path, dovecot_factory, imap_user, gateway):
    server = dovecot_factory(
        tls=False,
        extra_config="protocol imap {\n  imap_capability = IMAP4rev1 SASL-IR LITERAL+ UIDPLUS\n}\n",
    )
    account = private_account(imap_user, server)
    config = write_config(
        tmp_path / "forwarder.yaml",
        account,
        gateway,
        imap={"poll_interval": 1, "folders": ["INBOX", "Other"]},
    )
    server.create_folder(account.user, "Other")
    with DaemonProcess(config) as daemon:
        daemon.wait_for_meta("idle:INBOX", "unsupported")
        daemon.wait_for_checkpoint("Other")
        server.append(account.user, "Other", urgent("polled"))
        gateway.wait_for(1)
        assert daemon.stop() == 0
    assert daemon.output().count("does not offer IDLE") == 1
