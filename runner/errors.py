"""One root exception; every failure the CLI reports maps to a documented exit code.

Exit codes (docs/contract.md §4): 0 done and no critical check failed; 1 done, a critical check failed or a critical
alert fired; 2 usage or spec error, nothing executed; 3 runtime failure (work already committed is safe); 4 done,
but the validation had no record to check (e.g. after a rollback): a verdict of its own, never PASSED.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3
EXIT_NOTHING_CHECKED = 4  # done, but no record was there to check: never reported as passed


class HarnessError(Exception):
    """Root of every error the harness raises on purpose."""

    exit_code: int = EXIT_RUNTIME

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return self.message if self.hint is None else f"{self.message}\nhint: {self.hint}"


class UsageError(HarnessError):
    """Bad command-line input; nothing was executed."""

    exit_code = EXIT_USAGE


class NotImplementedYet(UsageError):
    def __init__(self, verb: str) -> None:
        super().__init__(f"'{verb}' is not implemented yet")


class SpecError(HarnessError):
    """A spec file is invalid; carries every problem found in one pass."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems) if problems else "invalid spec")
        self.problems = problems


class DatabaseError(HarnessError):
    """The database could not be reached or a statement failed at run time."""

    exit_code = EXIT_RUNTIME


class ProviderError(DatabaseError):
    """No PostgreSQL server could be started or reached."""


class DataError(HarnessError):
    """Input data (fixtures, source rows) is not what the command needs."""

    exit_code = EXIT_USAGE
