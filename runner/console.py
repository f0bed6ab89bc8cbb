"""Console output of the verbs: rich on a terminal; piped (CI, logs, scripts) nothing wrapped or cut."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table


def make_console(*, stderr: bool = False) -> Console:
    """Rich output on a terminal. Piped (CI, logs, scripts) nothing is wrapped or cut: lines stay whole (soft
    wrap) and print_table prints plain text; rich renderables other than tables get a fixed 120 columns."""
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(stderr=stderr, highlight=False, width=None if tty else 120, soft_wrap=not tty)


def print_table(console: Console, title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A table: rich's on a terminal; anywhere else plain padded text, because rich fits a table to the console
    width by cutting values (`organisati…`), and piped output is read by scripts and searched in logs."""
    cells = [list(row) for row in rows]
    right = _numeric_columns(len(columns), cells)
    if console.is_terminal:
        table = Table(title=title)
        for i, column in enumerate(columns):
            table.add_column(column, justify="right" if right[i] else "left")
        for row in cells:
            table.add_row(*row)
        console.print(table)
        return
    console.print(plain_table(title, columns, cells), markup=False, emoji=False, highlight=False, soft_wrap=True)


def plain_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Title, header, a rule and the rows; columns padded to their widest cell (numbers to the right), nothing
    truncated."""
    widths = [max([cell_len(c), *(cell_len(row[i]) for row in rows)]) for i, c in enumerate(columns)]
    right = _numeric_columns(len(columns), rows)

    def line(values: Sequence[str]) -> str:
        pads = [" " * (w - cell_len(v)) for v, w in zip(values, widths, strict=True)]
        return "  ".join(p + v if r else v + p for v, p, r in zip(values, pads, right, strict=True)).rstrip()

    return "\n".join([title, line(columns), line(["-" * w for w in widths]), *(line(row) for row in rows)])


_NUMBER = re.compile(r"-?[\d,]+(\.\d+)?%?")


def _numeric_columns(n: int, rows: Sequence[Sequence[str]]) -> list[bool]:
    return [bool(rows) and all(_NUMBER.fullmatch(row[i]) for row in rows) for i in range(n)]
