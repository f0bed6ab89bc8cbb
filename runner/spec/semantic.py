"""Semantic checks: what JSON Schema cannot say. Each check runs on the parts of the spec that passed the schema,
so one pass reports schema problems and semantic problems of the other parts together."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any

from runner.spec import sqlguard, webhooks
from runner.spec.model import (
    BUILTIN_LEVELS,
    Alerts,
    BuiltinChecks,
    CustomCheck,
    Dna,
    Entities,
    Execution,
    FiscalPeriods,
    Mapping,
    OrganizationConfig,
    PostingRules,
    Scope,
    Threshold,
    Transform,
    Webhook,
    WebhookEnv,
)
from runner.spec.problems import JsonPath, pointer
from runner.spec.report import Report
from runner.spec.semantic_codes import check_selectors


@dataclass
class CheckSource:
    """Checks written in one file: the spec's validations section (base ("validations",)) or an included check
    library (base ()). Problems are reported in that file, at paths under `base`."""

    report: Report
    base: JsonPath
    builtin: BuiltinChecks | None = None  # None: not checkable
    builtin_written: list[str] = field(default_factory=list)  # the built-ins this file configures
    custom: list[tuple[int, CustomCheck]] = field(default_factory=list)


@dataclass
class Parts:
    """The sections (and list items) of a spec that passed the schema; None = not checkable."""

    dna: Dna | None = None
    mappings: list[tuple[int, Mapping]] | None = None
    mappings_complete: bool = False  # every mapping item is present (none failed the schema)
    scope: Scope | None = None
    entities: dict[str, PostingRules | FiscalPeriods | OrganizationConfig] = field(default_factory=dict)
    entities_complete: bool = False
    execution: Execution | None = None
    builtin: BuiltinChecks | None = None  # the spec's own section
    custom: list[tuple[int, CustomCheck]] = field(default_factory=list)
    alerts: Alerts | None = None
    libraries: list[CheckSource] = field(default_factory=list)  # included check libraries, in include order
    builtin_written: list[str] = field(default_factory=list)  # the built-ins the spec's own section configures


def run(report: Report, parts: Parts) -> None:
    if parts.dna is not None:
        _dna(report, parts.dna)
    if parts.mappings is not None:
        check_selectors(report, parts.dna, parts.mappings, ("mappings",), what="transaction")
    if parts.mappings_complete and parts.entities_complete and not parts.mappings and not parts.entities:
        report.add((), "the spec migrates nothing: add mappings or entity migrations")
    for family, model in parts.entities.items():
        _entities(report, parts.dna, family, model)
    sources = [CheckSource(report, ("validations",), parts.builtin, parts.builtin_written, parts.custom),
               *parts.libraries]
    if parts.scope is not None:
        _scope(report, parts.scope, _effective(sources, "closed_period_untouched"))
    if parts.execution is not None:
        _execution(report, parts.execution, parts.alerts)
    _builtins(sources)
    _custom(sources)
    if parts.alerts is not None:
        _alerts(report, parts.alerts)


def _version_key(v: str) -> tuple[int, str]:
    """Orders v<digits> by number without int(): the schema puts no bound on the digits (int() stops at 4300)."""
    digits = v[1:].lstrip("0") or "0"
    return len(digits), digits


def _num(x: float) -> str:
    """A number as QA wrote it: 12 rather than 12.0 (the model turns every YAML number into a float)."""
    return str(int(x)) if isinstance(x, float) and x.is_integer() and abs(x) < 1e15 else str(x)


def _dna(report: Report, dna: Dna) -> None:
    if _version_key(dna.target) <= _version_key(dna.source):
        report.add(("dna", "target"), f"target {dna.target} must be a later version than source {dna.source}")


# --- scope -----------------------------------------------------------------------------------------------------


def _effective(sources: list[CheckSource], name: str) -> BuiltinChecks | None:
    """The built-in settings that hold for check `name`: from the file that configures it, else the spec's."""
    return next((s.builtin for s in sources if name in s.builtin_written), sources[0].builtin)


def _scope(report: Report, scope: Scope, builtin: BuiltinChecks | None) -> None:
    base: JsonPath = ("scope",)
    orgs = scope.organizations
    include = {o.lower() for o in orgs.include}
    exclude = {o.lower() for o in orgs.exclude}
    for k, org in enumerate(orgs.exclude):
        if org.lower() in include:
            report.add((*base, "organizations", "exclude", k), f"{org} is also in include; an organisation is either "
                                                               "included or excluded")
    for k, org in enumerate(orgs.priority):
        if org.lower() in exclude:
            report.add((*base, "organizations", "priority", k), f"{org} is excluded, so it cannot be a priority")
        elif include and org.lower() not in include:
            report.add((*base, "organizations", "priority", k), f"{org} is not in include, so it is out of scope; "
                                                                "add it to include or drop it here")
    dr = scope.date_range
    if dr.from_ is not None and dr.to is not None and dr.from_ > dr.to:
        report.add((*base, "date_range", "to"), f"the range ends ({dr.to}) before it starts ({dr.from_})")
    for k, status in enumerate(scope.transaction_statuses):
        for flag in ("reversed", "voided"):
            if status == flag and getattr(scope.skip, flag):
                report.add((*base, "transaction_statuses", k),
                           f"status {flag} can never be a candidate because skip.{flag} is true; remove it here or "
                           f"set skip.{flag}: false")
    if not scope.skip.already_migrated:
        report.add((*base, "skip", "already_migrated"), "must stay true: false would migrate a transaction that "
                                                        "already has its repost a second time")
    closed_check = builtin is not None and builtin.closed_period_untouched.enabled
    for k, status in enumerate(scope.fiscal_period_statuses):
        if status == "closed" and closed_check:
            report.add((*base, "fiscal_period_statuses", k),
                       "closed periods are in scope, but the built-in check closed_period_untouched (enabled) "
                       "requires that nothing in a closed period changes; keep only open, or disable that check")


# --- entity migrations -----------------------------------------------------------------------------------------


def _entities(report: Report, dna: Dna | None, family: str,
              model: PostingRules | FiscalPeriods | OrganizationConfig) -> None:
    base: JsonPath = ("entities", family)
    known_fields: tuple[str, ...] = ()
    if isinstance(model, PostingRules | FiscalPeriods):
        seen: dict[str, int] = {}
        for k, etype in enumerate(model.entity_types):
            if etype.lower() in seen:
                report.add((*base, "entity_types", k), f"{etype!r} is the same type as item {seen[etype.lower()]} "
                                                       "(entity types compare case-insensitively)")
            seen.setdefault(etype.lower(), k)
        known_fields = model.fields
        check_selectors(report, dna, list(enumerate(model.smart_codes)), (*base, "smart_codes"), what="entity")
    containers = ("settings",) if isinstance(model, OrganizationConfig) else ("metadata", "dynamic")
    written: dict[str, int] = {}
    for k, tf in enumerate(model.transforms):
        _transform(report, (*base, "transforms", k), tf, containers, known_fields, family)
        if tf.target in written:
            report.add((*base, "transforms", k, "to" if tf.op != "set" else "set"),
                       f"{tf.target} is already written by transforms/{written[tf.target]}; write each path once")
        written.setdefault(tf.target, k)


def _transform(report: Report, path: JsonPath, tf: Transform, containers: tuple[str, ...],
               known_fields: tuple[str, ...], family: str) -> None:
    used: list[tuple[str, str]] = [(tf.op, tf.set_ or tf.source or "")]
    if tf.op != "set":
        used.append(("to", tf.to or ""))
    for key, value in used:
        head, _, rest = value.partition(".")
        if head not in containers:
            allowed = " or ".join(f"{c}.<key>" for c in containers)
            report.add((*path, key), f"{value} is not addressable in {family}: use {allowed}")
        elif head == "dynamic" and rest.split(".")[0] not in known_fields:
            report.add((*path, key), f"dynamic field '{rest.split('.')[0]}' is not in this family's fields "
                                     f"({', '.join(known_fields) or 'none'}); add it to fields")
    if tf.source is not None and tf.source == tf.to:
        report.add((*path, "to"), f"{tf.op} to the same path it reads")


# --- execution, validations, alerts ----------------------------------------------------------------------------


def _execution(report: Report, ex: Execution, alerts: Alerts | None) -> None:
    base: JsonPath = ("execution",)
    if ex.retries.backoff_seconds > ex.retries.max_backoff_seconds:
        report.add((*base, "retries", "max_backoff_seconds"),
                   f"{_num(ex.retries.max_backoff_seconds)} is shorter than backoff_seconds "
                   f"({_num(ex.retries.backoff_seconds)})")
    win = ex.off_peak_window
    if win is not None:
        if win.start == win.end:
            report.add((*base, "off_peak_window", "end"), "start and end are equal: the window would be empty")
        if win.timezone != "UTC" and _zones() and win.timezone not in _zones():
            report.add((*base, "off_peak_window", "timezone"),
                       f"unknown time zone {win.timezone!r}; use an IANA name such as Europe/Berlin, or UTC")
    critical = alerts.critical.performance_impact_above_pct if alerts else None
    th = ex.throttle
    if th.enabled and critical is not None and th.max_v1_p95_degradation_pct >= critical:
        report.add((*base, "throttle", "max_v1_p95_degradation_pct"),
                   f"the throttle allows {_num(th.max_v1_p95_degradation_pct)}% degradation, but a critical alert "
                   f"fires above {_num(critical)}% (/alerts/critical/performance_impact_above_pct, "
                   f"{report.where(('alerts', 'critical', 'performance_impact_above_pct'))}); keep the throttle "
                   "bound below it")


@cache
def _zones() -> frozenset[str]:
    """IANA zone names; listing them walks the tz database (tens of ms), so once per process."""
    return frozenset(zoneinfo.available_timezones())


def _thresholds(report: Report, path: JsonPath, warn: Threshold | None, error: Threshold | None) -> None:
    """The warning band must be reachable. Two counts or two percentages compare directly; a count and a
    percentage compare only against the number of checked records, so they may be mixed freely (warn_threshold:
    1 with error_threshold: "0.5%": warn from the first row, fail from 0.5 %) -- except under error_threshold 1,
    which fails from the first row, so nothing is left to warn about."""
    if warn is None or error is None:
        return
    error_at = f"error_threshold ({error})" if report.written((*path, "error_threshold")) else \
        f"error_threshold is {error} (the default)"
    if (warn.count is not None and error.count is not None and warn.count >= error.count) or \
            (warn.percent is not None and error.percent is not None and warn.percent >= error.percent):
        if report.written((*path, "error_threshold")):
            report.add((*path, "warn_threshold"), f"warn_threshold ({warn}) must be lower than {error_at}: from "
                                                  "warn_threshold offending rows the check warns, from "
                                                  "error_threshold it fails")
        else:
            report.add((*path, "warn_threshold"), f"warn_threshold ({warn}) is never reached: {error_at}, so the "
                                                  "check fails from the first offending row; set error_threshold "
                                                  "above it, or use severity: warning to report without failing")
    elif warn.percent is not None and error.count == 1:
        report.add((*path, "warn_threshold"), f"warn_threshold ({warn}) is never reached: {error_at}, so the check "
                                              "fails from the first offending row; set error_threshold above 1 "
                                              "(or a percentage), or drop warn_threshold")


def _builtins(sources: list[CheckSource]) -> None:
    """Thresholds of every built-in a file configures; each built-in is configured in one file only."""
    first: dict[str, CheckSource] = {}
    for src in sources:
        if src.builtin is None:
            continue
        for name, rule in src.builtin.items():
            path: JsonPath = (*src.base, "builtin", name)
            _thresholds(src.report, path, rule.warn_threshold, rule.error_threshold)
            if name not in src.builtin_written:
                continue
            prev = first.setdefault(name, src)
            if prev is not src:
                prev_path: JsonPath = (*prev.base, "builtin", name)
                src.report.add(path, f"{name} is already configured by {pointer(prev_path)} "
                                     f"({prev.report.display}, line {prev.report.line(prev_path)}); configure a "
                                     "built-in check in one file only", key=True)


def _custom(sources: list[CheckSource]) -> None:
    """Ids are unique across the spec and its check libraries; every check's thresholds and SQL."""
    ids: dict[str, tuple[CheckSource, int]] = {}
    for src in sources:
        for i, check in src.custom:
            report = src.report
            base: JsonPath = (*src.base, "custom", i)
            if check.id in BUILTIN_LEVELS:
                report.add((*base, "id"), f"'{check.id}' is the name of a built-in check; choose another id")
            elif check.id in ids:
                other, k = ids[check.id]
                where: JsonPath = (*other.base, "custom", k)
                shown = f"line {other.report.line(where)}" if other is src else \
                    f"{other.report.display}, line {other.report.line(where)}"
                report.add((*base, "id"), f"id '{check.id}' is already used by {pointer(where)} ({shown})")
            ids.setdefault(check.id, (src, i))
            _thresholds(report, base, check.warn_threshold, check.error_threshold)
            _sql(report, (*base, "sql"), check)


def _sql(report: Report, path: JsonPath, check: CustomCheck) -> None:
    analysis = sqlguard.analyze(check.sql)
    for p in analysis.problems:
        report.add(path, p.message, loc=report.source.text_loc(path, p.line, p.col))
    if analysis.problems:
        return
    lexer_lines = check.sql.splitlines(keepends=True)
    for tok in analysis.parameters:
        line, col = _line_col(lexer_lines, tok.start)
        loc = report.source.text_loc(path, line, col)
        if tok.text not in sqlguard.PARAMETERS:
            report.add(path, f"unknown parameter :{tok.text}; available: "
                             f"{', '.join(':' + p for p in sqlguard.PARAMETERS)}", loc=loc)
        elif tok.text == "organization_id" and check.level == "system":
            report.add(path, ":organization_id is not available at level system (the check runs once for all "
                             "organisations); use level record or aggregate, or drop the parameter", loc=loc)


def _line_col(lines: list[str], offset: int) -> tuple[int, int]:
    for n, text in enumerate(lines):
        if offset < len(text):
            return n, offset
        offset -= len(text)
    return max(0, len(lines) - 1), 0


_LOWER_IS_WORSE = {"integrity_score_below"}


def _alerts(report: Report, alerts: Alerts) -> None:
    _notify(report, alerts.notify)
    for f in fields(alerts.critical):
        crit: Any = getattr(alerts.critical, f.name)
        warn: Any = getattr(alerts.warning, f.name)
        if crit is None or warn is None:
            continue
        crit_at = report.where(("alerts", "critical", f.name))
        if f.name in _LOWER_IS_WORSE and warn <= crit:
            report.add(("alerts", "warning", f.name),
                       f"the warning bound ({_num(warn)}) must be above the critical bound ({_num(crit)}, {crit_at}): "
                       "a falling score must pass the warning first")
        elif f.name not in _LOWER_IS_WORSE and warn >= crit:
            report.add(("alerts", "warning", f.name),
                       f"the warning bound ({_num(warn)}) must be below the critical bound ({_num(crit)}, {crit_at}): "
                       "a rising value must pass the warning first")


def _notify(report: Report, hooks: tuple[Webhook, ...]) -> None:
    """A literal webhook URL must hold no secret: the spec is reviewed and committed (runner.spec.webhooks)."""
    for i, hook in enumerate(hooks):
        if isinstance(hook, WebhookEnv):
            continue
        why = webhooks.literal_problem(hook)
        if why is not None:
            secret = webhooks.url_problem(hook) is None  # usable, but it carries a secret
            report.add(("alerts", "notify", i),
                       f"the webhook URL {why}" + ("; a secret must not be written in the spec: put the URL in an "
                                                   "environment variable and write {env: NAME} here" if secret else ""))


def entities_parts(entities: Entities) -> dict[str, PostingRules | FiscalPeriods | OrganizationConfig]:
    return {name: getattr(entities, name) for name in entities.families()}
