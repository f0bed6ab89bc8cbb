"""No SQL of the harness may call a function that only our stand-in core defines: on production HERA it would
fail (as `hera_smart_code_is_strict()` once did, inside a validation check). The functions our core defines are
production's (tests/integration/test_hera_core.py proves it on the real schema) plus the harness additions below.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HARNESS_ONLY = {"hera_allowed_orgs"}  # the isolation tests' RLS helper (fixtures/sql/40_rls.sql)
CALL = re.compile(r"\b((?:hera|smart)_[a-z0-9_]*)\s*\(")
NOT_SQL_CALLS = {
    "hera_smart_code_is_strict": "looked up with to_regprocedure() to recognise an outdated core, never called",
}


def core_functions() -> set[str]:
    names = set()
    for path in (ROOT / "fixtures" / "sql").glob("*.sql"):
        names |= {m.lower() for m in re.findall(r"FUNCTION\s+(?:public|auth)\.([a-z0-9_]+)\s*\(",
                                                 path.read_text(encoding="utf-8"), re.IGNORECASE)}
    return names


def harness_sources() -> list[Path]:
    return [p for p in [*ROOT.joinpath("runner").rglob("*"), *ROOT.joinpath("loadtests").rglob("*")]
            if p.suffix in (".py", ".j2", ".sql") and p.is_file()]


def test_the_core_defines_productions_functions_and_the_listed_additions() -> None:
    defined = core_functions()
    assert defined >= HARNESS_ONLY
    assert {"hera_txn_emit_v1", "hera_txn_reverse_v1", "smart_is_negative_txn_static"} <= defined
    assert not [n for n in defined if n.startswith("hera_smart_code_is")]


def test_no_harness_sql_calls_a_function_only_our_core_defines() -> None:
    """Every hera_*/smart_* call in the runner and the load test is one of production's functions (all of which
    our core defines too); none is a harness addition."""
    allowed = core_functions() - HARNESS_ONLY
    offenders = []
    for path in harness_sources():
        for match in CALL.finditer(path.read_text(encoding="utf-8")):
            name = match.group(1).lower()
            if name not in allowed and name not in NOT_SQL_CALLS:
                offenders.append(f"{path.relative_to(ROOT)}: {name}()")
    assert offenders == []
