"""Collects semantic problems of one file, located through its SourceMap."""

from __future__ import annotations

from runner.spec.problems import JsonPath, Loc, Problem, SourceMap


class Report:
    def __init__(self, display: str, source: SourceMap) -> None:
        self.display = display
        self.source = source
        self.problems: list[Problem] = []

    def add(self, path: JsonPath, message: str, *, key: bool = False, loc: Loc | None = None) -> None:
        """A problem at the node `path` (or at its key with key=True, or at an exact `loc`)."""
        where = loc or (self.source.key(path) if key else self.source.value(path))
        self.problems.append(Problem(self.display, where, path, message))

    def warn(self, path: JsonPath, message: str) -> None:
        """Something `check` accepts but QA should know (the file still passes)."""
        self.problems.append(Problem(self.display, self.source.value(path), path, message, severity="warning"))

    def line(self, path: JsonPath) -> int:
        return self.source.value(path).line

    def where(self, path: JsonPath) -> str:
        """"line N" when the node is written in the file, else "the default"."""
        return f"line {self.source.values[path].line}" if path in self.source.values else "the default"

    def written(self, path: JsonPath) -> bool:
        return path in self.source.values
