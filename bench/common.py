"""What the end-to-end benchmarks share: servers, daemon configs, realistic mail, a clock for SMS.

Not a benchmark itself (``make bench`` runs ``bench/bench_*.py``). Every figure is a wall-clock
time measured from outside the daemon, against a real Dovecot and the gateway simulator of
``tests/support/servers``, with ``forwarder run`` started as a process the way systemd starts it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.configs import write_config  # noqa: E402
from tests.support.daemonproc import DaemonProcess, read_checkpoint  # noqa: E402, F401
from tests.support.servers import wait_until  # noqa: E402, F401
from tests.support.servers.dovecot import DovecotServer  # noqa: E402
from tests.support.servers.gateway import GatewaySimulator  # noqa: E402
from tests.support.servers.mails import make_mail  # noqa: E402, F401

USER = "bench"
NO_LIMITS = {"per_minute": 100_000, "per_hour": 100_000, "per_day": 100_000, "dedup_window": 0}
#: The daemon subprocess imports this checkout, not whatever is installed in the venv.
DAEMON_ENV = {"PYTHONPATH": str(ROOT)}
APPEND_BATCH = 500  # messages per MULTIAPPEND


def compile_tree() -> None:
    """Write the .pyc files of this checkout first, as an install does: with
    PYTHONDONTWRITEBYTECODE set (as in some shells and CI), every process would otherwise
    compile forwarder from source again, and its start would be measured 0.1–0.2 s slow."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "forwarder")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


class Account:
    """What ``tests.support.configs.write_config`` needs to know about the IMAP side."""

    def __init__(self, server: DovecotServer) -> None:
        self.host, self.port, self.user, self.password = (
            server.host,
            server.port,
            USER,
            server.password,
        )


def daemon_config(
    directory: Path, server: DovecotServer, gateway: GatewaySimulator, **imap: object
) -> Path:
    """A config for ``forwarder run``: the default 'urgent' subject rule, no limits, INFO log."""
    directory.mkdir(parents=True, exist_ok=True)
    return write_config(
        directory / "forwarder.yaml",
        Account(server),
        gateway,
        imap={"poll_interval": 300, "timeout": 10, **imap},
        limits=NO_LIMITS,
        log_level="INFO",
    )


# -- mail ---------------------------------------------------------------------------------
_HEADER = (
    "Return-Path: <{sender}>\r\n"
    "Delivered-To: owner@example.net\r\n"
    "Received: from mx1.example.net by imap.example.net with LMTP id {n:08x}\r\n"
    "\tfor <owner@example.net>; Mon, 01 Jan 2024 10:{mm:02d}:00 +0000\r\n"
    "Received: from mail-{n}.{domain} (mail-{n}.{domain} [198.51.100.{ip}])\r\n"
    "\tby mx1.example.net (Postfix) with ESMTPS id 4T{n:06X}\r\n"
    "\tfor <owner@example.net>; Mon, 01 Jan 2024 10:{mm:02d}:00 +0000 (UTC)\r\n"
    "Received: by mail-{n}.{domain} with SMTP id q{n:010d};\r\n"
    "\tMon, 01 Jan 2024 02:{mm:02d}:00 -0800\r\n"
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=20230601;\r\n"
    "\th=from:to:subject:date:message-id:mime-version:content-type;\r\n"
    "\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
    "\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSwganVzdCBzb21lIGJ5dGVzIG9mIHRoZSBzYW1l\r\n"
    "\t IHNpemUgYXMgb25lIHNvIHRoYXQgdGhlIGhlYWRlciBpcyBhcyBsb25nIGFzIGluIHJlYWwgbWFpbA==\r\n"
    "ARC-Authentication-Results: i=1; mx.example.net; dkim=pass header.d={domain};\r\n"
    "\tspf=pass smtp.mailfrom={sender}; dmarc=pass header.from={domain}\r\n"
    "Authentication-Results: mx1.example.net; dkim=pass header.d={domain}; spf=pass\r\n"
    "X-Received: by 2002:a05:6000:{n:x} with SMTP id q{n};\r\n"
    "\tMon, 01 Jan 2024 02:{mm:02d}:00 -0800\r\n"
    "MIME-Version: 1.0\r\n"
    "From: {name} <{sender}>\r\n"
    "To: Owner <owner@example.net>\r\n"
    "Subject: {subject}\r\n"
    "Date: Mon, 01 Jan 2024 10:{mm:02d}:00 +0000\r\n"
    "Message-ID: <{n}.{tag}@{domain}>\r\n"
    "List-Unsubscribe: <https://{domain}/unsubscribe?u={n:x}>, <mailto:unsub-{n}@{domain}>\r\n"
    "List-Id: Notifications <notify.{domain}>\r\n"
    "X-Mailer: bench-mailer 1.0\r\n"
    'Content-Type: multipart/alternative; boundary="b{n}"\r\n'
)
_BODY = (
    "\r\n--b{n}\r\n"
    'Content-Type: text/plain; charset="utf-8"\r\n'
    "Content-Transfer-Encoding: 7bit\r\n\r\n"
    "{text}\r\n"
    "--b{n}\r\n"
    'Content-Type: text/html; charset="utf-8"\r\n'
    "Content-Transfer-Encoding: 7bit\r\n\r\n"
    "<html><body><p>{html}</p></body></html>\r\n"
    "--b{n}--\r\n"
)
_SENDERS = (
    ("Shop", "news@shop.example.com", "shop.example.com"),
    ("Monitoring", "alerts@monitoring.example.org", "monitoring.example.org"),
    ("Bank", "info@bank.example.com.ua", "bank.example.com.ua"),
    ("Colleague", "colleague@example.net", "example.net"),
)
_PARAGRAPH = (
    "Dear customer, this is the kind of text a newsletter or a notification carries: "
    "a few sentences about an offer, a report or a status change, with a link or two. "
)


def realistic_mail(n: int, subject: str, tag: str) -> bytes:
    """A message shaped like real mail: ~2.5 KB of trace headers, text and HTML alternatives."""
    name, sender, domain = _SENDERS[n % len(_SENDERS)]
    text = (_PARAGRAPH * 6).strip()
    fields = {
        "n": n,
        "mm": n % 60,
        "ip": n % 250 + 1,
        "name": name,
        "sender": sender,
        "domain": domain,
        "subject": subject,
        "tag": tag,
    }
    header = _HEADER.format(**fields)
    body = _BODY.format(n=n, text=text, html=text)
    return (header + body).encode()


def append_many(server: DovecotServer, folder: str, mails: Iterable[bytes]) -> None:
    """APPEND ``mails`` over one connection, MULTIAPPEND (RFC 3502) in batches."""
    server.append_many(USER, folder, list(mails), batch=APPEND_BATCH)


# -- observing the daemon from outside ------------------------------------------------------
class SmsClock:
    """Stamps, from a thread, the moment the gateway accepted each SMS after ``start()``.

    ``GatewaySimulator.wait_for`` wakes on a condition variable, so a stamp is taken when the
    request is recorded, not on a polling tick.
    """

    def __init__(self, gateway: GatewaySimulator, expected: int, timeout: float = 120) -> None:
        self.gateway = gateway
        self.expected = expected
        self.timeout = timeout
        self.stamps: list[float] = []
        self.error: BaseException | None = None
        self._base = len(gateway.received)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SmsClock:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for k in range(1, self.expected + 1):
                self.gateway.wait_for(self._base + k, timeout=self.timeout)
                self.stamps.append(time.monotonic())
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self) -> list[float]:
        self._thread.join(self.timeout + 5)
        if self.error is not None:
            raise self.error
        return self.stamps

    def texts(self) -> list[str]:
        return [sms.text for sms in self.gateway.received[self._base :]]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# -- figures --------------------------------------------------------------------------------
def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of several runs (what BENCHMARKS.md shows)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": list(values),
    }


def emit(figures: dict[str, Any], json_path: str | None) -> None:
    """Print the figures; with ``--json FILE`` also write them for ``bench/report.py``."""
    for key, value in figures.items():
        if isinstance(value, dict) and "median" in value:
            print(
                f"  {key}: median {value['median']:.4g} (min {value['min']:.4g}, "
                f"max {value['max']:.4g}, {len(value['runs'])} runs)"
            )
        else:
            print(f"  {key}: {value}")
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dovecot = subprocess.run(
        ["dovecot", "--version"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin"},
    ).stdout.strip()
    return (
        f"{platform.node()}: {os.cpu_count()} CPU(s), {cpu}; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; Dovecot {dovecot or '?'}"
    )
