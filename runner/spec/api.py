"""The public entry points: `load_spec` (for every command that reads a spec) and `run_check` (for `check`).

Pipeline for one file: read + parse YAML (syntax, duplicate keys, tags) → JSON Schema (every problem at once) →
typed parts of whatever passed → semantic checks → the Spec, or all problems sorted by position. Nothing here
touches a database.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from runner.errors import EXIT_OK, EXIT_USAGE, SpecError
from runner.spec import schema, semantic
from runner.spec.build import Builder
from runner.spec.model import (
    Alerts,
    BuiltinChecks,
    CustomCheck,
    Dna,
    Execution,
    FiscalPeriods,
    Mapping,
    OrganizationConfig,
    PostingRules,
    Scope,
    Spec,
)
from runner.spec.problems import JsonPath, Problem, in_order, pointer, printable
from runner.spec.report import Report
from runner.spec.yamlsrc import YamlDocument, parse_bytes, read_yaml, unreadable

T = TypeVar("T")
_FAMILIES: dict[str, type[PostingRules | FiscalPeriods | OrganizationConfig]] = {
    "posting_rules": PostingRules, "fiscal_periods": FiscalPeriods, "organization_config": OrganizationConfig}


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    path: Path
    display: str
    spec: Spec | None
    problems: tuple[Problem, ...]  # errors: the file is not usable
    warnings: tuple[Problem, ...] = ()  # the file is usable, but QA should read these
    files: tuple[str, ...] = ()  # the spec and its check libraries, as displayed (the order problems are shown in)

    @property
    def ok(self) -> bool:
        return not self.problems

    def rendered(self) -> list[str]:
        """Every problem and warning, one line each: the spec's first, then each check library's, by position."""
        return [p.render() for p in in_order([*self.problems, *self.warnings], [self.display, *self.files])]


@dataclass
class _Library:
    """One file of validations.include."""

    item: int  # its position in the include list
    written: str  # the path as the spec writes it
    display: str
    doc: YamlDocument
    problems: list[Problem] = field(default_factory=list)


def check_file(path: Path, display: str | None = None) -> CheckResult:
    """Load and check one spec file (and the check libraries it includes); never raises for anything wrong with
    the files."""
    shown = display if display is not None else str(path)
    doc = read_yaml(path, shown)
    if not doc.ok:
        return CheckResult(path, shown, None, tuple(doc.problems))
    problems = [*doc.problems, *schema.validate(doc.data, doc.source, shown)]
    if not isinstance(doc.data, dict):  # a list or text at the top: the schema said so; nothing else applies
        return CheckResult(path, shown, None, tuple(sorted(problems, key=Problem.sort_key)))
    report = Report(shown, doc.source)
    data: dict[str, Any] = doc.data
    builder = Builder()
    bad = [p.path for p in problems if p.path is not None]
    parts = _parts(data, bad, builder)
    for bpath, message in builder.problems:
        report.add(bpath, message)
    libraries = _libraries(path, shown, data, bad, report)
    for lib in libraries:
        source = _library_source(lib)
        if source is not None:
            parts.libraries.append(source)
    semantic.run(report, parts)
    everything = [*problems, *report.problems, *(p for lib in libraries for p in lib.problems),
                  *(p for src in parts.libraries for p in src.report.problems)]
    errors = tuple(p for p in everything if p.severity == "error")
    warnings = tuple(p for p in everything if p.severity == "warning")
    files = tuple(lib.display for lib in libraries)
    if errors:
        return CheckResult(path, shown, None, errors, warnings, files)
    merged = _merged(data, libraries)
    spec = replace(Builder().build(Spec, merged), path=path, sha256=_sha256(doc, libraries))
    return CheckResult(path, shown, spec, (), warnings, files)


def _libraries(path: Path, shown: str, data: dict[str, Any], bad: list[JsonPath], report: Report) -> list[_Library]:
    """Read and parse every file of validations.include (relative to the spec's directory). A file that cannot
    be read, or is listed twice, is a problem at its item in the spec."""
    validations = data.get("validations")
    items = validations.get("include") if isinstance(validations, dict) else None
    if not isinstance(items, list) or not _clean(bad, ("validations", "include")):
        return []
    out: list[_Library] = []
    seen: dict[str, int] = {}
    for k, written in enumerate(items):
        item: JsonPath = ("validations", "include", k)
        file = path.parent / written
        try:
            key = str(file.resolve())
            raw = file.read_bytes()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            reason = unreadable(exc) if isinstance(exc, OSError) else "a symbolic link loop"
            report.add(item, f"cannot read the included file {written}: {reason}")
            continue
        if key in seen:
            report.add(item, f"{written} is already included by {pointer(('validations', 'include', seen[key]))}")
            continue
        seen[key] = k
        display = os.path.normpath(os.path.join(os.path.dirname(shown), written))
        lib = _Library(k, written, display, parse_bytes(raw, display, "a check library needs custom: or builtin:"))
        if lib.doc.ok:
            lib.problems += [*lib.doc.problems, *schema.validate(lib.doc.data, lib.doc.source, display,
                                                                 "checkLibrary")]
        else:
            lib.problems += lib.doc.problems
        out.append(lib)
    return out


def _library_source(lib: _Library) -> semantic.CheckSource | None:
    """The checks of one library that passed the schema, for the semantic checks (reported in the library)."""
    data = lib.doc.data
    if not lib.doc.ok or not isinstance(data, dict):
        return None
    bad = [p.path for p in lib.problems if p.path is not None]
    report = Report(lib.display, lib.doc.source)
    builder = Builder()
    source = semantic.CheckSource(report, ())
    builtin = data.get("builtin", {})
    if isinstance(builtin, dict) and _clean(bad, ("builtin",)):
        source.builtin = builder.build(BuiltinChecks, builtin, ("builtin",))
        source.builtin_written = list(builtin)
    source.custom, _ = _items(data, CustomCheck, ("custom",), bad, builder)
    for bpath, message in builder.problems:
        report.add(bpath, message)
    return source


def _merged(data: dict[str, Any], libraries: list[_Library]) -> dict[str, Any]:
    """The spec's data with its libraries' checks joined in: custom checks after the spec's own, in include
    order; built-in settings (each configured in one file only, as check made sure)."""
    if not libraries:
        return data
    validations = dict(data.get("validations") or {})
    builtin = dict(validations.get("builtin") or {})
    custom = list(validations.get("custom") or [])
    for lib in libraries:
        builtin.update(lib.doc.data.get("builtin") or {})
        custom += lib.doc.data.get("custom") or []
    validations.update(builtin=builtin, custom=custom)
    return {**data, "validations": validations}


def _sha256(doc: YamlDocument, libraries: list[_Library]) -> str:
    """The spec's identity for the run journal (a resumed run refuses another spec): the file's own sha256 when it
    includes nothing (as before check libraries existed), else the sha256 of a text naming the spec's digest and
    each library's path as written and digest, in include order -- so changing a library changes the spec."""
    if not libraries:
        return doc.sha256
    text = f"{doc.sha256}\n" + "".join(f"check library {lib.written} {lib.doc.sha256}\n" for lib in libraries)
    return hashlib.sha256(text.encode()).hexdigest()


def load_spec(path: Path | str) -> Spec:
    """The typed spec of `path`; raises SpecError (exit code 2) carrying every problem, one line each."""
    result = check_file(Path(path), str(path))
    if result.spec is None:
        raise SpecError(result.rendered())
    for line in (p.render() for p in result.warnings):  # usable, but plan/run/validate must not hide them
        log.warning("%s", line)
    return result.spec


def run_check(paths: Sequence[Path]) -> tuple[int, str]:
    """`hera-migrate check`: (exit code 0 or 2, the text to print). Every file is checked; nothing touches a DB."""
    lines: list[str] = []
    failed = 0
    unique = list(dict.fromkeys(paths))
    for path in unique:
        result = check_file(path)
        w = len(result.warnings)
        warned = f"{w} warning{'s' if w != 1 else ''}"
        if result.spec is not None:
            lines.append(printable(f"{result.display}: OK: {summary(result.spec)}"))  # version is free text
            if w:
                lines.extend(result.rendered())
                lines.append(f"{result.display}: {warned}")
        else:
            failed += 1
            lines.extend(result.rendered())
            n = len(result.problems)
            lines.append(f"{result.display}: {n} problem{'s' if n != 1 else ''}" + (f", {warned}" if w else ""))
    if len(unique) > 1:
        lines.append(f"{len(unique)} files checked: {len(unique) - failed} OK, {failed} with problems")
    return (EXIT_USAGE if failed else EXIT_OK), "\n".join(lines)


def summary(spec: Spec) -> str:
    tiers = spec.tier_counts()
    n = len(spec.mappings)
    checks = spec.validations.checks()
    custom = sum(1 for c in checks if c.kind == "custom")
    families = spec.entities.families()
    return (f"{spec.name} {spec.version}, {spec.dna.source} -> {spec.dna.target}: {n} mapping{'s' if n != 1 else ''} "
            f"({tiers['reverse_repost']} reverse_repost, {tiers['reporting_alias']} reporting_alias); entity "
            f"migrations: {', '.join(families) if families else 'none'}; {len(checks) + 1} checks "
            f"({len(checks) - custom} built-in, {custom} custom, 1 expected_effect_diff: the snapshot diff every run "
            f"adds)")


def _clean(bad: Iterable[JsonPath], prefix: JsonPath) -> bool:
    return not any(p[:len(prefix)] == prefix for p in bad if len(p) >= len(prefix))


def _items(data: dict[str, Any], cls: type[T], path: JsonPath, bad: list[JsonPath],
           builder: Builder) -> tuple[list[tuple[int, T]], bool]:
    """The items of the list at `path` that passed the schema, built; and whether that is all of them."""
    node: Any = data
    for key in path:
        node = node.get(key, []) if isinstance(node, dict) else None
    if not isinstance(node, list) or any(p == path for p in bad):
        return [], False
    built = [(i, builder.build(cls, item, (*path, i))) for i, item in enumerate(node)
             if isinstance(item, dict) and _clean(bad, (*path, i))]
    return built, len(built) == len(node)


def _parts(data: dict[str, Any], bad: list[JsonPath], builder: Builder) -> semantic.Parts:
    parts = semantic.Parts()

    def section(cls: type[T], path: JsonPath) -> T | None:
        node: Any = data
        for key in path:
            node = node.get(key, {}) if isinstance(node, dict) else None
        if not _clean(bad, path) or not isinstance(node, dict):
            return None
        return builder.build(cls, node, path)

    def items(cls: type[T], path: JsonPath) -> tuple[list[tuple[int, T]], bool]:
        return _items(data, cls, path, bad, builder)

    parts.dna = section(Dna, ("dna",))
    mappings, parts.mappings_complete = items(Mapping, ("mappings",))
    parts.mappings = None if ("mappings",) in bad else mappings
    parts.scope = section(Scope, ("scope",))
    entities = data.get("entities", {})
    if isinstance(entities, dict):
        for family, cls in _FAMILIES.items():
            if family in entities:
                model = section(cls, ("entities", family))
                if model is not None:
                    parts.entities[family] = model
        parts.entities_complete = _clean(bad, ("entities",))
    parts.execution = section(Execution, ("execution",))
    parts.builtin = section(BuiltinChecks, ("validations", "builtin"))
    validations = data.get("validations")
    written = validations.get("builtin") if isinstance(validations, dict) else None
    parts.builtin_written = list(written) if isinstance(written, dict) else []
    parts.custom, _ = items(CustomCheck, ("validations", "custom"))
    parts.alerts = section(Alerts, ("alerts",))
    return parts
