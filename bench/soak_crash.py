"""Soak: `kill -9` of `forwarder run` at random moments while important mail streams in.

Run by hand (not in CI; tests/test_soak_crash.py runs a short one, marked slow):

    .venv/bin/python bench/soak_crash.py [--kills 1000] [--receipts copy] [--rate 3]
                                         [--max-up 2.5] [--aim 0] [--seed N]

A private Dovecot (with an RFC 6154 Sent folder) and the gateway simulator, which plays the
user's SMTP server too: it delivers the owner's copy to INBOX (``--receipts copy``) or files
what it accepted in Sent (``sent_folder``). A thread appends important mail ("urgent soak
N", each its own subject) at ``--rate`` per second, at random intervals; the main loop
starts the daemon, lets it run a random time in (0.2 s, ``--max-up``), SIGKILLs it and
starts it again, ``--kills`` times. ``--aim P``: with probability P a kill instead waits
for the gateway to accept a request and lands at once, inside the window between the
final dot and the commit of ``sent`` (the window a uniform kill rarely hits). At the end
one last daemon drains everything, and SIGTERM.

Prints mails, kills, SMS, lost (a mail with no SMS), duplicates (SMS beyond one per mail)
and the in-doubt cases by outcome (from the state file: confirmed by receipt / resent
without one / alerted). Target: 0 lost; 0 duplicates with receipts. Exit status 1 if
lost > 0, or duplicates > 0 with receipts on.
"""

from __future__ import annotations

import argparse
import collections
import random
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.servers

from tests.support.configs import write_config  # noqa: E402
from tests.support.daemonproc import DaemonProcess, read_checkpoint  # noqa: E402
from tests.support.servers import wait_until  # noqa: E402
from tests.support.servers.dovecot import SENT_FOLDER, SPECIAL_USE_SENT, DovecotServer  # noqa: E402
from tests.support.servers.gateway import GatewaySimulator  # noqa: E402
from tests.support.servers.mails import make_mail  # noqa: E402

SUBJECT = "urgent soak {}"
DRAIN_TIMEOUT = 180.0


@dataclass
class Result:
    mails: int
    kills: int
    aimed: int
    sms: int
    lost: list[str]
    duplicates: int
    doubts: dict[str, int]
    receipts: str
    seconds: float
    by_subject: dict[str, int] = field(repr=False, default_factory=dict)

    def lines(self) -> list[str]:
        doubts = ", ".join(f"{n} {k}" for k, n in sorted(self.doubts.items())) or "none"
        return [
            f"receipts:   {self.receipts}",
            f"mails:      {self.mails}",
            f"kills:      {self.kills} (kill -9; {self.aimed} aimed just after an acceptance)",
            f"SMS:        {self.sms}",
            f"lost:       {len(self.lost)}" + (f" {self.lost[:10]}" if self.lost else ""),
            f"duplicates: {self.duplicates}",
            f"in doubt:   {doubts}  (receipt: confirmed, not resent; resent: sent again "
            "without proof; alerted: left)",
            f"time:       {self.seconds:.0f} s",
        ]

    @property
    def ok(self) -> bool:
        return not self.lost and (self.duplicates == 0 or self.receipts == "off")


def _doubts(state: Path) -> dict[str, int]:
    with sqlite3.connect(state, timeout=5) as db:
        rows = db.execute(
            "SELECT COALESCE(outcome, 'open'), COUNT(*) FROM doubts GROUP BY 1"
        ).fetchall()
    return dict(rows)


def _running(state: Path, pid: int) -> bool:
    """Whether the daemon ``pid`` has started (it writes its pid once its signals are set)."""
    try:
        with sqlite3.connect(state, timeout=1) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'pid'").fetchone()
    except sqlite3.OperationalError:
        return False
    return row is not None and row[0] == str(pid)


def _settled(state: Path, mails: int) -> bool:
    try:
        with sqlite3.connect(state, timeout=1) as db:
            (forwarded,) = db.execute(
                "SELECT COUNT(*) FROM handled WHERE action = 'forward'"
            ).fetchone()
            (unsettled,) = db.execute(
                "SELECT COUNT(*) FROM outbox WHERE state != 'sent'"
            ).fetchone()
            (open_doubts,) = db.execute(
                "SELECT COUNT(*) FROM doubts WHERE settled_at IS NULL"
            ).fetchone()
    except sqlite3.OperationalError:
        return False
    return forwarded >= mails and unsettled == 0 and open_doubts == 0


def soak(
    *,
    kills: int,
    receipts: str = "copy",
    rate: float = 3.0,
    max_up: float = 2.5,
    aim: float = 0.0,
    seed: int | None = None,
    workdir: Path | None = None,
    say=print,
) -> Result:
    rng = random.Random(seed)
    arrivals = random.Random(None if seed is None else seed + 1)  # the mail thread's own
    started = time.monotonic()
    directory = Path(workdir or tempfile.mkdtemp(prefix="forwarder-soak-"))
    with DovecotServer(tls=False, extra_config=SPECIAL_USE_SENT) as dovecot:
        user = "soak"
        accepted = threading.Event()
        gateway = GatewaySimulator(
            local=(lambda _rcpt, raw: dovecot.append(user, "INBOX", raw))
            if receipts == "copy"
            else None,
            sent=(lambda raw: dovecot.append(user, SENT_FOLDER, raw))
            if receipts == "sent_folder"
            else None,
        )
        record = gateway._record

        def recorded(request) -> None:
            record(request)
            accepted.set()

        gateway._record = recorded  # type: ignore[method-assign]
        with gateway:
            account = SimpleNamespace(
                host=dovecot.host, port=dovecot.port, user=user, password=dovecot.password
            )
            config = write_config(
                directory / "forwarder.yaml",
                account,
                gateway,
                delivery={
                    "receipts": receipts,
                    "receipt_wait": "3s",
                    "retry_backoff": "1s",
                    "retry_backoff_max": "2s",
                },
                limits={
                    "per_minute": 10**6,
                    "per_hour": 10**6,
                    "per_day": 10**6,
                    "dedup_window": 0,
                },
            )
            state = directory / "state.db"
            daemon = DaemonProcess(config, env={"PYTHONPATH": str(ROOT)})
            daemon.start()
            daemon.wait_for_checkpoint(timeout=30)

            appended: list[str] = []
            stop = threading.Event()

            def stream() -> None:
                while not stop.wait(arrivals.expovariate(rate)):
                    subject = SUBJECT.format(len(appended) + 1)
                    dovecot.append(user, "INBOX", make_mail(subject, "soak body"))
                    appended.append(subject)

            streamer = threading.Thread(target=stream, name="soak-mail", daemon=True)
            streamer.start()
            aimed = 0
            for n in range(1, kills + 1):
                assert daemon.proc is not None
                born = time.monotonic()
                up = rng.uniform(0.2, max_up)
                if rng.random() < aim:
                    accepted.clear()
                    if accepted.wait(max_up * 4):
                        aimed += 1
                else:
                    time.sleep(max(0.0, born + up - time.monotonic()))
                daemon.proc.kill()
                daemon.proc.wait()
                daemon.proc = None
                daemon.start()
                if n % 50 == 0:
                    say(f"  {n} kills, {len(appended)} mails, {len(gateway.received)} SMS")
            stop.set()
            streamer.join()
            mails = len(appended)
            last = daemon.proc
            # The last daemon must be up (SIGTERM before it took its signals would kill it),
            # and then have handled everything.
            wait_until(lambda: _running(state, last.pid), 60, "the last daemon to start")
            try:
                wait_until(lambda: _settled(state, mails), DRAIN_TIMEOUT, "the last daemon")
            except TimeoutError as exc:
                say(f"  not settled: {exc}")
            code = daemon.stop(timeout=60)
            if code != 0:
                say(f"  the last daemon exited {code} on SIGTERM")
            counts = collections.Counter(sms.text.splitlines()[0] for sms in gateway.received)
            by_subject = {s: counts.get(f"Alice Sender: {s}", 0) for s in appended}
            assert read_checkpoint(state) is not None
            return Result(
                mails=mails,
                kills=kills,
                aimed=aimed,
                sms=len(gateway.received),
                lost=[s for s, n in by_subject.items() if n == 0],
                duplicates=sum(n - 1 for n in by_subject.values() if n > 1),
                doubts=_doubts(state),
                receipts=receipts,
                seconds=time.monotonic() - started,
                by_subject=by_subject,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--receipts", choices=("copy", "sent_folder", "off"), default="copy")
    parser.add_argument("--rate", type=float, default=3.0, help="important mails per second")
    parser.add_argument("--max-up", type=float, default=2.5, help="longest life before a kill")
    parser.add_argument("--aim", type=float, default=0.0, help="share of kills aimed (0..1)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    result = soak(
        kills=args.kills,
        receipts=args.receipts,
        rate=args.rate,
        max_up=args.max_up,
        aim=args.aim,
        seed=args.seed,
    )
    print("\n".join(result.lines()))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
