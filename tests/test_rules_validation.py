"""Rule validation: every mistake is reported at its line, with a hint, all of them at once."""

from __future__ import annotations

import pytest

from tests.support.rules import load

# (id, config text, expected line, fragment of the message). Line 1 is the blank line after """.
CASES = [
    (
        "unknown rule key, did you mean",
        """
        rules:
          - name: a
            action: forward
            tempalte: "{subject}"
        """,
        5,
        "unknown key 'rules[0].tempalte' (did you mean 'template'?)",
    ),
    (
        "unknown condition, did you mean",
        """
        rules:
          - name: a
            match:
              subjet: {contains: x}
            action: forward
        """,
        5,
        "rules[0].match: unknown condition 'subjet' (did you mean 'subject'?)",
    ),
    (
        "a pattern where a condition belongs",
        """
        rules:
          - name: a
            match: {contains: x}
            action: forward
        """,
        4,
        "contains: is a pattern; put it under a field, e.g. subject: {contains: ...}",
    ),
    (
        "bad regex says the regex error",
        """
        rules:
          - name: a
            match:
              subject:
                regex: '(unclosed'
            action: forward
        """,
        6,
        "rules[0].match.subject: bad regex '(unclosed': missing ), unterminated subpattern "
        "at position 0",
    ),
    (
        "bad regex in a list of patterns",
        """
        rules:
          - name: a
            match:
              from:
                - '*@bank.com.ua'
                - regex: 'a{2'
                - regex: '*oops'
            action: forward
        """,
        8,
        "rules[0].match.from[2]: bad regex '*oops': nothing to repeat at position 0",
    ),
    (
        "time window hour out of range",
        """
        rules:
          - name: a
            match: {time: '25:00-07:00'}
            action: forward
        """,
        4,
        "rules[0].match.time: bad time window '25:00-07:00': 25:00 is not a time of day "
        "(write HH:MM-HH:MM",
    ),
    (
        "time window without a colon",
        """
        rules:
          - name: a
            match:
              time: ['08:00-12:00', '2pm-5pm']
            action: forward
        """,
        5,
        "rules[0].match.time[1]: bad time window '2pm-5pm' (write HH:MM-HH:MM, e.g. '08:00-22:00'",
    ),
    (
        "empty time window",
        """
        rules:
          - name: a
            match: {time: '08:00-08:00'}
            action: forward
        """,
        4,
        "time window '08:00-08:00' starts where it ends",
    ),
    (
        "bad day name, did you mean",
        """
        rules:
          - name: a
            match:
              days:
                - mon
                - tues
            action: forward
        """,
        7,
        "rules[0].match.days[1]: bad day 'tues': did you mean 'tue'?",
    ),
    (
        "bad day in a range",
        """
        rules:
          - name: a
            match: {days: mon-fryday}
            action: forward
        """,
        4,
        "bad day 'mon-fryday': did you mean 'fri'?",
    ),
    (
        "bad timezone, did you mean",
        """
        timezone: Europe/Kiyv
        default: forward
        """,
        2,
        "timezone: unknown time zone 'Europe/Kiyv' (did you mean 'Europe/Kyiv'?)",
    ),
    (
        "size without an operator",
        """
        rules:
          - name: a
            match: {size: '1MB'}
            action: forward
        """,
        4,
        "rules[0].match.size: '1MB' is not a size comparison (write an operator and a size",
    ),
    (
        "size that is not a size",
        """
        rules:
          - name: a
            match: {size: '> lots'}
            action: forward
        """,
        4,
        "'> lots' is not a size comparison",
    ),
    (
        "duplicate rule name names both lines",
        """
        rules:
          - name: a
            action: forward
            match: {subject: x}
          - name: a
            action: skip
        """,
        6,
        "rules[1].name: rule name 'a' is used twice, at line 3 and line 6",
    ),
    (
        "missing name",
        """
        rules:
          - match: {subject: x}
            action: forward
        """,
        3,
        "rules[0].name is required (a short name shown in logs and tests)",
    ),
    (
        "missing action",
        """
        rules:
          - name: a
            match: {subject: x}
        """,
        3,
        "rules[0].action is required (forward or skip)",
    ),
    (
        "bad action",
        """
        rules:
          - name: a
            action: froward
        """,
        4,
        "rules[0].action must be one of forward, skip, not 'froward'",
    ),
    (
        "unreachable after a rule without match",
        """
        rules:
          - name: everything
            action: forward
          - name: late
            match: {subject: x}
            action: skip
        """,
        5,
        "rules[1] 'late' can never be reached: rule 'everything' (line 3) has no match:",
    ),
    (
        "unreachable after a match that is always true",
        """
        rules:
          - name: everything
            match:
              any: [{subject: '*'}, {from: x}]
            action: forward
          - name: late
            action: skip
        """,
        7,
        "rules[1] 'late' can never be reached: rule 'everything' (line 3) has a match: "
        "that is always true",
    ),
    (
        "unknown template field",
        """
        rules:
          - name: a
            action: forward
            template: "{from}: {subject}"
        """,
        5,
        "rules[0].template: unknown field {from} in the template; known fields:",
    ),
    (
        "unknown guard, did you mean",
        """
        guards: {bounce: false}
        default: forward
        """,
        2,
        "unknown key 'guards.bounce' (did you mean 'bounces'?)",
    ),
    (
        "guard that is not true/false",
        """
        guards:
          own_mail: "no"
        default: forward
        """,
        3,
        "guards.own_mail must be true or false, not 'no'",
    ),
    (
        "max_length over the gateway limit",
        """
        rules:
          - {name: a, action: forward, max_length: 501}
        """,
        3,
        "rules[0].max_length must be at most 500, not 501",
    ),
    (
        "max_length of the wrong type",
        """
        rules:
          - {name: a, action: forward, max_length: ten}
        """,
        3,
        "rules[0].max_length must be a whole number, not 'ten'",
    ),
    (
        "encoding",
        """
        rules:
          - {name: a, action: forward, encoding: utf8}
        """,
        3,
        "rules[0].encoding must be one of auto, gsm7, ucs2, not 'utf8'",
    ),
    (
        "transliterate",
        """
        rules:
          - {name: a, action: forward, transliterate: de}
        """,
        3,
        "rules[0].transliterate must be one of uk, ru, off, not 'de'",
    ),
    (
        "delay",
        """
        rules:
          - {name: a, action: forward, delay: soon}
        """,
        3,
        "rules[0].delay must be a duration like 30, '90s', '3m', '6h'",
    ),
    (
        "unless_read without a delay",
        """
        rules:
          - name: a
            action: forward
            unless_read: true
        """,
        5,
        "rules[0].unless_read needs a delay: to wait for the mail to be read",
    ),
    (
        "has_attachment of the wrong type",
        """
        rules:
          - name: a
            action: forward
            match: {has_attachment: "yes"}
        """,
        5,
        "rules[0].match.has_attachment must be true or false, not 'yes'",
    ),
    (
        "match that is a list",
        """
        rules:
          - name: a
            match:
              - subject: x
            action: forward
        """,
        4,
        "rules[0].match must be a mapping of conditions like {subject: {contains: urgent}}, "
        "not a list; for alternatives use any: [...]",
    ),
    (
        "empty match",
        """
        rules:
          - name: a
            match: {}
            action: forward
        """,
        4,
        "not an empty one (leave match: out to catch every mail)",
    ),
    (
        "empty any",
        """
        rules:
          - name: a
            match: {any: []}
            action: forward
        """,
        4,
        "rules[0].match.any must be a non-empty list of condition mappings",
    ),
    (
        "not with a list",
        """
        rules:
          - name: a
            match:
              not: [{subject: x}]
            action: forward
        """,
        5,
        "rules[0].match.not takes one condition mapping, not a list",
    ),
    (
        "nested mistake keeps its path and line",
        """
        rules:
          - name: a
            match:
              all:
                - subject: x
                - any:
                    - from: y
                    - fromm: z
            action: forward
        """,
        9,
        "rules[0].match.all[1].any[1]: unknown condition 'fromm' (did you mean 'from'?)",
    ),
    (
        "pattern mapping with two kinds",
        """
        rules:
          - name: a
            match:
              to: {contains: a, regex: b}
            action: forward
        """,
        5,
        "rules[0].match.to: a pattern mapping takes exactly one of contains, equals, regex, glob, "
        "not contains, regex",
    ),
    (
        "pattern of the wrong type",
        """
        rules:
          - name: a
            match: {subject: [x, [y]]}
            action: forward
        """,
        4,
        "rules[0].match.subject[1] must be a pattern: a glob string like '*@bank.com.ua'",
    ),
    (
        "empty list of patterns",
        """
        rules:
          - name: a
            match: {from: []}
            action: forward
        """,
        4,
        "rules[0].match.from is an empty list of patterns; it could never match",
    ),
    (
        "bad header name",
        """
        rules:
          - name: a
            match:
              header:
                Bad Name: x
            action: forward
        """,
        6,
        "rules[0].match.header: 'Bad Name' is not a header name",
    ),
    (
        "header that is not a mapping",
        """
        rules:
          - name: a
            match: {header: X-Priority}
            action: forward
        """,
        4,
        "rules[0].match.header must be a mapping of header names to patterns",
    ),
    (
        "quiet without time",
        """
        rules:
          - name: a
            action: forward
            quiet: {then: hold}
        """,
        5,
        "rules[0].quiet.time is required (a time window like '22:00-07:00')",
    ),
    (
        "quiet then",
        """
        rules:
          - name: a
            action: forward
            quiet: {time: '22:00-07:00', then: later}
        """,
        5,
        "rules[0].quiet.then must be one of hold, drop, not 'later'",
    ),
    (
        "quiet bad window",
        """
        rules:
          - name: a
            action: forward
            quiet:
              time: '22:00-7'
        """,
        6,
        "rules[0].quiet.time: bad time window '22:00-7'",
    ),
    (
        "quiet bad day",
        """
        rules:
          - name: a
            action: forward
            quiet:
              time: '22:00-07:00'
              days: [fri, sonday]
        """,
        7,
        "rules[0].quiet.days[1]: bad day 'sonday': did you mean 'sun'?",
    ),
    (
        "quiet unknown key",
        """
        rules:
          - name: a
            action: forward
            quiet: {time: '22:00-07:00', dayz: [mon]}
        """,
        5,
        "unknown key 'rules[0].quiet.dayz' (did you mean 'days'?)",
    ),
    (
        "reserved rule name",
        """
        rules:
          - {name: default, action: forward}
        """,
        3,
        "rules[0].name: 'default' is reserved",
    ),
    (
        "guard prefix is reserved",
        """
        rules:
          - {name: "guard:mine", action: forward}
        """,
        3,
        "'guard:mine' is reserved",
    ),
    (
        "bad default",
        """
        default: maybe
        """,
        2,
        "default must be one of forward, skip, not 'maybe'",
    ),
    (
        "rules that are not a list",
        """
        rules: {name: a}
        """,
        2,
        "rules must be a list of rules (each item starting with '- name:'), not a mapping",
    ),
    (
        "rule sender that would smuggle a field into the gateway Subject",
        """
        rules:
          - name: a
            action: forward
            sender: "Alpha;my-api-key"
        """,
        5,
        "rules[0].sender: 'Alpha;my-api-key' is not a valid alpha-name",
    ),
    (
        "rule that is not a mapping",
        """
        rules:
          - urgent
        """,
        3,
        "rules[0] must be a mapping, not 'urgent'",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "fragment"), [pytest.param(t, n, f, id=i) for i, t, n, f in CASES]
)
def test_each_mistake_is_reported_at_its_line(text: str, line: int, fragment: str) -> None:
    _, problems = load(text)
    found = [str(p) for p in problems if fragment in p.message]
    assert found, "no problem says " + repr(fragment) + "; got:\n" + "\n".join(map(str, problems))
    assert found[0].startswith(f"rules.yaml:{line}: "), found
    assert len(problems) == 1, problems  # one mistake, one message: no echoes


def test_all_problems_are_reported_at_once() -> None:
    _, problems = load(
        """
        timezone: Mars/Olympus
        rules:
          - name: a
            match:
              subject: {regex: '('}
              days: [funday]
            action: forward
            max_length: 0
          - name: a
            action: skip
        """
    )
    assert [p.line for p in sorted(problems)] == [2, 6, 7, 9, 10]


def test_a_broken_condition_does_not_make_a_catch_all() -> None:
    """A match with only a broken condition must not also be reported as always true."""
    _, problems = load(
        """
        rules:
          - name: a
            match: {subjet: x}
            action: forward
          - {name: b, action: forward}
        """
    )
    assert len(problems) == 1, problems


def test_a_valid_config_has_no_problems() -> None:
    _, problems = load(
        """
        timezone: Europe/Kyiv
        guards: {bounces: false}
        rules:
          - name: bank
            match:
              from: ['*@bank.com.ua', {regex: '^alerts@'}]
              not: {subject: {contains: advert}}
            action: forward
            quiet: {time: '22:00-07:00', days: [mon-fri], then: hold}
          - {name: rest, action: skip}
        default: skip
        """
    )
    assert problems == []


def test_a_bad_config_never_raises_and_still_decides() -> None:
    ruleset, problems = load(
        """
        rules:
          - name: a
            match: {subject: {regex: '('}}
            action: forward
          - match: {subject: x}
        """
    )
    assert problems
    assert ruleset.names == ("a", "rules[1]")
