"""Server and disk faults (issue 11), each against `forwarder run` as a real process.

Dovecot is SIGKILLed while a FETCH is in flight and while the daemon sits in IDLE (a TCP
proxy says when: ``tests/servers/proxy.py``); the state file's disk fills up (a 2 MiB
tmpfs, so root only). Each time forwarder must lose nothing, send nothing twice and go on
by itself once the fault is gone. (A hang-up mid-DATA and an injected disk-full error run
in-process in tests/test_receipts.py.)
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.configs import write_config
from tests.support.daemonproc import DaemonProcess, read_checkpoint
from tests.support.servers import wait_until
from tests.support.servers.mails import make_mail
from tests.support.servers.proxy import TcpProxy


def through(proxy: TcpProxy, dovecot) -> SimpleNamespace:
    """The account as the daemon reaches it: through the proxy."""
    return SimpleNamespace(
        host=proxy.host, port=proxy.port, user="owner", password=dovecot.password
    )


def forwarder_status(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder.cli", "status", "--config", str(config), *("--json",)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dovecot_killed_mid_fetch_loses_nothing_and_sends_once(
    tmp_path: Path, dovecot_factory, gateway
) -> None:
    dovecot = dovecot_factory(tls=False)
    fetch = TcpProxy(
        (dovecot.host, dovecot.port), trip=lambda data: b" UID FETCH " in data.upper(), hold=True
    )
    with fetch:
        config = write_config(tmp_path / "forwarder.yaml", through(fetch, dovecot), gateway)
        state = tmp_path / "state.db"
        with DaemonProcess(config) as daemon:
            daemon.wait_for_checkpoint()
            baseline = read_checkpoint(state)
            dovecot.append("owner", "INBOX", make_mail("urgent: mid-FETCH", "body"))
            assert fetch.tripped.wait(15), "the daemon never fetched the new mail"
            dovecot.stop(graceful=False)  # SIGKILL, every process, the FETCH unanswered
            assert read_checkpoint(state) == baseline  # nothing committed without the mail
            assert gateway.received == []
            dovecot.start()  # same ports, same mail
            (sms,) = gateway.wait_for(1, timeout=30)
            daemon.wait_for_checkpoint(above=baseline, timeout=30)
            assert daemon.stop() == 0
    assert sms.text.startswith("Alice Sender: urgent: mid-FETCH")
    assert len(gateway.received) == 1
    assert "IMAP" in daemon.output() and "reconnecting" in daemon.output()


def test_dovecot_killed_mid_idle_is_reconnected_and_new_mail_still_arrives(
    tmp_path: Path, dovecot_factory, gateway
) -> None:
    dovecot = dovecot_factory(tls=False)
    idle = TcpProxy(
        (dovecot.host, dovecot.port), trip=lambda data: data.upper().endswith(b" IDLE\r\n")
    )
    with idle:
        # A poll once an hour: only IDLE (and what it wakes) can find the new mail in time.
        config = write_config(
            tmp_path / "forwarder.yaml",
            through(idle, dovecot),
            gateway,
            imap={"poll_interval": 3600},
        )
        with DaemonProcess(config) as daemon:
            daemon.wait_for_checkpoint()
            assert idle.tripped.wait(15), "the daemon never entered IDLE"
            idle.wait_for_server(b"+ idling")
            dovecot.stop(graceful=False)  # mid-IDLE
            dovecot.start()
            dovecot.append("owner", "INBOX", make_mail("urgent: after the IDLE died", "body"))
            (sms,) = gateway.wait_for(1, timeout=60)
            daemon.wait_for_checkpoint(above=0, timeout=30)
            assert daemon.stop() == 0
    assert sms.text.startswith("Alice Sender: urgent: after the IDLE died")
    assert len(gateway.received) == 1


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs for the state file: a real full disk (needs root, or CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (test_receipts.py injects the error)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        gc.collect()  # sqlite3 connections a `with` block committed but did not close
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(mount)], check=False)
        with contextlib.suppress(OSError):
            mount.rmdir()


def fill(directory: Path) -> Path:
    """Write a file until the disk says ENOSPC; return it."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out:
        while True:
            try:
                out.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return filler


def test_a_full_state_disk_holds_the_checkpoint_says_why_and_resumes(
    tmp_path: Path, small_disk: Path, imap_user, gateway
) -> None:
    state = small_disk / "state.db"
    config = write_config(tmp_path / "forwarder.yaml", imap_user, gateway, state=str(state))
    with DaemonProcess(config) as daemon:
        wait_until(lambda: read_checkpoint(state) is not None, 15, "the first checkpoint")
        baseline = read_checkpoint(state)
        filler = fill(small_disk)
        imap_user.server.append(imap_user.user, "INBOX", make_mail("urgent: disk full", "body"))
        # The log is the one witness here: the state file is what cannot be written.
        wait_until(
            lambda: "cannot record what it handles, so it stops here" in daemon.output(),
            30,
            "the daemon to say the state file is full",
        )
        assert read_checkpoint(state) == baseline
        assert gateway.received == []
        status = forwarder_status(config)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["state_disk"]["full"] is True
        text = subprocess.run(
            [sys.executable, "-m", "forwarder.cli", "status", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert "STATE FILE DISK FULL" in text and "nothing is lost" in text

        filler.unlink()  # room again
        (sms,) = gateway.wait_for(1, timeout=30)
        wait_until(
            lambda: (read_checkpoint(state) or 0) > (baseline or 0), 30, "the checkpoint to move"
        )
        wait_until(
            lambda: "the state file can be written again" in daemon.output(), 30, "the resume"
        )
        assert daemon.stop() == 0
    assert sms.text.startswith("Alice Sender: urgent: disk full")
    assert len(gateway.received) == 1
    assert daemon.output().count("cannot record what it handles") == 1  # said once
