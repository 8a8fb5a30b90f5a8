"""``forwarder run`` as systemd runs it: the sd_notify messages on a test datagram socket,
the watchdog pings and what stops them, the self-alert SMS, and JSON log lines.

Every test drives a real process against a real Dovecot and the gateway simulator; what it
waits for is a message on the notify socket, an SMS at the gateway or a row in the state
file, never the wording of a log line.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.configs import write_config
from tests.support.daemonproc import DaemonProcess, read_checkpoint
from tests.support.notifysocket import NotifySocket
from tests.support.servers.mails import make_mail

WATCHDOG_USEC = 1_000_000  # 1 s: forwarder pings every 0.5 s while it makes progress


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def until(
    notify: NotifySocket, wanted: Callable[[dict[str, str]], bool], timeout: float = 30.0
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Read messages until one is ``wanted``; returns it and every message before it."""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, str]] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"not among {len(seen)} sd_notify messages: {seen[-5:]}")
        message = notify.receive(timeout=left)
        if wanted(message):
            return message, seen
        seen.append(message)


def test_ready_comes_after_every_folder_was_looked_at_and_mail_after_it_is_forwarded(
    tmp_path: Path, imap_user, gateway, notify
) -> None:
    imap_user.server.create_folder(imap_user.user, "Alerts")
    config = write_config(
        tmp_path / "forwarder.yaml",
        imap_user,
        gateway,
        imap={"folders": ["INBOX", "Alerts"], "poll_interval": 300},
    )
    with DaemonProcess(config, env=notify.env) as daemon:
        ready, before = until(notify, lambda m: m.get("READY") == "1")
        state = tmp_path / "state.db"
        # READY only once both folders have a checkpoint: nothing after it can be missed.
        assert read_checkpoint(state, "INBOX") is not None
        assert read_checkpoint(state, "Alerts") is not None
        assert any(m.get("STATUS", "").startswith("starting") for m in before)
        assert "watching INBOX, Alerts" in ready["STATUS"]
        imap_user.server.append(imap_user.user, "Alerts", make_mail("urgent: right after", "x"))
        (sms,) = gateway.wait_for(1)
        assert "right after" in sms.text
        daemon.signal(signal.SIGHUP)
        until(notify, lambda m: m.get("RELOADING") == "1")
        reloaded, _ = until(notify, lambda m: m.get("READY") == "1")
        assert "watching INBOX, Alerts" in reloaded["STATUS"]
        daemon.signal(signal.SIGTERM)
        until(notify, lambda m: m.get("STOPPING") == "1")
        assert daemon.stop() == 0


def test_watchdog_pings_while_it_works_and_stop_when_a_round_hangs(
    tmp_path: Path, dovecot_factory, imap_user, gateway, notify
) -> None:
    server = dovecot_factory()
    user = imap_user.user
    account = type(imap_user)(
        host=server.host,
        port=server.port,
        tls_port=server.tls_port,
        user=user,
        password=server.password,
        ca_file=server.ca_file,
        server=server,
    )
    config = write_config(
        tmp_path / "forwarder.yaml",
        account,
        gateway,
        # A round blocked on a frozen server for up to 60 s, where 2 s is the bound.
        imap={"poll_interval": 1, "timeout": 60, "idle": False},
        watchdog={"round_timeout": 2},
    )
    env = {**notify.env, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    with DaemonProcess(config, env=env) as daemon:
        until(notify, lambda m: m.get("READY") == "1")
        for _ in range(3):  # pings keep coming while rounds finish
            until(notify, lambda m: m.get("WATCHDOG") == "1", timeout=5)
        server.freeze()  # the next round blocks in a read: a hang, not an error
        try:
            gap_end = None
            last = time.monotonic()
            deadline = last + 30
            while gap_end is None and time.monotonic() < deadline:
                try:
                    message = notify.receive(timeout=3)
                except TimeoutError:
                    gap_end = time.monotonic()
                    break
                if message.get("WATCHDOG") == "1":
                    last = time.monotonic()
            assert gap_end is not None, "pings went on while the round hung"
        finally:
            server.thaw()
        # The round returns (the server answers again): pings resume.
        until(notify, lambda m: m.get("WATCHDOG") == "1", timeout=30)
        assert daemon.stop() == 0


def test_the_owner_gets_one_sms_when_imap_is_down_and_one_when_it_works_again(
    tmp_path: Path, dovecot_factory, imap_user, gateway
) -> None:
    server = dovecot_factory()
    account = type(imap_user)(
        host=server.host,
        port=server.port,
        tls_port=server.tls_port,
        user=imap_user.user,
        password=server.password,
        ca_file=server.ca_file,
        server=server,
    )
    config = write_config(
        tmp_path / "forwarder.yaml",
        account,
        gateway,
        imap={"poll_interval": 1, "idle": False},
        alerts={"imap_down_after": "2s"},
    )
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        server.stop()
        (down,) = gateway.wait_for(1, timeout=60)
        assert "forwarder" in down.text and server.host in down.text
        server.start()
        down_again, up = gateway.wait_for(2, timeout=60)
        assert down_again == down
        assert "again" in up.text
        assert daemon.stop() == 0
    assert len(gateway.received) == 2  # one of each, never repeated while down


def test_json_log_lines_parse_and_carry_no_secret(tmp_path: Path, imap_user, gateway) -> None:
    config = write_config(
        tmp_path / "forwarder.yaml", imap_user, gateway, log_format="json", log_level="DEBUG"
    )
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        imap_user.server.append(imap_user.user, "INBOX", make_mail("urgent: json", "body"))
        gateway.wait_for(1)
        assert daemon.stop() == 0
    lines = [line for line in daemon.output().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r.get("folder") == "INBOX" for r in records)
    assert imap_user.password not in daemon.output()
