"""A TCP proxy in front of a real server that tells the test when a client sends a command.

Used to kill Dovecot at an exact moment of the protocol ("mid-FETCH", "mid-IDLE"): the
proxy forwards bytes both ways unchanged and, the first time the client's bytes match
``trip``, sets ``tripped``. With ``hold`` it then stops passing the server's answers on for
that connection, so the command stays in flight whatever the test does next (a FETCH of
one small mail is otherwise answered before any test could react). Nothing is parsed or
faked: it is the real server's protocol on the wire, with a window held open.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

from tests.support.servers import LOOPBACK, free_port

CHUNK = 65536


class TcpProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        trip: Callable[[bytes], bool],
        hold: bool = False,
    ) -> None:
        self.upstream = upstream
        self.trip: Callable[[bytes], bool] | None = trip
        self.hold = hold
        self.host, self.port = LOOPBACK, free_port()
        self.tripped = threading.Event()
        self.after_trip = bytearray()  # what the server sent on the tripped connection since
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    def __enter__(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()
        return self

    def __exit__(self, *exc: object) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)

    def wait_for_server(self, marker: bytes, timeout: float = 15) -> None:
        """Until the server has sent ``marker`` on the tripped connection since the trip."""
        with self._changed:
            if not self._changed.wait_for(lambda: marker in self.after_trip, timeout):
                raise TimeoutError(f"the server never sent {marker!r} after the trip")

    def _accept(self) -> None:
        while self._listener is not None:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _close(client)  # the server is down: the client sees the door shut at once
            return
        server.settimeout(None)
        with self._lock:
            self._sockets.update((client, server))
        state = {"tripped": False}
        threading.Thread(target=self._pump_up, args=(client, server, state), daemon=True).start()
        self._pump_down(server, client, state)

    def _pump_up(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        while data := _recv(client):
            with self._lock:
                if self.trip is not None and self.trip(data):
                    self.trip = None  # once: the first matching command of any connection
                    state["tripped"] = True
                    self.tripped.set()
            with contextlib.suppress(OSError):
                server.sendall(data)
        _close(server)

    def _pump_down(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        while data := _recv(server):
            if state["tripped"]:
                with self._changed:
                    self.after_trip.extend(data)
                    self._changed.notify_all()
                if self.hold:
                    continue  # the answer never reaches the client: the command stays open
            with contextlib.suppress(OSError):
                client.sendall(data)
        _close(client)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(CHUNK)
    except OSError:
        return b""


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
