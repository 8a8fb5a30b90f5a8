"""The value matchers rules are built from: text patterns, size comparisons, time windows, weekdays.

Everything here is compiled once, when the config is loaded, and is pure:
a matcher takes a value and answers yes or no. Constructors raise
``PatternError`` with a message meant for a person; the rule compiler adds the
file, the line and the config path.

Text patterns are case-insensitive. ``Glob``, ``Contains`` and ``Equals`` compare
*casefolded* text (``folds = True``), so "STRASSE" finds "Straße" and the
caller can casefold each mail value once and reuse it for every pattern.
``Regex`` runs on the original text with ``re.IGNORECASE``, because casefolding
would change the text a person wrote the regex for.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from forwarder.configfile.schema import parse_size

MINUTES_PER_DAY = 24 * 60
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_INDEX = {name: i for names in (DAY_NAMES, _FULL_DAY_NAMES) for i, name in enumerate(names)}

# A regex that is empty or only ".*" (optionally anchored at the start) finds a match in every text.
_REGEX_MATCHING_EVERYTHING = re.compile(r"\^?(\.\*)?")
_GLOB_WILDCARDS = re.compile(r"[*?]+")
_SQUASHED_OUT = re.compile(r'[\s"]+')
_SIZE_COMPARISON = re.compile(r"^\s*(<=|>=|<|>)\s*(\S.*?)\s*$")
_TIME_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_SIZE_OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class PatternError(ValueError):
    """A pattern, window, size or day name a person wrote that cannot be compiled."""


# -- text ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TextPattern:
    """One compiled text pattern; ``matches`` gets the casefolded text when ``folds`` is true."""

    source: str
    folds: bool = field(init=False, default=True)
    always: bool = field(init=False, default=False)  # matches every text, even ''

    def matches(self, text: str) -> bool:
        raise NotImplementedError

    @property
    def spec(self) -> str:
        """How traces and messages show the pattern: ``'*@bank.com.ua'``, ``contains 'x'``."""
        raise NotImplementedError

    @property
    def phrase(self) -> str:
        """The pattern as a verb phrase after a field name: ``subject contains 'x'``."""
        return self.spec

    @property
    def literals(self) -> tuple[str, ...]:
        """Casefolded pieces every matching text contains; () when there is nothing to require."""
        return ()


@dataclass(frozen=True, slots=True)
class Glob(TextPattern):
    """A shell-style glob that must match the *whole* text: ``*`` any run, ``?`` one character.

    Brackets are ordinary characters on purpose, unlike ``fnmatch``: subjects
    such as ``[JIRA] *`` are common and a character class there would surprise.
    A glob on a subject or body therefore needs stars on both sides to find a
    word inside it (``*invoice*``); ``contains`` says the same more plainly.
    """

    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pieces: list[str] = []
        for char in self.source.casefold():
            if char == "*":
                if not pieces or pieces[-1] != ".*":
                    pieces.append(".*")
            elif char == "?":
                pieces.append(".")
            else:
                pieces.append(re.escape(char))
        # DOTALL: a star must also cross the line breaks of a body.
        object.__setattr__(self, "_regex", re.compile("".join(pieces), re.DOTALL))
        object.__setattr__(self, "always", pieces == [".*"])

    def matches(self, text: str) -> bool:
        return self._regex.fullmatch(text) is not None

    @property
    def spec(self) -> str:
        return repr(self.source)

    @property
    def phrase(self) -> str:
        return f"matches {self.source!r}"

    @property
    def literals(self) -> tuple[str, ...]:
        return tuple(run for run in _GLOB_WILDCARDS.split(self.source.casefold()) if run)


@dataclass(frozen=True, slots=True)
class Contains(TextPattern):
    """The text contains ``source`` anywhere, ignoring case: the common case for subjects."""

    _needle: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_needle", self.source.casefold())
        object.__setattr__(self, "always", self.source == "")

    def matches(self, text: str) -> bool:
        return self._needle in text

    @property
    def spec(self) -> str:
        return f"contains {self.source!r}"

    @property
    def literals(self) -> tuple[str, ...]:
        return (self._needle,) if self._needle else ()


@dataclass(frozen=True, slots=True)
class Equals(TextPattern):
    """The whole text equals ``source``, ignoring case."""

    _value: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_value", self.source.casefold())

    def matches(self, text: str) -> bool:
        return text == self._value

    @property
    def spec(self) -> str:
        return f"equals {self.source!r}"

    @property
    def literals(self) -> tuple[str, ...]:
        return (self._value,) if self._value else ()


@dataclass(frozen=True, slots=True)
class Regex(TextPattern):
    """A Python regular expression *searched* in the text (anchor it with ^…$ for the whole).

    Case-insensitive; ``(?-i:...)`` makes a part of it case-sensitive.
    """

    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "folds", False)
        try:
            compiled = re.compile(self.source, re.IGNORECASE)
        except re.error as exc:
            where = f" at position {exc.pos}" if exc.pos is not None else ""
            raise PatternError(
                f"bad regex {self.source!r}: {exc.msg}{where} "
                "(Python syntax; in YAML write a regex in single quotes so backslashes stay)"
            ) from None
        object.__setattr__(self, "_regex", compiled)
        object.__setattr__(
            self, "always", _REGEX_MATCHING_EVERYTHING.fullmatch(self.source) is not None
        )

    def matches(self, text: str) -> bool:
        return self._regex.search(text) is not None

    @property
    def spec(self) -> str:
        return f"regex {self.source!r}"

    @property
    def phrase(self) -> str:
        return f"matches regex {self.source!r}"


def squash(text: str) -> str:
    """Casefolded, without whitespace and double quotes: the form a prefilter compares.

    Address parsers add and drop exactly these (the quotes around a display
    name, the spaces between its words, the folding of a long header), so a
    literal of a pattern that is in a parsed address or name is, squashed, also
    in the squashed header text. ``rules._Facts.may_contain`` relies on this.
    """
    return _SQUASHED_OUT.sub("", text.casefold())


PATTERN_KINDS: dict[str, type[TextPattern]] = {
    "contains": Contains,
    "equals": Equals,
    "regex": Regex,
    "glob": Glob,
}


# -- size ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SizeComparison:
    """``"> 1MB"``: the message size compared with a limit (sizes as in ``schema.parse_size``)."""

    source: str
    operator: str
    limit: int

    @classmethod
    def parse(cls, text: str) -> SizeComparison:
        match = _SIZE_COMPARISON.match(text)
        limit = parse_size(match.group(2)) if match else None
        if match is None or limit is None:
            raise PatternError(
                f"{text!r} is not a size comparison (write an operator and a size, "
                "e.g. '> 1MB' or '<= 500KB'; operators: <, <=, >, >=)"
            )
        return cls(text.strip(), match.group(1), limit)

    def matches(self, size: int) -> bool:
        return _SIZE_OPERATORS[self.operator](size, self.limit)

    @property
    def always(self) -> bool | None:
        """True/False when no size can change the answer (``>= 0`` / ``< 0``), else None."""
        if self.limit == 0 and self.operator in (">=", "<"):
            return self.operator == ">="
        return None


# -- time of day -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TimeWindow:
    """``"08:00-22:00"``: start inclusive, end exclusive, local wall time; may wrap midnight.

    ``"22:00-07:00"`` is the night from 22:00 to 07:00 next morning. ``24:00`` is
    allowed as an end, so ``"00:00-24:00"`` is the whole day.
    """

    source: str
    start: int  # minutes after midnight
    end: int  # minutes after midnight, 1..1440

    @classmethod
    def parse(cls, text: str) -> TimeWindow:
        hint = "(write HH:MM-HH:MM, e.g. '08:00-22:00'; a window may wrap midnight: '22:00-07:00')"
        match = _TIME_WINDOW.match(text)
        if match is None:
            raise PatternError(f"bad time window {text!r} {hint}")
        start_h, start_m, end_h, end_m = (int(g) for g in match.groups())
        for hour, minute, is_end in ((start_h, start_m, False), (end_h, end_m, True)):
            if minute > 59 or hour > 24 or (hour == 24 and (minute or not is_end)):
                raise PatternError(
                    f"bad time window {text!r}: {hour:02d}:{minute:02d} is not a time of day {hint}"
                )
        start, end = start_h * 60 + start_m, end_h * 60 + end_m
        if start == end:
            raise PatternError(
                f"time window {text!r} starts where it ends; for the whole day "
                "leave the time condition out (or write '00:00-24:00')"
            )
        return cls(text.strip(), start, end)

    @property
    def wraps(self) -> bool:
        return self.end <= self.start

    @property
    def whole_day(self) -> bool:
        return self.start == 0 and self.end == MINUTES_PER_DAY

    def contains(self, minute: int) -> bool:
        if self.wraps:
            return minute >= self.start or minute < self.end
        return self.start <= minute < self.end

    def occurrence(self, local: datetime) -> tuple[date, datetime] | None:
        """The window around ``local``: (the day it opened, its naive wall-clock end), or None.

        A wrapping window that is open at 02:00 opened the evening before; quiet
        hours use that day to decide whether the window applies (``days: [fri]``
        covers Friday night into Saturday morning).
        """
        minute = local.hour * 60 + local.minute
        if not self.contains(minute):
            return None
        opened = local.date()
        if self.wraps and minute < self.end:
            opened -= timedelta(days=1)
        end_day = opened + timedelta(days=1) if self.wraps else opened
        return opened, datetime.combine(end_day, datetime.min.time()) + timedelta(minutes=self.end)


def wall_clock_to_aware(wall: datetime, zone: tzinfo | None) -> datetime:
    """A naive wall-clock time in ``zone`` (the system's local zone when None) made aware.

    With a ZoneInfo the offset follows daylight saving time for that date; with
    None, ``astimezone`` asks the C library about the local zone the same way.
    """
    return wall.replace(tzinfo=zone) if zone is not None else wall.astimezone()


# -- days ------------------------------------------------------------------------------------
def parse_days(item: str) -> frozenset[int]:
    """Weekday numbers (Monday = 0) from ``"mon"``, ``"Monday"`` or a range ``"mon-fri"``.

    A range may wrap the week: ``"fri-mon"`` is Friday to Monday.
    """
    text = item.strip().lower()
    first, dash, last = text.partition("-")
    ends = [_day_index(first.strip(), item)]
    if dash:
        ends.append(_day_index(last.strip(), item))
        span = (ends[1] - ends[0]) % len(DAY_NAMES)
        return frozenset((ends[0] + step) % len(DAY_NAMES) for step in range(span + 1))
    return frozenset(ends)


def _day_index(name: str, item: str) -> int:
    if name in _DAY_INDEX:
        return _DAY_INDEX[name]
    close = difflib.get_close_matches(name, list(_DAY_INDEX), n=1)
    maybe = f": did you mean {close[0][:3]!r}?" if close else ""
    raise PatternError(
        f"bad day {item!r}{maybe} (use {', '.join(DAY_NAMES)} or a range such as 'mon-fri')"
    )


def describe_days(days: frozenset[int]) -> str:
    return "[" + ", ".join(DAY_NAMES[d] for d in sorted(days)) + "]"
