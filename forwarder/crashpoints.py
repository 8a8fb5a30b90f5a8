"""Crash points: where the test suite kills ``forwarder run`` with SIGKILL, on purpose.

Every promise about crashes ("never lost, never twice") is about one of the gaps between
two steps that each commit or touch the wire. The tests prove each gap by killing the real
process exactly there and restarting it: ``FORWARDER_CRASH_AT=<point>`` in the environment
arms one point, and the first time the process reaches it, it sends itself SIGKILL — no
``finally``, no ``atexit``, no flush, the same as ``kill -9`` or a power cut for the process.

Why a variable read by the code, and not a server that stalls at a step: three of the gaps
lie between forwarder's own steps with no I/O to stall in between (the fetch and the commit,
the commit and SMTP, the 250 and the commit of ``sent``), and a kill from outside, timed by
watching the wire, lands anywhere within a few milliseconds. Here the point is exact and
the test deterministic. Unarmed, each point costs one comparison; nothing else in the
environment can arm it, and the daemon logs a warning at start when one is armed.
"""

from __future__ import annotations

import os
import signal

ENV = "FORWARDER_CRASH_AT"

AFTER_FETCH = "after_fetch"  # new mail fetched and decided, the batch not committed yet
AFTER_COMMIT = "after_commit"  # the batch and its SMS committed, SMTP not started
AFTER_SENDING = "after_sending"  # the row is 'sending', MAIL/RCPT done, DATA not sent
AFTER_IN_DOUBT = "after_in_doubt"  # the row is 'in_doubt', the body sent, the final dot not
AFTER_DOT = "after_dot"  # the final dot sent, the server's 250 not read yet
AFTER_250 = "after_250"  # the 250 read, 'sent' not committed yet

POINTS = (AFTER_FETCH, AFTER_COMMIT, AFTER_SENDING, AFTER_IN_DOUBT, AFTER_DOT, AFTER_250)

_armed = os.environ.get(ENV, "")


def armed() -> str:
    """The point armed in this process ('' when none)."""
    return _armed


def reach(point: str) -> None:
    """SIGKILL this process if ``point`` is the armed one."""
    if _armed and point == _armed:
        os.kill(os.getpid(), signal.SIGKILL)
