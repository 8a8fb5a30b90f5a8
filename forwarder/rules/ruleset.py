"""Rules: which mail becomes an SMS, compiled once from the config and decided fast.

The config language (see ``rules.example.yaml``)::

    rules:
      - name: urgent
        match: {subject: {contains: urgent}}   # a mapping: all of its keys must match
        action: forward
    default: skip

``compile_ruleset`` turns the ``rules``, ``default``, ``guards`` and
``timezone`` keys into a ``RuleSet``: every pattern, window and day list is
compiled there, every problem is reported with its line, and nothing is left
to parse when mail arrives. ``RuleSet.decide`` then runs the built-in guards
(``forwarder.rules.guards``), tries the rules in order, and lets the first that
matches decide; ``default`` decides the rest.

Each mail value a condition reads (decoded headers, addresses, the body) is
read and casefolded at most once per decision (``_Facts``), however many rules
and guards look at it: decoding headers costs far more than comparing strings.
Address headers, the dearest to parse, are parsed only when their text could
hold a match at all (``_Facts.may_contain``). ``bench/bench_rules.py`` measures
the result.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from forwarder.configfile.schema import (
    Problems,
    Section,
    type_name,  # the same wording as every other config message
)
from forwarder.configfile.yamlsource import scalar_text
from forwarder.gateway import account as gateway
from forwarder.mail import Likely, Mail, Reads
from forwarder.rules.guards import GUARD_NAMES, GuardContext, Guards, auto_submitted_keyword
from forwarder.rules.patterns import (
    DAY_NAMES,
    PATTERN_KINDS,
    Glob,
    PatternError,
    SizeComparison,
    TextPattern,
    TimeWindow,
    describe_days,
    parse_days,
    squash,
    wall_clock_to_aware,
)
from forwarder.text.smstext import ENCODINGS, SMS_MAX_CHARS, validate_template

__all__ = [
    "Decision",
    "GuardContext",
    "RuleOptions",
    "RuleSet",
    "compile_ruleset",
]

if TYPE_CHECKING:  # ruletests imports this module; the rule compiler never reads tests:
    from forwarder.rules.ruletests import RuleTest

logger = logging.getLogger(__name__)

FORWARD = "forward"
SKIP = "skip"
ACTIONS = (FORWARD, SKIP)
HOLD = "hold"
DROP = "drop"
QUIET_THEN = (HOLD, DROP)
GUARD_RULE_PREFIX = "guard:"  # Decision.rule of a mail a built-in guard stopped
# Words with a meaning of their own in a rule test's ``expect:``; as rule names they'd be ambiguous.
RESERVED_RULE_NAMES = (FORWARD, SKIP, "default")
MAX_SEGMENTS = 10  # the same bound the global sms.max_segments has
TRANSLITERATIONS = ("uk", "ru", "off")
_SHOWN_VALUES = 3  # how many mail values a trace line quotes
_SHOWN_CHARS = 60  # and how much of each
# A backslash (a quoted-pair), a parenthesis (a comment, which the parser may move into the
# display name or repeat) or a control character (dropped from decoded names) lets parsed
# addresses hold text the header does not: no address prefilter then (see _Facts.may_contain).
_PREFILTER_UNSAFE = re.compile(r"[\\(\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_ENCODED_WORD_START = "=?"  # RFC 2047 §2
_UNREAD = "\0unread"  # a cache entry not filled yet (None is a value there)


# -- the values the rest of forwarder uses --------------------------------------------------
@dataclass(frozen=True)
class RuleOptions:
    """Per-rule overrides for the transformer and delivery; None means "use the global setting"."""

    template: str | None = None
    max_length: int | None = None
    sender: str | None = None  # alpha-name override
    encoding: str | None = None
    transliterate: str | None = None
    max_segments: int | None = None
    delay: float | None = None  # seconds; with unless_read the SMS waits and may be cancelled
    unless_read: bool = False  # cancel the delayed SMS if the mail gets \Seen meanwhile


NO_OPTIONS = RuleOptions()


@dataclass(frozen=True)
class Decision:
    """What to do with one mail and why, in a line a person can read in the log."""

    action: str  # FORWARD or SKIP
    rule: str | None  # the rule's name; "guard:<name>" for a built-in guard; None for default
    reason: str
    options: RuleOptions = NO_OPTIONS
    hold_until: datetime | None = None  # quiet hours with then: hold
    trace: tuple[str, ...] = ()  # with explain=True: every guard and rule tried, and how
    gateway_reply: bool = False  # the gateway guard saw a reply from the gateway


# -- mail fields ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Field:
    """A part of a mail that text patterns look at: zero or more texts."""

    key: str  # cache key; unique per field
    label: str  # how traces name it: "from", "header X-Priority"
    read: Callable[[_Facts], tuple[str, ...]] = field(compare=False)
    always_present: bool = False  # exactly one text in every mail (possibly '')
    address_header: str | None = None  # set for address fields: parsing them is costly
    header_fields: tuple[str, ...] = ()  # the header fields ``read`` looks at (see Reads)
    search_header: str | None = None  # the header whose text holds every text (see Likely)
    folded_key: str = field(init=False, compare=False)  # cache key of the casefolded texts

    def __post_init__(self) -> None:
        object.__setattr__(self, "folded_key", self.key + "\0casefolded")


def _address_field(key: str, header: str) -> _Field:
    """Addresses match on the address and on the display name, so both are texts."""

    def read(facts: _Facts) -> tuple[str, ...]:
        texts: list[str] = []
        for display_name, address in facts.addresses(header):
            if address:
                texts.append(address)
            if display_name:
                texts.append(display_name)
        return tuple(texts)

    return _Field(
        key, key, read, address_header=header, header_fields=(header,), search_header=header
    )


def _header_field(name: str) -> _Field:
    """Any occurrence of a header that appears several times may match."""
    return _Field(
        f"header:{name.lower()}",
        f"header {name}",
        lambda facts: facts.headers(name),
        header_fields=(name,),
        search_header=name,
    )


_TEXT_FIELDS: dict[str, _Field] = {
    "from": _address_field("from", "From"),
    "to": _address_field("to", "To"),
    "cc": _address_field("cc", "Cc"),
    "reply_to": _address_field("reply_to", "Reply-To"),
    "subject": _Field(
        "subject",
        "subject",
        lambda f: (f.mail.subject,),
        always_present=True,
        header_fields=("Subject",),
        search_header="Subject",
    ),
    "body": _Field("body", "body", lambda f: (f.mail.body,), always_present=True),
    "folder": _Field("folder", "folder", lambda f: (f.mail.folder,), always_present=True),
    "account": _Field("account", "account", lambda f: (f.mail.account,), always_present=True),
    "auto_submitted": _Field(
        "auto_submitted",
        "auto_submitted",
        lambda f: tuple(auto_submitted_keyword(v) for v in f.headers("Auto-Submitted")),
        header_fields=("Auto-Submitted",),
    ),
}


class _Facts:
    """One mail as the conditions of one decision see it; each value is read at most once."""

    __slots__ = (
        "_addresses",
        "_headers",
        "_local",
        "_present",
        "_squashed",
        "_values",
        "_zone",
        "mail",
        "now",
    )

    def __init__(self, mail: Mail, now: datetime, zone: tzinfo | None) -> None:
        self.mail = mail
        self.now = now
        self._zone = zone
        self._values: dict[str, tuple[str, ...]] = {}  # by _Field.key and _Field.folded_key
        self._headers: dict[str, tuple[str, ...]] = {}  # by lowercased name
        self._addresses: dict[str, list[tuple[str, str]]] = {}
        self._squashed: dict[str, str | None] = {}
        self._present: frozenset[str] | None = None  # lowercased names of the headers there
        self._local: datetime | None = None

    def headers(self, name: str) -> tuple[str, ...]:
        """``Mail.headers``, decoded once per name.

        Most headers rules ask about are absent from most mails; one pass over the
        header names answers that for all of them, where each lookup in the
        ``Message`` would scan every header again.
        """
        key = name.lower()
        found = self._headers.get(key)
        if found is None:
            found = tuple(self.mail.headers(name)) if self._has(key) else ()
            self._headers[key] = found
        return found

    def _has(self, lowercase_name: str) -> bool:
        if self._present is None:
            self._present = self.mail.head.names
        return lowercase_name in self._present

    def may_contain(self, header: str, needles: tuple[str, ...]) -> bool:
        """False only when no address or display name in ``header`` can hold all the needles.

        Parsing an address header costs several times more than decoding it, and
        most address conditions fail; so the squashed header text (decoded and
        raw, see ``patterns.squash``) is searched for the pattern's literal
        pieces first, and the header is parsed only when a match is possible.
        A "maybe" is always safe: the parsed addresses then give the answer.
        """
        if not needles:
            return True
        text = self._squashed.get(header, _UNREAD)
        if text is _UNREAD:
            text = self._squashed[header] = self._squash_header(header)
        if text is None:
            return True
        for needle in needles:  # noqa: SIM110 - on the hot path a loop is 2x faster than all()
            if needle not in text:
                return False
        return True

    def _squash_header(self, header: str) -> str | None:
        """The squashed text of all occurrences of ``header``; None when a prefilter is unsafe."""
        if not self._has(header.lower()):
            return ""
        raw = "".join(self.mail.head.get_all(header))
        if _PREFILTER_UNSAFE.search(raw):
            return None
        # Display names are decoded from RFC 2047 words; without any, the raw text holds them
        # as they are, and decoding (several µs a header) can be skipped.
        decoded = "".join(self.headers(header)) if _ENCODED_WORD_START in raw else ""
        return squash(decoded + raw)

    def addresses(self, header: str) -> list[tuple[str, str]]:
        """``Mail.addresses``, once per header: the guards and the rules share it."""
        found = self._addresses.get(header)
        if found is None:
            found = self._addresses[header] = self.mail.addresses(header)
        return found

    def texts(self, source: _Field) -> tuple[str, ...]:
        return self.values(source, False)

    def values(self, source: _Field, folded: bool) -> tuple[str, ...]:
        """The texts of a field, casefolded for the patterns that compare casefolded text."""
        found = self._values.get(source.folded_key if folded else source.key)
        if found is None:
            texts = self._values.get(source.key)
            if texts is None:
                texts = self._values[source.key] = source.read(self)
            found = texts
            if folded:
                found = self._values[source.folded_key] = tuple(t.casefold() for t in texts)
        return found

    @property
    def local(self) -> datetime:
        """``now`` on the wall clock of the rules' time zone (the system's when None)."""
        if self._local is None:
            self._local = self.now.astimezone(self._zone)
        return self._local


def _show(texts: tuple[str, ...]) -> str:
    if not texts:
        return "nothing (no such header)"
    shown = [
        repr(t if len(t) <= _SHOWN_CHARS else t[: _SHOWN_CHARS - 1] + "…")
        for t in texts[:_SHOWN_VALUES]
    ]
    more = f" and {len(texts) - _SHOWN_VALUES} more" if len(texts) > _SHOWN_VALUES else ""
    return ", ".join(shown) + more


# -- conditions -----------------------------------------------------------------------------
class Condition:
    """A compiled test on a mail.

    ``test`` is the fast path ``decide`` uses; ``explain`` gives the same answer
    with a line saying why (for reasons and ``--explain``). ``always`` is
    True/False when no mail can change the answer, which is how a catch-all
    hidden in a match is found.
    """

    __slots__ = ()

    @property
    def always(self) -> bool | None:
        return None

    def test(self, facts: _Facts) -> bool:
        raise NotImplementedError

    def explain(self, facts: _Facts) -> tuple[bool, str]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class TextMatch(Condition):
    """A field matches any of the patterns (a list of patterns means any of them)."""

    source: _Field
    patterns: tuple[TextPattern, ...]
    # Per pattern: the pattern, and for address fields the squashed literal pieces the header
    # must hold for the pattern to have a chance (see _Facts.may_contain); None otherwise.
    _plan: tuple[tuple[TextPattern, tuple[str, ...] | None], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        plan = tuple(
            (
                pattern,
                tuple(squash(piece) for piece in pattern.literals)
                if self.source.address_header is not None
                else None,
            )
            for pattern in self.patterns
        )
        object.__setattr__(self, "_plan", plan)

    @property
    def always(self) -> bool | None:
        if self.source.always_present and any(p.always for p in self.patterns):
            return True
        return None

    def test(self, facts: _Facts) -> bool:
        source = self.source
        for pattern, needles in self._plan:
            if needles is not None and not facts.may_contain(source.address_header, needles):
                continue
            for text in facts.values(source, pattern.folds):
                if pattern.matches(text):
                    return True
        return False

    def explain(self, facts: _Facts) -> tuple[bool, str]:
        for pattern in self.patterns:
            for text in facts.values(self.source, pattern.folds):
                if pattern.matches(text):
                    return True, f"{self.source.label} {pattern.phrase}"
        if len(self.patterns) == 1:
            spec = self.patterns[0].spec
        else:
            spec = "[" + ", ".join(p.spec for p in self.patterns) + "]"
        return False, f"{self.source.label} {spec} did not match {_show(facts.texts(self.source))}"


@dataclass(frozen=True, slots=True)
class SizeMatch(Condition):
    comparison: SizeComparison

    @property
    def always(self) -> bool | None:
        return self.comparison.always

    def test(self, facts: _Facts) -> bool:
        return self.comparison.matches(facts.mail.total_size)

    def explain(self, facts: _Facts) -> tuple[bool, str]:
        size = facts.mail.total_size
        if self.comparison.matches(size):
            return True, f"size {size} bytes {self.comparison.source}"
        return False, f"size {size} bytes is not {self.comparison.source}"


@dataclass(frozen=True, slots=True)
class AttachmentMatch(Condition):
    wanted: bool

    def test(self, facts: _Facts) -> bool:
        return facts.mail.has_attachment == self.wanted

    def explain(self, facts: _Facts) -> tuple[bool, str]:
        has = facts.mail.has_attachment
        what = "has an attachment" if has else "has no attachment"
        if has == self.wanted:
            return True, what
        return False, f"has_attachment: {str(self.wanted).lower()} did not match (the mail {what})"


@dataclass(frozen=True, slots=True)
class TimeMatch(Condition):
    """The local time of the decision falls in any of the windows."""

    windows: tuple[TimeWindow, ...]

    @property
    def always(self) -> bool | None:
        return True if any(w.whole_day for w in self.windows) else None

    def test(self, facts: _Facts) -> bool:
        local = facts.local
        minute = local.hour * 60 + local.minute
        return any(window.contains(minute) for window in self.windows)

    def explain(self, facts: _Facts) -> tuple[bool, str]:
        local = facts.local
        minute = local.hour * 60 + local.minute
        for window in self.windows:
            if window.contains(minute):
                return True, f"time {local:%H:%M} is in {window.source}"
        return False, f"time {local:%H:%M} is outside {', '.join(w.source for w in self.windows)}"


@dataclass(frozen=True, slots=True)
class DaysMatch(Condition):
    """The local weekday of the decision is one of the days (midnight to midnight)."""

    days: frozenset[int]

    @property
    def always(self) -> bool | None:
        return True if len(self.days) == len(DAY_NAMES) else None

    def test(self, facts: _Facts) -> bool:
        return facts.local.weekday() in self.days

    def explain(self, facts: _Facts) -> tuple[bool, str]:
        weekday = facts.local.weekday()
        day = DAY_NAMES[weekday]  # not strftime("%a"): that follows the locale
        if weekday in self.days:
            return True, f"day {day} is in {describe_days(self.days)}"
        return False, f"day {day} is not in {describe_days(self.days)}"


@dataclass(frozen=True, slots=True)
class AllOf(Condition):
    parts: tuple[Condition, ...]

    @property
    def always(self) -> bool | None:
        answers = [part.always for part in self.parts]
        if False in answers:
            return False
        return True if all(answers) else None

    def test(self, facts: _Facts) -> bool:
        for part in self.parts:  # noqa: SIM110 - on the hot path a loop is 2x faster than all()
            if not part.test(facts):
                return False
        return True

    def explain(self, facts: _Facts) -> tuple[bool, str]:
        reasons = []
        for part in self.parts:
            matched, why = part.explain(facts)
            if not matched:
                return False, why
            reasons.append(why)
        return True, " and ".join(reasons)


@dataclass(frozen=True, slots=True)
class AnyOf(Condition):
    parts: tuple[Condition, ...]

    @property
    def always(self) -> bool | None:
        answers = [part.always for part in self.parts]
        if True in answers:
            return True
        return False if all(answer is False for answer in answers) else None

    def test(self, facts: _Facts) -> bool:
        for part in self.parts:  # noqa: SIM110 - on the hot path a loop is 2x faster than any()
            if part.test(facts):
                return True
        return False

    def explain(self, facts: _Facts) -> tuple[bool, str]:
        reasons = []
        for part in self.parts:
            matched, why = part.explain(facts)
            if matched:
                return True, why
            reasons.append(why)
        return False, "none of any: matched (" + "; ".join(reasons) + ")"


@dataclass(frozen=True, slots=True)
class Not(Condition):
    part: Condition

    @property
    def always(self) -> bool | None:
        inner = self.part.always
        return None if inner is None else not inner

    def test(self, facts: _Facts) -> bool:
        return not self.part.test(facts)

    def explain(self, facts: _Facts) -> tuple[bool, str]:
        matched, why = self.part.explain(facts)
        if matched:
            return False, f"not: excluded it ({why})"
        return True, f"not ({why})"


@dataclass(frozen=True, slots=True)
class _Invalid(Condition):
    """Stands in for a condition with a problem, so compiling goes on (the load fails anyway)."""

    def test(self, facts: _Facts) -> bool:
        return False

    def explain(self, facts: _Facts) -> tuple[bool, str]:
        return False, "invalid condition (see the config problems)"


_INVALID = _Invalid()


# -- rules ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Quiet:
    """Quiet hours of a forward rule: inside the window the SMS is held to its end, or dropped.

    ``days`` are the days the window *opens* on: with ``time: "22:00-07:00"``
    and ``days: [fri]``, Saturday 03:00 is still Friday's quiet night.
    """

    window: TimeWindow
    days: frozenset[int] | None
    then: str  # HOLD or DROP

    def until(self, local: datetime, zone: tzinfo | None) -> datetime | None:
        """The aware end of the quiet window ``local`` is in, or None outside quiet hours."""
        occurrence = self.window.occurrence(local)
        if occurrence is None:
            return None
        opened, end = occurrence
        if self.days is not None and opened.weekday() not in self.days:
            return None
        return wall_clock_to_aware(end, zone)


@dataclass(frozen=True)
class Rule:
    name: str
    action: str
    match: Condition | None  # None: no match:, the rule catches every mail
    options: RuleOptions
    quiet: Quiet | None
    line: int

    @property
    def catch_all(self) -> bool:
        return self.match is None or self.match.always is True

    def explain(self, facts: _Facts) -> tuple[bool, str]:
        if self.match is None:
            return True, "no match: it catches every mail"
        return self.match.explain(facts)


class RuleSet:
    """The compiled rules of one config load; ``decide`` is pure and cheap."""

    def __init__(
        self,
        rules: tuple[Rule, ...],
        default: str,
        guards: Guards,
        timezone: tzinfo | None = None,
        tests: tuple[RuleTest, ...] = (),
    ) -> None:
        self.rules = rules
        self.names = tuple(rule.name for rule in rules)
        self.default = default
        self.guards = guards
        self.timezone = timezone  # None: the system's local zone
        self.tests = tests  # the config's tests:, run by forwarder.rules.ruletests.run_rule_tests
        self._default = Decision(default, None, f"no rule matched; default: {default}")
        # (rule, its bound test or None for a catch-all): decide's loop runs for every mail.
        self._matchers = tuple(
            (rule, None if rule.match is None else rule.match.test) for rule in rules
        )
        reads = guards.reads
        for rule in rules:
            if rule.match is not None:
                reads |= _reads(rule.match)
        #: What ``decide`` reads of a mail: the header fields of the rules and the guards,
        #: and whether the MIME structure or the body. The IMAP side fetches that for every
        #: new mail (``Mailbox.fetch_summaries``), and the rest only for the mail that may
        #: be forwarded.
        self.reads: Reads = reads
        #: The header words the mail the forward rules can match holds (None: no such words
        #: known): a backlog's likely mail is decided first (``forwarder.imap.checkpoints``).
        self.likely: Likely | None = _likely(rules)

    @property
    def needs_body(self) -> bool:
        """True if a rule reads ``body``: then the text of every new mail is fetched, not
        only that of the mail the rules forward (guards read headers only)."""
        return self.reads.body

    def with_tests(self, tests: tuple[RuleTest, ...]) -> RuleSet:
        """The same rules with the config's ``tests:`` attached (``config.load`` reads them)."""
        return RuleSet(self.rules, self.default, self.guards, self.timezone, tests)

    def decide(self, mail: Mail, now: datetime, *, explain: bool = False) -> Decision:
        """The first guard or rule that matches decides; ``default`` decides the rest.

        ``now`` should be aware (a naive one is taken as the system's local time,
        as ``datetime.astimezone`` does); time conditions use it in the rules'
        time zone. With ``explain`` the decision carries a trace line for every
        guard and rule tried.
        """
        facts = _Facts(mail, now, self.timezone)
        trace: list[str] | None = None
        if explain:
            hit, trace = self.guards.explain(facts)
        else:
            hit = self.guards.check(facts)
        if hit is not None:
            return Decision(
                SKIP,
                GUARD_RULE_PREFIX + hit.guard,
                f"guard {hit.guard!r}: {hit.reason}",
                trace=tuple(trace or ()),
                gateway_reply=hit.gateway_reply,
            )
        if trace is None:
            for rule, test in self._matchers:
                if test is None or test(facts):
                    _, why = rule.explain(facts)  # only for the winning rule: the reason
                    return self._decided(rule, facts, why, None)
            return self._default
        for rule in self.rules:
            matched, why = rule.explain(facts)
            trace.append(
                f"rule {rule.name!r}: matched ({why})" if matched else f"rule {rule.name!r}: {why}"
            )
            if matched:
                return self._decided(rule, facts, why, trace)
        trace.append(f"default: {self.default} (no rule matched)")
        return Decision(self.default, None, self._default.reason, trace=tuple(trace))

    def _decided(self, rule: Rule, facts: _Facts, why: str, trace: list[str] | None) -> Decision:
        """The decision of the rule that matched, after its quiet hours have had their say."""
        reason = f"rule {rule.name!r}: {why}"
        action, hold_until = rule.action, None
        if rule.action == FORWARD and rule.quiet is not None:
            until = rule.quiet.until(facts.local, self.timezone)
            if until is not None:
                quiet = f"quiet hours {rule.quiet.window.source}"
                if rule.quiet.then == HOLD:
                    hold_until = until
                    quiet += f": held until {until:%Y-%m-%d %H:%M %Z}"
                else:
                    action = SKIP
                    quiet += ": dropped"
                reason += f"; {quiet}"
                if trace is not None:
                    trace.append(f"rule {rule.name!r}: {quiet}")
        return Decision(
            action,
            rule.name,
            reason,
            rule.options,
            hold_until=hold_until,
            trace=tuple(trace or ()),
        )


# -- compiling ------------------------------------------------------------------------------
CONDITION_KEYS = (
    *_TEXT_FIELDS,
    "header",
    "size",
    "has_attachment",
    "time",
    "days",
    "all",
    "any",
    "not",
)
_PATTERN_HELP = (
    "a glob string like '*@bank.com.ua', or {contains: ...}, {equals: ...}, {regex: ...}"
)


def _reads(condition: Condition) -> Reads:
    """What a condition may read of a mail, whichever branch decides."""
    if isinstance(condition, TextMatch):
        source = condition.source
        fields = frozenset(name.lower() for name in source.header_fields)
        return Reads(fields, body=source is _TEXT_FIELDS["body"])
    if isinstance(condition, AttachmentMatch):
        return Reads(structure=True)
    if isinstance(condition, AllOf | AnyOf):
        found = Reads()
        for part in condition.parts:
            found |= _reads(part)
        return found
    if isinstance(condition, Not):
        return _reads(condition.part)
    return Reads()  # size (always fetched), time, days: nothing of the mail's own


#: At most this many terms in a backlog's SEARCH for likely mail; the first rules' come first.
LIKELY_TERMS = 12
#: Shorter literal pieces are in too much mail to be worth a SEARCH.
_LIKELY_SHORTEST = 3
_UNSEARCHABLE = re.compile(r"[\x00-\x1f\x7f]")  # no control character in an IMAP string


def _likely(rules: tuple[Rule, ...]) -> Likely | None:
    """Terms one of which the mail every forward rule with known words can match holds.

    Only an ordering hint (see ``Likely``): a forward rule without such words is left out
    of it, and its mail is decided in turn with the rest. A forward rule that can catch
    any mail makes the hint pointless, so there is none.
    """
    terms: list[tuple[str, str]] = []
    for rule in rules:
        if rule.action != FORWARD:
            continue
        if rule.catch_all:
            return None
        needed = _needs(rule.match) if rule.match is not None else None
        for term in sorted(needed or ()):
            if term not in terms:
                terms.append(term)
    return Likely(tuple(terms[:LIKELY_TERMS])) if terms else None


def _needs(condition: Condition) -> frozenset[tuple[str, str]] | None:
    """Header terms one of which every mail matching ``condition`` holds; None if unknown.

    A text pattern on a header needs the longest of its literal pieces in that header; a
    list of patterns, or ``any:``, needs one of its parts' terms; ``all:`` needs those of
    its most selective part. ``not:``, times, sizes and the body give none.
    """
    if isinstance(condition, TextMatch):
        header = condition.source.search_header
        if header is None:
            return None
        terms = set()
        for pattern in condition.patterns:
            pieces = [
                piece
                for piece in pattern.literals
                if len(piece) >= _LIKELY_SHORTEST and not _UNSEARCHABLE.search(piece)
            ]
            if not pieces:
                return None
            terms.add((header, max(pieces, key=len)))
        return frozenset(terms)
    if isinstance(condition, AllOf):
        known = [needs for part in condition.parts if (needs := _needs(part)) is not None]
        return min(known, key=len) if known else None
    if isinstance(condition, AnyOf):
        found: set[tuple[str, str]] = set()
        for part in condition.parts:
            needs = _needs(part)
            if needs is None:
                return None
            found |= needs
        return frozenset(found)
    return None


def _line_of(node: Any, key: Any, default: int) -> int:
    line_of = getattr(node, "line_of", None)
    return line_of(key) if line_of is not None else default


class _ConditionCompiler:
    """Turns the YAML of a ``match:`` into Condition objects, reporting every problem."""

    def __init__(self, problems: Problems, file: str) -> None:
        self.problems = problems
        self.file = file
        self._headers: dict[str, _Field] = {}
        self._keys: dict[str, Callable[[Any, str, int], Condition]] = {
            **{key: self._text_compiler(source) for key, source in _TEXT_FIELDS.items()},
            "header": self._header,
            "size": self._size,
            "has_attachment": self._attachment,
            "time": self._time,
            "days": self._days,
            "all": self._all,
            "any": self._any,
            "not": self._not,
        }

    def error(self, line: int, message: str) -> None:
        self.problems.add(self.file, line, message)

    def mapping(self, node: Any, path: str, line: int) -> Condition:
        """A condition mapping: all of its keys must match, tried in the order written."""
        if not isinstance(node, Mapping) or not node:
            hint = (
                "; for alternatives use any: [...]"
                if isinstance(node, list)
                else " (leave match: out to catch every mail)"
            )
            self.error(
                line,
                f"{path} must be a mapping of conditions like {{subject: {{contains: urgent}}}}, "
                f"not {'an empty one' if isinstance(node, Mapping) else type_name(node)}{hint}",
            )
            return _INVALID
        parts = []
        for key, value in node.items():
            key_line = _line_of(node, key, line)
            compile_key = self._keys.get(key) if isinstance(key, str) else None
            if compile_key is None:
                self._unknown(key, path, key_line)
                parts.append(_INVALID)
            else:
                parts.append(compile_key(value, f"{path}.{key}", key_line))
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def _unknown(self, key: Any, path: str, line: int) -> None:
        if key in PATTERN_KINDS:
            hint = f"{key}: is a pattern; put it under a field, e.g. subject: {{{key}: ...}}"
        elif close := difflib.get_close_matches(str(key), CONDITION_KEYS, n=1):
            hint = f"did you mean {close[0]!r}?"
        else:
            hint = f"conditions: {', '.join(CONDITION_KEYS)}"
        self.error(line, f"{path}: unknown condition {key!r} ({hint})")

    # -- text patterns ------------------------------------------------------------------
    def patterns(self, value: Any, path: str, line: int) -> tuple[TextPattern, ...] | None:
        """A pattern, or a list of them (any may match); None after reporting a problem."""
        if not isinstance(value, list):
            pattern = self._pattern(value, path, line)
            return None if pattern is None else (pattern,)
        if not value:
            self.error(line, f"{path} is an empty list of patterns; it could never match")
            return None
        compiled = [
            self._pattern(item, f"{path}[{index}]", _line_of(value, index, line))
            for index, item in enumerate(value)
        ]
        return None if None in compiled else tuple(p for p in compiled if p is not None)

    def _pattern(self, value: Any, path: str, line: int) -> TextPattern | None:
        kind: type[TextPattern] = Glob
        text = value
        if isinstance(value, Mapping):
            if len(value) != 1 or next(iter(value)) not in PATTERN_KINDS:
                keys = ", ".join(map(str, value)) or "none"
                self.error(
                    line,
                    f"{path}: a pattern mapping takes exactly one of "
                    f"{', '.join(PATTERN_KINDS)}, not {keys}",
                )
                return None
            key = next(iter(value))
            kind, text, line = PATTERN_KINDS[key], value[key], _line_of(value, key, line)
        if isinstance(text, bool) or not isinstance(text, str | int | float):
            self.error(line, f"{path} must be a pattern: {_PATTERN_HELP}; not {type_name(text)}")
            return None
        try:
            return kind(scalar_text(text))
        except PatternError as exc:
            self.error(line, f"{path}: {exc}")
            return None

    def _text_compiler(self, source: _Field) -> Callable[[Any, str, int], Condition]:
        def compile_text(value: Any, path: str, line: int) -> Condition:
            patterns = self.patterns(value, path, line)
            return _INVALID if patterns is None else TextMatch(source, patterns)

        return compile_text

    def _header(self, value: Any, path: str, line: int) -> Condition:
        if not isinstance(value, Mapping) or not value:
            self.error(
                line,
                f"{path} must be a mapping of header names to patterns, "
                f"e.g. header: {{X-Priority: '1'}}; not {type_name(value)}",
            )
            return _INVALID
        parts: list[Condition] = []
        for name, patterns_node in value.items():
            name_line = _line_of(value, name, line)
            # RFC 5322 §2.2: a field name is printable US-ASCII except the colon.
            if (
                not isinstance(name, str)
                or not name
                or any(not 33 <= ord(c) <= 126 or c == ":" for c in name)
            ):
                self.error(name_line, f"{path}: {name!r} is not a header name")
                parts.append(_INVALID)
                continue
            source = self._headers.setdefault(name.lower(), _header_field(name))
            patterns = self.patterns(patterns_node, f"{path}.{name}", name_line)
            parts.append(_INVALID if patterns is None else TextMatch(source, patterns))
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    # -- the other leaves ---------------------------------------------------------------
    def _size(self, value: Any, path: str, line: int) -> Condition:
        try:
            if not isinstance(value, str):
                raise PatternError(f"{type_name(value)} is not a size comparison like '> 1MB'")
            return SizeMatch(SizeComparison.parse(value))
        except PatternError as exc:
            self.error(line, f"{path}: {exc}")
            return _INVALID

    def _attachment(self, value: Any, path: str, line: int) -> Condition:
        if not isinstance(value, bool):
            self.error(line, f"{path} must be true or false, not {type_name(value)}")
            return _INVALID
        return AttachmentMatch(value)

    def _time(self, value: Any, path: str, line: int) -> Condition:
        items = self._strings(value, path, line, "a time window like '08:00-22:00'")
        windows = []
        for item, item_path, item_line in items:
            window = self.time_window(item, item_path, item_line)
            if window is not None:
                windows.append(window)
        if not items or len(windows) != len(items):
            return _INVALID
        return TimeMatch(tuple(windows))

    def time_window(self, text: str, path: str, line: int) -> TimeWindow | None:
        try:
            return TimeWindow.parse(text)
        except PatternError as exc:
            self.error(line, f"{path}: {exc}")
            return None

    def _days(self, value: Any, path: str, line: int) -> Condition:
        days = self.day_set(value, path, line)
        return _INVALID if days is None else DaysMatch(days)

    def day_set(self, value: Any, path: str, line: int) -> frozenset[int] | None:
        items = self._strings(value, path, line, "day names like [mon, tue] or 'mon-fri'")
        days: set[int] = set()
        ok = bool(items)
        for item, item_path, item_line in items:
            try:
                days |= parse_days(item)
            except PatternError as exc:
                self.error(item_line, f"{item_path}: {exc}")
                ok = False
        return frozenset(days) if ok else None

    def _strings(self, value: Any, path: str, line: int, what: str) -> list[tuple[str, str, int]]:
        """(text, path, line) of a string or of each string in a list; [] after a problem."""
        if isinstance(value, str):
            return [(value, path, line)]
        if not isinstance(value, list) or not value:
            self.error(line, f"{path} must be {what}, or a list of them; not {type_name(value)}")
            return []
        items = []
        for index, item in enumerate(value):
            item_line = _line_of(value, index, line)
            if not isinstance(item, str):
                self.error(item_line, f"{path}[{index}] must be {what}, not {type_name(item)}")
                return []
            items.append((item, f"{path}[{index}]", item_line))
        return items

    # -- combinators --------------------------------------------------------------------
    def _branches(self, value: Any, path: str, line: int) -> tuple[Condition, ...] | None:
        if not isinstance(value, list) or not value:
            self.error(
                line,
                f"{path} must be a non-empty list of condition mappings, "
                f"e.g. [{{from: '*@bank.com.ua'}}, {{subject: {{contains: urgent}}}}]; "
                f"not {'an empty list' if isinstance(value, list) else type_name(value)}",
            )
            return None
        return tuple(
            self.mapping(item, f"{path}[{index}]", _line_of(value, index, line))
            for index, item in enumerate(value)
        )

    def _all(self, value: Any, path: str, line: int) -> Condition:
        parts = self._branches(value, path, line)
        return _INVALID if parts is None else AllOf(parts)

    def _any(self, value: Any, path: str, line: int) -> Condition:
        parts = self._branches(value, path, line)
        return _INVALID if parts is None else AnyOf(parts)

    def _not(self, value: Any, path: str, line: int) -> Condition:
        if isinstance(value, list):
            self.error(
                line,
                f"{path} takes one condition mapping, not a list "
                "(write not: {any: [...]} for none of them, not: {all: [...]} for not all)",
            )
            return _INVALID
        return Not(self.mapping(value, path, line))


def compile_ruleset(top: Section, context: GuardContext) -> RuleSet:
    """Read ``rules``, ``default``, ``guards`` and ``timezone`` from the top section.

    The ``tests:`` are read by ``config.load`` (``ruletests.load_rule_tests``) and attached
    with ``RuleSet.with_tests``: compiling rules never reads example mails.

    Every problem goes into ``top.problems``; this never raises on bad input,
    and the RuleSet it returns is usable (if incomplete) even then.
    """
    zone = _timezone(top)
    guard_section = top.section("guards")
    guards = Guards(context, [name for name in GUARD_NAMES if guard_section.boolean(name, True)])
    guard_section.finish()
    default = top.text("default", SKIP, choices=ACTIONS)
    rules = _rules(top)
    _check_reachable(rules, top)
    if not rules and default == SKIP:
        logger.warning("no rules and default: skip, so no mail will ever be forwarded")
    logger.debug(
        "compiled %d rules, default %s, guards on: %s, timezone %s",
        len(rules),
        default,
        ", ".join(guards.enabled) or "none",
        zone or "system local",
    )
    return RuleSet(rules, default, guards, zone)


def _timezone(top: Section) -> tzinfo | None:
    name = top.text("timezone", None, what="an IANA time zone name like 'Europe/Kyiv'")
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        zones = {zone.lower(): zone for zone in available_timezones()}
        close = difflib.get_close_matches(name.lower(), list(zones), n=1)
        hint = (
            f"did you mean {zones[close[0]]!r}?"
            if close
            else "an IANA name like 'Europe/Kyiv'; is the tzdata package installed?"
        )
        top.error("timezone", f"timezone: unknown time zone {name!r} ({hint})")
        return None


def _rules(top: Section) -> tuple[Rule, ...]:
    node = top.raw("rules")
    if node is None:
        return ()
    if not isinstance(node, list):
        top.error(
            "rules",
            f"rules must be a list of rules (each item starting with '- name:'), "
            f"not {type_name(node)}",
        )
        return ()
    compiler = _ConditionCompiler(top.problems, top.file)
    rules: list[Rule] = []
    first_line: dict[str, int] = {}
    for index, item in enumerate(node):
        section = Section(
            item,
            f"rules[{index}]",
            top.problems,
            file=top.file,
            line=_line_of(node, index, top.line("rules")),
        )
        if not isinstance(item, Mapping):
            continue  # Section reported it; its missing keys would only repeat that
        rule = _rule(section, compiler)
        if rule.name in first_line:
            section.error(
                "name",
                f"rules[{index}].name: rule name {rule.name!r} is used twice, "
                f"at line {first_line[rule.name]} and line {section.line('name')}",
            )
        else:
            first_line[rule.name] = section.line("name")
        rules.append(rule)
    return tuple(rules)


def _rule(s: Section, compiler: _ConditionCompiler) -> Rule:
    name = s.text("name", what="a short name shown in logs and tests", check=_name_problem)
    action = s.text("action", what="forward or skip", choices=ACTIONS)
    match_node = s.raw("match")
    match = None
    if s.has("match"):
        match = compiler.mapping(match_node, s.name("match"), s.line("match"))
    options = RuleOptions(
        template=s.text("template", None, what="an SMS template", check=validate_template),
        max_length=s.integer("max_length", None, minimum=1, maximum=SMS_MAX_CHARS),
        sender=s.text(
            "sender",
            None,
            what="an alpha-name registered with AlphaSMS",
            check=gateway.check_alpha_name,  # it becomes (the start of) the gateway's Subject
        ),
        encoding=s.text("encoding", None, choices=ENCODINGS),
        transliterate=s.text("transliterate", None, choices=TRANSLITERATIONS),
        max_segments=s.integer("max_segments", None, minimum=1, maximum=MAX_SEGMENTS),
        delay=s.duration("delay", None),
        unless_read=s.boolean("unless_read", False),
    )
    if options.unless_read and not options.delay:
        s.error(
            "unless_read",
            f"{s.name('unless_read')} needs a delay: to wait for the mail to be read "
            "(e.g. delay: 3m)",
        )
    quiet_section = s.section("quiet")
    quiet = _quiet(quiet_section, compiler) if s.has("quiet") else None
    s.finish()
    return Rule(
        name=name if name is not None else s.path,
        action=action if action is not None else SKIP,
        match=match,
        options=options,
        quiet=quiet,
        line=s.line(),
    )


def _name_problem(name: str) -> str | None:
    if not name.strip():
        return "must not be empty"
    if name in RESERVED_RULE_NAMES or name.startswith(GUARD_RULE_PREFIX):
        return (
            f"{name!r} is reserved (tests write expect: {', '.join(RESERVED_RULE_NAMES)} "
            f"and guard:<name>); choose another name"
        )
    return None


def _quiet(q: Section, compiler: _ConditionCompiler) -> Quiet | None:
    time_text = q.text("time", what="a time window like '22:00-07:00'")
    window = None
    if time_text is not None:
        window = compiler.time_window(time_text, q.name("time"), q.line("time"))
    days_node = q.raw("days")
    days = None
    if days_node is not None:
        days = compiler.day_set(days_node, q.name("days"), q.line("days"))
    then = q.text("then", HOLD, choices=QUIET_THEN)
    q.finish()
    return None if window is None else Quiet(window, days, then)


def _check_reachable(rules: tuple[Rule, ...], top: Section) -> None:
    """Rules after one that matches every mail can never decide anything: surely a mistake."""
    catch_all: Rule | None = None
    for index, rule in enumerate(rules):
        if catch_all is not None:
            why = "has no match:" if catch_all.match is None else "has a match: that is always true"
            top.problems.add(
                top.file,
                rule.line,
                f"rules[{index}] {rule.name!r} can never be reached: rule {catch_all.name!r} "
                f"(line {catch_all.line}) {why} and so decides every mail first "
                "(move the catch-all to the end)",
            )
        elif rule.catch_all:
            catch_all = rule
