"""The one line ``systemctl status`` shows (sd_notify ``STATUS=``), composed from values.

"watching INBOX, Alerts · 3 SMS today · last poll 12 s ago". What is wrong comes
first, because ``systemctl status`` may cut the end of a long line:
"IMAP: login refused · watching INBOX · 0 SMS today · last poll 2 h ago".
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ago", "status_line"]

SEPARATOR = " · "
MAX_LENGTH = 200  # systemd keeps more, but a status line is read at a glance


def ago(seconds: float) -> str:
    """12 s, 4 min, 3 h, 2 d: rounded down, as a person reads a clock."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def status_line(
    *,
    folders: Sequence[str],
    sms_today: int,
    last_poll_ago: float | None,
    problems: Sequence[str] = (),
    starting: bool = False,
) -> str:
    """Compose the STATUS line.

    ``last_poll_ago``: seconds since the last successful poll (None: none yet);
    ``problems``: short phrases for what is wrong now, most important first
    ("IMAP: login refused", "sending paused: gateway said AUTH"); ``starting``: before
    READY, while the folders get their first look.
    """
    parts = [" ".join(p.split()) for p in problems if p and p.strip()]
    names = ", ".join(folders) or "no folder"
    parts.append(f"starting: looking at {names}" if starting else f"watching {names}")
    parts.append(f"{sms_today} SMS today")
    parts.append("no poll yet" if last_poll_ago is None else f"last poll {ago(last_poll_ago)} ago")
    line = SEPARATOR.join(parts)
    if len(line) > MAX_LENGTH:
        line = line[: MAX_LENGTH - 1].rstrip() + "…"
    return line
