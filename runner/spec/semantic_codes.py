"""Semantic checks of smart-code mappings and remaps: HERA's strict pattern, versions, overlaps, chains, cycles."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from runner.spec import codes
from runner.spec.model import CodeSelector, Dna, LineOverride, Mapping, narrowest
from runner.spec.problems import JsonPath, SourceMap
from runner.spec.report import Report


@dataclass(frozen=True)
class _Item:
    index: int
    sel: CodeSelector
    path: JsonPath
    glob: codes.Glob | None = None
    regex: re.Pattern[str] | None = None
    captures: int = 0
    sample_source: str | None = None  # a normalised v1 code this item takes (None for a regex)
    target: str | None = None  # the v2 code for sample_source (None when unknown)

    @property
    def selector_path(self) -> JsonPath:
        return (*self.path, self.sel.selector_key)

    def takes(self, code: str) -> bool:
        return self.sel.captures(code) is not None


def check_selectors(report: Report, dna: Dna | None, entries: Sequence[tuple[int, CodeSelector]], base: JsonPath,
                    *, what: str) -> None:
    """All checks for a list of mappings (`what`="transaction") or entity remaps (`what`="entity")."""
    items = [_item(report, dna, i, sel, (*base, i), what) for i, sel in entries]
    _overlaps(report, [it for it in items if it is not None], what)
    _chains(report, [it for it in items if it is not None])
    for i, sel in entries:
        if isinstance(sel, Mapping):
            _lines(report, dna, sel, (*base, i))


def _where(source: SourceMap, path: JsonPath) -> str:
    from runner.spec.problems import pointer

    return f"{pointer(path)} (line {source.value(path).line})"


def _item(report: Report, dna: Dna | None, index: int, sel: CodeSelector, path: JsonPath, what: str) -> _Item | None:
    sel_path = (*path, sel.selector_key)
    glob: codes.Glob | None = None
    regex: re.Pattern[str] | None = None
    captures, sample, ok = 0, None, True
    if sel.from_ is not None:
        sample = codes.normalize(sel.from_)
        why = codes.strict_problem(sel.from_)
        if why:
            report.add(sel_path, f"{sel.from_!r} can never be a stored {what} code, HERA's strict pattern rejects it: "
                                 f"{why}")
            ok = False
        if dna and codes.version_of(sel.from_) != dna.source:
            report.add(sel_path, f"{sel.from_} is a {codes.version_of(sel.from_)} code, but dna.source is {dna.source}:"
                                 f" sources end in .{dna.source}")
    elif sel.match is not None:
        glob, why = codes.parse_glob(sel.match)
        if glob is None:
            report.add(sel_path, f"{sel.match!r} is not a valid pattern: {why}")
            return None
        captures, sample = glob.captures, glob.sample()
        if dna and glob.version != dna.source:
            report.add(sel_path, f"the pattern ends in .{glob.version} but dna.source is {dna.source}: it must end in "
                                 f".{dna.source}")
    else:
        try:
            regex = codes.compile_regex(sel.regex or "")
        except re.error as exc:
            report.add(sel_path, f"not a valid regular expression: {exc.msg}"
                                 + (f" at position {exc.pos}" if exc.pos is not None else ""))
            return None
        captures = regex.groups
    spans = glob.spans if glob is not None else (True,) * captures  # a regex group may hold dots
    target = _target(report, dna, sel, path, spans, sample, ok)
    if isinstance(sel, Mapping) and target and sample and sel.tier == "reverse_repost" and \
            codes.is_negative_txn(target) != codes.is_negative_txn(sample):
        neg, pos = (target, sample) if codes.is_negative_txn(target) else (sample, target)
        report.add((*path, "to") if sel.to else sel_path,
                   f"HERA would reject the reposts: {neg} is a negative-total code ({codes.negative_reason(neg)}; "
                   f"chk_txn_total_sign needs total_amount <= 0) but {pos} is not, so the copied totals cannot carry "
                   "both; map to a code of the same sign")
    return _Item(index, sel, path, glob, regex, captures, sample, target)


def _capture_samples(spans: tuple[bool, ...]) -> list[tuple[str, ...]]:
    """Captured parts to try a template with: one XXX segment each, then each capture that may span segments
    widened to 2..6 of them. A template is wrong only when none of these gives a code HERA can store."""
    one = (codes.SAMPLE_SEGMENT,) * len(spans)
    wide = [(*one[:k], ".".join([codes.SAMPLE_SEGMENT] * n), *one[k + 1:])
            for k, multi in enumerate(spans) if multi for n in range(2, 7)]
    return [one, *wide]


def _target(report: Report, dna: Dna | None, sel: CodeSelector, path: JsonPath, spans: tuple[bool, ...],
            sample: str | None, source_ok: bool) -> str | None:
    to_path = (*path, "to")
    captures = len(spans)
    if sel.to is not None:
        wanted = codes.placeholders(sel.to)
        if wanted and sel.from_ is not None:
            report.add(to_path, "placeholders like {1} need 'match' or 'regex'; 'from' captures nothing")
            return None
        too_big = sorted({n for n in wanted if n < 1 or n > captures})
        if too_big:
            report.add(to_path, f"{{{too_big[0]}}} refers to capture {too_big[0]}, but the "
                                f"{'pattern' if sel.match is not None else 'regex'} captures only {captures}")
            return None
        tries = [codes.expand(sel.to, groups) for groups in _capture_samples(spans)]
        target = next((t for t in tries if codes.is_strict(t)), tries[0])
        where, label = to_path, (f"{sel.to!r} gives codes like {target}, which HERA's strict pattern rejects"
                                 if wanted else f"{sel.to!r} is not a valid HERA smart code")
    elif sample is not None:
        if not source_ok:
            return None
        target = codes.bump_version(sample, dna.target if dna else "v2")
        where = (*path, sel.selector_key)
        label = f"the version-bumped target {target} is not a valid HERA smart code (set 'to')"
    else:
        return None  # a regex with a version bump: only real codes tell (check --dsn coverage)
    why = codes.strict_problem(target)
    if why:
        report.add(where, f"{label}: {why}")
        return None
    if dna and codes.version_of(target) != dna.target:
        report.add(where, f"the target ends in .{codes.version_of(target)} but dna.target is {dna.target}: v2 codes "
                          f"end in .{dna.target}")
    if sample is not None and sel.from_ is not None and target == sample:
        report.add(where, "maps a code to itself")
    if sel.to is not None and (dna is None or codes.version_of(target) == dna.target):
        _normal_form(report, to_path, sel.to)
    return target


def _normal_form(report: Report, path: JsonPath, code: str) -> None:
    """A target QA wrote in another case than HERA stores: valid (it is normalised), but what is written to the
    database should not differ from what the spec says without a word."""
    normal = codes.normalize(code)
    if normal != code:
        report.warn(path, f"{code} is written as {normal} (HERA stores smart codes upper-case with a lower-case "
                          "version); write it that way")


def _overlaps(report: Report, items: list[_Item], what: str) -> None:
    """Every v1 code is taken by one selector, or by the narrowest of several (model.narrowest, the rule every
    resolution applies); two `from` for one code, and overlaps with no narrowest selector, are problems."""
    first_exact: dict[str, _Item] = {}
    repeated: set[int] = set()
    for it in items:
        if it.sel.from_ is None or it.sample_source is None:
            continue
        prev = first_exact.get(it.sample_source)
        if prev is not None:
            report.add(it.selector_path, f"{it.sel.from_} is already mapped by {_where(report.source, prev.path)}; a "
                                         f"v1 {what} code may be mapped only once (codes compare case-insensitively)")
            repeated.add(it.index)
        else:
            first_exact[it.sample_source] = it
    # A repeated exact code already has its problem; its overlaps would only repeat those of the first one.
    distinct = [it for it in items if it.index not in repeated]
    for a_pos, a in enumerate(distinct):
        for b in distinct[a_pos + 1:]:
            example = _overlap(a, b)
            if example is None or (a.sel.from_ is not None and b.sel.from_ is not None):
                continue
            if narrowest([a.sel, b.sel]) is not None:
                continue  # the narrower one takes the shared codes: the rule every resolution applies
            if a.sel.narrower(b.sel) and b.sel.narrower(a.sel):
                why = (f"both take the same codes (e.g. {example}), so neither is narrower than the other; keep one "
                       "of them")
            elif a.regex is not None or b.regex is not None:
                why = (f"{example} would be mapped by both, and a regex is never narrower or broader than another "
                       "selector (only a from wins over it); turn the regex into a pattern, or take the shared "
                       "codes out of one of them")
            else:
                why = (f"{example} would be mapped by both, and neither is narrower than the other (a pattern wins "
                       "only over a broader one that contains it); narrow one so that it lies inside the other, or "
                       f"map the shared codes with from")
            report.add(b.selector_path, f"overlaps {_where(report.source, a.path)}: {why}")


def _overlap(a: _Item, b: _Item) -> str | None:
    """A code both items take, when one can be found without a database."""
    if a.glob is not None and b.glob is not None:
        return codes.glob_intersection(a.glob, b.glob)
    for x, y in ((a, b), (b, a)):
        if x.sample_source is not None and (x.sel.from_ is not None or x.glob is not None) and y.takes(x.sample_source):
            return x.sample_source
    return None


def _chains(report: Report, items: list[_Item]) -> None:
    edges: dict[int, list[_Item]] = {}
    for a in items:
        if a.target is not None:
            edges[a.index] = [b for b in items if b.takes(a.target)]
    by_index = {it.index: it for it in items}
    cycles: set[frozenset[int]] = set()
    for a in items:
        for b in edges.get(a.index, []):
            cycle = _path_back(edges, b.index, a.index)
            if cycle is not None:
                steps = [a.index, *cycle]
                if frozenset(steps) in cycles:  # one cycle is one problem, shown where it first closes
                    continue
                cycles.add(frozenset(steps))
                shown = " -> ".join(f"{_label(by_index[i])}" for i in steps)
                report.add(b.selector_path, f"mappings form a cycle: {shown}; each v1 code must map straight to a "
                                            "final v2 code")
            else:
                report.add(b.selector_path, f"{a.target}, the target of {_where(report.source, a.path)}, is also a "
                                            "source here: mappings cannot chain; map each v1 code straight to its "
                                            "final v2 code")


def _label(it: _Item) -> str:
    return f"{it.sample_source or it.sel.selector} (#{it.index})"


def _path_back(edges: dict[int, list[_Item]], start: int, goal: int) -> list[int] | None:
    """Indexes from `start` to `goal` following edges, or None."""
    stack: list[tuple[int, list[int]]] = [(start, [start])]
    seen: set[int] = set()
    while stack:
        node, trail = stack.pop()
        if node == goal:
            return trail
        if node in seen:
            continue
        seen.add(node)
        stack.extend((nxt.index, [*trail, nxt.index]) for nxt in edges.get(node, []))
    return None


def _lines(report: Report, dna: Dna | None, mapping: Mapping, path: JsonPath) -> None:
    if mapping.lines and mapping.tier != "reverse_repost":
        report.add((*path, "lines"), "line overrides only apply to tier reverse_repost; a reporting alias changes no "
                                     "line", key=True)
        return
    for j, ov in enumerate(mapping.lines):
        lp = (*path, "lines", j)
        if dna and codes.version_of(ov.to) != dna.target:
            report.add((*lp, "to"), f"the line code ends in .{codes.version_of(ov.to)} but dna.target is {dna.target}")
        elif codes.is_strict(ov.to):
            _normal_form(report, (*lp, "to"), ov.to)
        if ".GL." in codes.normalize(ov.to) and ov.side is None:
            report.add((*lp, "to"), f"{ov.to} is a GL line code: HERA requires line_data.side on such lines "
                                    "(chk_gl_side_required), so restrict this override with side: DR or side: CR")
        if ov.match is not None:
            glob, why = codes.parse_glob(ov.match)
            if glob is None:
                report.add((*lp, "match"), f"{ov.match!r} is not a valid pattern: {why}")
            elif dna and glob.version != dna.source:
                report.add((*lp, "match"), f"the pattern ends in .{glob.version} but v1 line codes end in "
                                           f".{dna.source}")
        for k, earlier in enumerate(mapping.lines[:j]):
            if _covers(earlier, ov):
                report.add(lp, f"never used: override {k} ({_where(report.source, (*path, 'lines', k))}) already "
                               "takes every line this one would (the first matching override wins)")
                break


def _covers(a: LineOverride, b: LineOverride) -> bool:
    return ((a.side is None or a.side == b.side)
            and (a.match is None or (b.match is not None and codes.normalize(a.match) == codes.normalize(b.match)))
            and (a.line_type is None or (b.line_type or "").lower() == a.line_type.lower()))
