"""YAML that remembers where every value came from, so errors can say FILE:LINE.

The loader is a ``yaml.SafeLoader`` subclass (never a full loader: a config
file must not be able to build Python objects). Mappings and sequences come
back as ``YMap``/``YList``, plain dict/list subclasses that carry the file and
line of the node and of each key, in the manner of Home Assistant's
``util/yaml/loader.py``. ``${VAR}`` in any string is replaced from the
environment while loading; a missing variable is a problem at its line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a config file, at a place a person can open."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class ConfigError(Exception):
    """A config file is unusable; carries every problem found, not just the first."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


class YMap(dict):
    """A mapping that knows its own line and the line of each of its keys."""

    file: str = "<config>"
    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class YList(list):
    file: str = "<config>"
    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


class YInt(int):
    """An int that remembers how it was written: ``0501234567`` is a phone number to a person
    but octal to YAML 1.1, and a password ``0123`` must not become ``83``."""

    source: str


class YFloat(float):
    source: str


class EnvStr(str):
    """A string that had ``${VAR}`` replaced while loading: what it holds is not written in
    the file (so a password given so does not make the file a secret)."""


def scalar_text(value: Any) -> str:
    """The text a scalar was written as (YAML's number forms undone); for str-typed settings."""
    source = getattr(value, "source", None)
    return source if isinstance(source, str) else str(value)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that stamps nodes with lines, rejects duplicate keys and expands ${VAR}."""

    def __init__(self, stream: str, file: str, environ: Mapping[str, str]) -> None:
        super().__init__(stream)
        self.file = file
        self.environ = environ
        self.problems: list[Problem] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> YMap:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping, found {node.id}", node.start_mark
            )
        self.flatten_mapping(node)
        result = YMap()
        result.file, result.line, result.key_lines = self.file, node.start_mark.line + 1, {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                self.problems.append(Problem(self.file, line, "a mapping key must be a scalar"))
                continue
            if key in result:
                self.problems.append(
                    Problem(
                        self.file,
                        line,
                        f"duplicate key {key!r} (first at line {result.key_lines[key]}); "
                        "YAML would silently keep only the last one",
                    )
                )
                continue
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = line
        return result

    def construct_yaml_map(self, node: yaml.MappingNode):  # type: ignore[override]
        yield self.construct_mapping(node, deep=True)

    def construct_yaml_seq(self, node: yaml.SequenceNode):  # type: ignore[override]
        result = YList()
        result.file, result.line = self.file, node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        yield result
        result.extend(self.construct_object(child, deep=True) for child in node.value)

    def construct_yaml_str(self, node: yaml.ScalarNode) -> str:
        value = super().construct_scalar(node)
        assert isinstance(value, str)

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.environ:
                self.problems.append(
                    Problem(
                        self.file,
                        node.start_mark.line + 1,
                        f"environment variable {name} is not set (referenced as ${{{name}}})",
                    )
                )
                return ""
            return self.environ[name]

        result = _ENV_REF.sub(substitute, value)
        return EnvStr(result) if _ENV_REF.search(value) else result

    def construct_yaml_int(self, node: yaml.ScalarNode) -> YInt:
        result = YInt(super().construct_yaml_int(node))
        result.source = str(node.value)
        return result

    def construct_yaml_float(self, node: yaml.ScalarNode) -> YFloat:
        result = YFloat(super().construct_yaml_float(node))
        result.source = str(node.value)
        return result


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_yaml_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_yaml_seq)
_LineLoader.add_constructor("tag:yaml.org,2002:str", _LineLoader.construct_yaml_str)
_LineLoader.add_constructor("tag:yaml.org,2002:int", _LineLoader.construct_yaml_int)
_LineLoader.add_constructor("tag:yaml.org,2002:float", _LineLoader.construct_yaml_float)


def load_text(
    text: str, file: str = "<config>", environ: Mapping[str, str] | None = None
) -> tuple[Any, list[Problem]]:
    """Parse YAML text; returns the document and the problems met while loading it.

    A syntax error becomes a single problem at the line PyYAML points to.
    """
    loader = _LineLoader(text, file, os.environ if environ is None else environ)
    try:
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = exc.problem or str(exc)
        return None, [Problem(file, line, f"YAML syntax error: {what}")]
    except yaml.YAMLError as exc:
        return None, [Problem(file, 1, f"YAML error: {exc}")]
    finally:
        loader.dispose()
    return document, loader.problems


def load_file(
    path: str | Path, environ: Mapping[str, str] | None = None
) -> tuple[Any, list[Problem]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(str(path), 0, "file not found")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(str(path), 0, f"cannot read: {exc.__class__.__name__}: {exc}")]
    return load_text(text, str(path), environ)
