"""The reply tracker's storage and actions, without servers (a real SQLite file)."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

from forwarder.gateway.tracker import ReplyTracker
from forwarder.mail import Mail
from forwarder.store import Store

SECRET = "TOPSECRET42"


def reply_mail(body: str) -> Mail:
    message = EmailMessage()
    message["From"] = "noreply@alphasms.com.ua"
    message["To"] = "me@example.com"
    message["Subject"] = "Email2SMS error"
    message.set_content(body)
    return Mail(message.as_bytes(), folder="INBOX", uid=7, uidvalidity=1)


def test_a_secret_the_gateway_wraps_onto_the_next_line_never_reaches_the_db_or_log(
    tmp_path: Path, caplog
) -> None:
    store = Store(tmp_path / "state.db")
    tracker = ReplyTracker(
        store,
        pause=60,
        probe_wait=60,
        new_message_id=lambda: "<x@f>",
        scrub=lambda text: text.replace(SECRET, "***"),
    )
    # Line-based masking sees no ';' before the secret on its own line.
    reply = tracker.record(reply_mail(f"AUTH\nYour request MyAlpha;380501234567;\n{SECRET}\n"))
    store.close()
    assert reply.label() == "AUTH"
    assert SECRET not in reply.detail
    assert SECRET not in caplog.text
    assert SECRET.encode() not in (tmp_path / "state.db").read_bytes()
