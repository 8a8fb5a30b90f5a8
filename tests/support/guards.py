"""Guard cases shared by the guard tests and the tests of what the guards read."""

from __future__ import annotations

from forwarder.rules.guards import GUARD_NAMES, GuardContext
from forwarder.rules.ruleset import RuleSet
from tests.support.rules import compiled

OWN_FROM = "forwarder@example.com"
CONTEXT = GuardContext(own_domain="fwd.example.invalid", own_from=OWN_FROM)


def rules_with(enabled: set[str] | None = None, context: GuardContext = CONTEXT) -> RuleSet:
    """A catch-all forward rule behind the guards; ``enabled`` None keeps the defaults."""
    guards = ""
    if enabled is not None:
        flags = ", ".join(f"{name}: {str(name in enabled).lower()}" for name in GUARD_NAMES)
        guards = f"guards: {{{flags}}}\n"
    return compiled(guards + "rules: [{name: all, action: forward}]\n", context=context)


# Each case: a mail one guard must stop, and which guard that is.
STOPPED = [
    # gateway_replies: From one of the gateway's reply addresses
    ("gateway_replies", {"sender": "AlphaSMS <noreply@alphasms.com.ua>"}),
    ("gateway_replies", {"sender": "robot@mail.alphasms.com.ua", "subject": "AUTH"}),
    # own_mail: a Message-ID forwarder made, or its own request to the gateway
    ("own_mail", {"message_id": "<sms-1.2@fwd.example.invalid>"}),
    ("own_mail", {"message_id": "<SMS-1@FWD.Example.Invalid>"}),
    ("own_mail", {"sender": OWN_FROM, "to": "380501234567@mail.alphasms.com.ua"}),
    # auto_replies
    ("auto_replies", {"headers": [("Auto-Submitted", "auto-replied")]}),
    ("auto_replies", {"headers": [("Auto-Submitted", "Auto-Replied; owner-email=x@y.org")]}),
    ("auto_replies", {"headers": [("X-Autoreply", "yes")]}),
    ("auto_replies", {"headers": [("X-Autorespond", "Out of office")]}),
    ("auto_replies", {"headers": [("Precedence", "auto_reply")]}),
    ("auto_replies", {"subject": "Automatic reply: Server down"}),
    ("auto_replies", {"subject": "Out of Office: back on Monday"}),
    ("auto_replies", {"subject": "Auto-Reply: your message"}),
    ("auto_replies", {"subject": "Автоответ: Re: счёт"}),
    ("auto_replies", {"subject": "Автоматический ответ: отчёт"}),
    ("auto_replies", {"subject": "Автовідповідь: рахунок"}),
    ("auto_replies", {"subject": "Автоматична відповідь: звіт"}),
    ("auto_replies", {"subject": "Нет на месте до 10.01"}),
    ("auto_replies", {"subject": "Поза офісом"}),
    # bounces (From mailer-daemon/postmaster with a bounce subject)
    (
        "bounces",
        {
            "sender": "MAILER-DAEMON@mx.example.org",
            "subject": "Undelivered Mail Returned to Sender",
        },
    ),
    (
        "bounces",
        {"sender": "Postmaster <postmaster@example.org>", "subject": "Returned mail: User unknown"},
    ),
    (
        "bounces",
        {
            "sender": "mailer-daemon@googlemail.com",
            "subject": "Delivery Status Notification (Failure)",
        },
    ),
    ("bounces", {"sender": "MAILER-DAEMON@mail.ru", "subject": "Недоставленное сообщение"}),
]


# Mail the guards must let through: the alerts many users want most carry these.
PASSED = [
    {"headers": [("Auto-Submitted", "auto-generated")]},
    {"headers": [("Auto-Submitted", "auto-generated (warning-timeout)")]},
    {"headers": [("Precedence", "bulk")]},
    {"headers": [("Precedence", "list")]},
    {"headers": [("Auto-Submitted", "no")]},
    {"subject": "Re: out of office tomorrow?"},  # a person, answering
    {"subject": "URGENT: the office is out of power"},
    {"subject": "On vacation next week, the backups are yours"},
    {"subject": "ООО Ромашка: рахунок"},  # Cyrillic OOO is a company prefix
    {"sender": "alerts@alphasms.example.com"},  # not the gateway's domain
    {"sender": "Grafana <grafana@example.com>", "subject": "[FIRING:1] mail delivery failed"},
    {"sender": "mailer-daemon@example.org", "subject": "Your weekly report"},
    {"sender": OWN_FROM, "to": "boss@example.com"},  # forwarder's address, not to the gateway
    {"message_id": "<x@other.example.invalid>"},
    {"message_id": "<fwd.example.invalid@example.com>"},
]
