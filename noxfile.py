"""nox sessions. `tests`, `lint`, `typecheck` gate every change; `bench` prints and records numbers."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The default suite on a real PostgreSQL (embedded unless HERA_DSN is set)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-q", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")
    session.run("ruff", "check", "runner", "tests", "noxfile.py")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python=PYTHON)
def faults(session: nox.Session) -> None:
    """The fault-and-abuse suite (tests/faults, several minutes): a crash storm on a medium org, server restarts,
    v1 contention, hostile input, bad source data, RLS isolation. Prints the summary table and writes
    reports/faults/summary.json. `-- -k storm` narrows it; HERA_FAULTS_SIZE=small shrinks the crash storms. Then the
    four-worker SIGKILL storm (tests/integration/test_workers.py) on a medium organisation."""
    session.install("-e", ".[dev]")
    # -n 0: one process, so the suite's summary table sees every fault (and the crash storm has the machine)
    session.run("pytest", "tests/faults", "-q", "-n", "0", "-p", "no:cacheprovider", "--timeout", "1800",
                *session.posargs, env={"HERA_FAULTS": "1"})
    # the four-worker kill storm of the default suite, on a medium organisation (issue 16's proof size)
    session.run("pytest", "tests/integration/test_workers.py", "-k", "storm", "-q", "-n", "0", "-p", "no:cacheprovider",
                "--timeout", "3600", env={"HERA_WORKER_STORM_SIZE": os.environ.get("HERA_FAULTS_SIZE", "medium")})


@nox.session(python=PYTHON)
def proofs(session: nox.Session) -> None:
    """The slow proofs kept out of the default run: every planted defect caught and a clean medium run with zero
    failures (HERA_SLOW=1 enables the medium cases of tests/integration/test_defects.py)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "tests/integration/test_defects.py", "-q", "-n", "0", *session.posargs,
                env={"HERA_SLOW": "1"})


@nox.session(python=PYTHON)
def real(session: nox.Session) -> None:
    """The real-HERA tier: HERA's production schema (HERA_REAL_SCHEMA=/path/to/dump/schema.sql of
    heraerp/heraerp-prd, loaded with our §6 stubs) next to our core, small and medium organisations through the
    whole CLI pipeline, and every pinned behaviour of the core (tests/integration/test_cores.py, test_hera_core.py).
    Without the variable the session fails: the default suite already runs the tier on our core alone.
    HERA_TEST_SERVER=system runs it on the system's PostgreSQL 15 instead of the embedded 18."""
    schema_file = os.environ.get("HERA_REAL_SCHEMA", "")
    if not schema_file or not os.path.isfile(schema_file):
        session.error("set HERA_REAL_SCHEMA to HERA's production schema dump (dump/schema.sql of heraerp/heraerp-prd)")
    session.install("-e", ".[dev]")
    session.run("pytest", "tests/integration/test_cores.py", "tests/integration/test_hera_core.py", "-q", "-n", "0",
                "-rs", *session.posargs, env={"HERA_SLOW": "1", "HERA_REAL_SCHEMA": schema_file})


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: `nox -s bench -- --sizes small,medium,enterprise` (default: small,medium); then the scaling bench
    (tests/tools/bench_scaling.py: engine vs HERA's RPC pair at 1/2/4 sessions, peak RSS of a whole run).

    With HERA_REAL_SCHEMA set, every size is measured on our core and on HERA's production schema side by side
    (same server, same run). Installs the `bench` extra (reladiff, for the diff comparison); without it the bench
    says so and goes on."""
    session.install("-e", ".[dev,bench]")
    session.run("python", "-m", "tests.tools.bench", *session.posargs)
    # tier 2 at 1, 2, 4 sessions against HERA's pair at the same session counts, and each size's peak RSS
    session.run("python", "-m", "tests.tools.bench_scaling", *session.posargs)


def _org_session(session: nox.Session, size: str) -> None:
    """Fresh embedded server → generate the org → run the Phase 7 spec under v1 load (baseline, auto-throttle)
    → validate → rollback rehearsal → reports/<size>/. Extra arguments go to tests.tools.sessions (e.g.
    `-- --users 20 --baseline 60`)."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "tests.tools.sessions", "org", "--size", size, *session.posargs)


@nox.session(python=PYTHON)
def small(session: nox.Session) -> None:
    """The small org end to end under load (about a minute)."""
    _org_session(session, "small")


@nox.session(python=PYTHON)
def medium(session: nox.Session) -> None:
    """The medium org (50k transactions) end to end under load (several minutes on 2 cores)."""
    _org_session(session, "medium")


@nox.session(python=PYTHON)
def enterprise(session: nox.Session) -> None:
    """The enterprise org (500k transactions) end to end under load (long: the engine's tier-2 rate decides)."""
    _org_session(session, "enterprise")


@nox.session(python=PYTHON)
def load(session: nox.Session) -> None:
    """The auto-throttle's trade-off: the same org migrated without and with it under the same v1 load (default
    medium, the load bounded to 10 min per variant: ~20-30 min on 2 cores; `-- --size small` for a quick look).
    Writes reports/load/tradeoff.json and both variants' reports."""
    session.install("-e", ".[dev]")
    args = list(session.posargs)
    if not any(a.startswith("--size") for a in args):
        args += ["--size", "medium"]
    if not any(a.startswith("--max-during") for a in args):
        args += ["--max-during", "600"]
    session.run("python", "-m", "tests.tools.sessions", "tradeoff", *args)
