"""Real servers for tests and the demo: a Dovecot IMAP server and an Email2SMS gateway simulator.

The modules here never import pytest, so ``make demo`` can drive them from a plain script:

- ``dovecot``: ``DovecotServer``, a real Dovecot in a temporary directory, and
  ``ImapAccount``, a mailbox on it as the ``imap_user`` fixture hands it out.
- ``gateway``: ``GatewaySimulator``, an aiosmtpd server that checks every request against the
  AlphaSMS Email2SMS document and can fail, drop and answer like the gateway.
- ``mails``: ``make_mail()``, test messages built with the stdlib.

This package module holds the few helpers both servers share.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trustme

LOOPBACK = "127.0.0.1"
# Names the test certificates are valid for: clients may connect by either.
CERT_IDENTITIES = ("127.0.0.1", "localhost")
POLL_INTERVAL = 0.02  # seconds between two looks at a condition we cannot be notified of


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (the kernel picks it; a tiny race remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; raise ``TimeoutError`` naming ``what`` at the deadline.

    Only for conditions nothing can notify us of (a process's state, a port opening);
    anything in our own threads uses a ``threading.Condition`` instead.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(POLL_INTERVAL)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throw-away PKI: a server certificate, the CA clients should trust,
    and a second, unrelated CA for tests that must see verification fail."""

    ca_file: Path
    wrong_ca_file: Path
    cert_file: Path
    key_file: Path
    cert_and_key_file: Path

    @classmethod
    def create(cls, directory: Path) -> TlsFiles:
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        leaf = ca.issue_cert(*CERT_IDENTITIES)
        files = cls(
            ca_file=directory / "ca.pem",
            wrong_ca_file=directory / "wrong-ca.pem",
            cert_file=directory / "cert.pem",
            key_file=directory / "key.pem",
            cert_and_key_file=directory / "cert-and-key.pem",
        )
        ca.cert_pem.write_to_path(str(files.ca_file))
        trustme.CA().cert_pem.write_to_path(str(files.wrong_ca_file))
        leaf.cert_chain_pems[0].write_to_path(str(files.cert_file))
        for pem in leaf.cert_chain_pems[1:]:
            pem.write_to_path(str(files.cert_file), append=True)
        leaf.private_key_pem.write_to_path(str(files.key_file))
        leaf.private_key_and_cert_chain_pem.write_to_path(str(files.cert_and_key_file))
        files.key_file.chmod(0o600)
        files.cert_and_key_file.chmod(0o600)
        return files
