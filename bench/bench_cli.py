"""Benchmark the command line: wall time of ``forwarder --help`` and ``forwarder check``.

Run by hand::

    .venv/bin/python bench/bench_cli.py [--runs 10] [--quick] [--json FILE]

Each command is a fresh process, as a user or a systemd ExecStartPre runs it:
``python -m forwarder.cli …`` with this checkout first on the path; ``check`` reads
``rules.example.yaml`` (every feature of the config). The interpreter alone (``python -c
pass``) is measured too: it is the floor. Target (issue 12): ≤ 0.15 s each.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from common import ROOT, compile_tree, emit, spread

EXAMPLE = ROOT / "rules.example.yaml"
ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "PYTHONPATH": str(ROOT),
    "IMAP_PASSWORD": "x",
    "SMTP_PASSWORD": "y",
}
COMMANDS = {
    "interpreter_s": ["-c", "pass"],
    "help_s": ["-m", "forwarder.cli", "--help"],
    "check_s": ["-m", "forwarder.cli", "check", "--config", str(EXAMPLE)],
}


def wall(args: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *args], capture_output=True, env=ENV, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{args} failed: {result.stderr.decode(errors='replace')}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 runs")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    compile_tree()
    runs = 3 if args.quick else args.runs
    for command in COMMANDS.values():  # warm the page cache and the .pyc files
        wall(command)
    figures = {
        name: spread([wall(command) for _ in range(runs)]) for name, command in COMMANDS.items()
    }
    print(f"command line wall times over {runs} runs:")
    emit(figures, args.json)


if __name__ == "__main__":
    main()
