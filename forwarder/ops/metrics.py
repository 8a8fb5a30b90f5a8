"""Prometheus metrics, served at ``/metrics`` when ``metrics.listen`` is set (off by default).

Built with the official ``prometheus_client``: its text exposition is what every
Prometheus and Grafana agent parses, and its HTTP server is a small threaded WSGI server
that cannot block a round. The metrics live in a private ``CollectorRegistry`` (never
the library's global one), so a second ``Metrics`` — after a reload, or in a test —
starts from zero and nothing else in the process can add to ours. No label carries a
secret or any part of a mail: actions, states, reply codes and configured folder names
only, so the number of series stays small and fixed.

The daemon keeps one ``Metrics`` for the whole run and updates it whether or not it is
served (the updates are a few lock-protected additions); ``MetricsServer`` serves it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import start_http_server

from forwarder.delivery.states import FINAL, State

__all__ = ["DEFAULT_PORT", "Metrics", "MetricsServer"]

DEFAULT_PORT = 9187

MAIL_ACTIONS = ("forward", "skip", "error")
#: Where an SMS settles (counted once each): final states, and the two a send ends in.
SMS_STATES = tuple(sorted({State.SENT, State.IN_DOUBT} | FINAL))


class Metrics:
    """The metrics of one forwarder process. Every method is thread-safe and quick.

    =============================================  ===========================================
    ``forwarder_mails_total{action}``              mails decided (forward, skip, error, …)
    ``forwarder_sms_total{state}``                 SMS settled (sent, failed, in_doubt, held, …)
    ``forwarder_gateway_errors_total{code}``       gateway error replies (AUTH, BANNED, MSG, …)
    ``forwarder_outbox{state}``                    outbox rows per state now
    ``forwarder_circuit_open``                     1 while sending is paused by the gateway
    ``forwarder_last_poll_timestamp_seconds``      Unix time of the last successful poll
    ``forwarder_up{folder}``                       1 while the folder's IDLE connection is up
    =============================================  ===========================================
    """

    def __init__(
        self,
        *,
        actions: Iterable[str] = MAIL_ACTIONS,
        sms_states: Iterable[str] = SMS_STATES,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.mails = Counter(
            "forwarder_mails", "Mails decided, by the action taken.", ["action"], registry=r
        )
        self.sms = Counter(
            "forwarder_sms", "SMS settled, by the state they reached.", ["state"], registry=r
        )
        self.gateway_errors = Counter(
            "forwarder_gateway_errors",
            "Error replies from the SMS gateway, by code.",
            ["code"],
            registry=r,
        )
        self.outbox = Gauge("forwarder_outbox", "Outbox rows by state.", ["state"], registry=r)
        self.circuit_open = Gauge(
            "forwarder_circuit_open",
            "1 while sending is paused after a gateway AUTH, FORBIDDEN or NO LIST reply.",
            registry=r,
        )
        self.last_poll = Gauge(
            "forwarder_last_poll_timestamp_seconds",
            "Unix time of the last poll that looked at every folder.",
            registry=r,
        )
        self.up = Gauge(
            "forwarder_up", "1 while the folder's IDLE connection is up.", ["folder"], registry=r
        )
        self._lock = threading.Lock()
        self._outbox_states: set[str] = {str(state) for state in State}
        # Series that exist at 0 from the start: rate() and alerts need no "absent()" dance.
        for action in actions:
            self.mails.labels(action=action)
        for state in sms_states:
            self.sms.labels(state=str(state))
        self.set_outbox({})  # every state at 0

    # -- updates ------------------------------------------------------------------------------
    def mail_decided(self, action: str, count: int = 1) -> None:
        self.mails.labels(action=action).inc(count)

    def sms_settled(self, state: str, count: int = 1) -> None:
        self.sms.labels(state=state).inc(count)

    def gateway_error(self, code: str) -> None:
        """``code``: the reply code; ``MSG:XYZ`` counts as ``MSG`` (a fixed set of series)."""
        self.gateway_errors.labels(code=code.split(":", 1)[0]).inc()

    def set_outbox(self, counts: Mapping[str, int]) -> None:
        """Rows per state now (``Store.count_states()``); a state absent from it is 0."""
        with self._lock:
            self._outbox_states.update(counts)
            for state in self._outbox_states:
                self.outbox.labels(state=state).set(counts.get(state, 0))

    def set_circuit(self, is_open: bool) -> None:
        self.circuit_open.set(1 if is_open else 0)

    def polled(self, at: float) -> None:
        """A poll of every folder succeeded at Unix time ``at``."""
        self.last_poll.set(at)

    def set_up(self, folder: str, up: bool) -> None:
        self.up.labels(folder=folder).set(1 if up else 0)

    def forget_folder(self, folder: str) -> None:
        """The folder is no longer watched (reload): its series goes."""
        with contextlib.suppress(KeyError):  # older prometheus_client raise for an absent one
            self.up.remove(folder)

    def render(self) -> bytes:
        """The text exposition format, as ``/metrics`` serves it."""
        return generate_latest(self.registry)


class MetricsServer:
    """``/metrics`` over HTTP in a daemon thread (``prometheus_client``'s own server).

    ``start()`` binds and returns the address bound (port 0 picks a free one); it raises
    ``OSError`` when the address is taken. ``stop()`` closes the socket.
    """

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        host = self.host.strip("[]")
        self._httpd, self._thread = start_http_server(
            self.port, addr=host, registry=self.metrics.registry
        )
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        assert self._httpd is not None, "not started"
        bound = self._httpd.server_address
        return str(bound[0]), int(bound[1])

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
