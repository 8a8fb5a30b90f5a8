"""``Operations``: every piece of ``forwarder.ops`` behind one object, for the daemon to call.

The daemon makes one at start and calls it at a handful of places; each call is quick
and never raises for an outside reason (a missing systemd, a taken metrics port, a dead
ping service are logged, not fatal)::

    ops = Operations(config)                 # reads $NOTIFY_SOCKET, $WATCHDOG_USEC
    ops.start()                              # watchdog thread, /metrics, health thread
    ops.watch_idle(watchers)                 # before watchers.start(); heartbeat=ops.idle_heartbeat
    ops.round_finished(failure=None)         # end of every round (failure: why, in words)
    ops.round_progress()                     # inside a long round (each batch, each send)
    alert = ops.imap_observed(ok=..., error=...)   # after each IMAP attempt: maybe an SMS
    ops.ready(status) / ops.status(status)   # READY=1 once readiness.ready(...) holds
    ops.reloading() … ops.reconfigure(fresh) … ops.ready(status)   # around SIGHUP
    ops.forget_idle()                        # before stopping IDLE watchers
    ops.stopping() … ops.stop()              # SIGTERM
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from forwarder.config import Config, HealthConfig, MetricsConfig
from forwarder.imap.connection import AuthError, CertificateError
from forwarder.imap.idle import connect_budget
from forwarder.ops import logs
from forwarder.ops.alerts import Alert, ImapOutage, Trouble, observe
from forwarder.ops.health import HealthPinger, where
from forwarder.ops.metrics import Metrics, MetricsServer
from forwarder.ops.systemd import Notifier, watchdog_interval
from forwarder.ops.watchdog import Progress, Watch, WatchdogPinger, round_bound
from forwarder.store import DEFAULT_ACCOUNT

logger = logging.getLogger(__name__)

__all__ = ["ROUND", "Operations", "classify", "round_timeout"]

ROUND = "the round loop"


class _Watcher(Protocol):
    folder: str

    @property
    def alive(self) -> bool: ...


class _Watchers(Protocol):
    watchers: list  # of _Watcher


def classify(error: BaseException) -> Trouble:
    """Sort an IMAP failure (``forwarder.imap.connection.MailboxError``) for the alert text."""
    if isinstance(error, AuthError):
        return Trouble.AUTH
    if isinstance(error, CertificateError):
        return Trouble.TLS
    return Trouble.UNREACHABLE


def round_timeout(config: Config) -> float:
    """``watchdog.round_timeout``, or the bound derived from the poll and the timeouts."""
    if config.watchdog.round_timeout is not None:
        return config.watchdog.round_timeout
    timeout = max(max(a.timeout for a in config.accounts), config.smtp.timeout)
    return round_bound(max(a.poll_interval for a in config.accounts), timeout)


class Operations:
    def __init__(
        self,
        config: Config,
        *,
        environ: Mapping[str, str] | None = None,
        outage: ImapOutage | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        env = os.environ if environ is None else environ
        self.config = config
        self.wall = wall
        self.notifier = Notifier(env)
        self.progress = Progress(clock)
        self.pinger = WatchdogPinger(self.notifier, self.progress, watchdog_interval(env))
        self.metrics = Metrics()
        self.metrics_server: MetricsServer | None = None
        self.health: HealthPinger | None = None
        #: The self-alert memory per account; the daemon stores ``outage.to_json()`` (in the
        #: account's meta) after each change, so a restart neither forgets nor repeats.
        self.outages: dict[str, ImapOutage] = {}
        if outage is not None:
            self.outages[DEFAULT_ACCOUNT] = outage
        self._rounds: dict[str, Watch] = {}  # one per account: each has its own round
        self._idle: dict[str, Watch] = {}

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        logs.SCRUBBER.update(logs.config_secrets(self.config))
        self._watch_rounds()
        self.pinger.start()
        self._start_metrics(self.config.metrics)
        self._start_health(self.config.health)

    def reconfigure(self, fresh: Config) -> None:
        """After a good reload: new secrets to scrub, a new round bound, and the metrics
        server and health pinger restarted if their settings changed."""
        old, self.config = self.config, fresh
        logs.SCRUBBER.update(logs.config_secrets(fresh))
        self._watch_rounds()
        if fresh.metrics != old.metrics:
            self._stop_metrics()
            self._start_metrics(fresh.metrics)
        if fresh.health != old.health:
            self._stop_health()
            self._start_health(fresh.health)

    def stop(self) -> None:
        self.pinger.stop()
        self._stop_metrics()
        self._stop_health()
        self.notifier.close()

    # -- systemd ------------------------------------------------------------------------------
    def ready(self, status: str | None = None) -> None:
        self.notifier.ready(status)

    def status(self, text: str) -> None:
        self.notifier.status(text)

    def reloading(self) -> None:
        self.notifier.reloading()

    def stopping(self, status: str | None = None) -> None:
        self.notifier.stopping(status)

    # -- the watchdog's heartbeats ------------------------------------------------------------
    def _watch_rounds(self) -> None:
        """A watch per account's round loop; an account a reload removed is forgotten."""
        bound = round_timeout(self.config)
        names = [account.name for account in self.config.accounts]
        for name in list(self._rounds):
            if name not in names:
                self._rounds.pop(name).forget()
        for name in names:
            label = ROUND if name == DEFAULT_ACCOUNT else f"{ROUND} of {name}"
            self._rounds[name] = self.progress.watch(label, bound=bound)

    def round_progress(self, account: str = DEFAULT_ACCOUNT) -> None:
        watch = self._rounds.get(account)
        if watch is not None:
            watch.beat()

    def round_finished(self, *, failure: str | None = None, account: str = DEFAULT_ACCOUNT) -> None:
        """A round ended: the watchdog's heartbeat, and the health ping (ok, or ``/fail``)."""
        self.round_progress(account)
        if self.health is not None:
            if failure is None:
                self.health.round_ok()
            else:
                self.health.round_failed(failure)

    def watch_idle(self, watchers: _Watchers, account: str = DEFAULT_ACCOUNT) -> None:
        """Watch every IDLE thread of ``watchers`` (call before starting them)."""
        imap = self.config.account(account)
        for watcher in watchers.watchers:
            label = _label(account, watcher.folder)
            self._idle[label] = self.progress.watch(
                f"IDLE on {label}",
                bound=connect_budget(imap),
                alive=lambda w=watcher: w.alive,
            )

    def idle_heartbeat(
        self, folder: str, within: float | None, account: str = DEFAULT_ACCOUNT
    ) -> None:
        """``IdleWatchers(heartbeat=...)`` of ``account``; also keeps ``forwarder_up``."""
        label = _label(account, folder)
        watch = self._idle.get(label)
        if watch is None:
            return
        if within is None:  # ended on purpose
            watch.forget()
            self._idle.pop(label, None)
            self.metrics.set_up(label, False)
            return
        watch.beat(within)

    def forget_idle(self, account: str | None = None) -> None:
        """Stop watching IDLE threads that are being stopped (all, or ``account``'s)."""
        for label in list(self._idle):
            if account is not None and not _belongs(label, account):
                continue
            watch = self._idle.pop(label, None)
            if watch is not None:
                watch.forget()
            self.metrics.set_up(label, False)

    # -- self-alerts --------------------------------------------------------------------------
    def imap_observed(
        self, *, ok: bool, error: BaseException | None = None, account: str = DEFAULT_ACCOUNT
    ) -> Alert | None:
        """One IMAP attempt's outcome; returns the SMS to queue (through the normal outbox)
        when the policy says so. ``self.outages[account]`` is then the state to store."""
        alerts = self.config.alerts
        self.outages[account], alert = observe(
            self.outages.get(account, ImapOutage()),
            ok=ok,
            now=self.wall(),
            host=self.config.account(account).host,
            trouble=None if ok or error is None else classify(error),
            after=alerts.imap_down_after,
            enabled=alerts.enabled,
        )
        if alert is not None:
            logger.warning("self-alert SMS queued: %s", alert.text)
        return alert

    # -- the HTTP sides -----------------------------------------------------------------------
    def _start_metrics(self, config: MetricsConfig) -> None:
        if config.listen is None:
            return
        host, port = config.listen
        server = MetricsServer(self.metrics, host, port)
        try:
            bound = server.start()
        except OSError as exc:
            logger.error("metrics: cannot listen on %s:%d (%s); no /metrics", host, port, exc)
            return
        self.metrics_server = server
        logger.info("metrics: serving http://%s:%d/metrics", *_url_host(bound))

    def _stop_metrics(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.stop()
            self.metrics_server = None

    def _start_health(self, config: HealthConfig) -> None:
        if config.ping_url is None:
            return
        self.health = HealthPinger(config.ping_url.reveal())
        self.health.start()
        logger.info("health pings go to %s", where(config.ping_url.reveal()))

    def _stop_health(self) -> None:
        if self.health is not None:
            # Not the request timeout: SIGTERM must end within seconds, and a ping still in
            # flight is of no use to anyone (its thread is a daemon thread).
            self.health.stop(timeout=1.0)
            self.health = None


def _label(account: str, folder: str) -> str:
    """How a folder is named in watchdog reasons and ``forwarder_up{folder}``."""
    return folder if account == DEFAULT_ACCOUNT else f"{account}:{folder}"


def _belongs(label: str, account: str) -> bool:
    return ":" not in label if account == DEFAULT_ACCOUNT else label.startswith(f"{account}:")


def _url_host(address: tuple[str, int]) -> tuple[str, int]:
    host, port = address
    return (f"[{host}]" if ":" in host else host), port
