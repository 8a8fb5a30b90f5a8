"""Reading typed values out of a line-stamped YAML mapping, collecting every problem.

Validation is written once, here, so that every section of the config (and
every rule) reports mistakes the same way: ``FILE:LINE: where.key: what is
wrong (hint)``, and so that one mistake never hides the next.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from forwarder.configfile.yamlsource import EnvStr, Problem, YList, YMap, scalar_text

T = TypeVar("T")

REQUIRED: Any = object()

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|d)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {
    None: 1.0,
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|k|kib|mb|m|mib|gb|g|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
}


class Secret:
    """A password or key that will not show itself in a repr, a log line or a traceback.

    Code that needs the value calls ``reveal()``, which makes every place that
    handles the secret easy to find.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def parse_duration(value: Any) -> float | None:
    """Seconds from 30, "30s", "3m", "6h", "1d"; None when it is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        return None
    unit = match.group(2).lower() if match.group(2) else None
    return float(match.group(1)) * _DURATION_UNITS[unit]


def parse_size(value: Any) -> int | None:
    """Bytes from 1024, "10KB", "1.5MB"; None when it is not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)  # a plain int, not the loader's YInt
    match = _SIZE.match(str(value))
    if not match:
        return None
    unit = match.group(2).lower() if match.group(2) else None
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


class Problems:
    """The list every reader appends to; one per config load."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        # Secrets written in the file itself (not ${VAR}, not *_file): the file must then
        # be private, which ``forwarder.config`` checks (a warning, not a problem).
        self.inline_secrets: list[Problem] = []

    def add(self, file: str, line: int, message: str) -> None:
        self.items.append(Problem(file, line, message))

    def extend(self, problems: Iterable[Problem]) -> None:
        self.items.extend(problems)

    def __bool__(self) -> bool:
        return bool(self.items)


def type_name(value: Any) -> str:
    if isinstance(value, YMap | dict):
        return "a mapping"
    if isinstance(value, YList | list):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "nothing"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"{value!r}"


class Section:
    """A mapping being read: typed getters that record problems instead of raising.

    Every getter returns a usable value even when the input is wrong (the
    default, or a neutral value), so reading goes on and all problems surface
    in one run of ``forwarder check``. ``finish()`` reports keys nobody read.
    """

    def __init__(
        self, node: Any, path: str, problems: Problems, *, file: str = "<config>", line: int = 0
    ) -> None:
        self.path = path
        self.problems = problems
        if isinstance(node, YMap):
            self.node: YMap = node
        else:
            self.node = YMap()
            self.node.file, self.node.line, self.node.key_lines = file, line, {}
            if node is not None:
                self.problems.add(
                    file, line, f"{path or 'the file'} must be a mapping, not {type_name(node)}"
                )
        self.file = self.node.file
        self._read: set[str] = set()

    # -- places -----------------------------------------------------------------------------
    def line(self, key: str | None = None) -> int:
        return self.node.line_of(key) if key is not None else self.node.line

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str | None, message: str) -> None:
        self.problems.add(self.file, self.line(key), message)

    def has(self, key: str) -> bool:
        return key in self.node

    def raw(self, key: str, default: Any = None) -> Any:
        self._read.add(key)
        return self.node.get(key, default)

    # -- typed getters ----------------------------------------------------------------------
    def _value(self, key: str, default: Any, what: str) -> tuple[bool, Any]:
        """(present, value); reports a missing required key."""
        self._read.add(key)
        if key not in self.node or self.node[key] is None:
            if default is REQUIRED:
                self.error(
                    None if key not in self.node else key, f"{self.name(key)} is required ({what})"
                )
            return False, default
        return True, self.node[key]

    def text(
        self,
        key: str,
        default: Any = REQUIRED,
        *,
        choices: Iterable[str] | None = None,
        what: str = "text",
        check: Callable[[str], str | None] | None = None,
    ) -> Any:
        present, value = self._value(key, default, what)
        if not present:
            return None if default is REQUIRED else default
        if isinstance(value, bool | YMap | YList) or not isinstance(value, str | int | float):
            self.error(key, f"{self.name(key)} must be {what}, not {type_name(value)}")
            return None if default is REQUIRED else default
        value = scalar_text(value)
        if choices is not None:
            options = list(choices)
            if value not in options:
                self.error(
                    key, f"{self.name(key)} must be one of {', '.join(options)}, not {value!r}"
                )
                return None if default is REQUIRED else default
        if check is not None and (message := check(value)):
            self.error(key, f"{self.name(key)}: {message}")
            return None if default is REQUIRED else default
        return value

    def integer(
        self,
        key: str,
        default: Any = REQUIRED,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> Any:
        present, value = self._value(key, default, "a whole number")
        if not present:
            return None if default is REQUIRED else default
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(key, f"{self.name(key)} must be a whole number, not {type_name(value)}")
            return None if default is REQUIRED else default
        if minimum is not None and value < minimum:
            self.error(key, f"{self.name(key)} must be at least {minimum}, not {value}")
            return minimum
        if maximum is not None and value > maximum:
            self.error(key, f"{self.name(key)} must be at most {maximum}, not {value}")
            return maximum
        # A plain int: the loader's YInt (which remembers its source text) must not leak
        # into the running config (socket calls, for one, refuse int subclasses).
        return int(value)

    def boolean(self, key: str, default: Any = REQUIRED) -> Any:
        present, value = self._value(key, default, "true or false")
        if not present:
            return bool(default) if default is not REQUIRED else False
        if not isinstance(value, bool):
            self.error(key, f"{self.name(key)} must be true or false, not {type_name(value)}")
            return bool(default) if default is not REQUIRED else False
        return value

    def duration(self, key: str, default: Any = REQUIRED, *, minimum: float = 0.0) -> Any:
        present, value = self._value(key, default, 'a duration like 30, "90s", "3m", "6h"')
        if not present:
            return parse_duration(default) if default not in (REQUIRED, None) else default
        seconds = parse_duration(value)
        if seconds is None:
            self.error(
                key,
                f"{self.name(key)} must be a duration like 30, '90s', '3m', '6h', "
                f"not {type_name(value)}",
            )
            return parse_duration(default) if default not in (REQUIRED, None) else None
        if seconds < minimum:
            self.error(key, f"{self.name(key)} must be at least {minimum:g} seconds")
            return minimum
        return seconds

    def size(self, key: str, default: Any = REQUIRED) -> Any:
        present, value = self._value(key, default, 'a size like 4096 or "4KB"')
        if not present:
            return default if default is not REQUIRED else None
        size = parse_size(value)
        if size is None:
            self.error(
                key,
                f"{self.name(key)} must be a size like 4096, '4KB' or '1MB', "
                f"not {type_name(value)}",
            )
            return default if default is not REQUIRED else None
        return size

    def str_list(self, key: str, default: Any = REQUIRED, *, what: str = "text") -> Any:
        """A list of strings; a single string is accepted as a list of one."""
        present, value = self._value(key, default, f"a list of {what}")
        if not present:
            return list(default) if default not in (REQUIRED, None) else default
        if isinstance(value, str):
            return [value]
        if not isinstance(value, YList):
            self.error(key, f"{self.name(key)} must be a list of {what}, not {type_name(value)}")
            return list(default) if default not in (REQUIRED, None) else []
        out: list[str] = []
        for index, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, str | int):
                self.problems.add(
                    self.file,
                    value.line_of(index),
                    f"{self.name(key)}[{index}] must be {what}, not {type_name(item)}",
                )
            else:
                out.append(scalar_text(item))
        return out

    def sections(self, key: str, *, what: str = "mappings") -> list[Section]:
        """A list of mappings, each as a Section named ``key[i]`` at its own line."""
        present, value = self._value(key, [], f"a list of {what}")
        if not present:
            return []
        if not isinstance(value, YList):
            self.error(key, f"{self.name(key)} must be a list of {what}, not {type_name(value)}")
            return []
        return [
            Section(
                item,
                f"{self.name(key)}[{index}]",
                self.problems,
                file=self.file,
                line=value.line_of(index),
            )
            for index, item in enumerate(value)
        ]

    def section(self, key: str) -> Section:
        self._read.add(key)
        return Section(
            self.node.get(key), self.name(key), self.problems, file=self.file, line=self.line(key)
        )

    def secret(self, key: str, *, required: bool, what: str = "a password") -> Secret | None:
        """``key`` inline (may use ${VAR}) or ``key_file`` (e.g. a systemd credential)."""
        file_key = f"{key}_file"
        inline = self.text(key, None, what=what)
        path = self.text(file_key, None, what="a file path")
        if inline is not None and path is not None:
            self.error(file_key, f"give {self.name(key)} or {self.name(file_key)}, not both")
            return Secret(inline)
        if path is not None:
            try:
                value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                self.error(
                    file_key, f"{self.name(file_key)}: cannot read {path}: {exc.strerror or exc}"
                )
                return None
            if not value:
                self.error(file_key, f"{self.name(file_key)}: {path} is empty")
                return None
            return Secret(value)
        if inline is not None:
            if not inline:
                self.error(key, f"{self.name(key)} is empty")
                return None
            if not isinstance(self.node.get(key), EnvStr):
                self.problems.inline_secrets.append(
                    Problem(self.file, self.line(key), self.name(key))
                )
            return Secret(inline)
        if required:
            self.error(None, f"{self.name(key)} (or {self.name(file_key)}) is required")
        return None

    def finish(self) -> None:
        """Report keys nobody asked for: almost always a typo, which would otherwise be ignored."""
        known = sorted(self._read)
        for key in self.node:
            if key in self._read:
                continue
            hint = difflib.get_close_matches(str(key), known, n=1)
            suggestion = (
                f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(known)})"
            )
            self.error(key, f"unknown key {self.name(str(key))!r}{suggestion}")
