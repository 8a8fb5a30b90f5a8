"""Benchmark the transformer: parse, pick the body, clean it and compose the SMS for the corpus.

Run by hand (prints figures, asserts nothing)::

    .venv/bin/python bench/bench_transform.py [--rounds 100] [--corpus PATH]

Every round builds a fresh ``Mail`` from the raw bytes (nothing cached between rounds)
and calls ``transform.render`` with the default options, as the daemon does per mail.
Target: more than 2 000 mails/s on the project's 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from forwarder.mail import Mail
from forwarder.text.smstext import SmsOptions
from forwarder.text.transform import render

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
TARGET_MAILS_PER_SECOND = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()

    files = sorted(args.corpus.rglob("*.eml"))
    if not files:
        raise SystemExit(f"no .eml files under {args.corpus}")
    mails = [(path, path.read_bytes()) for path in files]
    options = SmsOptions()
    now = datetime(2024, 11, 25, 12, 0, tzinfo=UTC)
    per_mail: dict[Path, list[float]] = {path: [] for path, _ in mails}

    for _path, raw in mails:  # warm up: imports, regex compilation, caches
        render(Mail(raw), options, now=now)

    clock = time.perf_counter
    started = clock()
    for _ in range(args.rounds):
        for path, raw in mails:
            before = clock()
            render(Mail(raw), options, now=now)
            per_mail[path].append(clock() - before)
    elapsed = clock() - started

    total = args.rounds * len(mails)
    rate = total / elapsed
    medians = {path: statistics.median(times) for path, times in per_mail.items()}
    slowest = sorted(medians, key=medians.__getitem__, reverse=True)[:5]
    print(f"{len(mails)} mails x {args.rounds} rounds = {total} renders in {elapsed:.2f} s")
    print(
        f"{rate:,.0f} mails/s (target > {TARGET_MAILS_PER_SECOND:,}), "
        f"mean {elapsed / total * 1e6:,.0f} µs/mail"
    )
    print("slowest mails (median of the rounds):")
    for path in slowest:
        size = len(dict(mails)[path])
        print(f"  {medians[path] * 1e3:7.3f} ms  {size:>7,} bytes  {path.relative_to(args.corpus)}")


if __name__ == "__main__":
    main()
