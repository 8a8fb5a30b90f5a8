"""``make bench``: run every benchmark and write BENCHMARKS.md (machine, commit, figures).

    .venv/bin/python bench/report.py [--quick] [--output BENCHMARKS.md]

The end-to-end benchmarks (``bench_catchup``, ``bench_watcher``, ``bench_cli``) write their
figures as JSON, which fill the table of issue 12's targets (median, min–max over the runs);
the micro-benchmarks (``bench_fetch_parse``, ``bench_rules``, ``bench_transform``,
``bench_delivery``) are run with bounded sizes and their output is quoted as printed. Each
benchmark is its own process, one after the other: the machine has 2 cores and the daemon,
Dovecot and the gateway simulator share them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine

BENCH = ROOT / "bench"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

#: (figure, unit, target text, how to read it from the JSON of one benchmark)
TABLE = [
    ("catch-up: start → last SMS, ratio to imapfilter (cold)", "×", "≤ 5×", ("catchup", "ratio")),
    ("catch-up: ratio to imapfilter run again (warm cache)", "×", "", ("catchup", "ratio_warm")),
    ("catch-up: start → first SMS", "s", "≤ 0.5 s", ("catchup", "first_sms_s")),
    ("catch-up: start → last SMS", "s", "", ("catchup", "last_sms_s")),
    ("catch-up: start → every mail decided", "s", "", ("catchup", "all_decided_s")),
    ("catch-up: imapfilter, same job (cold)", "s", "", ("catchup", "imapfilter_s")),
    ("catch-up: imapfilter, again (warm)", "s", "", ("catchup", "imapfilter_warm_s")),
    (
        "burst while running: arrival of the last → its SMS",
        "s",
        "≤ 1 s",
        ("watcher", "burst_last_sms_s"),
    ),
    (
        "burst while running: first arrival → all decided and sent",
        "s",
        "",
        ("watcher", "burst_all_done_s"),
    ),
    ("IDLE arrival → SMS at the gateway, p50", "s", "≤ 0.55 s", ("watcher", "latency_p50_s")),
    ("IDLE arrival → SMS at the gateway, p99", "s", "≤ 0.7 s", ("watcher", "latency_p99_s")),
    ("first start, start → watching", "s", "flat, ≤ 0.5 s", ("watcher", "first_start_s")),
    ("RSS after the first burst", "MB", "", ("watcher", "rss_mb_first")),
    ("RSS after all bursts", "MB", "≤ 40 MB", ("watcher", "rss_mb_last")),
    ("RSS growth from the 2nd burst to the last", "MB", "≈ 0", ("watcher", "rss_growth_mb")),
    ("`forwarder --help`", "s", "≤ 0.15 s", ("cli", "help_s")),
    ("`forwarder check` (rules.example.yaml)", "s", "≤ 0.15 s", ("cli", "check_s")),
    ("`python -c pass` (the floor)", "s", "", ("cli", "interpreter_s")),
]


def run_json(name: str, args: list[str], directory: Path) -> tuple[dict, str, float]:
    out = directory / f"{name}.json"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(BENCH / f"bench_{name}.py"), *args, "--json", str(out)],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    print(result.stdout, end="", flush=True)
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        raise SystemExit(f"bench_{name}.py failed")
    return json.loads(out.read_text()), result.stdout, elapsed


def run_text(name: str, args: list[str]) -> tuple[str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(BENCH / f"bench_{name}.py"), *args],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    text = result.stdout
    if result.returncode:
        text += f"\n(exit {result.returncode}) {result.stderr}"
    print(text, end="", flush=True)
    return text, elapsed


def cell(value: object, unit: str) -> str:
    if isinstance(value, dict) and "median" in value:
        low, high, n = value["min"], value["max"], len(value["runs"])
        return f"{value['median']:.3g} {unit} ({low:.3g}–{high:.3g}, n={n})"
    if isinstance(value, int | float):
        return f"{value:.3g} {unit}"
    return "—"


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return result.stdout.strip()


def corpus() -> Path | None:
    for candidate in (ROOT.parent / "shared" / "corpus", ROOT.parents[1] / "shared" / "corpus"):
        if candidate.is_dir():
            return candidate
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and smaller runs")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--commit", help="name the code measured (default: git HEAD here)")
    args = parser.parse_args()
    quick = ["--quick"] if args.quick else []
    load_before = os.getloadavg()
    figures: dict[str, dict] = {}
    outputs: dict[str, str] = {}
    durations: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        for name in ("cli", "catchup", "watcher"):
            print(f"== bench_{name}.py {' '.join(quick)}", flush=True)
            figures[name], outputs[name], durations[name] = run_json(name, quick, Path(tmp))
    micro = {
        "fetch_parse": ["--mails", "200" if args.quick else "1000"],
        "rules": ["--mails", "2000", "--rounds", "2" if args.quick else "3"],
        "delivery": ["--sms", "100" if args.quick else "200", "--rounds", "2"],
    }
    found = corpus()
    if found is not None:
        micro["transform"] = ["--rounds", "5" if args.quick else "20", "--corpus", str(found)]
    for name, extra in micro.items():
        print(f"== bench_{name}.py {' '.join(extra)}", flush=True)
        outputs[name], durations[name] = run_text(name, extra)

    changed = git("status", "--porcelain", "--untracked-files=no")
    dirty = " (with uncommitted changes)" if changed else ""
    commit = args.commit or (
        f"`{git('rev-parse', '--short', 'HEAD')}` {git('log', '-1', '--format=%s')}{dirty}"
    )
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`bench/report.py{' --quick' if args.quick else ''}`) on "
        f"{dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.",
        "",
        f"- machine: {machine()}",
        "- load average (1, 5, 15 min) before and after the run: "
        f"{' '.join(f'{x:.2f}' for x in load_before)}; "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine "
        "inflates every figure and its spread)",
        f"- commit: {commit}",
        "- every figure: median (min–max, n = runs or samples); wall-clock times measured from "
        "outside the daemon, which runs as `forwarder run` against a private Dovecot and the "
        "gateway simulator of tests/support/servers (see each bench_*.py for the job).",
        "",
        "| figure | result | target |",
        "|---|---|---|",
    ]
    for label, unit, target, (bench, key) in TABLE:
        lines.append(f"| {label} | {cell(figures.get(bench, {}).get(key), unit)} | {target} |")
    catchup, watcher = figures["catchup"], figures["watcher"]
    lines += [
        "",
        f'Catch-up: {catchup["mails"]} new mails, {catchup["urgent"]} with "urgent" in the '
        "subject (bench/bench_catchup.py). Bursts: "
        f"{len(watcher['rss_mb_by_mails'])} × {watcher['burst_size']} mails. First start: "
        f"{watcher['first_start_messages']:,} messages. Latency: {watcher['latency_samples']} "
        "samples per run.",
        "",
        "RSS (MB) after N mails through one daemon: "
        + ", ".join(f"{n}: {mb}" for n, mb in watcher["rss_mb_by_mails"].items()),
        "",
        "## Output of each benchmark",
        "",
    ]
    for name, text in outputs.items():
        lines += [f"### bench_{name}.py ({durations[name]:.0f} s)", ""]
        lines += ["```", text.rstrip(), "```", ""]
    args.output.write_text("\n".join(lines))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
