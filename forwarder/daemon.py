"""The long-running process: the conductor of intake and delivery.

``Daemon`` keeps what belongs to the process as a whole: lifecycle, signals, the scheduler
and reload. The work is done by two objects it wires together:

* ``Intake`` (``forwarder.intake``): the IMAP account — connections, IDLE, polls, batches
  decided by the pure pipeline and committed with their checkpoints;
* ``Delivery`` (``forwarder.delivery.worker``): the outbox — policy, SMTP, recovery.

One APScheduler job drives the round (intake, then delivery). It is registered with
``max_instances=1`` and ``coalesce``: a slow round is never run twice at once and a backlog
of missed runs collapses into one. Because APScheduler *skips* a run while the previous one
is still going ("maximum number of running instances reached"), a wake-up that arrives
mid-round is remembered and the round goes again before it ends, so nothing waits for the
next interval.

Push comes from IDLE: one connection per folder whose only job is to call ``wake()`` when
the server announces mail; all fetching and deciding stays in the single round, so there is
one place where checkpoints move.

Signals are taken synchronously by the main thread (``sigwait``): SIGTERM and SIGINT stop
after the current mail, SIGHUP re-reads the config (keeping the old one if the new one is
invalid).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from datetime import UTC, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler

from forwarder import config as config_module
from forwarder.clock import SYSTEM_CLOCK, Clock
from forwarder.config import Config, ConfigError
from forwarder.delivery.sender import Sender
from forwarder.delivery.worker import Delivery
from forwarder.gateway.request import new_message_id
from forwarder.gateway.tracker import ReplyTracker
from forwarder.intake import Intake
from forwarder.store import Store

logger = logging.getLogger(__name__)

POLL_JOB = "poll"
HANDLED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
RETRY_JOB = "imap-retry"


class Daemon:
    """Lifecycle, signals, scheduler and reload; intake and delivery do the work.

    ``clock`` is the one clock of the process: the state file, the tracker, delivery and
    intake all read it (tests pass one they move by hand).
    """

    def __init__(
        self, config: Config, *, store: Store | None = None, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.clock = clock or SYSTEM_CLOCK
        self.store = store or Store(config.state, clock=self.clock)
        self._round_lock = threading.Lock()
        self._again = threading.Event()
        self._stopping = threading.Event()
        self.rounds = 0  # completed rounds, for tests and status
        self.tracker = ReplyTracker(
            self.store,
            pause=config.pause,
            probe_wait=config.probe_wait,
            # The config of the moment: a reload may change the domain.
            new_message_id=lambda: new_message_id(self.config.delivery.message_id_domain),
            scrub=lambda text: self.delivery.sender.scrub(text),  # the sender of the moment
            clock=self.clock,
        )
        self.intake = Intake(
            config,
            self.store,
            self.tracker,
            clock=self.clock,
            wake=self.wake,
            retry_in=self._schedule_retry,
            stopping=self._stopping,
        )
        self.delivery = Delivery(
            config,
            self.store,
            self.tracker,
            clock=self.clock,
            read_states=self.intake.read_states,
            find_in_sent=self.intake.find_in_sent,
            retry_in=self._schedule_retry,
            stopping=self._stopping,
        )
        self.scheduler = BackgroundScheduler(timezone=UTC)

    @property
    def sender(self) -> Sender:
        """The SMTP sender of the moment (a reload may replace it)."""
        return self.delivery.sender

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Recover the outbox, schedule the first round at once, start IDLE (push)."""
        self.delivery.recover()
        self.tracker.probe_soon()
        self.store.set_meta("started_at", str(self.clock.time()))
        self.store.set_meta("pid", str(os.getpid()))
        imap = self.config.imap
        # The poll is the safety net under IDLE (and all there is without it):
        # max_instances=1: rounds never overlap (run_round's lock also guards that);
        # coalesce: runs missed while a round was slow, or the host slept, become one;
        # misfire_grace_time=None: a late run is never dropped, however late.
        # Every network call in a round is bounded by imap.timeout / smtp.timeout, so a
        # round always returns: APScheduler skips every run while the last is still going.
        self.scheduler.add_job(
            self._round_job,
            "interval",
            seconds=imap.poll_interval,
            id=POLL_JOB,
            next_run_time=self.clock.utc(),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self.scheduler.start()
        self.intake.start_idle()
        logger.info(
            "forwarder started: %s as %s, folders %s, polling every %gs%s",
            imap.host,
            imap.username,
            ", ".join(imap.folders),
            imap.poll_interval,
            " (IDLE where the server offers it)" if imap.idle else " (IDLE off)",
        )

    def shutdown(self) -> None:
        """Wait for the round in progress to finish, then close everything."""
        self._stopping.set()
        self.intake.stop_idle()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.intake.close()
        self.delivery.close()
        self.store.set_meta("stopped_at", str(self.clock.time()))
        logger.info("forwarder stopped")

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; SIGHUP re-reads the config. Call from the main thread.

        The three signals are blocked before any thread starts (threads inherit the mask)
        and taken one at a time with ``sigwait``: no code runs inside a signal handler,
        so a signal can never interrupt a thread holding a lock the handler would need,
        and a reload runs in plain main-thread code.
        """
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        self.start()
        try:
            while True:
                signum = signal.sigwait(HANDLED_SIGNALS)
                if signum == signal.SIGHUP:
                    self.reload()
                    continue
                logger.info("%s: stopping after the current mail", signal.Signals(signum).name)
                break
        finally:
            self.shutdown()
        return 0

    def reload(self) -> bool:
        """Re-read the config file; keep running on the old one if the new one is bad."""
        try:
            fresh = config_module.load(self.config.source)
        except ConfigError as exc:
            for problem in exc.problems:
                logger.error("reload refused: %s", problem)
            logger.error("reload refused: keeping the rules and settings already running")
            return False
        with self._round_lock:
            if (
                self.scheduler.running
                and fresh.imap.poll_interval != self.config.imap.poll_interval
            ):
                self.scheduler.reschedule_job(
                    POLL_JOB, trigger="interval", seconds=fresh.imap.poll_interval
                )
            self.intake.reconfigure(fresh)
            self.delivery.reconfigure(fresh)
            self.config = fresh
            self.tracker.pause, self.tracker.probe_wait = fresh.pause, fresh.probe_wait
            self.tracker.probe_soon()
        logger.info(
            "configuration reloaded from %s (%d rules)", fresh.source, len(fresh.ruleset.names)
        )
        self.wake()
        return True

    def wake(self) -> None:
        """Ask for a round now (new mail announced, reload…); never lost if one is running.

        Called from IDLE threads. While a round runs the flag is enough: the round goes
        again before it ends, and ``_round_job`` catches a flag set just as it ended.
        Moving the job under a running round would only make APScheduler log a skipped
        run for every announcement.
        """
        self._again.set()
        if self._round_lock.locked() or not self.scheduler.running:
            return
        with contextlib.suppress(JobLookupError, SchedulerNotRunningError):  # shutting down
            self.scheduler.modify_job(POLL_JOB, next_run_time=self.clock.utc())

    def _round_job(self) -> None:
        """The scheduled job: a round, and another if a wake-up slipped in as it ended."""
        self.run_round()
        while (
            self._again.is_set()
            and not self._stopping.is_set()
            and not self._round_lock.locked()  # whoever holds it goes again, or wakes us
        ):
            self.run_round()

    # -- one round ----------------------------------------------------------------------------
    def run_round(self) -> None:
        """Poll every folder, then send what is due. Never raises: the scheduler must live on."""
        if not self._round_lock.acquire(blocking=False):
            self._again.set()
            return
        try:
            while not self._stopping.is_set():
                self._again.clear()
                self.intake.poll()
                self.delivery.flush(self.clock())
                if not self._again.is_set():
                    break
            self.rounds += 1
        except Exception:
            logger.exception("unexpected error in a round; the next round will try again")
        finally:
            self._round_lock.release()

    def _schedule_retry(self, delay: float) -> None:
        """A round when the intake's backoff ends, unless the poll comes first anyway."""
        if not self.scheduler.running or self._stopping.is_set():
            return
        run_at = self.clock.utc() + timedelta(seconds=delay)
        job = self.scheduler.get_job(POLL_JOB)
        if job is not None and job.next_run_time is not None and job.next_run_time <= run_at:
            return
        with contextlib.suppress(SchedulerNotRunningError):
            self.scheduler.add_job(
                self.wake,
                "date",
                run_date=run_at,
                id=RETRY_JOB,
                replace_existing=True,
                misfire_grace_time=None,
            )
