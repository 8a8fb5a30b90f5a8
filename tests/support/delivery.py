"""Helpers shared by the delivery tests (this module holds no tests).

An in-process ``Daemon`` wired to the gateway simulator, with the state file's clock
injected, so backoff, limits and max_age are tested by moving the clock instead of waiting;
mails are planned by the real pipeline and queued straight into the outbox.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from forwarder import config as config_module
from forwarder.clock import Clock
from forwarder.config import Config
from forwarder.daemon import Daemon
from forwarder.delivery.states import State
from forwarder.gateway.request import new_message_id
from forwarder.mail import Mail
from forwarder.pipeline import plan
from forwarder.records import OutboxItem, OutboxRow
from forwarder.store import Store
from tests.support.configs import write_config
from tests.support.servers import free_port
from tests.support.servers.gateway import GatewaySimulator
from tests.support.servers.mails import make_mail

T0 = 1_800_000_000.0
SMTP_USER, SMTP_PASSWORD = "smtp-user", "smtp-SECRET-pass"
PASSWORD = "Pa55-SECRET-word"
API_KEY = "k3y-SECRET-api"
RECIPIENT = "380671112233"
LIST_ID = "12345"
SECRETS = (PASSWORD, API_KEY, SMTP_PASSWORD)

#: gateway: settings per seed-table mode letter.
MODES: dict[str, dict[str, Any]] = {
    "a": {"mode": "phone", "auth": "password", "password": PASSWORD, "recipients": [RECIPIENT]},
    "b": {},
    "c": {"mode": "list", "auth": "password", "password": PASSWORD, "list_id": LIST_ID},
    "d": {"mode": "phone", "auth": "api_key", "api_key": API_KEY, "recipients": [RECIPIENT]},
    "e": {"mode": "list", "auth": "api_key", "api_key": API_KEY, "list_id": LIST_ID},
}

_uids = itertools.count(100)


class FakeClock(Clock):
    """A wall clock the test moves by hand: the daemon's, so every delivery decision's.

    Its ``monotonic()`` stays the real one: the IMAP backoff of a test that talks to a real
    server must wait real seconds.
    """

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def smtp_settings(gateway: GatewaySimulator, *, ca_file: Path | None = None) -> dict[str, Any]:
    """smtp: for the simulator's TLS mode, trusting its CA (or ``ca_file``)."""
    security = {"none": "plain", "starttls": "starttls", "implicit": "tls"}[gateway.tls]
    settings: dict[str, Any] = {"host": gateway.host, "port": gateway.port, "security": security}
    if gateway.tls != "none":
        settings["ca_file"] = str(ca_file or gateway.ca_file)
    if gateway.username is not None:
        settings["username"], settings["password"] = gateway.username, gateway.password
    return settings


def load_config(
    tmp_path: Path,
    simulator: GatewaySimulator,
    *,
    imap: Any = None,
    ca_file: Path | None = None,
    **extra: Any,
) -> Config:
    """A real config file for ``simulator``; ``imap`` defaults to a port nobody listens on.

    ``extra`` are top-level sections merged into the test config (``gateway=``, ``limits=``...).
    """
    imap = imap or SimpleNamespace(host="127.0.0.1", port=free_port(), user="u", password="p")
    smtp = {**smtp_settings(simulator, ca_file=ca_file), **extra.pop("smtp", {})}
    path = write_config(tmp_path / "forwarder.yaml", imap, simulator, smtp=smtp, **extra)
    return config_module.load(path)


def our_log(caplog: Any) -> str:
    """What forwarder itself logged (the simulator's aiosmtpd logs the protocol, secrets too)."""
    return "\n".join(
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in caplog.records
        if not r.name.startswith(("mail.log", "asyncio"))
    )


def make_daemon(config: Config, clock: FakeClock) -> Daemon:
    """A daemon that is never started: tests call its round's steps themselves."""
    daemon = Daemon(config, store=Store(config.state, clock=clock), clock=clock)
    daemon.sender.sleep = lambda _seconds: None  # tenacity's waits within one send
    return daemon


def start(
    daemons: list[Daemon],
    tmp_path: Path,
    simulator: GatewaySimulator,
    clock: FakeClock,
    **extra: Any,
) -> Daemon:
    """A daemon on a fresh config; the ``daemons`` fixture closes it after the test."""
    daemon = make_daemon(load_config(tmp_path, simulator, **extra), clock)
    daemons.append(daemon)
    return daemon


def queue(
    daemon: Daemon,
    subjects: Iterable[str] = ("urgent: disk full",),
    *,
    from_: str = "Monitoring <alerts@example.com>",
    body: str = "Disk /var is 99% full.",
    folder: str = "INBOX",
    uidvalidity: int = 1,
    uids: Iterable[int] | None = None,
) -> list[OutboxRow]:
    """Plan one mail per subject with the real pipeline and queue its SMS (all recipients)."""
    now = datetime.fromtimestamp(daemon.store.clock(), UTC)
    domain = daemon.config.delivery.message_id_domain
    handled, items = [], []
    uid_source = iter(uids) if uids is not None else _uids
    for subject in subjects:
        uid = next(uid_source)
        mail = Mail(
            make_mail(subject, body, from_=from_), folder=folder, uid=uid, uidvalidity=uidvalidity
        )
        result = plan(mail, daemon.config, now, new_message_id=lambda: new_message_id(domain))
        assert result.outbox, f"the rules did not forward {subject!r}: {result.entry.reason}"
        handled.append(result.entry)
        items.extend(result.outbox)
    daemon.store.record_batch(folder, uidvalidity, handled, items, advance_to=None)
    ids = {item.message_id for item in items}
    return [row for row in all_rows(daemon) if row.message_id in ids]


def all_rows(daemon: Daemon) -> list[OutboxRow]:
    return daemon.store.outbox_in(*State)


def row(daemon: Daemon, row_id: int) -> OutboxRow:
    found = daemon.store.outbox_row(row_id)
    assert found is not None
    return found


class ConnectionCounter(set):
    """Replaces the simulator's set of open connections to count every one ever opened."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = 0

    def add(self, item: Any) -> None:
        self.opened += 1
        super().add(item)


def count_connections(gateway: GatewaySimulator) -> ConnectionCounter:
    counter = ConnectionCounter()
    gateway._connections = counter  # touched on the server's loop only; set before any client
    return counter


def state_file_bytes(config: Config) -> bytes:
    """The state database and its WAL, as bytes on disk."""
    return b"".join(
        p.read_bytes()
        for p in (config.state, Path(f"{config.state}-wal"), Path(f"{config.state}-journal"))
        if p.exists()
    )


def outbox_item(uid: int, *, key: str | None = None, not_before: float = T0, **extra) -> OutboxItem:
    """A queued SMS request for ``uid``, as the pipeline would make one."""
    return OutboxItem(
        uid=uid,
        source_message_id=f"<m{uid}@x>",
        rule="r",
        recipient="380501234567",
        to_addr="380501234567@mail.alphasms.com.ua",
        sender="Alpha",
        subject_masked="Alpha",
        text=f"sms {uid}",
        message_id=f"<fwd.{uid}@f>",
        not_before=not_before,
        dedup_key=key,
        mail_from="Alice",
        mail_subject=f"subject {uid}",
        **extra,
    )
