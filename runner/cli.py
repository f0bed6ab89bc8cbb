"""`hera-migrate`: the command-line contract of docs/contract.md §4.

Errors the harness raises on purpose (runner.errors.HarnessError) print one clear message and exit with their
documented code; anything else is a bug and exits 3 with the traceback shown under -v.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import click

from runner import __version__

if TYPE_CHECKING:
    from rich.console import Console
from runner.errors import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, HarnessError, UsageError

F = TypeVar("F", bound=Callable[..., Any])

SIZES = ("small", "medium", "enterprise")


@dataclass
class Options:
    dsn: str | None
    verbose: int
    dsn_explicit: bool = False  # --dsn on the command line, not HERA_DSN: only that opts `check` in to a database


def _options(ctx: click.Context) -> Options:
    opts = ctx.find_object(Options)
    assert opts is not None
    return opts


# --- global options, before or after the subcommand --------------------------------------------------------

DSN_HELP = "PostgreSQL to use (else $HERA_DSN, else an embedded server started for the command)."
VERBOSE_HELP = "More output (-vv for debug logs and tracebacks)."


def _log_level(verbose: int) -> int:
    return logging.WARNING - 10 * min(verbose, 2)


def _late_dsn(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    # Parsed after the group's callback made Options, so a value here overrides the one before the subcommand.
    if value is not None and not ctx.resilient_parsing:
        opts = _options(ctx)
        opts.dsn, opts.dsn_explicit = value or None, True


def _late_verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value and not ctx.resilient_parsing:
        opts = _options(ctx)
        opts.verbose += value
        logging.getLogger().setLevel(_log_level(opts.verbose))


def _global_params() -> list[click.Parameter]:
    """--dsn and -v repeated on every subcommand: `check --dsn DSN spec.yaml` is how people type it."""
    return [click.Option(["--dsn"], metavar="DSN", default=None, expose_value=False, callback=_late_dsn,
                         help=DSN_HELP),
            click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_late_verbose,
                         help=VERBOSE_HELP)]


class _Command(click.Command):
    """A subcommand: takes the global options too (so a new command cannot forget them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_params())


class _Group(click.Group):
    """A nested group (`db`): takes the global options, and so do its commands and groups."""

    command_class = _Command
    group_class = type  # its own groups are _Group too

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_params())


class _Root(click.Group):
    """`hera-migrate` itself: declares the global options (with HERA_DSN) once; its subcommands repeat them."""

    command_class = _Command
    group_class = _Group


def _org_ids(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for value in values:
        try:
            out.append(str(uuid.UUID(value)))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not an organisation id (a UUID)") from None
    return tuple(dict.fromkeys(out))


def org_option(f: F) -> F:
    return click.option("--org", "orgs", multiple=True, metavar="ID", callback=_org_ids,
                        help="Limit to this organisation id (repeatable).")(f)


def _webhooks(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    from runner.notify import check_cli

    try:
        return tuple(dict.fromkeys(check_cli(v) for v in values))
    except UsageError as exc:  # a URL with a secret: refused before anything runs, shown redacted
        raise click.BadParameter(exc.render()) from None


def notify_option(f: F) -> F:
    """--notify URL|env:NAME, repeatable (runner.notify, docs/notifications.md)."""
    return click.option("--notify", "notify", multiple=True, metavar="URL|env:NAME", callback=_webhooks,
                        help="POST every alert and the verdict as JSON to this webhook, besides the spec's "
                             "alerts.notify (repeatable). env:NAME reads the URL from the environment variable NAME: "
                             "URLs holding a secret (Slack's, user:password, a query string) only that way.")(f)


NOTIFIER = "hera.notifier"  # ctx.meta key: the command's Notifier, for _failure_notified


def _failure_notified(command: str) -> Callable[[F], F]:
    """An error escaping the command is sent as `<command>_failed` to the Notifier it put in ctx.meta[NOTIFIER]
    (commands whose pipeline function does not report its own failures, such as load)."""
    def decorate(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return f(*args, **kwargs)
            except BaseException as exc:
                notes = click.get_current_context().meta.get(NOTIFIER)
                if notes is not None:
                    notes.failed(command, exc)
                    notes.close()
                raise
        return cast(F, wrapper)
    return decorate


def metrics_options(f: F) -> F:
    """--metrics-port/--metrics-addr/--metrics-textfile: live Prometheus metrics (docs/metrics.md)."""
    f = click.option("--metrics-textfile", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="Also write the metrics to this file (for node_exporter's textfile collector; name it "
                          "*.prom), every 2s and once more at the end.")(f)
    f = click.option("--metrics-addr", default="127.0.0.1", show_default=True, metavar="ADDR",
                     help="Address the --metrics-port server listens on.")(f)
    return click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
                        help="Serve live Prometheus metrics on http://ADDR:PORT/metrics while working (0: a free "
                             "port, printed).")(f)


def _console() -> Console:
    from runner.pipeline import make_console

    return make_console()


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--dsn", envvar="HERA_DSN", default=None, metavar="DSN", help=DSN_HELP)
@click.option("-v", "--verbose", count=True, help=VERBOSE_HELP)
@click.version_option(__version__, prog_name="hera-migrate")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None, verbose: int) -> None:
    """Migrate a HERA Finance DNA v1 ledger to v2 and prove the result.

    --dsn and -v may also follow the subcommand (a value there wins).

    Exit codes: 0 done, no critical check failed; 1 a critical check failed or a critical alert fired;
    2 usage or spec error, nothing executed; 3 runtime failure (committed work is safe; run --resume continues);
    4 nothing to check (no migrated record, e.g. after a rollback): never reported as passed.
    """
    logging.basicConfig(level=_log_level(verbose), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    explicit = ctx.get_parameter_source("dsn") == click.core.ParameterSource.COMMANDLINE
    ctx.obj = Options(dsn=dsn or None, verbose=verbose, dsn_explicit=explicit)


# --- db ------------------------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database servers and the HERA-compatible core schema."""


@db.command("up")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="TCP port on 127.0.0.1 (default: free).")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Keep the server's data in this directory: created if missing, reused when it already holds a "
                   "cluster, never removed (default: a fresh temporary directory, removed on exit).")
@click.option("--schema/--no-schema", "with_schema", default=True, show_default=True,
              help="Install the HERA core schema into the new server.")
def db_up(port: int | None, data_dir: Path | None, with_schema: bool) -> None:
    """Start an embedded PostgreSQL, print its DSN, keep it running until stopped.

    Ctrl-C, or SIGTERM for a background `db up &` (`kill %1`, `kill PID`), stops the server and removes its data
    directory; with --data-dir the data stays for the next `db up --data-dir`.
    """
    from runner.db import providers, schema

    # A background job gets no Ctrl-C: `kill` (SIGTERM), or a closed terminal (SIGHUP), must clean up the same way,
    # also while the server is still starting.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    srv = providers.start_local(port=port, data_dir=data_dir.resolve() if data_dir is not None else None)
    try:
        assert srv.cluster is not None
        fate = "kept" if data_dir is not None else "removed on exit"
        click.echo(f"# {srv.kind} PostgreSQL {srv.dsn}: data in {srv.cluster.data_dir} ({fate})"
                   + ("; installing the HERA core" if with_schema else ""), err=True)
        if with_schema:
            schema.install(srv.dsn)
        click.echo(srv.dsn)
        click.echo(f"# up; export HERA_DSN='{srv.dsn}'. Stop it with Ctrl-C, or `kill {os.getpid()}` when it runs "
                   "in the background.", err=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass  # the way to stop it: not an error
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        srv.stop()
        click.echo(f"# stopped; data {f'kept in {data_dir}' if data_dir is not None else 'removed'}", err=True)


@db.command("schema")
@click.pass_context
def db_schema(ctx: click.Context) -> None:
    """Install the HERA-compatible core schema and v1 RPCs into the DSN (idempotent).

    Refuses (exit 2, nothing changed) when the database already holds a HERA core the harness did not install,
    such as HERA's production schema."""
    from runner.db import providers, schema

    dsn = _options(ctx).dsn
    if not dsn:
        raise click.UsageError("db schema needs --dsn or HERA_DSN (an embedded server would vanish on exit)")
    with providers.server(dsn) as srv:
        applied = schema.install(srv.dsn)
    click.echo(f"HERA core installed ({len(applied)} files: {', '.join(applied)})")


# --- fixtures ------------------------------------------------------------------------------------------------


@cli.command("fixtures")
@click.argument("size", type=click.Choice(SIZES))
@click.option("--orgs", "org_count", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="How many organisations to generate.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed; the same seed gives the same data.")
@click.option("--schema/--no-schema", "with_schema", default=True, show_default=True,
              help="Install our HERA core first when the database has none (idempotent); a HERA core that is "
                   "already there, ours or production's, is used as it is.")
@click.pass_context
def fixtures_cmd(ctx: click.Context, size: str, org_count: int, seed: int, with_schema: bool) -> None:
    """Generate synthetic HERA organisations (SIZE: small, medium, enterprise); print their ids.

    The ids go to stdout, one a line; what was generated per v1 code (the ground truth) to stderr."""
    from runner.db import providers, schema
    from runner.pipeline import make_console, print_table
    from runner.synth import generate

    dsn = _options(ctx).dsn
    if not dsn:
        raise click.UsageError("fixtures needs --dsn or HERA_DSN (an embedded server would vanish on exit); "
                               "start one with 'hera-migrate db up'")
    with providers.server(dsn) as srv:
        if with_schema:
            schema.ensure_core(srv.dsn)
        result = generate.generate(srv.dsn, size=size, orgs=org_count, seed=seed, progress=sys.stderr.isatty())
    click.echo(result.summary(), err=True)
    console = make_console(stderr=True)  # stdout is for the ids alone: scripts read them
    for org in result.organizations:
        print_table(console, f"{org.organization_code} per v1 code (original headers; each reversed one also has "
                             "its -REV twin)", *org.by_code())
    for org in result.organizations:
        click.echo(org.organization_id)


# --- spec ----------------------------------------------------------------------------------------------------


@cli.command("check")
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_context
def check_cmd(ctx: click.Context, specs: tuple[Path, ...]) -> int:
    """Validate spec files (schema, then meaning). Prints FILE:LINE:COL: /pointer: message per problem; exit 2 on any.

    Nothing touches a database unless --dsn is given on the command line (HERA_DSN alone is ignored here): then
    the spec is also checked against it (custom SQL planned read-only, coverage of the v1 codes per organisation).
    """
    from runner.spec import run_check

    opts = _options(ctx)
    # Only an explicit --dsn opts in: a HERA_DSN left in the environment must not make `check` touch a database.
    dsn = opts.dsn if opts.dsn_explicit else None
    unique = list(dict.fromkeys(specs))
    texts: list[str] = []
    failed = 0
    for path in unique:
        code, text = run_check([path])
        if code == EXIT_OK and dsn:
            from runner.dbcheck import run_db_check

            code, db_text = run_db_check(dsn, [path])
            # One verdict per file, after what the database said. A spec the database refutes is not OK: drop the
            # offline OK line (run_check's first line for a file that passed), keep any warnings after it.
            offline = text.splitlines()
            text = "\n".join([db_text, *offline] if code == EXIT_OK else [*offline[1:], db_text])
        failed += code != EXIT_OK
        texts.append(text)
    if len(unique) > 1:
        texts.append(f"{len(unique)} files checked: {len(unique) - failed} OK, {failed} with problems")
    code = EXIT_USAGE if failed else EXIT_OK
    click.echo("\n".join(texts), err=code != EXIT_OK)
    return code


@cli.command("compile")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write every rendered statement with its parameters here.")
def compile_cmd(spec: Path, out: Path | None) -> None:
    """Write every rendered SQL statement of SPEC for review (no database needed).

    Each statement is shown with its bound parameters; spec values are always bound, never part of the SQL text
    (a custom check's SQL is the spec's own text, its :run_id/:organization_id bound).
    """
    from runner.review import compile_spec, write_review
    from runner.spec import load_spec

    loaded = load_spec(spec)
    statements = compile_spec(loaded)
    if out is None:
        for stmt in statements:
            click.echo(stmt.review_text())
        return
    written = write_review(statements, out, loaded)
    click.echo(f"{len(written)} statements written to {out} (manifest.json lists them)")


@cli.command("plan")
@click.argument("spec", type=click.Path(path_type=Path))
@org_option
@click.option("--json", "as_json", is_flag=True, help="Emit JSON instead of a table.")
@click.option("--no-calibrate", is_flag=True,
              help="Measure nothing: plan stays strictly read-only and estimates from default rates.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Workers the run will have (default: the spec's execution.workers); the calibration measures "
                   "how much faster that many sessions at once go.")
@click.pass_context
def plan_cmd(ctx: click.Context, spec: Path, orgs: tuple[str, ...], as_json: bool, no_calibrate: bool,
             workers: int | None) -> None:
    """Tier-1 inventory: candidates per organisation and v1 code, and a run-time estimate with its basis and range.

    Needs the HERA database (--dsn or HERA_DSN). The inventory is one READ ONLY transaction of CTE queries (no
    temporary tables). The estimate's rates are measured on the database: a few candidates reversed + reposted and
    aliased inside a separate transaction that is always rolled back (nothing persists), and with several workers
    the same in that many sessions at once, each rolled back; --no-calibrate skips it.
    """
    from runner.plan import build_plan, render_text
    from runner.spec import load_spec

    loaded = load_spec(spec)
    dsn = _options(ctx).dsn
    if not dsn:
        raise UsageError("plan reads a HERA database: give --dsn DSN or set HERA_DSN "
                         "(an embedded server started for one command would be empty)")
    plan = build_plan(dsn, loaded, orgs, calibrate=not no_calibrate, workers=workers)
    click.echo(plan.to_json() if as_json else render_text(plan))


# --- run and after -------------------------------------------------------------------------------------------


@cli.command("run")
@click.argument("spec", type=click.Path(path_type=Path))
@org_option
@click.option("--run-id", default=None, help="Run id (default: generated).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Database sessions (default: spec, 4): organisations in parallel, and one large organisation "
                   "on several sessions. Several processes with --run-id X --resume work on one run together.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=None, help="Candidates per chunk.")
@click.option("--resume", is_flag=True,
              help="Continue --run-id from its journal; starts it when nothing of it exists yet (the same command "
                   "finishes a run after any crash).")
@click.option("--retry-quarantined", is_flag=True, help="With --resume: try quarantined candidates again.")
@click.option("--now", is_flag=True, help="Ignore the spec's off-peak window.")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where the report goes (default: reports/RUN_ID).")
@click.option("--no-progress", is_flag=True, help="No progress bars (logs and CI).")
@notify_option
@metrics_options
@click.pass_context
def run_cmd(ctx: click.Context, spec: Path, orgs: tuple[str, ...], run_id: str | None, workers: int | None,
            batch_size: int | None, resume: bool, retry_quarantined: bool, now: bool, report_dir: Path | None,
            no_progress: bool, metrics_port: int | None, metrics_addr: str, metrics_textfile: Path | None,
            notify: tuple[str, ...]) -> int:
    """Snapshot before → migrate → validate → report (reports/RUN_ID/ unless --report-dir).

    Exit 0: migrated and every critical check passed; 1: a critical check failed or a critical alert fired;
    3: interrupted or a database failure — committed chunks are safe, `run --run-id ID --resume` continues;
    4: nothing was migrated, so nothing could be checked (never reported as passed).
    """
    from runner import pipeline
    from runner.load.shared import throttle_from_report_dir

    dsn = pipeline.need_dsn(_options(ctx).dsn, "run", spec=spec)
    opts = pipeline.RunOptions(orgs=orgs, run_id=run_id, workers=workers, batch_size=batch_size, resume=resume,
                               retry_quarantined=retry_quarantined, now=now, report_dir=report_dir,
                               metrics_port=metrics_port, metrics_addr=metrics_addr,
                               metrics_textfile=metrics_textfile, notify=notify)
    return pipeline.run(dsn, spec, opts, _console(), progress=not no_progress,
                        shared_throttle=throttle_from_report_dir).exit_code


@cli.command("status")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Emit JSON.")
@click.pass_context
def status_cmd(ctx: click.Context, run_id: str, as_json: bool) -> int:
    """Progress of RUN_ID from the journal in the database (works while the run goes on)."""
    from runner import pipeline

    return pipeline.status(pipeline.need_dsn(_options(ctx).dsn, "status"), run_id, _console(), as_json=as_json)


@cli.command("validate")
@click.argument("run_id")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The run's report directory: its before-snapshot is read and the report rewritten there "
                   "(default: reports/RUN_ID).")
@notify_option
@click.pass_context
def validate_cmd(ctx: click.Context, run_id: str, report_dir: Path | None, notify: tuple[str, ...]) -> int:
    """Fresh after-snapshot, diff against the before-snapshot, all checks; results.json, index.html, junit.xml.

    Exit 0: passed; 1: a critical check failed or a critical alert fired; 4: nothing to check (no migrated
    record, e.g. after a rollback): never reported as passed.
    """
    from runner import pipeline

    dsn = pipeline.need_dsn(_options(ctx).dsn, "validate")
    return pipeline.validate(dsn, run_id, report_dir, _console(), notify=notify).exit_code


@cli.command("rollback")
@click.argument("run_id", required=False)
@org_option
@click.option("--to", "to", default=None, metavar="CHECKPOINT",
              help="Undo only what the run did after this checkpoint (`status RUN_ID` lists them); the run can then "
                   "be resumed from there.")
@click.option("--only", "only", multiple=True, type=click.Choice(["config", "entities", "transactions"]),
              help="Undo only these parts (repeatable): config = the organisation's settings (seconds, no "
                   "transaction touched), entities = posting rules and fiscal periods, transactions = tiers 2 and 3.")
@click.option("--all-runs", is_flag=True,
              help="Emergency: undo every run in the database, newest first, organisations in parallel; "
                   "resumable; one summary report (reports/rollback-all-TIMESTAMP/ unless --report-dir).")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Database sessions: organisations rolled back at once, and one large organisation on several.")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The run's report directory to rewrite (default: reports/RUN_ID); with --all-runs: where the "
                   "summary goes.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@metrics_options
@notify_option
@click.pass_context
@_failure_notified("rollback")
def rollback_cmd(ctx: click.Context, run_id: str | None, orgs: tuple[str, ...], to: str | None,
                 only: tuple[str, ...], all_runs: bool, workers: int, report_dir: Path | None,
                 no_progress: bool, metrics_port: int | None, metrics_addr: str,
                 metrics_textfile: Path | None, notify: tuple[str, ...]) -> int:
    """Restore the pre-run state of everything RUN_ID touched, then verify (resumable; exit 1 on conflicts).

    The run's report is rewritten to say it was rolled back (results.json status rolled_back, a rollback section
    with the verification and, for a whole-run rollback, a row-for-row comparison with the before-snapshot).
    `--to CHECKPOINT` returns the run to a checkpoint (then `run --resume` continues it); `--only` undoes parts;
    `--all-runs` undoes every run of the database.
    """
    from runner import notify as notifying
    from runner import operate, pipeline
    from runner.errors import HarnessError
    from runner.metrics import serve_metrics

    if all_runs and (run_id or orgs or to or only):
        raise click.UsageError("--all-runs undoes every run of every organisation: give no RUN_ID, --org, --to or "
                               "--only with it")
    if not all_runs and not run_id:
        raise click.UsageError("give the RUN_ID to roll back (or --all-runs for every run)")
    dsn = pipeline.need_dsn(_options(ctx).dsn, "rollback")
    console = _console()
    spec = None
    if run_id:
        try:  # only for its alerts.notify: a rollback never needs the spec
            spec = pipeline.spec_of_run(dsn, run_id)
        except HarnessError:
            spec = None
    out = report_dir if all_runs or report_dir else pipeline.report_dir_for(run_id or "", None)
    notes = ctx.meta[NOTIFIER] = notifying.for_run(spec, notify, out, run_id=run_id, console=console)
    with serve_metrics(run_id or "all-runs", port=metrics_port, addr=metrics_addr, textfile=metrics_textfile,
                       command="rollback", say=console.print) as metrics:
        if all_runs:
            code = operate.rollback_all(dsn, console, progress=not no_progress, report_dir=report_dir,
                                        workers=workers, metrics=metrics, notes=notes)
        else:
            assert run_id is not None
            code = operate.rollback(dsn, run_id, orgs, console, progress=not no_progress, report_dir=report_dir,
                                     to=to, only=only, workers=workers, metrics=metrics, notes=notes)
    notes.close()
    return code


@cli.command("checkpoint")
@click.argument("run_id")
@click.argument("name")
@click.pass_context
def checkpoint_cmd(ctx: click.Context, run_id: str, name: str) -> int:
    """Record checkpoint NAME of RUN_ID in every organisation's journal (also while the run works: chunks in
    flight commit first). `rollback RUN_ID --to NAME` returns the run there.
    """
    from runner import operate, pipeline

    dsn = pipeline.need_dsn(_options(ctx).dsn, "checkpoint")
    return operate.checkpoint(dsn, run_id, name, _console())


@cli.command("report")
@click.argument("run_id")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The report directory holding results.json (default: reports/RUN_ID).")
def report_cmd(run_id: str, report_dir: Path | None) -> int:
    """Re-render index.html from results.json (reports/RUN_ID/ unless --report-dir)."""
    from runner import pipeline

    return pipeline.report(run_id, report_dir, _console())


@cli.command("load")
@click.option("--spec", "spec", type=click.Path(path_type=Path), default=None,
              help="Run this spec under the load: baseline first, then the same load while `run` executes.")
@click.option("--during", "during_run", default=None, metavar="RUN_ID",
              help="Load alongside RUN_ID, run by another process (start it after the baseline).")
@click.option("--users", type=click.IntRange(1, 1000), default=10, show_default=True, help="Simulated v1 users.")
@click.option("--rate", type=click.FloatRange(0.1, 1000), default=5.0, show_default=True,
              help="Requests per second per user (constant throughput).")
@click.option("--duration", type=click.IntRange(1, 86_400), default=30, show_default=True,
              help="Seconds of baseline (v1 load alone); the during phase lasts as long as the migration.")
@click.option("--warmup", type=click.IntRange(0, 3600), default=5, show_default=True,
              help="Seconds of load discarded before the baseline.")
@click.option("--throttle/--no-throttle", default=True, show_default=True,
              help="Auto-throttle the migration to the spec's execution.throttle bound (when the spec enables it).")
@click.option("--check-interval", type=click.FloatRange(0.1, 3600), default=None,
              help="Throttle check interval in seconds (default: the spec's check_interval_seconds).")
@click.option("--emit-status", type=click.Choice(["pending", "posted"]), default="pending", show_default=True,
              help="Status of the sales the load emits (posted ones become migration candidates).")
@click.option("--after", "after_seconds", type=click.IntRange(0, 3600), default=0, show_default=True,
              help="With --spec: seconds of the same load after the migration ends (what stays slower).")
@click.option("--max-during", type=click.IntRange(10, 86_400), default=3600, show_default=True,
              help="Longest the load runs during the migration (the load generator stops by itself then).")
@click.option("--wait", "wait_seconds", type=click.IntRange(1, 86_400), default=600, show_default=True,
              help="With --during: how long to wait for the run to start.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the simulated users.")
@org_option
@click.option("--run-id", default=None, help="With --spec: the run id (default: generated).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="With --spec: parallel workers.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=None, help="With --spec: chunk size.")
@click.option("--now", is_flag=True, help="With --spec: ignore the spec's off-peak window.")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Reports (default reports/RUN_ID, or reports/load without a run).")
@notify_option
@metrics_options
@click.pass_context
@_failure_notified("load")
def load_cmd(ctx: click.Context, spec: Path | None, during_run: str | None, users: int, rate: float, duration: int,
             warmup: int, throttle: bool, check_interval: float | None, emit_status: str, after_seconds: int,
             max_during: int,
             wait_seconds: int, seed: int, orgs: tuple[str, ...], run_id: str | None, workers: int | None,
             batch_size: int | None, now: bool, report_dir: Path | None, metrics_port: int | None,
             metrics_addr: str, metrics_textfile: Path | None, notify: tuple[str, ...]) -> int:
    """Locust load on HERA's v1 paths: a baseline phase, then during a run (--spec, or --during RUN_ID).

    Per task and overall: requests/s, p50/p95/p99 (from raw µs), error rate, and the degradation during the run;
    into results.json (performance), the HTML report and its alerts, plus load.json/load.html. Exit 1 when a
    critical check or alert fired or a v1 request failed because of the migration (lock timeout, deadlock,
    serialization, statement timeout); those must be zero.
    """
    from runner import notify as notifying
    from runner import pipeline
    from runner.load.generator import LoadSettings
    from runner.load.session import (
        LoadPlan,
        alongside,
        baseline_only,
        exit_code,
        wait_for_results,
        with_run,
        write_outputs,
    )
    from runner.metrics import serve_metrics

    if spec is not None and during_run is not None:
        raise UsageError("give --spec (run it here under load) or --during RUN_ID (another process runs it), not both")
    dsn = pipeline.need_dsn(_options(ctx).dsn, "load", spec=spec)
    console = _console()
    plan = LoadPlan(settings=LoadSettings(users=users, spawn_rate=float(users), rate_per_user=rate,
                                          org=orgs[0] if orgs else None, emit_status=emit_status, seed=seed),
                    baseline_seconds=float(duration), warmup_seconds=float(warmup),
                    max_during_seconds=float(max_during), throttle=throttle, check_interval=check_interval,
                    after_seconds=float(after_seconds))
    if spec is None and during_run is None:
        out = report_dir or pipeline.REPORTS / "load"
        # click closes the metrics (final textfile, server down) when the command ends, by return or exception
        gauges = ctx.with_resource(serve_metrics("", port=metrics_port, addr=metrics_addr, textfile=metrics_textfile,
                                                 command="load", say=console.print))
        measured = baseline_only(dsn, plan, out, console, gauges)
        paths = write_outputs(measured, out)
        console.print(f"load report: {paths['html'].resolve()}")
        return 0
    if during_run is not None:
        import json

        from runner.validate import validate_run

        out = pipeline.report_dir_for(during_run, report_dir)
        notes = ctx.meta[NOTIFIER] = notifying.for_run(None, notify, out, run_id=during_run, console=console)
        gauges = ctx.with_resource(serve_metrics(during_run, port=metrics_port, addr=metrics_addr,
                                                 textfile=metrics_textfile, command="load", say=console.print))
        measured = alongside(dsn, during_run, plan, out, console, wait_seconds=float(wait_seconds), metrics=gauges)
        gauges.set_phase("validating")
        run_spec = pipeline.spec_of_run(dsn, during_run)
        notes.add(notifying.spec_webhooks(run_spec, console))
        wait_for_results(out / "results.json", measured.windows["during"][0])  # written after the run began
        snapshot = out / pipeline.SNAPSHOT_FILE
        performance = measured.performance()
        outcome = validate_run(dsn, run_spec, during_run, report_dir=out,
                               snapshot_path=snapshot if snapshot.exists() else None, performance=performance)
        console.print(pipeline.verdict_line(json.loads(outcome.results_path.read_text(encoding="utf-8")),
                                            outcome.html_path))
        gauges.set_integrity_score(outcome.results.get("integrity_score"))
        gauges.set_phase("done")
        notes.alerts(outcome.results, outcome.html_path, command="load")
        code = exit_code(outcome.exit_code, performance, console, notes, outcome.html_path)
        notes.finished("load", outcome.results, code, outcome.html_path)
        notes.close()
        return code
    assert spec is not None
    opts = pipeline.RunOptions(orgs=orgs, run_id=run_id, workers=workers, batch_size=batch_size, now=now,
                               report_dir=report_dir, metrics_port=metrics_port, metrics_addr=metrics_addr,
                               metrics_textfile=metrics_textfile)
    notes = ctx.meta[NOTIFIER] = notifying.Notifier(notifying.cli_webhooks(notify, console), console=console)
    ran, _hook = with_run(dsn, spec, opts, plan, console, notifier=notes)  # the run adds the spec's webhooks
    code = exit_code(ran.exit_code, ran.results.get("performance") or {}, console, notes, ran.html_path)
    notes.finished("load", ran.results, code, ran.html_path)
    notes.close()
    return code


# --- demo ----------------------------------------------------------------------------------------------------


@cli.command("demo")
@click.option("--size", type=click.Choice(SIZES), default="small", show_default=True,
              help="Size of the synthetic organisation the demo generates.")
@click.option("--seed", type=int, default=42, show_default=True,
              help="Seed of the synthetic organisation; the same seed gives the same data.")
@click.option("--keep", is_flag=True, help="Keep the embedded server's data directory.")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where the report goes (default: reports/demo).")
@click.pass_context
def demo_cmd(ctx: click.Context, size: str, seed: int, keep: bool, report_dir: Path | None) -> int:
    """The whole pipeline on an embedded server (or --dsn), ending with the report's path."""
    from runner.demo import run_demo

    return run_demo(_options(ctx).dsn, size=size, seed=seed, keep=keep, report_dir=report_dir)


# --- entry point ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry: map every failure to its documented exit code."""
    verbose = "-v" in (argv or sys.argv[1:]) or "-vv" in (argv or sys.argv[1:]) or "--verbose" in (
        argv or sys.argv[1:])
    try:
        rv = cli.main(args=argv, prog_name="hera-migrate", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_RUNTIME)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if exc.exit_code == 2 else exc.exit_code)
    except HarnessError as exc:
        click.echo(f"error: {exc.render()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted; committed work is safe", err=True)
        sys.exit(EXIT_RUNTIME)
    except Exception as exc:  # a bug: say so, keep the contract's exit code
        click.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
        if verbose or os.environ.get("HERA_DEBUG"):
            traceback.print_exc()
        else:
            click.echo("(run with -v for the traceback)", err=True)
        sys.exit(EXIT_RUNTIME)
    sys.exit(rv if isinstance(rv, int) else 0)
