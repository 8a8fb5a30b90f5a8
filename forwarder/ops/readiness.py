"""When ``READY=1`` may be sent: pure, from which folders have been looked at.

READY is a promise: mail that arrives after it is forwarded. A folder keeps that
promise once it has a checkpoint, because every later mail has a higher UID than the
checkpoint and will be found, however long IMAP is down. A folder without one does
not: its first look *baselines* it (what is there then is taken as old, not
forwarded), so mail that came between READY and that first look would be lost.

So READY waits for every configured folder to have been looked at in this run — or
to carry a checkpoint from an earlier run. The second half matters on a restart while
the server is down: the promise holds already, and waiting would only make systemd
fail the start (``TimeoutStartSec=``) and restart forwarder in a loop, alerts and
all. On a first start with IMAP down READY waits, and ``systemctl start`` fails with
the log saying why: nothing has been promised yet.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

__all__ = ["ready", "waiting_for"]


def waiting_for(
    folders: Iterable[str], *, looked_at: Collection[str], checkpointed: Collection[str]
) -> list[str]:
    """The configured folders that still keep READY back, in config order."""
    return [f for f in folders if f not in looked_at and f not in checkpointed]


def ready(
    folders: Iterable[str], *, looked_at: Collection[str], checkpointed: Collection[str]
) -> bool:
    """True when every folder was looked at in this run or has a stored checkpoint."""
    return not waiting_for(folders, looked_at=looked_at, checkpointed=checkpointed)
