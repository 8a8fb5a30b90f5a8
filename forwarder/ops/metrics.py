"""Prometheus metrics, served at ``/metrics`` when ``metrics.listen`` is set (off by default).

Built with the official ``prometheus_client``: its text exposition is what every
Prometheus and Grafana agent parses, and its HTTP server is a small threaded WSGI server
that cannot block a round. The metrics live in a private ``CollectorRegistry`` (never
the library's global one), so a second ``Metrics`` — after a reload, or in a test —
starts from zero and nothing else in the process can add to ours. No label carries a
secret or any part of a mail: actions, states, reply codes and configured folder names
only, so the number of series stays small and fixed.

The daemon keeps one ``Metrics`` for the whole run and updates it whether or not it is
served: plain counts under a lock. ``prometheus_client`` is imported only when they are
served or rendered, by a collector that reads them at each scrape (the library's pattern
for exporting state that lives elsewhere): most daemons never serve metrics, and the
library's import is about 1 MB of a 40 MB process (bench_watcher).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from forwarder.delivery.states import FINAL, State

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry

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
        self._lock = threading.Lock()
        # Series that exist at 0 from the start: rate() and alerts need no "absent()" dance.
        self._mails: dict[str, float] = dict.fromkeys(actions, 0.0)
        self._sms: dict[str, float] = dict.fromkeys(map(str, sms_states), 0.0)
        self._gateway_errors: dict[str, float] = {}
        self._outbox: dict[str, float] = dict.fromkeys(map(str, State), 0.0)
        self._circuit_open = 0.0
        self._last_poll = 0.0
        self._up: dict[str, float] = {}
        self._registry: CollectorRegistry | None = None

    # -- updates ------------------------------------------------------------------------------
    def mail_decided(self, action: str, count: int = 1) -> None:
        with self._lock:
            self._mails[action] = self._mails.get(action, 0.0) + count

    def sms_settled(self, state: str, count: int = 1) -> None:
        with self._lock:
            self._sms[state] = self._sms.get(state, 0.0) + count

    def gateway_error(self, code: str) -> None:
        """``code``: the reply code; ``MSG:XYZ`` counts as ``MSG`` (a fixed set of series)."""
        code = code.split(":", 1)[0]
        with self._lock:
            self._gateway_errors[code] = self._gateway_errors.get(code, 0.0) + 1

    def set_outbox(self, counts: Mapping[str, int]) -> None:
        """Rows per state now (``Store.count_states()``); a state absent from it is 0."""
        with self._lock:
            for state in self._outbox.keys() | counts.keys():
                self._outbox[str(state)] = float(counts.get(state, 0))

    def set_circuit(self, is_open: bool) -> None:
        with self._lock:
            self._circuit_open = 1.0 if is_open else 0.0

    def polled(self, at: float) -> None:
        """A poll of every folder succeeded at Unix time ``at``."""
        with self._lock:
            self._last_poll = at

    def set_up(self, folder: str, up: bool) -> None:
        with self._lock:
            self._up[folder] = 1.0 if up else 0.0

    def forget_folder(self, folder: str) -> None:
        """The folder is no longer watched (reload): its series goes."""
        with self._lock:
            self._up.pop(folder, None)

    # -- exposition ---------------------------------------------------------------------------
    @property
    def registry(self) -> CollectorRegistry:
        """A private registry (never the library's global one) holding only these metrics:
        a second ``Metrics`` (a test, a reload) starts from zero and cannot clash."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            registry = CollectorRegistry(auto_describe=True)
            registry.register(self)  # a collector: collect() is read at each scrape
            self._registry = registry
        return self._registry

    def collect(self) -> Iterator[Any]:
        """The metric families of this moment (``prometheus_client``'s collector protocol)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self._lock:
            mails, sms, errors = dict(self._mails), dict(self._sms), dict(self._gateway_errors)
            outbox, up = dict(self._outbox), dict(self._up)
            circuit, last_poll = self._circuit_open, self._last_poll

        def labelled(family: Any, values: Mapping[str, float]) -> Any:
            for label, value in values.items():
                family.add_metric([label], value)
            return family

        yield labelled(
            CounterMetricFamily(
                "forwarder_mails", "Mails decided, by the action taken.", labels=["action"]
            ),
            mails,
        )
        yield labelled(
            CounterMetricFamily(
                "forwarder_sms", "SMS settled, by the state they reached.", labels=["state"]
            ),
            sms,
        )
        yield labelled(
            CounterMetricFamily(
                "forwarder_gateway_errors",
                "Error replies from the SMS gateway, by code.",
                labels=["code"],
            ),
            errors,
        )
        yield labelled(
            GaugeMetricFamily("forwarder_outbox", "Outbox rows by state.", labels=["state"]),
            outbox,
        )
        yield GaugeMetricFamily(
            "forwarder_circuit_open",
            "1 while sending is paused after a gateway AUTH, FORBIDDEN or NO LIST reply.",
            value=circuit,
        )
        yield GaugeMetricFamily(
            "forwarder_last_poll_timestamp_seconds",
            "Unix time of the last poll that looked at every folder.",
            value=last_poll,
        )
        yield labelled(
            GaugeMetricFamily(
                "forwarder_up", "1 while the folder's IDLE connection is up.", labels=["folder"]
            ),
            up,
        )

    def render(self) -> bytes:
        """The text exposition format, as ``/metrics`` serves it."""
        from prometheus_client import generate_latest

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
        from prometheus_client.exposition import start_http_server

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
