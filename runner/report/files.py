"""Files of the reports: written atomically, so a browser or a reader never sees half a page, and readable by
everyone (0644) like every other artefact of a run — a report is a document to share, not a secret."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

MODE = 0o644


@contextmanager
def open_atomic(path: Path) -> Iterator[IO[str]]:
    """A text file that appears at `path` (mode 0644) only when the block completes; nothing is left otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            yield out
        os.chmod(tmp, MODE)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same directory and an atomic rename."""
    with open_atomic(path) as out:
        out.write(text)
    return path
