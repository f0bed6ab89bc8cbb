"""Process-level fault injection for crash tests: `HERA_FAULT_KILL` makes a real `hera-migrate` process SIGKILL
itself at a named point, so a test (or `nox -s faults`) can prove exactly-once and resumability against a crash
that runs no cleanup at all — no exception, no `finally`, no rollback sent, no connection closed politely.

    HERA_FAULT_KILL="<point>:<n>[,<point>:<n>...]"   e.g.  HERA_FAULT_KILL=chunk_before_commit:3

At the `n`-th time (1-based, counted per process over all organisations, tiers and worker threads) the process
passes `point`, it sends itself SIGKILL (`os.kill(os.getpid(), signal.SIGKILL)`). A line naming the point goes to
stderr first, so a test log says where the process died. Points:

- `chunk_before_commit`: in a tier-2/tier-3 chunk transaction after all its writes and its journal checkpoint,
  before COMMIT (the chunk must vanish);
- `chunk_after_commit`: right after a chunk committed, before anything else (the chunk must count once);
- `between_chunks`: before a chunk starts, outside any transaction (also before the first chunk of a tier);
- `rollback_before_commit`: in a rollback chunk after its deletes/restores and journal checkpoint, before COMMIT;
- `rollback_after_commit`: right after a rollback chunk committed;
- `snapshot`, `validate`: wherever a caller puts `faults.point("snapshot")` / `faults.point("validate")` (meant for
  runner/pipeline.py: right after the before-snapshot was written; after the migration, before validation).

A transient-error retry of a chunk passes `chunk_before_commit` again (it is a new attempt of the transaction).

Unset (production): `point()` is one dict lookup in an empty dict and returns. The variable is read once, when
this module is imported; a malformed value raises ValueError then, so a fault run never silently runs without its
fault. `reload()` re-reads it (for tests of this module).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

ENV = "HERA_FAULT_KILL"
POINTS = ("chunk_before_commit", "chunk_after_commit", "between_chunks", "rollback_before_commit",
          "rollback_after_commit", "snapshot", "validate")

_targets: dict[str, int] = {}
_counts: dict[str, int] = {}
_lock = threading.Lock()


def parse(value: str) -> dict[str, int]:
    """`"a:1,b:2"` -> {"a": 1, "b": 2}; unknown points, missing or non-positive counts are errors."""
    out: dict[str, int] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        name, sep, count = part.partition(":")
        if name not in POINTS:
            raise ValueError(f"{ENV}: unknown point {name!r} (one of {', '.join(POINTS)})")
        if not sep or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"{ENV}: {part!r} needs a count of at least 1, e.g. {name}:1")
        if name in out:
            raise ValueError(f"{ENV}: point {name!r} given twice")
        out[name] = int(count)
    return out


def reload(value: str | None = None) -> dict[str, int]:
    """(Re)read the switch from `value`, else from the environment, and reset the counters."""
    global _targets
    raw = os.environ.get(ENV, "") if value is None else value
    with _lock:
        _targets = parse(raw)
        _counts.clear()
    return dict(_targets)


def point(name: str) -> None:
    """Pass fault point `name`: SIGKILL this process if it is the configured occurrence, else do nothing."""
    target = _targets.get(name)
    if target is None:
        return
    with _lock:
        seen = _counts.get(name, 0) + 1
        _counts[name] = seen
    if seen == target:
        kill(name, seen)


def kill(name: str, seen: int) -> None:
    sys.stderr.write(f"{ENV}: SIGKILL at {name} #{seen} (pid {os.getpid()})\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


reload()
