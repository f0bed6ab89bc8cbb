"""The public entry points: `load_spec` (for every command that reads a spec) and `run_check` (for `check`).

Pipeline for one file: read + parse YAML (syntax, duplicate keys, tags) → JSON Schema (every problem at once) →
typed parts of whatever passed → semantic checks → the Spec, or all problems sorted by position. Nothing here
touches a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
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
from runner.spec.problems import JsonPath, Problem, printable, render_all
from runner.spec.report import Report
from runner.spec.yamlsrc import read_yaml

T = TypeVar("T")
_FAMILIES: dict[str, type[PostingRules | FiscalPeriods | OrganizationConfig]] = {
    "posting_rules": PostingRules, "fiscal_periods": FiscalPeriods, "organization_config": OrganizationConfig}


@dataclass(frozen=True)
class CheckResult:
    path: Path
    display: str
    spec: Spec | None
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def rendered(self) -> list[str]:
        return render_all(list(self.problems))


def check_file(path: Path, display: str | None = None) -> CheckResult:
    """Load and check one spec file; never raises for anything wrong with the file."""
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
    parts = _parts(data, [p.path for p in problems if p.path is not None], builder)
    for bpath, message in builder.problems:
        report.add(bpath, message)
    semantic.run(report, parts)
    problems += report.problems
    if problems:
        return CheckResult(path, shown, None, tuple(sorted(problems, key=Problem.sort_key)))
    spec = replace(Builder().build(Spec, data), path=path, sha256=doc.sha256)
    return CheckResult(path, shown, spec, ())


def load_spec(path: Path | str) -> Spec:
    """The typed spec of `path`; raises SpecError (exit code 2) carrying every problem, one line each."""
    result = check_file(Path(path), str(path))
    if result.spec is None:
        raise SpecError(result.rendered())
    return result.spec


def run_check(paths: Sequence[Path]) -> tuple[int, str]:
    """`hera-migrate check`: (exit code 0 or 2, the text to print). Every file is checked; nothing touches a DB."""
    lines: list[str] = []
    failed = 0
    unique = list(dict.fromkeys(paths))
    for path in unique:
        result = check_file(path)
        if result.spec is not None:
            lines.append(printable(f"{result.display}: OK: {summary(result.spec)}"))  # version is free text
        else:
            failed += 1
            lines.extend(result.rendered())
            n = len(result.problems)
            lines.append(f"{result.display}: {n} problem{'s' if n != 1 else ''}")
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
            f"({len(checks) - custom} built-in, {custom} custom, and expected_effect_diff: the before/after "
            f"snapshot diff, whenever a before-snapshot exists, as every `run` takes)")


def _clean(bad: Iterable[JsonPath], prefix: JsonPath) -> bool:
    return not any(p[:len(prefix)] == prefix for p in bad if len(p) >= len(prefix))


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
        node: Any = data
        for key in path:
            node = node.get(key, []) if isinstance(node, dict) else None
        if not isinstance(node, list) or any(p == path for p in bad):
            return [], False
        built = [(i, builder.build(cls, item, (*path, i))) for i, item in enumerate(node)
                 if isinstance(item, dict) and _clean(bad, (*path, i))]
        return built, len(built) == len(node)

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
    parts.custom, _ = items(CustomCheck, ("validations", "custom"))
    parts.alerts = section(Alerts, ("alerts",))
    return parts
