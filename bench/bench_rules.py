"""Benchmark: how many mails per second RuleSet.decide handles with 20 header-only rules.

Run by hand:  .venv/bin/python bench/bench_rules.py [--mails 10000] [--rounds 5]

The mails are generated, parsed and wrapped in fresh ``Mail`` objects before
the clock starts, so only ``decide`` is timed: guards, header decoding (once
per mail, as in the daemon), and the rules. Most mails fall through every rule
to the default, the slow path. Target: more than 20 000 mails/s.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage

from forwarder.configfile.schema import Problems, Section
from forwarder.configfile.yamlsource import ConfigError, load_text
from forwarder.mail import Mail
from forwarder.rules.ruleset import GuardContext, RuleSet, compile_ruleset

TARGET_PER_SECOND = 20_000
SEED = 4  # the same mails every run, so figures compare

RULES = """
timezone: Europe/Kyiv
rules:
  - {name: bank, match: {from: "*@bank.com.ua"}, action: forward}
  - {name: privat, match: {from: ["*@privatbank.ua", "*@mono.ua"]}, action: forward}
  - {name: boss, match: {from: {equals: "boss@example.com"}}, action: forward}
  - name: urgent
    match: {subject: [{contains: urgent}, {contains: терміново}, {contains: срочно}]}
    action: forward
  - name: alerts
    match: {all: [{from: "*@monitoring.example.com"}, {subject: {regex: '^\\[(FIRING|CRIT)'}}]}
    action: forward
  - {name: priority, match: {header: {X-Priority: ["1", "1 (Highest)"]}}, action: forward}
  - {name: importance, match: {header: {Importance: high}}, action: forward}
  - {name: newsletters, match: {header: {List-Id: "*"}}, action: skip}
  - {name: noreply, match: {from: "noreply@*"}, action: skip}
  - name: invoices
    match: {subject: {regex: 'invoice\\s+#?\\d{4,}'}, not: {from: "*@spam.example"}}
    action: forward
  - {name: to-ops, match: {to: "ops@example.com"}, action: forward}
  - {name: cc-me, match: {cc: "me@example.com", subject: {contains: review}}, action: forward}
  - name: github
    match: {from: "notifications@github.com", subject: {contains: "[ci]"}}
    action: skip
  - name: jira
    match: {any: [{subject: "[JIRA]*blocker*"}, {header: {X-JIRA-Priority: Blocker}}]}
    action: forward
  - {name: security, match: {subject: {contains: "security alert"}}, action: forward}
  - {name: backups, match: {subject: {regex: 'backup (failed|error)'}}, action: forward}
  - {name: reply-to, match: {reply_to: "*@support.example.com"}, action: skip}
  - {name: family, match: {from: ["mom@*", "dad@*"]}, action: forward}
  - {name: mailer, match: {header: {X-Mailer: {contains: "zabbix"}}}, action: forward}
  - name: auto
    match: {auto_submitted: auto-generated, subject: {contains: down}}
    action: forward
default: skip
"""

SENDERS = [
    "Alice <alice@example.com>",
    "Bob Builder <bob@builder.example.org>",
    "=?utf-8?b?0J/RgNC40LLQsNGC?= <news@shop.example.net>",
    "Bank <alerts@bank.com.ua>",
    "GitHub <notifications@github.com>",
    "Grafana <alerts@monitoring.example.com>",
    "noreply@service.example",
    "Оля <olia@ukr.net>",
]
SUBJECTS = [
    "Meeting notes",
    "Re: lunch?",
    "Your weekly digest",
    "=?utf-8?q?=D0=9D=D0=B0=D0=B3=D0=B0=D0=B4=D1=83=D0=B2=D0=B0=D0=BD=D0=BD=D1=8F?=",
    "[FIRING:1] DiskFull on db1",
    "Invoice 123456 for March",
    "Card payment 250 UAH",
    "[ci] build passed",
]


def make_mails(count: int, rng: random.Random) -> list[bytes]:
    raws = []
    for index in range(count):
        message = EmailMessage()
        message["From"] = rng.choice(SENDERS)
        message["To"] = "Me <me@example.com>, team@example.com"
        if rng.random() < 0.3:
            message["Cc"] = "boss@example.com"
        message["Subject"] = rng.choice(SUBJECTS)
        message["Message-ID"] = f"<bench-{index}@example.com>"
        message["Date"] = "Mon, 05 Jan 2026 12:00:00 +0200"
        if rng.random() < 0.2:
            message["X-Priority"] = rng.choice(["1", "3 (Normal)", "5"])
        if rng.random() < 0.1:
            message["Auto-Submitted"] = "auto-generated"
        for hop in range(rng.randint(2, 6)):  # real mail carries a pile of Received: lines
            message["Received"] = f"from relay{hop}.example.net by mx.example.com; {index}"
        message.set_content("Hello,\n\nthis is the body of a benchmark mail.\n")
        raws.append(message.as_bytes())
    return raws


def compile_rules() -> RuleSet:
    document, loaded = load_text(RULES, "bench_rules.yaml")
    problems = Problems()
    problems.extend(loaded)
    top = Section(document, "", problems, file="bench_rules.yaml", line=1)
    ruleset = compile_ruleset(top, GuardContext())
    top.finish()
    if problems:
        raise ConfigError(problems.items)
    return ruleset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    ruleset = compile_rules()
    raws = make_mails(args.mails, random.Random(SEED))
    now = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    rates = []
    outcomes: Counter[str] = Counter()
    for _ in range(args.rounds):
        mails = [Mail(raw=raw) for raw in raws]  # fresh: no decoded header is cached yet
        for mail in mails:
            _ = mail.message  # parse before timing; decide is what is measured
        start = time.perf_counter()
        decisions = [ruleset.decide(mail, now) for mail in mails]
        elapsed = time.perf_counter() - start
        rates.append(len(mails) / elapsed)
        outcomes = Counter(d.rule or "(default)" for d in decisions)
    print(f"{len(ruleset.names)} rules, {args.mails} mails, {args.rounds} rounds")
    print(f"decide: median {statistics.median(rates):,.0f} mails/s, best {max(rates):,.0f}")
    per_mail = 1e6 / statistics.median(rates)
    print(f"        {per_mail:.1f} µs per mail (target > {TARGET_PER_SECOND:,}/s)")
    print("decided by:", ", ".join(f"{name} {n}" for name, n in outcomes.most_common()))


if __name__ == "__main__":
    main()
