"""Run ``forwarder run`` as a real process, the way systemd does, and stop it with SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support.servers import wait_until


def read_checkpoint(state: Path, folder: str = "INBOX") -> int | None:
    """The folder's last handled UID in a daemon's state file, read from outside; None if
    there is none yet (or the file is busy being created)."""
    if not state.exists():
        return None
    try:
        with sqlite3.connect(state, timeout=1) as db:
            row = db.execute(
                "SELECT last_uid FROM checkpoints WHERE folder = ?", (folder,)
            ).fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def read_ledger(state: Path) -> list[tuple[str, int, str, str]]:
    """Every mail a daemon's state file has decided: (folder, uid, action, reason)."""
    with sqlite3.connect(state, timeout=5) as db:
        return db.execute(
            "SELECT folder, uid, action, reason FROM handled ORDER BY folder, uid"
        ).fetchall()


class DaemonProcess:
    def __init__(self, config: Path, *, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = config.parent / "daemon.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DaemonProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "forwarder.cli", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait: the daemon must finish its round and exit 0."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def read_meta(self, key: str) -> str | None:
        """A value the daemon keeps in its state file's meta table (None: not there yet)."""
        state = self.config.parent / "state.db"
        if not state.exists():
            return None
        try:
            with sqlite3.connect(state, timeout=1) as db:
                row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return row[0] if row else None

    def wait_for_meta(self, key: str, wanted: str | None = None, timeout: float = 15) -> str:
        """Until the state file's ``key`` is ``wanted`` (or, without it, set and non-empty).

        What the daemon is doing, read as state: ``idle:<folder>`` (connected, disconnected,
        unsupported), ``last_poll_error``, ``ready_at``…
        """

        def reached() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited early:\n{self.output()}")
            value = self.read_meta(key)
            return bool(value) if wanted is None else value == wanted

        wait_until(reached, timeout, f"state {key!r} = {wanted or 'set'}")
        return self.read_meta(key) or ""

    def uidvalidity(self, folder: str = "INBOX") -> int | None:
        """The UIDVALIDITY of the folder's checkpoint in the state file."""
        with sqlite3.connect(self.config.parent / "state.db", timeout=5) as db:
            row = db.execute(
                "SELECT uidvalidity FROM checkpoints WHERE folder = ?", (folder,)
            ).fetchone()
        return row[0] if row else None

    def wait_for_checkpoint(
        self, folder: str = "INBOX", above: int = -1, timeout: float = 15
    ) -> None:
        """Until the state file has a checkpoint for ``folder`` beyond ``above``."""
        state = self.config.parent / "state.db"

        def reached() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited early:\n{self.output()}")
            last_uid = read_checkpoint(state, folder)
            return last_uid is not None and last_uid > above

        wait_until(reached, timeout, f"a checkpoint for {folder} above UID {above}")
