"""Benchmark the catch-up after a stop: a backlog of new mail, a few important ones among it.

Run by hand (prints figures, asserts only that the right SMS arrived)::

    .venv/bin/python bench/bench_catchup.py [--mails 5000] [--urgent 50] [--runs 3] [--quick]

Per run, in a fresh folder of one private Dovecot (tests/support/servers/dovecot.py):

1. ``forwarder run`` baselines the empty folder and is stopped (SIGTERM);
2. ``--mails`` realistic mails (~2.5 KB of trace headers, text and HTML parts) are appended
   over one connection (MULTIAPPEND); every 100th has "urgent" in its subject;
3. ``forwarder run`` is started again: the clock starts just before the process is spawned,
   and stops when the gateway simulator accepts the first, and the last, of the urgent SMS.
   Also shown: start → checkpoint at the last UID (every mail decided and committed).
4. imapfilter (Debian package ``imapfilter``) does the same job in the same run: it selects
   the folder, searches for "urgent" in the subject, and fetches the body of each match;
   timed from spawn to exit. It works on its own copy of the same backlog on the same server
   (appended at the same time), so that both meet Dovecot cold, as mail that just arrived:
   Dovecot caches a header field once a SEARCH or FETCH asked for it, and a second search is
   4 to 5 times faster. ``imapfilter_warm_s`` is imapfilter run again on its copy, and
   ``ratio_warm`` the ratio against that (the stricter one).

Targets (issue 12): start → last SMS ≤ 5 × imapfilter's time; start → first SMS ≤ 0.5 s.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from common import (
    DAEMON_ENV,
    USER,
    DaemonProcess,
    DovecotServer,
    GatewaySimulator,
    SmsClock,
    append_many,
    compile_tree,
    daemon_config,
    emit,
    read_checkpoint,
    realistic_mail,
    spread,
)

IMAPFILTER = shutil.which("imapfilter")
EVERY = 100  # one mail in EVERY is urgent
_FILLER_SUBJECTS = (
    "Your order {n} has shipped",
    "Weekly report #{n}",
    "Re: minutes of the meeting {n}",
    "[monitoring] OK: backup job {n} finished",
    "Newsletter {n}: what is new this month",
)

IMAPFILTER_CONFIG = """\
options.timeout = 30
options.starttls = false
options.create = false
options.subscribe = false
options.info = false
account = IMAP {{ server = '{host}', port = {port}, username = '{user}', password = '{password}' }}
results = account['{folder}']:contain_subject('urgent')
fetched = 0
for _, message in ipairs(results) do
  local mailbox, uid = table.unpack(message)
  local body = mailbox[uid]:fetch_body()
  if body then fetched = fetched + 1 end
end
print('matched ' .. #results .. ' fetched ' .. fetched)
"""


def backlog(count: int, urgent: int, tag: str) -> tuple[list[bytes], list[str]]:
    """``count`` mails, ``urgent`` of them (evenly spread) with 'urgent' in the subject."""
    every = max(1, count // max(1, urgent))
    mails, subjects = [], []
    for n in range(1, count + 1):
        if n % every == every // 2 and len(subjects) < urgent:
            subject = f"urgent: disk almost full on host-{n}"
            subjects.append(subject)
        else:
            subject = _FILLER_SUBJECTS[n % len(_FILLER_SUBJECTS)].format(n=n)
        mails.append(realistic_mail(n, subject, tag))
    return mails, subjects


def run_imapfilter(work: Path, server: DovecotServer, folder: str, urgent: int) -> float:
    config = work / "imapfilter.lua"
    config.write_text(
        IMAPFILTER_CONFIG.format(
            host=server.host,
            port=server.port,
            user=USER,
            password=server.password,
            folder=folder,
        )
    )
    home = work / "imapfilter-home"
    home.mkdir(exist_ok=True)
    started = time.monotonic()
    result = subprocess.run(
        [IMAPFILTER, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0 or f"matched {urgent} fetched {urgent}" not in result.stdout:
        raise RuntimeError(f"imapfilter failed: {result.stdout}{result.stderr}")
    return elapsed


def one_run(
    work: Path, server: DovecotServer, gateway: GatewaySimulator, run: int, mails: int, urgent: int
) -> dict[str, float]:
    folder = f"Catchup{run}"
    server.create_folder(USER, folder)
    config = daemon_config(work / f"run{run}", server, gateway, folders=[folder])
    state = config.parent / "state.db"
    with DaemonProcess(config, env=DAEMON_ENV) as daemon:  # the baseline: the folder is empty
        daemon.wait_for_checkpoint(folder)
        daemon.stop()

    raws, subjects = backlog(mails, urgent, tag=f"run{run}")
    append_many(server, folder, raws)
    server.create_folder(USER, folder + "Copy")
    append_many(server, folder + "Copy", raws)
    top = mails  # UIDs 1..mails in a fresh folder

    decided: list[float] = []

    def watch_checkpoint() -> None:
        while not decided:
            if (read_checkpoint(state, folder) or 0) >= top:
                decided.append(time.monotonic())
                return
            time.sleep(0.01)

    clock = SmsClock(gateway, urgent).start()
    started = time.monotonic()
    with DaemonProcess(config, env=DAEMON_ENV) as daemon:
        watcher = threading.Thread(target=watch_checkpoint, daemon=True)
        watcher.start()
        stamps = clock.join()
        watcher.join(120)
        daemon.stop()
    texts = clock.texts()
    missing = [s for s in subjects if not any(s in text for text in texts)]
    if missing or len(texts) != urgent:
        raise RuntimeError(f"wrong SMS: {len(texts)} sent, missing {missing[:3]}")
    cold = run_imapfilter(config.parent, server, folder + "Copy", urgent)
    warm = run_imapfilter(config.parent, server, folder + "Copy", urgent)
    last = stamps[-1] - started
    figures = {
        "first_sms_s": stamps[0] - started,
        "last_sms_s": last,
        "all_decided_s": (decided[0] - started) if decided else float("nan"),
        "imapfilter_s": cold,
        "imapfilter_warm_s": warm,
        "ratio": last / cold,
        "ratio_warm": last / warm,
    }
    print(f"run {run}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=5000, help="mails in the backlog")
    parser.add_argument("--urgent", type=int, default=50, help="how many of them are urgent")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    compile_tree()
    if IMAPFILTER is None:
        raise SystemExit("imapfilter is not installed: apt-get install imapfilter")
    runs = 1 if args.quick else args.runs
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-catchup-") as tmp,
        DovecotServer(tls=False) as server,
        GatewaySimulator() as gateway,
    ):
        for run in range(1, runs + 1):
            results.append(one_run(Path(tmp), server, gateway, run, args.mails, args.urgent))
    print(f"catch-up of {args.mails} new mails, {args.urgent} urgent, over {runs} run(s):")
    emit(
        {
            "mails": args.mails,
            "urgent": args.urgent,
            **{key: spread([r[key] for r in results]) for key in results[0]},
        },
        args.json,
    )


if __name__ == "__main__":
    main()
