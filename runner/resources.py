"""Find the top-level data folders (fixtures/, specs/) from a checkout or from an installed wheel."""

from __future__ import annotations

from pathlib import Path

from runner.errors import HarnessError

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder `name` ("fixtures" or "specs").

    A wheel carries them as runner/_data/<name> (see pyproject force-include); an editable install or a plain
    checkout finds them beside the package.
    """
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise HarnessError(f"cannot find the '{name}' folder next to the runner package ({_PACKAGE})")


def sql_files() -> list[Path]:
    """The HERA-compatible core, in install order (numeric file-name prefix)."""
    files = sorted((data_dir("fixtures") / "sql").glob("*.sql"))
    if not files:
        raise HarnessError("fixtures/sql holds no *.sql files: the HERA core schema is missing")
    return files
