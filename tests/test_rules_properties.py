"""Properties: not/all/any obey boolean algebra, explain agrees with decide, bad input never raises.

Condition trees and mails are generated; each tree is compiled through the
public config path (YAML text → compile_ruleset) as the only rule of a rule
set, so the properties hold for what users actually write.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forwarder.mail import Mail
from forwarder.rules.ruleset import RuleSet
from tests.support.rules import GUARDS_OFF, KYIV, MONDAY_NOON, load, make_mail

Tree = dict[str, Any]
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# -- generated condition trees ------------------------------------------------------------------
WORDS = ["urgent", "invoice", "hello", "disk", "терміново"]
LEAVES: list[Tree] = [
    *({"subject": {"contains": word}} for word in WORDS),
    {"subject": "*disk*"},
    {"subject": {"regex": "^(re|fwd):"}},
    {"from": "*@bank.com.ua"},
    {"from": ["Alice*", {"equals": "ops@example.com"}]},
    {"to": {"contains": "team"}},
    {"header": {"X-Priority": "1*"}},
    {"body": {"contains": "invoice"}},
    {"has_attachment": True},
    {"size": "> 2KB"},
    {"time": "22:00-07:00"},
    {"days": ["sat", "sun"]},
    {"folder": "Alerts/*"},
    {"auto_submitted": "auto-generated"},
]
TRUE: Tree = {"subject": "*"}  # matches every mail (the subject is '' when absent)
FALSE: Tree = {"not": TRUE}

leaves = st.sampled_from(LEAVES)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda parts: {"all": parts}),
        st.lists(children, min_size=1, max_size=3).map(lambda parts: {"any": parts}),
        children.map(lambda part: {"not": part}),
    ),
    max_leaves=6,
)


@st.composite
def mail_fields(draw: st.DrawFn) -> tuple[dict[str, Any], datetime]:
    """The fields of a mail, and the moment it is decided at."""
    subject = " ".join(draw(st.lists(st.sampled_from([*WORDS, "Re:", "status"]), max_size=3)))
    fields = {
        "sender": draw(
            st.sampled_from(["Bank <alerts@bank.com.ua>", "Alice <alice@x.org>", "ops@example.com"])
        ),
        "to": draw(st.sampled_from(["team@example.com", "Me <me@example.com>"])),
        "subject": subject,
        "body": draw(st.sampled_from(["Your invoice\n", "Hello\n"])),
        "headers": draw(
            st.sampled_from(
                [[], [("X-Priority", "1 (Highest)")], [("Auto-Submitted", "auto-generated")]]
            )
        ),
        "folder": draw(st.sampled_from(["INBOX", "Alerts/Prod"])),
        "size": draw(st.sampled_from([None, 100, 4096])),
        "attachment": draw(st.booleans()),
    }
    now = MONDAY_NOON + timedelta(hours=draw(st.integers(0, 24 * 7 - 1)))
    return fields, now


def mails() -> st.SearchStrategy[tuple[Mail, datetime]]:
    return mail_fields().map(lambda drawn: (make_mail(**drawn[0]), drawn[1]))


# -- evaluation through the public path ---------------------------------------------------------
@cache
def ruleset_for(match_json: str) -> RuleSet:
    ruleset, problems = load(
        f"timezone: Europe/Kyiv\n{GUARDS_OFF}\nrules: [{{name: r, match: {match_json}, "
        "action: forward}]\n"
    )
    assert not problems, problems
    return ruleset


def holds(tree: Tree, case: tuple[Mail, datetime]) -> bool:
    """Does ``tree`` match the mail? Checked on the fast path and the explain path alike."""
    mail, now = case
    ruleset = ruleset_for(json.dumps(tree, ensure_ascii=False))
    fast = ruleset.decide(mail, now).rule == "r"
    explained = ruleset.decide(mail, now, explain=True)
    assert (explained.rule == "r") is fast, explained.trace
    return fast


@PROPERTY_SETTINGS
@given(trees, mails())
def test_double_negation(a: Tree, case: tuple[Mail, datetime]) -> None:
    assert holds({"not": {"not": a}}, case) is holds(a, case)


@PROPERTY_SETTINGS
@given(trees, trees, mails())
def test_de_morgan(a: Tree, b: Tree, case: tuple[Mail, datetime]) -> None:
    assert holds({"not": {"all": [a, b]}}, case) is holds({"any": [{"not": a}, {"not": b}]}, case)
    assert holds({"not": {"any": [a, b]}}, case) is holds({"all": [{"not": a}, {"not": b}]}, case)


@PROPERTY_SETTINGS
@given(trees, mails())
def test_identity_and_annihilation(a: Tree, case: tuple[Mail, datetime]) -> None:
    assert holds({"all": [a, TRUE]}, case) is holds(a, case)
    assert holds({"any": [a, FALSE]}, case) is holds(a, case)
    assert holds({"any": [a, TRUE]}, case) is True
    assert holds({"all": [a, FALSE]}, case) is False


@PROPERTY_SETTINGS
@given(trees, mails())
def test_complement(a: Tree, case: tuple[Mail, datetime]) -> None:
    assert holds({"any": [a, {"not": a}]}, case) is True
    assert holds({"all": [a, {"not": a}]}, case) is False


@PROPERTY_SETTINGS
@given(trees, trees, mails())
def test_all_any_not_are_and_or_not(a: Tree, b: Tree, case: tuple[Mail, datetime]) -> None:
    assert holds({"all": [a, b]}, case) is (holds(a, case) and holds(b, case))
    assert holds({"any": [a, b]}, case) is (holds(a, case) or holds(b, case))
    assert holds({"not": a}, case) is (not holds(a, case))


@PROPERTY_SETTINGS
@given(trees, trees, mails())
def test_a_match_mapping_means_all_of_its_keys(
    a: Tree, b: Tree, case: tuple[Mail, datetime]
) -> None:
    merged = {"all": [a], "any": [b]}  # two keys in one mapping
    assert holds(merged, case) is (holds(a, case) and holds(b, case))


# -- the address prefilter is only an optimisation -------------------------------------------
names = st.sampled_from(
    [
        "",
        "Bank",
        '"Smith, John"',
        '"John" Smith',
        "=?utf-8?b?0J/RgNC40LLQsNGC?=",
        "J.R. Doe",
        '"a\\"b"',
    ]
)
addresses = st.sampled_from(
    [
        "alerts@bank.com.ua",
        "a . b@bank.com.ua",
        "john @ x.org",
        '"odd one"@x.org',
        "c@d",
        "alerts(note)@bank.com.ua",
    ]
)
extras = st.sampled_from(["", " (comment)", "\r\n "])


@st.composite
def address_headers(draw: st.DrawFn) -> str:
    items = []
    for _ in range(draw(st.integers(1, 3))):
        name, address, extra = draw(names), draw(addresses), draw(extras)
        items.append(f"{name} <{address}>{extra}" if name else f"{address}{extra}")
    return ", ".join(items)


address_patterns = st.sampled_from(
    [
        "*@bank.com.ua",
        "a.b@*",
        "john@x.org",
        "smith, john",
        "john smith",
        "*приват*",
        '"odd one"@x.org',
        "j.r. doe",
        "*comment*",
        "c@d",
        'a"b',
        "alerts@bank.com.ua",
    ]
)


@PROPERTY_SETTINGS
@given(address_headers(), address_patterns)
def test_the_address_prefilter_agrees_with_parsing(header: str, pattern: str) -> None:
    mail = Mail(raw=f"From: {header}\r\nSubject: x\r\n\r\nbody\r\n".encode())
    holds({"from": pattern}, (mail, MONDAY_NOON))  # asserts fast path == explain path


# -- bad input never raises ---------------------------------------------------------------------
KEYS = [
    "name",
    "match",
    "action",
    "from",
    "subject",
    "all",
    "any",
    "not",
    "header",
    "size",
    "time",
    "days",
    "quiet",
    "then",
    "regex",
    "contains",
    "delay",
    "x",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["forward", "skip", "*", "(", "> 1MB", "22:00-07:00", "mon", ""]),
)
junk = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.sampled_from(KEYS), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(junk, junk)
def test_any_config_compiles_without_raising(rules: Any, tests: Any) -> None:
    text = json.dumps({"rules": rules, "tests": tests, "default": "skip"})
    ruleset, _ = load(text)
    mail = make_mail()
    decision = ruleset.decide(mail, MONDAY_NOON.astimezone(KYIV), explain=True)
    assert decision.action in ("forward", "skip")
