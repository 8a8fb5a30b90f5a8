"""A datagram socket standing in for systemd's notify socket, for tests."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


class NotifySocket:
    """Receives sd_notify datagrams; ``env`` is what a service started by systemd gets.

    ``abstract=True`` binds an abstract name (``@…`` in ``$NOTIFY_SOCKET``); otherwise a
    socket file in a private temporary directory (AF_UNIX paths are limited to 107 bytes,
    so not under pytest's long tmp_path).
    """

    def __init__(self, *, abstract: bool = False, name: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        if abstract:
            name = name or f"forwarder-test-{os.getpid()}-{id(self)}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self._dir = tempfile.TemporaryDirectory(prefix="fwd-notify-")
            path = str(Path(self._dir.name) / "notify")
            self.sock.bind(path)
            self.address = path

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.address}

    def receive(self, timeout: float = 5.0) -> dict[str, str]:
        """The next message as a dict of its KEY=value lines; TimeoutError if none comes."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no sd_notify message arrived") from None
        return dict(line.split("=", 1) for line in data.decode("utf-8").split("\n") if line)

    def pending(self) -> list[dict[str, str]]:
        """Every message already queued, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    return out
                out.append(
                    dict(line.split("=", 1) for line in data.decode("utf-8").split("\n") if line)
                )
        finally:
            self.sock.setblocking(True)

    def until(
        self, wanted: Callable[[dict[str, str]], bool], timeout: float = 30.0
    ) -> dict[str, str]:
        """Read messages until one is ``wanted``, and return it (TimeoutError if none)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the wanted sd_notify message did not arrive")
            message = self.receive(timeout=left)
            if wanted(message):
                return message

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()
        if self._dir is not None:
            self._dir.cleanup()
