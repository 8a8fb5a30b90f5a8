"""Rule-set helpers the rule tests share: compile a config text, build a mail, fixed times."""

from __future__ import annotations

import textwrap
from datetime import datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from forwarder.configfile.schema import Problems, Section
from forwarder.configfile.yamlsource import Problem, load_text
from forwarder.mail import Mail
from forwarder.rules.guards import GuardContext
from forwarder.rules.ruleset import RuleSet, compile_ruleset
from forwarder.rules.ruletests import load_rule_tests

KYIV = ZoneInfo("Europe/Kyiv")
MONDAY_NOON = datetime(2026, 1, 5, 12, 0, tzinfo=KYIV)  # 2026-01-05 is a Monday
GUARDS_OFF = (
    "guards: {gateway_replies: false, own_mail: false, auto_replies: false, bounces: false}"
)


def load(
    text: str, *, context: GuardContext | None = None, file: str = "rules.yaml"
) -> tuple[RuleSet, list[Problem]]:
    """Compile a config text the way config.load does; returns the rule set and its problems."""
    document, loaded = load_text(textwrap.dedent(text), file)
    problems = Problems()
    problems.extend(loaded)
    top = Section(document, "", problems, file=file, line=1)
    ruleset = compile_ruleset(top, context or GuardContext())
    ruleset = ruleset.with_tests(load_rule_tests(top, ruleset.names, ruleset.timezone))
    top.finish()
    return ruleset, problems.items


def compiled(text: str, *, context: GuardContext | None = None) -> RuleSet:
    ruleset, problems = load(text, context=context)
    assert not problems, "\n".join(map(str, problems))
    return ruleset


def make_mail(
    *,
    sender: str | None = "Alice <alice@example.com>",
    to: str | None = "Me <me@example.com>",
    cc: str | None = None,
    reply_to: str | None = None,
    subject: str | None = "Hello",
    message_id: str = "<test-1@example.com>",
    body: str = "Hello there.\n",
    headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    folder: str = "INBOX",
    size: int | None = None,
    attachment: bool = False,
) -> Mail:
    message = EmailMessage()
    for name, value in (("From", sender), ("To", to), ("Cc", cc), ("Reply-To", reply_to)):
        if value is not None:
            message[name] = value
    if subject is not None:
        message["Subject"] = subject
    message["Message-ID"] = message_id
    for name, value in headers:
        message[name] = value
    message.set_content(body)
    if attachment:
        message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
        message.set_boundary("test-boundary")  # not random: Hypothesis builds mails too
    return Mail(raw=message.as_bytes(), folder=folder, size=size)
