"""Benchmark: SMS per second from the outbox through one SMTP connection to the local simulator.

Run by hand:  .venv/bin/python bench/bench_delivery.py [--sms 500] [--rounds 3] [--tls none]

Each round queues ``--sms`` rows in a fresh state file (on disk, WAL + synchronous=FULL),
then times one ``Daemon.delivery.flush(aemon.clock())``: the whole delivery path per row, i.e. the
policy queries (dedup, limits), the reply tracker's hold check, three committed state
changes (sending, in_doubt with its sends-log entry, sent) and the SMTP transaction
(MAIL, RCPT, DATA by hand) over one connection, against the aiosmtpd gateway simulator
that parses and checks every request. Limits are raised out of the way. Target: 50 SMS/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support.servers

from forwarder import config as config_module
from forwarder.daemon import Daemon
from forwarder.gateway.request import new_message_id
from forwarder.records import LedgerEntry, OutboxItem
from forwarder.store import Store
from tests.support.configs import write_config
from tests.support.servers import free_port
from tests.support.servers.gateway import GatewaySimulator

TARGET_PER_SECOND = 50
TEXT = "Monitoring: URGENT disk full on db1\nThe database volume /var/lib/pg is 99% full."


class Connections(set):
    """Counts every connection the simulator accepts."""

    opened = 0

    def add(self, item: object) -> None:
        type(self).opened += 1
        super().add(item)


def one_round(directory: Path, gateway: GatewaySimulator, count: int) -> tuple[float, int]:
    imap = SimpleNamespace(host="127.0.0.1", port=free_port(), user="u", password="p")
    smtp = {"host": gateway.host, "port": gateway.port, "timeout": 10}
    if gateway.tls != "none":
        smtp |= {
            "security": "starttls" if gateway.tls == "starttls" else "tls",
            "ca_file": str(gateway.ca_file),
        }
    path = write_config(
        directory / "forwarder.yaml",
        imap,
        gateway,
        smtp=smtp,
        limits={"per_minute": 10**6, "per_hour": 10**6, "per_day": 10**6},
    )
    config = config_module.load(path)
    store = Store(config.state)
    daemon = Daemon(config, store=store)
    (request,) = config.gateway.requests()
    now = time.time()
    items = [
        OutboxItem(
            uid=uid,
            source_message_id=f"<m{uid}@bench>",
            rule="urgent",
            recipient=request.recipient,
            to_addr=request.to,
            sender=config.gateway.sender,
            subject_masked=request.masked_subject,
            text=f"{TEXT} #{uid}",
            message_id=new_message_id("bench.invalid"),
            not_before=now,
            dedup_key=f"key-{uid}",
            mail_from="Monitoring",
            mail_subject=f"URGENT {uid}",
        )
        for uid in range(1, count + 1)
    ]
    handled = [LedgerEntry(i.uid, i.source_message_id, "forward", "urgent", "bench") for i in items]
    store.record_batch("INBOX", 1, handled, items, advance_to=count)
    before = len(gateway.received)
    started = time.perf_counter()
    daemon.delivery.flush(daemon.clock())
    elapsed = time.perf_counter() - started
    sent = store.count_states().get("sent", 0)
    store.close()
    if sent != count or len(gateway.received) - before != count:
        raise SystemExit(f"only {sent} of {count} SMS were sent; see the log")
    return elapsed, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sms", type=int, default=500, help="SMS per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tls", choices=("none", "starttls", "implicit"), default="none")
    args = parser.parse_args()

    rates = []
    with GatewaySimulator(tls=args.tls) as gateway:
        gateway._connections = Connections()
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="bench-delivery-", dir=Path.cwd()) as tmp:
                elapsed, sent = one_round(Path(tmp), gateway, args.sms)
            rates.append(sent / elapsed)
        problems = [s.problems for s in gateway.received if s.problems]
    per_sms = 1000 / statistics.median(rates)
    print(f"{args.sms} SMS x {args.rounds} rounds, SMTP {args.tls}, state file on disk")
    print(f"delivery: median {statistics.median(rates):,.0f} SMS/s, best {max(rates):,.0f}")
    print(
        f"          {per_sms:.2f} ms per SMS incl. 3 state commits (target > {TARGET_PER_SECOND}/s)"
    )
    print(
        f"SMTP connections: {Connections.opened} for {args.rounds} bursts; "
        f"requests with problems: {len(problems)}"
    )


if __name__ == "__main__":
    main()
