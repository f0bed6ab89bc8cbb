"""Problems found in a spec file and where they are: `FILE:LINE:COL: /json/pointer: message`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

JsonPath = tuple[str | int, ...]
Severity = Literal["error", "warning"]


def pointer(path: JsonPath) -> str:
    """RFC 6901 JSON pointer of a path; the document root is shown as "/"."""
    if not path:
        return "/"
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


@dataclass(frozen=True, order=True)
class Loc:
    line: int  # 1-based
    col: int  # 1-based


@dataclass(frozen=True)
class Problem:
    """One problem. `path` None means a YAML syntax problem (no JSON pointer exists yet). A warning does not make
    the file fail (`check` exits 0); it is shown as `FILE:LINE:COL: warning: /pointer: message`."""

    file: str
    loc: Loc
    path: JsonPath | None
    message: str
    context: str = ""  # numbered source lines for YAML syntax errors
    severity: Severity = "error"

    def sort_key(self) -> tuple[int, int, str, str]:
        return (self.loc.line, self.loc.col, pointer(self.path) if self.path is not None else "", self.message)

    def render(self) -> str:
        where = f"{self.file}:{self.loc.line}:{self.loc.col}" + (": warning" if self.severity == "warning" else "")
        head = f"{where}: {self.message}" if self.path is None else f"{where}: {pointer(self.path)}: {self.message}"
        return f"{printable(head)}\n{self.context}" if self.context else printable(head)


def printable(text: str) -> str:
    """`text` with control characters, lone surrogates and other non-printables escaped (\\x1b, \\ud800): keys
    and values from a hostile file must not drive the terminal or break printing."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


@dataclass
class SourceMap:
    """Where each node of the YAML document is, by JSON path."""

    values: dict[JsonPath, Loc] = field(default_factory=dict)
    keys: dict[JsonPath, Loc] = field(default_factory=dict)
    raw: dict[JsonPath, str] = field(default_factory=dict)  # the scalar as written (for hints)
    blocks: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)  # literal block: (first line, indent)
    inline: dict[JsonPath, Loc] = field(default_factory=dict)  # single-line scalar: where its text starts

    def value(self, path: JsonPath) -> Loc:
        """The node at `path`, or its nearest ancestor that exists."""
        for n in range(len(path), -1, -1):
            loc = self.values.get(path[:n])
            if loc is not None:
                return loc
        return Loc(1, 1)

    def key(self, path: JsonPath) -> Loc:
        """The key of the mapping entry at `path` (falls back to the value)."""
        return self.keys.get(path) or self.value(path)

    def text_loc(self, path: JsonPath, line: int, col: int) -> Loc:
        """Position of character (line, col) (0-based) inside the string scalar at `path`, when it can be known."""
        block = self.blocks.get(path)
        if block is not None:
            first, indent = block
            return Loc(first + line, indent + col + 1)
        start = self.inline.get(path)
        if start is not None and line == 0:
            return Loc(start.line, start.col + col)
        return self.value(path)


def in_order(problems: list[Problem], files: list[str]) -> list[Problem]:
    """By file (in the order given: the spec, then its check libraries), then by position."""
    rank = {f: n for n, f in enumerate(files)}
    return sorted(problems, key=lambda p: (rank.get(p.file, len(rank)), p.file, *p.sort_key()))


def render_all(problems: list[Problem]) -> list[str]:
    return [p.render() for p in sorted(problems, key=Problem.sort_key)]
