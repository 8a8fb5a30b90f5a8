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
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler

from forwarder import config as config_module
from forwarder.clock import SYSTEM_CLOCK, Clock
from forwarder.config import Config, ConfigError
from forwarder.delivery.policy import ReadState
from forwarder.delivery.sender import Sender
from forwarder.delivery.states import State
from forwarder.delivery.worker import Delivery
from forwarder.gateway.request import new_message_id
from forwarder.gateway.tracker import ReplyTracker
from forwarder.imap.idle import IdleWatchers
from forwarder.intake import Intake, Observer
from forwarder.ops.alerts import ImapOutage
from forwarder.ops.runtime import Operations
from forwarder.ops.status import status_line
from forwarder.records import OutboxRow, Receipt
from forwarder.store import DEFAULT_ACCOUNT, Store

logger = logging.getLogger(__name__)

POLL_JOB = "poll"  # the default account's round; other accounts' are "poll:<name>"
HANDLED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
RETRY_JOB = "imap-retry"


#: Slack on the delivery loop's watchdog bound: its wait may overrun by a scheduling hiccup.
DELIVERY_SLACK = 60.0

#: The longest intake waits for delivery to send a backlog's likely mail (``_drain``).
DRAIN_WAIT = 10.0


def _job(base: str, account: str) -> str:
    return base if account == DEFAULT_ACCOUNT else f"{base}:{account}"


class _AccountObserver(Observer):
    """An account's intake, reporting to ``Operations`` (watchdog, metrics)."""

    def __init__(self, ops: Operations, account: str) -> None:
        self.ops, self.account = ops, account

    def watch_idle(self, watchers: IdleWatchers) -> None:
        self.ops.watch_idle(watchers, self.account)

    def idle_heartbeat(self, folder: str, within: float | None) -> None:
        self.ops.idle_heartbeat(folder, within, self.account)

    def forget_idle(self) -> None:
        self.ops.forget_idle(self.account)

    def idle_connected(self, folder: str, up: bool) -> None:
        label = folder if self.account == DEFAULT_ACCOUNT else f"{self.account}:{folder}"
        self.ops.metrics.set_up(label, up)

    def batch_decided(self, counts: Counter[str]) -> None:
        for action, count in counts.items():
            self.ops.metrics.mail_decided(action, count)

    def reply_recorded(self, code: str) -> None:
        if code != "OK":
            self.ops.metrics.gateway_error(code)


class Daemon:
    """Lifecycle, signals, scheduler and reload; intake and delivery do the work.

    One ``Intake`` per configured account, each with its own scheduled round, lock and
    backoff, so one account down, refused or slow never delays another; one ``Delivery``
    for all of them. ``clock`` is the one clock of the process: the state file, the
    tracker, delivery and intake all read it (tests pass one they move by hand).
    """

    def __init__(
        self, config: Config, *, store: Store | None = None, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.clock = clock or SYSTEM_CLOCK
        self.store = store or Store(config.state, clock=self.clock)
        self._stopping = threading.Event()
        self.rounds = 0  # completed rounds (of any account), for tests and status
        # Delivery runs in its own thread, woken by every commit that queued SMS: the first
        # important mail of a 5 000-mail backlog leaves while the next batch is fetched.
        self._delivery_lock = threading.Lock()  # a flush, or a reload swapping the sender
        self._deliver_now = threading.Event()
        self._delivery_thread: threading.Thread | None = None
        # Delivery passes begun and ended, and how many threads wait for an intake's lock
        # (delivery in an intake port, a reload): what ``_drain`` waits on.
        self._passes = threading.Condition()
        self._passes_begun = self._passes_ended = 0
        self._awaiting_intake = 0
        #: Set once every folder has been looked at (or, IMAP down, every folder has a
        #: checkpoint to resume from): mail that arrives after it is always forwarded.
        self.ready = threading.Event()
        # systemd (READY, STATUS, WATCHDOG), metrics, health pings and self-alerts.
        self.ops = Operations(config, clock=self.clock.monotonic, wall=self.clock.time)
        self.tracker = ReplyTracker(
            self.store,
            pause=config.pause,
            probe_wait=config.probe_wait,
            # The config of the moment: a reload may change the domain.
            new_message_id=lambda: new_message_id(self.config.delivery.message_id_domain),
            scrub=lambda text: self.delivery.sender.scrub(text),  # the sender of the moment
            clock=self.clock,
        )
        self.intakes: dict[str, Intake] = {
            account.name: self._new_intake(config, account.name) for account in config.accounts
        }
        self.delivery = Delivery(
            config,
            self.store,
            self.tracker,
            clock=self.clock,
            read_states=self._read_states,
            find_in_sent=self._find_in_sent,
            retry_in=self._deliver_in,
            looked_at=self._looked_at,
            ask_look=self.wake,
            stopping=self._stopping,
            progress=lambda: self._delivery_watch.beat() if self._delivery_watch else None,
        )
        self._delivery_watch = None
        self.scheduler = BackgroundScheduler(timezone=UTC)

    def _new_intake(self, config: Config, name: str) -> Intake:
        return Intake(
            config,
            self.store,
            self.tracker,
            clock=self.clock,
            wake=lambda: self.wake(name),
            retry_in=lambda delay: self._schedule_retry(name, delay),
            stopping=self._stopping,
            on_commit=self._deliver_now.set,
            drain=self._drain,
            name=name,
            observer=_AccountObserver(self.ops, name),
        )

    @property
    def intake(self) -> Intake:
        """The first (with ``imap:``, the only) account's intake."""
        return next(iter(self.intakes.values()))

    @property
    def sender(self) -> Sender:
        """The SMTP sender of the moment (a reload may replace it)."""
        return self.delivery.sender

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Recover the outbox, schedule every account's first round at once, start IDLE."""
        self.delivery.recover()
        self.tracker.probe_soon()
        self.store.set_meta("started_at", str(self.clock.time()))
        self.store.set_meta("pid", str(os.getpid()))
        for warning in self.config.warnings:
            logger.warning("%s", warning)
        for name, intake in self.intakes.items():
            self.ops.outages[name] = ImapOutage.from_json(intake.store.get_meta("imap_outage"))
        self.ops.start()
        self.ops.status(self._status_line(starting=True))
        self._delivery_watch = self.ops.progress.watch(
            "the delivery loop", bound=self._delivery_bound()
        )
        self.scheduler.start()
        for intake in self.intakes.values():
            self._schedule_round(intake)
        self._delivery_thread = threading.Thread(
            target=self._delivery_loop, name="delivery", daemon=True
        )
        self._delivery_thread.start()
        for intake in self.intakes.values():
            intake.start_idle()
            imap = intake.imap
            polled = [f for f in imap.folders if f not in imap.idle_folders]
            logger.info(
                "forwarder started: %s%s as %s, folders %s, polling every %gs%s",
                "" if intake.name == DEFAULT_ACCOUNT else f"account {intake.name}: ",
                imap.host,
                imap.username,
                ", ".join(imap.folders),
                imap.poll_interval,
                " (IDLE off)"
                if not imap.idle
                else f" (IDLE where the server offers it; polled only: {', '.join(polled)})"
                if polled
                else " (IDLE where the server offers it)",
            )

    def _schedule_round(self, intake: Intake) -> None:
        # The poll is the safety net under IDLE (and all there is without it):
        # max_instances=1: rounds never overlap (run_round's lock also guards that);
        # coalesce: runs missed while a round was slow, or the host slept, become one;
        # misfire_grace_time=None: a late run is never dropped, however late.
        # Every network call in a round is bounded by imap.timeout / smtp.timeout, so a
        # round always returns: APScheduler skips every run while the last is still going.
        self.scheduler.add_job(
            self._round_job,
            "interval",
            args=(intake.name,),
            seconds=intake.imap.poll_interval,
            id=_job(POLL_JOB, intake.name),
            next_run_time=self.clock.utc(),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            replace_existing=True,
        )

    def shutdown(self) -> None:
        """Wait for the rounds and the SMS in flight to finish, then close everything."""
        self.ops.stopping("stopping: finishing the SMS in flight")
        self._stopping.set()
        self._deliver_now.set()
        with self._passes:
            self._passes.notify_all()  # an intake waiting in _drain goes on, and stops
        for intake in self.intakes.values():
            intake.stop_idle()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self._delivery_thread is not None:
            self._delivery_thread.join()  # the SMS in flight is finished and committed
        for intake in self.intakes.values():
            intake.close()
        self.delivery.close()
        self.store.set_meta("stopped_at", str(self.clock.time()))
        self.ops.stop()
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
        self.ops.reloading()
        try:
            fresh = config_module.load(self.config.source)
        except ConfigError as exc:
            for problem in exc.problems:
                logger.error("reload refused: %s", problem)
            logger.error("reload refused: keeping the rules and settings already running")
            self.ops.ready(self._status_line(problems=["reload refused: see the log"]))
            return False
        for warning in fresh.warnings:
            logger.warning("%s", warning)
        names = [account.name for account in fresh.accounts]
        for name in [n for n in self.intakes if n not in names]:  # an account removed
            gone = self.intakes.pop(name)
            with self._waiting_for_intake(), gone.round_lock:
                gone.close()
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(_job(POLL_JOB, name))
            logger.info("account %s is no longer watched", name)
        with self._waiting_for_intake(), self._delivery_lock, contextlib.ExitStack() as held:
            for intake in self.intakes.values():
                held.enter_context(intake.round_lock)
            for intake in self.intakes.values():
                old = intake.imap
                intake.reconfigure(fresh)
                interval = fresh.account(intake.name).poll_interval
                if self.scheduler.running and interval != old.poll_interval:
                    self.scheduler.reschedule_job(
                        _job(POLL_JOB, intake.name), trigger="interval", seconds=interval
                    )
            self.delivery.reconfigure(fresh)
            self.config = fresh
            self.ops.reconfigure(fresh)
            self.tracker.pause, self.tracker.probe_wait = fresh.pause, fresh.probe_wait
            self.tracker.probe_soon()
        for name in [n for n in names if n not in self.intakes]:  # an account added
            intake = self.intakes[name] = self._new_intake(fresh, name)
            if self.scheduler.running:
                self._schedule_round(intake)
                intake.start_idle()
            logger.info("account %s is watched from now on", name)
        logger.info(
            "configuration reloaded from %s (%d rules)", fresh.source, len(fresh.ruleset.names)
        )
        self.ops.ready(self._status_line())
        self.wake()
        return True

    def wake(self, account: str | None = None) -> None:
        """Ask for a round now (new mail announced, reload…); never lost if one is running.

        Called from IDLE threads with their account. While a round runs the flag is enough:
        the round goes again before it ends, and ``_round_job`` catches a flag set just as
        it ended. Moving the job under a running round would only make APScheduler log a
        skipped run for every announcement.
        """
        for name, intake in list(self.intakes.items()):
            if account is not None and name != account:
                continue
            intake.again.set()
            if intake.round_lock.locked() or not self.scheduler.running:
                continue
            with contextlib.suppress(JobLookupError, SchedulerNotRunningError):  # shutting down
                self.scheduler.modify_job(_job(POLL_JOB, name), next_run_time=self.clock.utc())

    def _round_job(self, account: str) -> None:
        """The scheduled job: a round, and another if a wake-up slipped in as it ended."""
        intake = self.intakes.get(account)
        if intake is None:
            return  # removed by a reload
        self.run_round(intake)
        while (
            intake.again.is_set()
            and not self._stopping.is_set()
            and not intake.round_lock.locked()  # whoever holds it goes again, or wakes us
        ):
            self.run_round(intake)

    # -- one round ----------------------------------------------------------------------------
    def run_round(self, intake: Intake | None = None) -> None:
        """Poll one account's folders (default: the first account's), then wake delivery.

        Never raises: the scheduler must live on.
        """
        intake = intake or self.intake
        if not intake.round_lock.acquire(blocking=False):
            intake.again.set()
            return
        try:
            while not self._stopping.is_set():
                intake.again.clear()
                intake.poll()
                self._deliver_now.set()  # due rows (delays, retries) are looked at each round
                self._after_poll(intake)
                self._check_ready()
                if not intake.again.is_set():
                    break
            self.rounds += 1
        except Exception:
            logger.exception("unexpected error in a round; the next round will try again")
        finally:
            intake.round_lock.release()

    def _after_poll(self, intake: Intake) -> None:
        """Tell the owner and the supervisor how the account's poll went.

        The self-alert SMS when IMAP has been unreadable for alerts.imap_down_after (and
        when it works again), through the normal outbox; the watchdog's heartbeat and the
        health ping; the STATUS line; the metrics.
        """
        error = intake.last_error
        before = self.ops.outages.get(intake.name)
        alert = self.ops.imap_observed(ok=error is None, error=error, account=intake.name)
        outage = self.ops.outages[intake.name]
        if outage != before:
            intake.store.set_meta("imap_outage", outage.to_json())
        if alert is not None:
            what = "IMAP works again" if alert.recovered else "IMAP cannot be read"
            self.delivery.queue_notice(alert.text, about=f"self-alert: {what}")
            self._deliver_now.set()
        if error is None:
            self.ops.metrics.polled(self.clock.time())
        halted = self.delivery.sender.halted
        failure = str(error) if error is not None else None
        if halted is not None:
            failure = f"{failure}; " if failure else ""
            failure += f"SMTP: {halted}"
        self.ops.round_finished(failure=failure, account=intake.name)
        if self.ready.is_set():
            self.ops.status(self._status_line())

    def _status_line(self, *, starting: bool = False, problems: Sequence[str] = ()) -> str:
        """The one line systemd shows: what is wrong, what is watched, SMS today, last poll."""
        found = list(problems)
        for intake in self.intakes.values():
            if intake.last_error is not None:
                where = "IMAP" if intake.name == DEFAULT_ACCOUNT else f"IMAP {intake.name}"
                found.append(f"{where}: {intake.last_error}")
        if self.delivery.sender.halted is not None:
            found.append(f"sending stopped: {self.delivery.sender.halted}")
        circuit = self.store.circuit()
        if circuit is not None:
            found.append(f"sending paused: the gateway said {circuit.code}")
        folders = [
            folder if intake.name == DEFAULT_ACCOUNT else f"{intake.name}:{folder}"
            for intake in self.intakes.values()
            for folder in intake.imap.folders
        ]
        local = self.clock.utc().astimezone()
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        polls = [float(t) for i in self.intakes.values() if (t := i.store.get_meta("last_poll"))]
        return status_line(
            folders=folders,
            sms_today=self.store.sent_since(midnight),
            last_poll_ago=self.clock.time() - max(polls) if polls else None,
            problems=found,
            starting=starting,
        )

    def _check_ready(self) -> None:
        if self.ready.is_set():
            return
        for intake in list(self.intakes.values()):
            folders = set(intake.imap.folders)
            resumable = all(intake.store.checkpoint(folder) is not None for folder in folders)
            if not (folders <= intake.looked_at or (not intake.backoff.due() and resumable)):
                return
        self.store.set_meta("ready_at", str(self.clock.time()))
        self.ready.set()
        self.ops.ready(self._status_line())

    def _schedule_retry(self, account: str, delay: float) -> None:
        """A round when an account's backoff ends, unless its poll comes first anyway."""
        if not self.scheduler.running or self._stopping.is_set():
            return
        run_at = self.clock.utc() + timedelta(seconds=delay)
        job = self.scheduler.get_job(_job(POLL_JOB, account))
        if job is not None and job.next_run_time is not None and job.next_run_time <= run_at:
            return
        with contextlib.suppress(SchedulerNotRunningError):
            self.scheduler.add_job(
                self.wake,
                "date",
                args=(account,),
                run_date=run_at,
                id=_job(RETRY_JOB, account),
                replace_existing=True,
                misfire_grace_time=None,
            )

    # -- delivery ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _waiting_for_intake(self) -> Iterator[None]:
        """The caller is about to wait for an intake's lock (delivery asking IMAP, a reload
        holding the delivery lock): no intake may wait for delivery meanwhile (``_drain``),
        or each would wait for the other."""
        with self._passes:
            self._awaiting_intake += 1
            self._passes.notify_all()
        try:
            yield
        finally:
            with self._passes:
                self._awaiting_intake -= 1

    def _drain(self) -> None:
        """Intake's drain port: wait until a delivery pass begun after now has ended.

        Bounded by ``DRAIN_WAIT`` (a slow SMTP server must not stall intake), and over at
        once when someone waits for an intake's lock, when stopping, or with no delivery
        thread (a test driving rounds by hand).
        """
        thread = self._delivery_thread
        if thread is None or not thread.is_alive():
            return
        with self._passes:
            target = self._passes_begun + 1
            self._deliver_now.set()
            self._passes.wait_for(
                lambda: (
                    self._passes_ended >= target
                    or self._awaiting_intake > 0
                    or self._stopping.is_set()
                ),
                timeout=DRAIN_WAIT,
            )

    def _read_states(self, rows: Sequence[OutboxRow]) -> dict[int, ReadState]:
        """Delivery's read-state port: each row asked of its own account's intake."""
        with self._waiting_for_intake():
            return self._read_states_now(rows)

    def _read_states_now(self, rows: Sequence[OutboxRow]) -> dict[int, ReadState]:
        states: dict[int, ReadState] = {}
        by_account: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_account.setdefault(row.account, []).append(row)
        for name, account_rows in by_account.items():
            intake = self.intakes.get(name)
            if intake is None:  # the account was removed: nobody can say; never miss
                states.update((r.id, ReadState.GONE) for r in account_rows)
            else:
                states.update(intake.read_states(account_rows))
        return states

    def _find_in_sent(self, message_ids: Sequence[str]) -> dict[str, Receipt] | None:
        """Delivery's Sent-folder port: each account's Sent folder, until all are found
        (which account the SMTP server files in is not known); None if none could look."""
        with self._waiting_for_intake():
            return self._find_in_sent_now(message_ids)

    def _find_in_sent_now(self, message_ids: Sequence[str]) -> dict[str, Receipt] | None:
        found: dict[str, Receipt] = {}
        looked = False
        for intake in list(self.intakes.values()):
            wanted = [m for m in message_ids if m not in found]
            if not wanted:
                break
            answer = intake.find_in_sent(wanted)
            if answer is not None:
                looked = True
                found.update(answer)
        return found if looked else None

    def _looked_at(self) -> float | None:
        """Delivery's look port: when the latest complete look at *every* account began
        (which account a receipt copy lands in is not known); None if one has not looked."""
        looks = [intake.looked_from for intake in list(self.intakes.values())]
        if not looks or any(look is None for look in looks):
            return None
        return min(look for look in looks if look is not None)

    def _deliver_in(self, delay: float) -> None:
        """A delivery pass in ``delay`` seconds (a doubt's receipt_wait ends then)."""
        if not self.scheduler.running or self._stopping.is_set():
            return
        with contextlib.suppress(SchedulerNotRunningError):
            self.scheduler.add_job(
                self._deliver_now.set,
                "date",
                run_date=self.clock.utc() + timedelta(seconds=delay),
                misfire_grace_time=None,
            )

    def _delivery_loop(self) -> None:
        """Flush whenever a commit queued SMS, a round ended, or the next row comes due.

        The watchdog watches this loop too: it beats before each wait (promising to be back
        within it) and on every row a flush settles, so a hung send stops the pings.
        """
        watch = self._delivery_watch
        while not self._stopping.is_set():
            wait = self._until_next_due()
            if watch is not None:
                watch.beat(within=wait + self._delivery_bound())
            self._deliver_now.wait(wait)
            self._deliver_now.clear()
            if self._stopping.is_set():
                break
            with self._passes:
                self._passes_begun += 1
            try:
                self.flush()
            finally:
                with self._passes:
                    self._passes_ended += 1
                    self._passes.notify_all()
        if watch is not None:
            watch.forget()

    def _delivery_bound(self) -> float:
        """The longest one row may take: every SMTP attempt timing out, with slack."""
        delivery, smtp = self.config.delivery, self.config.smtp
        return delivery.retry_attempts * (smtp.timeout * 4 + 10.0) + DELIVERY_SLACK

    def flush(self) -> None:
        """One delivery pass now. Never raises: the delivery thread must live on."""
        with self._delivery_lock:
            try:
                settled = self.delivery.flush(self.clock())
            except Exception:
                logger.exception("unexpected error while sending; the next pass will try again")
                return
            metrics = self.ops.metrics
            for what, count in settled.items():
                if isinstance(what, State):
                    metrics.sms_settled(what.value, count)
            metrics.set_outbox({state.value: n for state, n in self.store.count_states().items()})
            metrics.set_circuit(self.store.circuit() is not None)

    def _until_next_due(self) -> float:
        """Seconds until the next pending row comes due, within [0.05, the shortest poll]."""
        interval = min(account.poll_interval for account in self.config.accounts)
        try:
            due = self.store.next_due()
        except Exception:  # the delivery thread must live on (a state file it cannot read)
            logger.exception("cannot read when the next SMS is due; looking again in %gs", interval)
            return interval
        if due is None:
            return interval
        return min(interval, max(0.05, due - self.clock()))
