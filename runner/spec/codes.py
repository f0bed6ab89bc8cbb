"""HERA smart codes as the spec sees them: normalisation, the strict pattern, wildcard patterns and templates.

Facts (docs/hera-reference.md §1.7, §3): HERA upper-cases a code and rewrites a trailing `.V<n>` to `.v<n>`
before applying its strict pattern, so `…SALE.v1` and `…SALE.V1` are the same code. Everything here works on
that normal form and is pure (no database).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache

STRICT_PATTERN = r"^HERA\.[A-Z0-9]{3,15}(?:\.[A-Z0-9_]{2,30}){3,8}\.v[0-9]+$"
_STRICT = re.compile(r"\AHERA\.[A-Z0-9]{3,15}(?:\.[A-Z0-9_]{2,30}){3,8}\.v[0-9]+\Z")
_VERSION_TAIL = re.compile(r"\.[Vv]([0-9]+)\Z")
_SEGMENT = re.compile(r"\A[A-Z0-9_]+\Z")
_PLACEHOLDER = re.compile(r"\{([0-9]+)\}")
MAX_LENGTH = 100  # smart_code is varchar(100)
SAMPLE_SEGMENT = "XXX"  # stands for a wildcard when a template is checked without real codes
MIN_SEGMENTS = 6  # HERA, industry, 3 segments, version: the shortest code the strict pattern accepts

# smart_is_negative_txn_static (chk_txn_total_sign): parts are 1-based after splitting on '.'.
_NEGATIVE_PART4 = frozenset({"CREDIT", "REFUND", "REVERSAL", "RETURN", "CREDIT_MEMO"})
_NEGATIVE_PART5 = frozenset({"CREDIT", "REFUND", "REVERSAL", "RETURN", "ADJUST"})
_NEGATIVE_PART6 = frozenset({"SPOILAGE", "SHRINKAGE", "WRITE_OFF", "WRITEOFF", "DAMAGE", "DAMAGED", "LOSS", "LOST",
                             "BREAKAGE", "WASTE"})


def normalize(code: str) -> str:
    """HERA's normal form: upper-case, then a trailing `.V<n>` becomes `.v<n>`."""
    return _VERSION_TAIL.sub(lambda m: f".v{m.group(1)}", code.upper())


def same_code(a: str, b: str) -> bool:
    return normalize(a) == normalize(b)


def is_strict(code: str) -> bool:
    """True when HERA's strict CHECK (core_entities, universal_transactions, lines) accepts the code."""
    return code.isascii() and len(code) <= MAX_LENGTH and _STRICT.match(normalize(code)) is not None


def version_of(code: str) -> str | None:
    """`v1` for `….V1`/`….v1`; None when the code has no version suffix."""
    m = _VERSION_TAIL.search(code)
    return f"v{m.group(1)}" if m else None


def bump_version(code: str, target: str) -> str:
    """The normalised code with its version replaced by `target` (e.g. `v2`)."""
    return _VERSION_TAIL.sub(f".{target}", normalize(code))


def strict_problem(code: str) -> str | None:
    """Why HERA's strict pattern rejects `code`, in plain words; None when it is accepted."""
    if is_strict(code):
        return None
    reasons: list[str] = []
    bad = sorted({c for c in code if not c.isascii() or not (c.isalnum() or c in "._")})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        reasons.append(f"contains {shown}; only letters, digits, '_' and '.' are allowed")
    if len(code) > MAX_LENGTH:
        reasons.append(f"is {len(code)} characters long; smart_code holds at most {MAX_LENGTH}")
    parts = normalize(code).split(".") if code.isascii() else code.upper().split(".")
    if parts[0] != "HERA":
        reasons.append("must start with 'HERA.'")
    if version_of(code) is None:
        reasons.append("must end with a version such as .v2")
    if parts[0] == "HERA" and len(parts) >= 2:
        industry = parts[1]
        if not 3 <= len(industry) <= 15:
            reasons.append(f"industry segment '{industry}' has {len(industry)} character"
                           f"{'' if len(industry) == 1 else 's'}; HERA needs 3-15 letters or digits"
                           + (" (codes like HERA.SD.*, HERA.HR.*, HERA.MM.* cannot be stored)"
                              if len(industry) == 2 else ""))
        elif "_" in industry:
            reasons.append(f"industry segment '{industry}' contains '_', which HERA's strict pattern forbids there")
        middle = parts[2:-1] if version_of(code) else parts[2:]
        if not 3 <= len(middle) <= 8:
            reasons.append(f"has {len(middle)} segment{'' if len(middle) == 1 else 's'} between the industry and the "
                           "version; HERA needs 3 to 8")
        for seg in middle:
            if not 2 <= len(seg) <= 30 and seg:
                reasons.append(f"segment '{seg}' has {len(seg)} character{'' if len(seg) == 1 else 's'}; HERA needs "
                               "2-30")
            elif not seg:
                reasons.append("has an empty segment ('..')")
    if not reasons:
        reasons.append(f"does not match HERA's strict pattern {STRICT_PATTERN}")
    return "; ".join(dict.fromkeys(reasons))


def is_negative_txn(code: str) -> bool:
    """HERA's smart_is_negative_txn_static: such headers must carry total_amount <= 0 (chk_txn_total_sign)."""
    parts = normalize(code).split(".")
    return ((len(parts) > 3 and parts[3] in _NEGATIVE_PART4) or (len(parts) > 4 and parts[4] in _NEGATIVE_PART5)
            or (len(parts) > 5 and parts[5] in _NEGATIVE_PART6))


def negative_reason(code: str) -> str:
    parts = normalize(code).split(".")
    for pos, words in ((4, _NEGATIVE_PART4), (5, _NEGATIVE_PART5), (6, _NEGATIVE_PART6)):
        if len(parts) >= pos and parts[pos - 1] in words:
            return f"part {pos} is {parts[pos - 1]}"
    return "no part marks it negative"


# --- wildcard patterns ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Glob:
    """A parsed wildcard pattern: segments are literals (normalised), '*' (one segment) or '**' (one or more)."""

    text: str
    segments: tuple[str, ...]

    @property
    def captures(self) -> int:
        return sum(1 for s in self.segments if s in ("*", "**"))

    @property
    def version(self) -> str | None:
        last = self.segments[-1] if self.segments else ""
        return last if re.fullmatch(r"v[0-9]+", last) else None

    def regex(self) -> re.Pattern[str]:
        return _glob_regex(self.segments)

    def matches(self, code: str) -> re.Match[str] | None:
        return self.regex().fullmatch(normalize(code))

    def sample(self) -> str:
        """A concrete normalised code this pattern matches: each wildcard becomes one XXX segment, except that the
        first '**' grows to the shortest code HERA can store (HERA.<industry>.<3 segments>.v<n>), so that
        HERA.MFG.**.v1 stands for HERA.MFG.XXX.XXX.XXX.v1 rather than for a code no row can carry."""
        segments = [SAMPLE_SEGMENT if s in ("*", "**") else s for s in self.segments]
        if "**" in self.segments:
            k = self.segments.index("**")
            segments[k:k + 1] = [SAMPLE_SEGMENT] * max(1, 1 + MIN_SEGMENTS - len(segments))
        return ".".join(segments)

    @property
    def spans(self) -> tuple[bool, ...]:
        """Per capture: True when it may span several segments ('**')."""
        return tuple(s == "**" for s in self.segments if s in ("*", "**"))


def parse_glob(text: str) -> tuple[Glob | None, str | None]:
    """(glob, None) or (None, why it is not a valid pattern)."""
    raw = normalize(text).split(".")
    segments: list[str] = []
    for seg in raw:
        if seg in ("*", "**"):
            segments.append(seg)
        elif "*" in seg:
            return None, f"segment '{seg}' mixes '*' with other characters; '*' must stand alone as a whole segment"
        elif not _SEGMENT.match(seg) and not re.fullmatch(r"v[0-9]+", seg):
            return None, f"segment '{seg}' is not letters, digits and '_'"
        else:
            segments.append(seg)
    if segments[0] != "HERA":
        return None, "must start with 'HERA.'"
    if not re.fullmatch(r"v[0-9]+", segments[-1]):
        return None, "must end with a version such as .v1"
    return Glob(text, tuple(segments)), None


@lru_cache(maxsize=512)
def _glob_regex(segments: tuple[str, ...]) -> re.Pattern[str]:
    parts = []
    for seg in segments:
        if seg == "*":
            parts.append(r"([A-Z0-9_]+)")
        elif seg == "**":
            parts.append(r"([A-Z0-9_]+(?:\.[A-Z0-9_]+)*)")
        else:
            parts.append(re.escape(seg))
    return re.compile(r"\.".join(parts))


def glob_intersection(a: Glob, b: Glob) -> str | None:
    """A code both patterns match (exact, also with '**'), or None when they cannot overlap."""
    sa, sb = a.segments, b.segments

    def one(x: str, y: str) -> str:
        return y if x in ("*", "**") and y not in ("*", "**") else x if x not in ("*", "**") else SAMPLE_SEGMENT

    @cache
    def inter(i: int, j: int) -> tuple[str, ...] | None:
        if i == len(sa) and j == len(sb):
            return ()
        if i == len(sa) or j == len(sb):
            return None
        x, y = sa[i], sb[j]
        steps: list[tuple[int, int]] = []
        if x == "**" and y == "**":
            steps = [(i + 1, j + 1), (i, j + 1), (i + 1, j)]
        elif x == "**":
            steps = [(i + 1, j + 1), (i, j + 1)]
        elif y == "**":
            steps = [(i + 1, j + 1), (i + 1, j)]
        elif x == "*" or y == "*" or x == y:
            steps = [(i + 1, j + 1)]
        for ni, nj in steps:
            rest = inter(ni, nj)
            if rest is not None:
                return (one(x, y), *rest)
        return None

    found = inter(0, 0)
    return None if found is None else ".".join(found)


def _step(segments: tuple[str, ...], states: frozenset[int], symbol: str) -> frozenset[int]:
    """The pattern as an automaton: state k = the first k elements matched; '**' loops on its end state."""
    out: set[int] = set()
    for k in states:
        if k < len(segments) and segments[k] in ("*", "**", symbol):
            out.add(k + 1)
        if k > 0 and segments[k - 1] == "**":
            out.add(k)
    return frozenset(out)


@lru_cache(maxsize=1024)
def glob_contains(outer: Glob, inner: Glob) -> bool:
    """True when every code `inner` matches, `outer` matches too (e.g. HERA.MFG.**.v1 contains
    HERA.MFG.PROD.TXN.*.v1). Patterns tell segments apart only by the literals they name, so every other segment
    is one symbol and the question is the containment of two regular languages over a finite alphabet: walk both
    automata together and look for a code `inner` accepts and `outer` does not."""
    o, i = outer.segments, inner.segments
    alphabet = {s for s in (*o, *i) if s not in ("*", "**")} | {""}  # "" stands for any segment neither names
    start = (frozenset({0}), frozenset({0}))
    seen, todo = {start}, [start]
    while todo:
        si, so = todo.pop()
        if len(i) in si and len(o) not in so:
            return False
        for symbol in alphabet:
            nxt = (_step(i, si, symbol), _step(o, so, symbol))
            if nxt[0] and nxt not in seen:  # inner can go on: a code it matches may still come
                seen.add(nxt)
                todo.append(nxt)
    return True


@lru_cache(maxsize=512)
def compile_regex(text: str) -> re.Pattern[str]:
    """A spec regex: whole-code, case-insensitive match on the normalised code. Raises re.error."""
    return re.compile(text, re.IGNORECASE)


# --- templates ----------------------------------------------------------------------------------------------------


def placeholders(template: str) -> list[int]:
    return [int(n) for n in _PLACEHOLDER.findall(template)]


def expand(template: str, groups: tuple[str, ...]) -> str:
    """Fill {1}, {2}... from captured groups and normalise the result."""
    def sub(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return groups[n - 1] if 0 < n <= len(groups) else m.group(0)

    return normalize(_PLACEHOLDER.sub(sub, template))
