"""YAML → plain JSON-like data plus the line/column of every node.

Built on PyYAML's composer (the node graph keeps start marks). Deliberate choices for a hand-written spec:
- YAML 1.2 core types: only true/false are booleans (yes/no/on/off stay text), no sexagesimal numbers
  (22:00 stays text), no timestamps (2025-01-31 stays text and the schema checks it);
- duplicate keys are errors (YAML libraries silently keep one);
- anchors, aliases and `<<` merge keys work; recursive aliases and runaway alias expansion are errors;
- only the standard tags (!!str, !!int, !!float, !!bool, !!null, !!seq, !!map) are accepted.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner, ScannerError
from yaml.tokens import ScalarToken, StreamEndToken

from runner.spec.problems import JsonPath, Loc, Problem, SourceMap

MAX_BYTES = 2_000_000
MAX_NODES = 200_000
MAX_DEPTH = 64
MAX_INT_BITS = 14_000  # about 4200 decimal digits, under Python's int-to-text limit

_T = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, SEQ, MAP, MERGE = (f"{_T}{n}" for n in
                                                 ("str", "int", "float", "bool", "null", "seq", "map", "merge"))


class _Resolver(BaseResolver):
    """YAML 1.2 core schema resolution (BaseResolver starts with no implicit resolvers)."""


_Resolver.add_implicit_resolver(BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Resolver.add_implicit_resolver(INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
_Resolver.add_implicit_resolver(
    FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
                      r"|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
_Resolver.add_implicit_resolver(NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Resolver.add_implicit_resolver(MERGE, re.compile(r"^(?:<<)$"), ["<"])


class _Loader(Reader, Scanner, Parser, Composer, _Resolver):
    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _Resolver.__init__(self)


_HINTS = {
    "mapping values are not allowed here": "a value that contains ': ' must be quoted, or the indentation is off",
    "found character '\\t' that cannot start any token": "indent YAML with spaces, never tabs",
    "could not find expected ':'": "a key is missing its ':' (or a quote is not closed)",
    "expected a single document in the stream": "a spec is one YAML document; remove the extra '---'",
    "found unexpected end of stream": "a quote or bracket is not closed",
}


@dataclass
class YamlDocument:
    data: Any
    source: SourceMap
    problems: list[Problem] = field(default_factory=list)
    ok: bool = True  # False: nothing to validate (unreadable, syntax error, empty)
    sha256: str = ""  # of the file's bytes


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_T):] if tag.startswith(_T) else tag


def _tag_problem(tag: str) -> str:
    name = _tag_name(tag)
    if name.lower().startswith("!include"):  # what other YAML tools use to pull in a file
        return (f"{name} is not supported: list check library files under validations.include (paths relative to "
                "the spec; see 'Check libraries' in specs/README.md)")
    return f"unsupported YAML tag {name}"


def _loc(mark: Any) -> Loc:
    return Loc(mark.line + 1, mark.column + 1)


def syntax_context(lines: list[str], line0: int, col0: int) -> str:
    """A few numbered lines around (line0, col0), 0-based, with a caret under the column."""
    if not lines:
        return ""
    line0 = min(line0, len(lines) - 1)
    first, last = max(0, line0 - 2), min(len(lines) - 1, line0 + 1)
    width = len(str(last + 1))
    out: list[str] = []
    for i in range(first, last + 1):
        # One character for one keeps the caret aligned; control characters must not reach the terminal.
        shown = "".join(c if c.isprintable() else " " if c == "\t" else "?" for c in lines[i])
        out.append(f"  {'>' if i == line0 else ' '} {i + 1:>{width}} | {shown}")
        if i == line0:
            out.append(f"    {' ' * width} | {' ' * col0}^")
    return "\n".join(out)


class _Converter:
    def __init__(self, display: str, lines: list[str]) -> None:
        self.display = display
        self.lines = lines
        self.source = SourceMap()
        self.problems: list[Problem] = []
        self.count = 0
        self.active: set[int] = set()

    def problem(self, loc: Loc, path: JsonPath, message: str) -> None:
        self.problems.append(Problem(self.display, loc, path, message))

    def convert(self, node: Node, path: JsonPath, depth: int, key_loc: Loc | None = None) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig
        loc = _loc(node.start_mark)
        if isinstance(node, ScalarNode) and node.tag == NULL and node.value == "" and key_loc is not None:
            loc = key_loc  # `key:` with nothing after it: point at the key
        self.source.values[path] = loc
        if depth > MAX_DEPTH:
            self.problem(loc, path, f"nested more than {MAX_DEPTH} levels deep")
            return None
        if id(node) in self.active:
            self.problem(loc, path, "recursive alias: this node contains itself")
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node, path, loc)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != SEQ:
                    self.problem(loc, path, _tag_problem(node.tag))
                return [self.convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                if node.tag != MAP:
                    self.problem(loc, path, _tag_problem(node.tag))
                return self.mapping(node, path, depth)
        finally:
            self.active.discard(id(node))
        self.problem(loc, path, "unsupported YAML node")
        return None

    def scalar(self, node: ScalarNode, path: JsonPath, loc: Loc) -> Any:
        text, tag = node.value, node.tag
        self.source.raw[path] = text
        if tag == STR:
            self._text_position(node, path)
            return text
        if tag == NULL:
            return None
        if tag == BOOL:
            if text.lower() in ("true", "false"):
                return text.lower() == "true"
            self.problem(loc, path, f"{text!r} is not true or false")
            return text
        if tag == INT:
            try:
                if re.fullmatch(r"[-+]?[0-9]+", text):
                    return int(text, 10)
                if re.fullmatch(r"0o[0-7]+", text) or re.fullmatch(r"0x[0-9a-fA-F]+", text):
                    number = int(text[2:], 8 if text[1] == "o" else 16)
                    # Python refuses to print ints of more than 4300 digits; decimal input already fails above.
                    if number.bit_length() > MAX_INT_BITS:
                        raise ValueError(text)
                    return number
            except ValueError:
                self.problem(loc, path, "number too large")
                return None
            self.problem(loc, path, f"{text!r} is not a whole number")
            return text
        if tag == FLOAT:
            try:
                value = float(text.replace(".inf", "inf").replace(".Inf", "inf").replace(".INF", "inf"))
            except ValueError:
                self.problem(loc, path, f"{text!r} is not a number")
                return text
            if value != value or value in (float("inf"), float("-inf")):
                self.problem(loc, path, f"{text!r} is not a finite number")
                return None
            return value
        self.problem(loc, path, _tag_problem(tag) + ("" if _tag_name(tag).lower().startswith("!include") else
                                                     "; a spec uses plain YAML values only"))
        return None

    def _text_position(self, node: ScalarNode, path: JsonPath) -> None:
        start = node.start_mark
        if node.style == "|":
            for i in range(start.line + 1, min(node.end_mark.line + 1, len(self.lines))):
                if self.lines[i].strip():
                    indent = len(self.lines[i]) - len(self.lines[i].lstrip(" "))
                    self.source.blocks[path] = (start.line + 2, indent)
                    return
        elif node.style in (None, "'", '"') and "\n" not in node.value and start.line == node.end_mark.line:
            quoted = 1 if node.style else 0
            if not (node.style == '"' and "\\" in self.lines[start.line]) and not (
                    node.style == "'" and "''" in self.lines[start.line]):
                self.source.inline[path] = Loc(start.line + 1, start.column + 1 + quoted)

    def mapping(self, node: MappingNode, path: JsonPath, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_at: dict[str, Loc] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                merges.append(value_node)
                continue
            key_loc = _loc(key_node.start_mark)
            if not isinstance(key_node, ScalarNode):
                self.problem(key_loc, path, "a mapping key must be a plain name, not a list or a mapping")
                continue
            key = key_node.value
            child = (*path, key)
            if key in first_at:
                self.problem(key_loc, child, f"duplicate key '{key}' (first defined at line {first_at[key].line}); "
                                             "YAML would silently keep only one of them")
                continue
            first_at[key] = key_loc
            self.source.keys[child] = key_loc
            out[key] = self.convert(value_node, child, depth + 1, key_loc)
        for merge in merges:
            self._merge(out, merge, path, depth)
        return out

    def _merge(self, out: dict[str, Any], merge: Node, path: JsonPath, depth: int) -> None:
        sources = merge.value if isinstance(merge, SequenceNode) else [merge]
        for src in sources:
            if not isinstance(src, MappingNode):
                self.problem(_loc(merge.start_mark), path, "'<<' (merge) needs an alias to a mapping or a list of "
                                                           "them")
                return
            real, self.source = self.source, SourceMap()
            try:
                merged = self.convert(src, path, depth + 1)
            finally:
                scratch, self.source = self.source, real
            if not isinstance(merged, dict):
                continue
            taken = {k for k in merged if k not in out}
            for key in taken:
                out[key] = merged[key]
            for table in ("values", "keys", "raw", "blocks", "inline"):
                mine, theirs = getattr(self.source, table), getattr(scratch, table)
                for p, v in theirs.items():
                    if len(p) > len(path) and p[len(path)] in taken:
                        mine[p] = v


class _TooBig(Exception):
    pass


# A line YAML would read as structure (a `key:` or a list item): a quoted string that swallowed one was not closed.
_STRUCTURE = re.compile(r"\s*(?:-\s+)?[A-Za-z_$][\w.$-]*\s*:(?:\s|$)|\s*-\s")


def _unterminated_quote(text: str, lines: list[str], exc: yaml.MarkedYAMLError) -> Problem | None:
    """The problem to show when `exc` comes from a quote that was never closed: at the opening quote, where the
    broken token starts, rather than where YAML finally gave up (often many lines further on)."""
    if isinstance(exc, ScannerError) and exc.context == "while scanning a quoted scalar" and \
            exc.context_mark is not None and "end of stream" in (exc.problem or ""):
        start = exc.context_mark
        return Problem("", _loc(start), None, "YAML syntax error: unterminated quoted string starting here: the quote "
                       f"is never closed, so it runs to the end of the file; close it on line {start.line + 1}")
    stop = exc.problem_mark
    if stop is None:
        return None
    last: ScalarToken | None = None
    try:  # scan again, up to where YAML stopped, and remember the last quoted string
        scanner = _Loader(text)
        try:
            while True:
                token = scanner.get_token()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
                if token is None or isinstance(token, StreamEndToken) or token.start_mark.index >= stop.index:
                    break
                if isinstance(token, ScalarToken) and token.style in ("'", '"'):
                    last = token
        finally:
            scanner.dispose()
    except yaml.YAMLError:
        pass
    if last is None or last.end_mark.line == last.start_mark.line or last.end_mark.line != stop.line:
        return None
    swallowed = lines[last.start_mark.line + 1:last.end_mark.line + 1]
    if not any(_STRUCTURE.match(line) for line in swallowed):
        return None  # a string over several lines on purpose
    start, end = last.start_mark, last.end_mark
    return Problem("", _loc(start), None,
                   f"YAML syntax error: unterminated quoted string starting here: it runs on to line {end.line + 1}, "
                   f"column {end.column}, where the next {last.style} closes it, swallowing the lines between (YAML "
                   f"stops at line {stop.line + 1}, column {stop.column + 1}: {exc.problem}); close the quote on "
                   f"line {start.line + 1}")


def parse_yaml(text: str, display: str, empty: str = "a spec needs at least name, version and owner") -> YamlDocument:
    """Parse spec text. Problems carry `display` as the file name; `empty` says what an empty file lacks."""
    lines = text.splitlines()
    source = SourceMap()
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        quote = _unterminated_quote(text, lines, exc)
        if quote is not None:
            line0, col0 = quote.loc.line - 1, quote.loc.col - 1
            problem = Problem(display, quote.loc, None, quote.message, syntax_context(lines, line0, col0))
            return YamlDocument(None, source, [problem], ok=False)
        mark = exc.problem_mark or exc.context_mark
        line0, col0 = (mark.line, mark.column) if mark is not None else (0, 0)
        message = f"YAML syntax error: {exc.problem or exc.context or 'invalid YAML'}"
        if exc.context and exc.context_mark is not None and exc.problem:
            message += f" ({exc.context} at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
        # PyYAML puts the telling phrase in `context` for some errors (several documents).
        hint = next((h for k, h in _HINTS.items() if any(t and t.startswith(k) for t in (exc.problem, exc.context))),
                    None)
        if hint:
            message += f"; hint: {hint}"
        problem = Problem(display, Loc(line0 + 1, col0 + 1), None, message, syntax_context(lines, line0, col0))
        return YamlDocument(None, source, [problem], ok=False)
    except yaml.reader.ReaderError as exc:
        before = text[:exc.position]
        line0, col0 = before.count("\n"), len(before) - (before.rfind("\n") + 1)
        problem = Problem(display, Loc(line0 + 1, col0 + 1), None,
                          f"YAML syntax error: character #x{exc.character if isinstance(exc.character, int) else 0:04x}"
                          " is not allowed in YAML text", syntax_context(lines, line0, col0))
        return YamlDocument(None, source, [problem], ok=False)
    except (yaml.YAMLError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return YamlDocument(None, source, [Problem(display, Loc(1, 1), None, f"YAML syntax error: {why}")], ok=False)
    if root is None or (isinstance(root, ScalarNode) and root.tag == NULL and root.value == ""):  # or only '---'
        return YamlDocument(None, source, [Problem(display, Loc(1, 1), (), f"the file is empty; {empty}")], ok=False)
    conv = _Converter(display, lines)
    try:
        data = conv.convert(root, (), 0)
    except (_TooBig, RecursionError):
        return YamlDocument(None, conv.source, [Problem(display, Loc(1, 1), (), f"the document expands to more than "
                                                        f"{MAX_NODES} nodes (aliases?); a spec is far smaller")],
                            ok=False)
    return YamlDocument(data, conv.source, conv.problems)


def read_yaml(path: Path, display: str) -> YamlDocument:
    """Read and parse a spec file; unreadable files become a problem, never an exception."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return YamlDocument(None, SourceMap(), [Problem(display, Loc(1, 1), None,
                                                        f"cannot read the file: {unreadable(exc)}")], ok=False)
    return parse_bytes(raw, display)


def unreadable(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def parse_bytes(raw: bytes, display: str, empty: str = "a spec needs at least name, version and owner") -> YamlDocument:
    """Parse a file's bytes (size limit, UTF-8, YAML); `sha256` is of these bytes."""
    if len(raw) > MAX_BYTES:
        return YamlDocument(None, SourceMap(), [Problem(display, Loc(1, 1), None, f"the file is {len(raw)} bytes; a "
                                                        f"spec may be at most {MAX_BYTES} bytes")], ok=False)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[:exc.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        return YamlDocument(None, SourceMap(), [Problem(display, Loc(line, col), None, f"the file is not UTF-8 text "
                                                        f"(byte 0x{raw[exc.start]:02x})")], ok=False)
    doc = parse_yaml(text, display, empty)
    doc.sha256 = hashlib.sha256(raw).hexdigest()
    return doc
