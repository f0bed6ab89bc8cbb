"""The typed spec: frozen dataclasses mirroring specs/schema.json, defaults applied.

Field names equal the YAML keys, except where a key is a Python keyword or builtin (`from`, `set`, `$schema`);
those carry the key in `field(metadata={KEY: ...})`. A unit test walks the schema and these classes together and
fails when they drift apart (names, required keys, defaults).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import date, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar, Literal

from runner.errors import SpecError
from runner.spec import codes

KEY = "yaml_key"  # field metadata: the YAML key when it differs from the field name
NOT_IN_SCHEMA = "not_in_schema"  # field metadata: filled by the loader, not written in YAML
JSON = "json"  # field metadata: a free JSON value, kept as loaded

Tier = Literal["reverse_repost", "reporting_alias"]
Severity = Literal["critical", "warning", "info"]
Level = Literal["record", "aggregate", "system"]
Side = Literal["DR", "CR"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
PeriodStatus = Literal["open", "closed"]
LineField = Literal["line_number", "entity_id", "line_type", "description", "quantity", "unit_amount", "line_amount",
                    "discount_amount", "tax_amount", "line_data"]

TIERS: tuple[Tier, ...] = ("reverse_repost", "reporting_alias")
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def yaml_key(f: Any) -> str:
    return str(f.metadata.get(KEY, f.name))


# --- identity and smart codes ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Dna:
    source: str = "v1"
    target: str = "v2"


@dataclass(frozen=True, kw_only=True)
class LineOverride:
    to: str
    side: Side | None = None
    match: str | None = None
    line_type: str | None = None
    description: str = ""

    def applies(self, line_code: str, side: str | None, line_type: str | None) -> bool:
        if self.side is not None and (side or "").upper() != self.side:
            return False
        if self.line_type is not None and (line_type or "").lower() != self.line_type.lower():
            return False
        if self.match is not None:
            glob, _ = codes.parse_glob(self.match)
            return glob is not None and glob.matches(line_code) is not None
        return True


@dataclass(frozen=True, kw_only=True)
class CodeSelector:
    """Selects v1 codes by exactly one of `from` (one code), `match` (wildcards) or `regex`."""

    from_: str | None = field(default=None, metadata={KEY: "from"})
    match: str | None = None
    regex: str | None = None
    to: str | None = None

    @property
    def selector(self) -> str:
        return next(s for s in (self.from_, self.match, self.regex, "") if s is not None)

    @property
    def selector_key(self) -> str:
        return "from" if self.from_ is not None else "match" if self.match is not None else "regex"

    def captures(self, code: str) -> tuple[str, ...] | None:
        """The captured parts when `code` is selected, else None."""
        if self.from_ is not None:
            return () if codes.same_code(self.from_, code) else None
        if self.match is not None:
            glob, _ = codes.parse_glob(self.match)
            m = glob.matches(code) if glob else None
        else:
            try:
                m = codes.compile_regex(self.regex or "").fullmatch(codes.normalize(code))
            except re.error:
                return None
        return None if m is None else tuple(g or "" for g in m.groups())

    def target_for(self, code: str, dna_target: str) -> str | None:
        """The normalised v2 code for `code`, or None when this selector does not take it."""
        groups = self.captures(code)
        if groups is None:
            return None
        if self.to is None:
            return codes.bump_version(code, dna_target)
        return codes.expand(self.to, groups)

    def narrower(self, other: CodeSelector) -> bool:
        """True when every code this selector takes, `other` takes too, as far as it can be known without real
        codes: a `from` lies inside whatever takes its code, a pattern inside a pattern that contains it; a regex
        lies inside nothing (what it takes cannot be compared)."""
        if self.from_ is not None:
            return other.captures(self.from_) is not None
        if self.match is not None and other.match is not None:
            mine, _ = codes.parse_glob(self.match)
            theirs, _ = codes.parse_glob(other.match)
            return mine is not None and theirs is not None and codes.glob_contains(theirs, mine)
        return False


def narrowest(selectors: Sequence[CodeSelector]) -> int | None:
    """THE precedence rule, for `check` and for every run-time resolution alike: among selectors that all take
    one code, the position of the one lying strictly inside each of the others; None when there is none (two
    overlap with neither inside the other, or they take exactly the same codes)."""
    for k, sel in enumerate(selectors):
        if all(sel.narrower(other) and not other.narrower(sel) for j, other in enumerate(selectors) if j != k):
            return k
    return None


def select(selectors: Sequence[CodeSelector], code: str, where: str) -> int | None:
    """The index of the selector that takes `code` (see `narrowest`); None when none does. Raises SpecError (exit
    2) for a code taken by several with no narrowest one: only real codes can reveal that when a regex is
    involved, and guessing would migrate a code under a mapping the spec does not single out."""
    taking = [k for k, sel in enumerate(selectors) if sel.captures(code) is not None]
    if len(taking) <= 1:
        return taking[0] if taking else None
    won = narrowest([selectors[k] for k in taking])
    if won is None:
        names = " and ".join(f"{where}/{k}" for k in taking)
        raise SpecError([f"{codes.normalize(code)} is taken by {names} and none of them is narrower than the "
                         "others (see 'Which mapping takes a code' in specs/README.md); narrow them or map the code "
                         "with from"])
    return taking[won]


@dataclass(frozen=True, kw_only=True)
class Mapping(CodeSelector):
    tier: Tier
    lines: tuple[LineOverride, ...] = ()
    id: str | None = None
    description: str = ""

    @property
    def label(self) -> str:
        return self.id or self.selector

    def line_code(self, line_code: str, side: str | None, line_type: str | None = None) -> str:
        """The code a reposted line gets: the first matching override, else its v1 code unchanged."""
        for override in self.lines:
            if override.applies(line_code, side, line_type):
                return codes.normalize(override.to)
        return line_code


@dataclass(frozen=True, kw_only=True)
class CodeRemap(CodeSelector):
    description: str = ""


def remap_code(remaps: tuple[CodeRemap, ...], code: str, dna_target: str, where: str) -> str | None:
    """The normalised new code from the remap that takes `code` (the narrowest, as for mappings); None when no
    remap does."""
    k = select(remaps, code, where)
    return None if k is None else remaps[k].target_for(code, dna_target)


# --- scope -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Organizations:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    priority: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class DateRange:
    from_: date | None = field(default=None, metadata={KEY: "from"})
    to: date | None = None


@dataclass(frozen=True, kw_only=True)
class Skip:
    already_migrated: bool = True
    reversed: bool = True
    voided: bool = True
    reversal_twins: bool = True


@dataclass(frozen=True, kw_only=True)
class Scope:
    organizations: Organizations = Organizations()
    date_range: DateRange = DateRange()
    fiscal_period_statuses: tuple[PeriodStatus, ...] = ("open",)
    transactions_without_period: Literal["include", "exclude"] = "include"
    transaction_statuses: tuple[str, ...] = ("posted", "completed")
    skip: Skip = Skip()


# --- entity migrations -----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Transform:
    """Exactly one of set / rename / copy."""

    set_: str | None = field(default=None, metadata={KEY: "set"})
    rename: str | None = None
    copy: str | None = None
    to: str | None = None
    value: Any = field(default=None, metadata={JSON: True})
    description: str = ""

    @property
    def op(self) -> Literal["set", "rename", "copy"]:
        return "set" if self.set_ is not None else "rename" if self.rename is not None else "copy"

    @property
    def source(self) -> str | None:
        """The path read (rename/copy), None for set."""
        return self.rename if self.rename is not None else self.copy

    @property
    def target(self) -> str:
        """The path written."""
        return self.set_ if self.set_ is not None else (self.to or "")


@dataclass(frozen=True, kw_only=True)
class PostingRules:
    FAMILY: ClassVar[str] = "posting_rules"
    description: str = ""
    entity_types: tuple[str, ...] = ("financial_policy",)
    fields: tuple[str, ...] = ("policy_config", "priority")
    smart_codes: tuple[CodeRemap, ...] = ()
    transforms: tuple[Transform, ...] = ()

    def remap(self, code: str, dna_target: str) -> str | None:
        return remap_code(self.smart_codes, code, dna_target, f"/entities/{self.FAMILY}/smart_codes")


@dataclass(frozen=True, kw_only=True)
class FiscalPeriods:
    FAMILY: ClassVar[str] = "fiscal_periods"
    description: str = ""
    entity_types: tuple[str, ...] = ("fiscal_period",)
    fields: tuple[str, ...] = ("period_status",)
    smart_codes: tuple[CodeRemap, ...] = ()
    transforms: tuple[Transform, ...] = ()

    def remap(self, code: str, dna_target: str) -> str | None:
        return remap_code(self.smart_codes, code, dna_target, f"/entities/{self.FAMILY}/smart_codes")


@dataclass(frozen=True, kw_only=True)
class OrganizationConfig:
    description: str = ""
    transforms: tuple[Transform, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Entities:
    posting_rules: PostingRules | None = None
    fiscal_periods: FiscalPeriods | None = None
    organization_config: OrganizationConfig | None = None

    def families(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


# --- execution -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Retries:
    max: int = 3
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0


@dataclass(frozen=True, kw_only=True)
class OffPeakWindow:
    start: time
    end: time
    timezone: str = "UTC"
    days: tuple[Weekday, ...] = WEEKDAYS


@dataclass(frozen=True, kw_only=True)
class Throttle:
    enabled: bool = True
    max_v1_p95_degradation_pct: float = 5.0
    check_interval_seconds: float = 10.0


@dataclass(frozen=True, kw_only=True)
class Execution:
    batch_size: int = 500
    checkpoint_every_chunks: int = 50
    workers: int = 4
    retries: Retries = Retries()
    off_peak_window: OffPeakWindow | None = None
    throttle: Throttle = Throttle()


# --- validations -----------------------------------------------------------------------------------------------

_PERCENT = re.compile(r"\A([0-9]+(?:\.[0-9]+)?)%\Z")


@dataclass(frozen=True, kw_only=True)
class Threshold:
    """A check's threshold: a number of offending rows (`count`) or a percentage of the records the validation
    checked (`percent`, of the level-1 records: per organisation for one organisation's result, of the whole run
    for the check's result). Exactly one is set."""

    count: int | None = None
    percent: Decimal | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.percent is None):
            raise ValueError("a threshold is a count or a percentage")

    @classmethod
    def parse(cls, value: int | str) -> Threshold:
        """From YAML: a whole number, or text such as "0.5%". Raises ValueError for anything else or 0%."""
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(count=value)
        m = _PERCENT.match(value) if isinstance(value, str) else None
        try:
            percent = Decimal(m.group(1)) if m else None
        except InvalidOperation:
            percent = None
        if percent is None or not 0 < percent <= 100:
            raise ValueError(f"{value!r} must be more than 0% and at most 100%" if percent is not None else
                             f"{value!r} is not a number of rows or a percentage such as \"0.5%\"")
        return cls(percent=percent)

    def rows(self, checked: int | None) -> int:
        """The number of offending rows from which the threshold is reached, given the checked records: a
        percentage rounds up to whole rows and is never below one row; with nothing counted (None) it is one row,
        as strict as it can be."""
        if self.count is not None:
            return self.count
        assert self.percent is not None
        if checked is None:
            return 1
        return max(1, math.ceil(self.percent * checked / 100))

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.percent}%"


def as_threshold(value: Threshold | int) -> Threshold:
    return value if isinstance(value, Threshold) else Threshold(count=value)


@dataclass(frozen=True, kw_only=True)
class BuiltinCheck:
    enabled: bool = True
    severity: Severity = "critical"
    warn_threshold: Threshold | None = None
    error_threshold: Threshold = Threshold(count=1)

    def params(self) -> dict[str, Any]:
        """The rule's own parameters (everything but the common switches)."""
        common = {f.name for f in fields(BuiltinCheck)}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in common}


@dataclass(frozen=True, kw_only=True)
class GlBalanced(BuiltinCheck):
    tolerance: Decimal = Decimal("0.0001")


@dataclass(frozen=True, kw_only=True)
class OneReversalOneRepost(BuiltinCheck):
    pass


@dataclass(frozen=True, kw_only=True)
class ReversalNetsToZero(BuiltinCheck):
    tolerance: Decimal = Decimal("0.0001")


@dataclass(frozen=True, kw_only=True)
class TrialBalanceUnchanged(BuiltinCheck):
    tolerance: Decimal = Decimal("0")
    by_currency: bool = True


@dataclass(frozen=True, kw_only=True)
class CountAmountReconciliation(BuiltinCheck):
    amount_tolerance: Decimal = Decimal("0")


@dataclass(frozen=True, kw_only=True)
class V2CodeMatchesMapping(BuiltinCheck):
    pass


@dataclass(frozen=True, kw_only=True)
class LinesPreserved(BuiltinCheck):
    ignore_fields: tuple[LineField, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ClosedPeriodUntouched(BuiltinCheck):
    pass


@dataclass(frozen=True, kw_only=True)
class NoCrossOrgReferences(BuiltinCheck):
    pass


@dataclass(frozen=True, kw_only=True)
class AliasOnlyMetadata(BuiltinCheck):
    pass


@dataclass(frozen=True, kw_only=True)
class EntityTransformMatches(BuiltinCheck):
    pass


# The level of each built-in rule is part of the rule, not of the spec.
BUILTIN_LEVELS: dict[str, Level] = {
    "gl_balanced": "record", "one_reversal_one_repost": "record", "reversal_nets_to_zero": "record",
    "trial_balance_unchanged": "aggregate", "count_amount_reconciliation": "aggregate",
    "v2_code_matches_mapping": "record", "lines_preserved": "record", "closed_period_untouched": "record",
    "no_cross_org_references": "system", "alias_only_metadata": "record", "entity_transform_matches": "record",
}


@dataclass(frozen=True, kw_only=True)
class BuiltinChecks:
    gl_balanced: GlBalanced = GlBalanced()
    one_reversal_one_repost: OneReversalOneRepost = OneReversalOneRepost()
    reversal_nets_to_zero: ReversalNetsToZero = ReversalNetsToZero()
    trial_balance_unchanged: TrialBalanceUnchanged = TrialBalanceUnchanged()
    count_amount_reconciliation: CountAmountReconciliation = CountAmountReconciliation()
    v2_code_matches_mapping: V2CodeMatchesMapping = V2CodeMatchesMapping()
    lines_preserved: LinesPreserved = LinesPreserved()
    closed_period_untouched: ClosedPeriodUntouched = ClosedPeriodUntouched()
    no_cross_org_references: NoCrossOrgReferences = NoCrossOrgReferences()
    alias_only_metadata: AliasOnlyMetadata = AliasOnlyMetadata()
    entity_transform_matches: EntityTransformMatches = EntityTransformMatches()

    def items(self) -> list[tuple[str, BuiltinCheck]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


@dataclass(frozen=True, kw_only=True)
class CustomCheck:
    id: str
    description: str
    sql: str
    level: Level = "record"
    severity: Severity = "critical"
    warn_threshold: Threshold | None = None
    error_threshold: Threshold = Threshold(count=1)
    timeout_seconds: float = 30.0
    enabled: bool = True


@dataclass(frozen=True)
class CheckDef:
    """One check as the validation framework runs it, built-in or custom. A threshold given as an int is a count
    (the harness's own checks, such as expected_effect_diff, write them so); read them through `warn`/`error`."""

    id: str
    kind: Literal["builtin", "custom"]
    level: Level
    severity: Severity
    warn_threshold: Threshold | int | None
    error_threshold: Threshold | int
    params: dict[str, Any]
    sql: str | None = None
    timeout_seconds: float | None = None

    @property
    def warn(self) -> Threshold | None:
        return None if self.warn_threshold is None else as_threshold(self.warn_threshold)

    @property
    def error(self) -> Threshold:
        return as_threshold(self.error_threshold)

    @property
    def uses_percent(self) -> bool:
        """A threshold is a percentage: the validation must count the checked records first."""
        return any(t is not None and t.percent is not None for t in (self.warn, self.error))


@dataclass(frozen=True, kw_only=True)
class Validations:
    include: tuple[str, ...] = ()  # check libraries as written; their checks are already in builtin and custom
    builtin: BuiltinChecks = BuiltinChecks()
    custom: tuple[CustomCheck, ...] = ()

    def checks(self) -> list[CheckDef]:
        """Every enabled check, built-in first, in a stable order."""
        out = [CheckDef(name, "builtin", BUILTIN_LEVELS[name], rule.severity, rule.warn_threshold,
                        rule.error_threshold, rule.params())
               for name, rule in self.builtin.items() if rule.enabled]
        out += [CheckDef(c.id, "custom", c.level, c.severity, c.warn_threshold, c.error_threshold, {}, c.sql,
                         c.timeout_seconds) for c in self.custom if c.enabled]
        return out


# --- alerts ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CriticalAlerts:
    integrity_score_below: float | None = 95.0
    error_rate_above_pct: float | None = 1.0
    performance_impact_above_pct: float | None = 10.0
    no_progress_minutes: float | None = 30.0
    validation_failures_per_hour_above: int | None = None


@dataclass(frozen=True, kw_only=True)
class WarningAlerts:
    integrity_score_below: float | None = 98.0
    error_rate_above_pct: float | None = 0.5
    performance_impact_above_pct: float | None = 5.0
    no_progress_minutes: float | None = None
    validation_failures_per_hour_above: int | None = 5


@dataclass(frozen=True, kw_only=True)
class WebhookEnv:
    """A webhook whose URL is read from the environment variable `env` when a command runs: webhook URLs carry
    their secret (a token in the path or the query), and a spec is a document to review and commit."""

    env: str


Webhook = str | WebhookEnv  # a URL without secrets, or where to find one (runner.spec.webhooks says which is which)


@dataclass(frozen=True, kw_only=True)
class Alerts:
    critical: CriticalAlerts = CriticalAlerts()
    warning: WarningAlerts = WarningAlerts()
    notify: tuple[Webhook, ...] = ()  # where alerts and verdicts are POSTed (runner.notify)


# --- the spec --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    mapping_index: int
    mapping: Mapping
    source: str  # normalised v1 code
    target: str  # normalised v2 code


@dataclass(frozen=True, kw_only=True)
class Spec:
    name: str
    version: str
    owner: str
    schema_uri: str | None = field(default=None, metadata={KEY: "$schema"})
    spec_format: int = 1
    description: str = ""
    notes: tuple[str, ...] = ()
    dna: Dna = Dna()
    mappings: tuple[Mapping, ...] = ()
    scope: Scope = Scope()
    entities: Entities = Entities()
    execution: Execution = Execution()
    validations: Validations = Validations()
    alerts: Alerts = Alerts()
    path: Path | None = field(default=None, compare=False, metadata={NOT_IN_SCHEMA: True})
    sha256: str = field(default="", compare=False, metadata={NOT_IN_SCHEMA: True})

    def resolve(self, code: str) -> Resolution | None:
        """The mapping that takes the v1 `code` (case-insensitive, HERA's normal form) and its v2 code: the
        narrowest of those that take it (`select`, the rule `check` enforces). Raises SpecError for a code several
        mappings take with none narrower than the others (possible only with a regex, which check cannot
        compare without the real codes)."""
        i = select(self.mappings, code, "/mappings")
        if i is None:
            return None
        mapping = self.mappings[i]
        target = mapping.target_for(code, self.dna.target)
        assert target is not None  # select found that it takes the code
        return Resolution(i, mapping, codes.normalize(code), target)

    def matching(self, code: str) -> list[int]:
        """Indexes of every mapping that selects `code` (resolve picks the narrowest of them)."""
        return [i for i, m in enumerate(self.mappings) if m.captures(code) is not None]

    def tier_counts(self) -> dict[Tier, int]:
        return {t: sum(1 for m in self.mappings if m.tier == t) for t in TIERS}
