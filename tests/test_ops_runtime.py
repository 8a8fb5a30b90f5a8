"""``Operations`` as the daemon will drive it: a real notify socket, real HTTP for /metrics and
the health ping, a round loop in a thread that is made to hang, IDLE heartbeats, alerts."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from forwarder import config as config_module
from forwarder.imap.connection import AuthError
from forwarder.ops.alerts import ImapOutage
from forwarder.ops.runtime import ROUND, Operations, round_timeout
from tests.support.health import UUID, PingService
from tests.support.notifysocket import NotifySocket
from tests.support.servers import free_port, wait_until


def load(tmp_path: Path, **extra) -> config_module.Config:
    document = {
        "imap": {"host": "imap.ukr.net", "username": "me", "password_file": str(tmp_path / "pw")},
        "smtp": {"host": "smtp.example.com", "from": "me@example.com"},
        "gateway": {"login": "380501234567", "sender": "Alpha"},
        "rules": [{"name": "all", "action": "forward"}],
        **extra,
    }
    (tmp_path / "pw").write_text("imap-secret\n")
    path = tmp_path / "forwarder.yaml"
    path.write_text(yaml.safe_dump(document))
    return config_module.load(path)


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


@pytest.fixture
def ping_service() -> Iterator[PingService]:
    service = PingService()
    yield service
    service.close()


@pytest.fixture
def operations() -> Iterator[list[Operations]]:
    made: list[Operations] = []
    yield made
    for ops in made:
        ops.stop()


@dataclass
class FakeWatcher:
    folder: str
    alive: bool = True


@dataclass
class FakeWatchers:
    watchers: list[FakeWatcher]


def test_the_daemon_side_of_systemd_metrics_and_health(
    tmp_path: Path, notify: NotifySocket, ping_service: PingService, operations
) -> None:
    port = free_port()
    config = load(
        tmp_path,
        metrics={"listen": f"127.0.0.1:{port}"},
        health={"ping_url": ping_service.url},
        watchdog={"round_timeout": "1s"},
    )
    env = {**notify.env, "WATCHDOG_USEC": "200000"}
    ops = Operations(config, environ=env)
    operations.append(ops)
    ops.start()

    # A round loop that finishes rounds until told to hang.
    hang, stop = threading.Event(), threading.Event()

    def rounds() -> None:
        while not stop.wait(0.05):
            if not hang.is_set():
                ops.round_finished()

    loop = threading.Thread(target=rounds, daemon=True)
    loop.start()
    try:
        ops.ready("watching INBOX · 0 SMS today · last poll 0 s ago")
        messages = [notify.receive() for _ in range(4)]
        assert {"READY": "1", "STATUS": "watching INBOX · 0 SMS today · last poll 0 s ago"} in (
            messages
        )
        assert {"WATCHDOG": "1"} in messages
        assert [h.path for h in ping_service.wait_for(1)] == [f"/{UUID}"]  # a good round

        ops.metrics.mail_decided("forward")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
        assert families["forwarder_mails"].samples[0].value == 1.0

        hang.set()  # the round loop stops finishing rounds: within 1 s the pings stop
        wait_until(lambda: ops.pinger.withholding is not None, 10, "the pings to stop")
        assert ROUND in (ops.pinger.withholding or "")
        checks = ops.pinger.checks
        assert ops.pinger.wait_checks(checks + 1, 5)
        notify.pending()
        assert ops.pinger.wait_checks(ops.pinger.checks + 2, 5)
        assert notify.pending() == []
    finally:
        stop.set()
        loop.join(5)
    ops.stopping("stopping")
    assert notify.receive() == {"STOPPING": "1", "STATUS": "stopping"}


def test_round_failures_go_to_fail_and_reload_moves_the_ping(
    tmp_path: Path, ping_service: PingService, operations
) -> None:
    ops = Operations(load(tmp_path, health={"ping_url": ping_service.url}), environ={})
    operations.append(ops)
    ops.start()
    ops.round_finished(failure="SMTP: login refused; sending is halted")
    hits = ping_service.wait_for(1)
    assert (hits[0].path, hits[0].body) == (
        f"/{UUID}/fail",
        b"SMTP: login refused; sending is halted",
    )
    other = PingService()
    try:
        ops.reconfigure(load(tmp_path, health={"ping_url": other.url}))
        ops.round_finished()
        assert [h.method for h in other.wait_for(1)] == ["GET"]
    finally:
        other.close()


def test_idle_threads_are_watched_and_end_on_purpose(tmp_path: Path, operations) -> None:
    ops = Operations(load(tmp_path), environ={})
    operations.append(ops)
    ops.start()
    watchers = FakeWatchers([FakeWatcher("INBOX"), FakeWatcher("Alerts")])
    ops.watch_idle(watchers)
    assert ops.progress.watching() == sorted([ROUND, "IDLE on INBOX", "IDLE on Alerts"])
    watchers.watchers[1].alive = False  # died without a word
    assert ops.progress.verdict().reason == "IDLE on Alerts has died"
    ops.idle_heartbeat("Alerts", None)  # (had it ended on purpose)
    ops.idle_heartbeat("nobody", 30)  # unknown: ignored
    assert ops.progress.verdict().healthy
    ops.forget_idle()
    assert ops.progress.watching() == [ROUND]


def test_self_alerts_come_once_per_outage_and_the_state_is_kept(tmp_path: Path) -> None:
    now = [1_714_550_000.0]
    config = load(tmp_path, alerts={"imap_down_after": "30m"})
    ops = Operations(config, environ={}, wall=lambda: now[0])
    refused = AuthError("IMAP server imap.ukr.net refused the login")
    assert ops.imap_observed(ok=False, error=refused) is None
    stored = ops.outages["default"].to_json()
    # a restart: a new Operations with the stored state
    ops = Operations(config, environ={}, wall=lambda: now[0], outage=ImapOutage.from_json(stored))
    now[0] += 1800
    alert = ops.imap_observed(ok=False, error=refused)
    assert alert is not None and alert.text.startswith("forwarder: cannot log in to imap.ukr.net")
    now[0] += 600
    assert ops.imap_observed(ok=False, error=refused) is None
    recovered = ops.imap_observed(ok=True)
    assert recovered is not None and recovered.recovered
    assert ops.outages["default"] == ImapOutage()


def test_a_taken_metrics_port_is_logged_not_fatal(tmp_path: Path, operations, caplog) -> None:
    port = free_port()
    first = Operations(load(tmp_path, metrics={"listen": f"127.0.0.1:{port}"}), environ={})
    operations.append(first)
    first.start()
    second = Operations(load(tmp_path, metrics={"listen": f"127.0.0.1:{port}"}), environ={})
    operations.append(second)
    second.start()
    assert second.metrics_server is None
    assert "cannot listen on 127.0.0.1" in caplog.text


def test_the_round_timeout_is_derived_unless_set(tmp_path: Path) -> None:
    assert round_timeout(load(tmp_path)) == 900.0
    assert round_timeout(load(tmp_path, watchdog={"round_timeout": "20m"})) == 1200.0
