"""Static guard for custom-check SQL: exactly one read-only SELECT (or WITH … SELECT).

This is a strict lexical check, not a parser: it tokenizes PostgreSQL SQL (strings, E'' strings, dollar quotes,
quoted identifiers, nested comments) and rejects anything that could write, lock, run other SQL or change the
session. Words inside strings, comments and "quoted identifiers" are data and never trip it, so a column whose
name is a reserved word can be written in double quotes. The real guard at run time is a READ ONLY transaction
with a statement timeout; this one exists so that `check` explains the problem before anything runs.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

PARAMETERS = {"run_id": "text", "organization_id": "uuid"}

_WORD = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")

_WRITES = "custom checks may only read"
_FORBIDDEN_WORDS: dict[str, str] = {
    **dict.fromkeys(("insert", "update", "delete", "merge", "truncate"), _WRITES),
    **dict.fromkeys(("create", "alter", "drop", "comment", "grant", "revoke", "security", "reassign", "refresh",
                     "cluster", "reindex", "vacuum", "analyze", "analyse", "import", "load", "checkpoint"),
                    "DDL and maintenance statements are not allowed in a check"),
    **dict.fromkeys(("copy", "call", "do", "execute", "prepare", "deallocate"),
                    "it runs other statements or procedures that check cannot inspect"),
    "lock": "checks must not take locks",
    **dict.fromkeys(("begin", "commit", "rollback", "savepoint", "release", "abort"),
                    "the runner owns the transaction (READ ONLY, with a timeout)"),
    **dict.fromkeys(("set", "reset", "discard"), "checks must not change session settings"),
    **dict.fromkeys(("listen", "notify", "unlisten"), "checks must not send or receive notifications"),
    "into": "SELECT INTO creates a table; a check returns its offending rows instead",
}
_LOCKING_NEXT = frozenset({"update", "share", "no", "key"})

# Read-only functions of production HERA (docs/hera-reference.md §2), which our stand-in core defines too; every other
# hera_* call is refused, including helpers only a stand-in might have (a check must run on production).
READ_ONLY_HERA = frozenset({
    "hera_txn_read_v1", "hera_txn_query_v1", "hera_txn_validate_v1", "hera_gl_validate_balance", "hera_line_side",
    "hera_line_debit_amount", "hera_line_credit_amount", "hera_norm_thresholds",
})
_HERA_WRITERS = frozenset({
    "hera_txn_emit_v1", "hera_txn_reverse_v1", "hera_txn_void_v1", "hera_txn_create_v1", "hera_txn_crud_v1",
    "hera_txn_update_v1", "hera_txn_delete_v1", "hera_txn_emit_batch_v1", "hera_txn_restore_v1",
    "hera_outbox_enqueue_v1", "hera_set_organization_context_v2", "hera_audit_operation_v2",
})
_PG_FUNCTIONS: dict[str, str] = {
    **dict.fromkeys(("nextval", "setval", "lastval", "txid_current", "pg_current_xact_id", "pg_export_snapshot"),
                    "it changes or allocates database state"),
    "set_config": "checks must not change session settings",
    **dict.fromkeys(("pg_sleep", "pg_sleep_for", "pg_sleep_until"), "checks must not stall the validation"),
    **dict.fromkeys(("pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
                     "pg_switch_wal", "pg_promote", "pg_notify"), "it acts on the server or other sessions"),
    **dict.fromkeys(("query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml",
                     "cursor_to_xmlschema"), "it executes a SQL string that check cannot inspect"),
}
_PG_PREFIXES: dict[str, str] = {
    "lo_": "large-object functions read or write server files and objects",
    "dblink": "it runs SQL on another connection",
    "pg_advisory": "checks must not take locks",
    "pg_try_advisory": "checks must not take locks",
    "pg_stat_reset": "it resets server statistics",
    "pg_replication_": "it acts on replication",
    "pg_create_": "it creates server objects",
    "pg_drop_": "it drops server objects",
    "pg_logical_": "it writes to the WAL",
    "pg_file_": "it writes server files",
    "pg_read_": "it reads server files",
    "pg_ls_": "it lists server files",
}


@dataclass(frozen=True)
class Token:
    kind: str  # word, qident, string, number, param, op, semi, lparen, rparen
    text: str  # words lower-cased; quoted identifiers unquoted
    start: int
    end: int


@dataclass(frozen=True)
class SqlProblem:
    message: str
    line: int  # 0-based line within the SQL text
    col: int  # 0-based column


@dataclass(frozen=True)
class SqlAnalysis:
    tokens: tuple[Token, ...]
    problems: tuple[SqlProblem, ...]

    @property
    def parameters(self) -> tuple[Token, ...]:
        return tuple(t for t in self.tokens if t.kind == "param")


class _Lexer:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", sql)]
        self.tokens: list[Token] = []
        self.problems: list[SqlProblem] = []

    def where(self, pos: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.line_starts, pos) - 1
        return line, pos - self.line_starts[line]

    def problem(self, pos: int, message: str) -> None:
        line, col = self.where(pos)
        self.problems.append(SqlProblem(message, line, col))

    def run(self) -> None:
        s, n, i = self.sql, len(self.sql), 0
        while i < n:
            c = s[i]
            if c.isspace():
                i += 1
            elif s.startswith("--", i):
                nl = s.find("\n", i)
                i = n if nl < 0 else nl + 1
            elif s.startswith("/*", i):
                i = self._block_comment(i)
            elif c in "eE" and s.startswith("'", i + 1):
                i = self._string(i, i + 1, backslash=True)
            elif c in "bBxXnN" and s.startswith("'", i + 1):
                i = self._string(i, i + 1, backslash=False)
            elif c in "uU" and s.startswith("&'", i + 1):
                i = self._string(i, i + 2, backslash=False)
            elif c in "uU" and s.startswith('&"', i + 1):
                i = self._quoted_ident(i, i + 2)
            elif c == "'":
                i = self._string(i, i, backslash=False)
            elif c == '"':
                i = self._quoted_ident(i, i)
            elif c == "$":
                i = self._dollar(i)
            elif c == ":" and s.startswith("::", i):
                self.tokens.append(Token("op", "::", i, i + 2))
                i += 2
            elif c == ":" and (m := _WORD.match(s, i + 1)) is not None:
                self.tokens.append(Token("param", m.group(0), i, m.end()))
                i = m.end()
            elif (m := _WORD.match(s, i)) is not None:
                self.tokens.append(Token("word", m.group(0).lower(), i, m.end()))
                i = m.end()
            elif (m := _NUMBER.match(s, i)) is not None:
                self.tokens.append(Token("number", m.group(0), i, m.end()))
                i = m.end()
            elif c == "\\":
                self.problem(i, "a backslash outside a string: psql meta-commands such as \\gexec are not SQL and "
                                "are not allowed")
                i += 1
            else:
                kind = {";": "semi", "(": "lparen", ")": "rparen"}.get(c, "op")
                self.tokens.append(Token(kind, c, i, i + 1))
                i += 1

    def _block_comment(self, start: int) -> int:
        s, depth, i = self.sql, 0, start
        while i < len(s):
            if s.startswith("/*", i):
                depth, i = depth + 1, i + 2
            elif s.startswith("*/", i):
                depth, i = depth - 1, i + 2
                if depth == 0:
                    return i
            else:
                i += 1
        self.problem(start, "unterminated /* comment")
        return len(s)

    def _string(self, start: int, quote: int, *, backslash: bool) -> int:
        s, i = self.sql, quote + 1
        while i < len(s):
            if backslash and s[i] == "\\":
                i += 2
            elif s[i] == "'":
                if s.startswith("''", i):
                    i += 2
                else:
                    self.tokens.append(Token("string", s[start:i + 1], start, i + 1))
                    return i + 1
            else:
                i += 1
        self.problem(start, "unterminated string literal (a ' is missing)")
        return len(s)

    def _quoted_ident(self, start: int, quote: int) -> int:
        s, i = self.sql, quote + 1
        while i < len(s):
            if s[i] == '"':
                if s.startswith('""', i):
                    i += 2
                else:
                    self.tokens.append(Token("qident", s[quote + 1:i].replace('""', '"'), start, i + 1))
                    return i + 1
            else:
                i += 1
        self.problem(start, 'unterminated quoted identifier (a " is missing)')
        return len(s)

    def _dollar(self, start: int) -> int:
        s = self.sql
        if start + 1 < len(s) and s[start + 1].isdigit():
            m = re.compile(r"\$[0-9]+").match(s, start)
            end = m.end() if m else start + 1
            self.problem(start, f"positional parameter {s[start:end]} is not available; use the named parameters "
                                f"{', '.join(':' + p for p in PARAMETERS)}")
            return end
        m = _DOLLAR_TAG.match(s, start)
        if m is None:
            self.tokens.append(Token("op", "$", start, start + 1))
            return start + 1
        tag = m.group(0)
        close = s.find(tag, m.end())
        if close < 0:
            self.problem(start, f"unterminated dollar-quoted string (no closing {tag})")
            return len(s)
        self.tokens.append(Token("string", s[start:close + len(tag)], start, close + len(tag)))
        return close + len(tag)


def tokenize(sql: str) -> tuple[tuple[Token, ...], tuple[SqlProblem, ...]]:
    lexer = _Lexer(sql)
    lexer.run()
    return tuple(lexer.tokens), tuple(lexer.problems)


def analyze(sql: str) -> SqlAnalysis:
    """Tokenize `sql` and list every reason it is not exactly one read-only SELECT."""
    lexer = _Lexer(sql)
    lexer.run()
    toks = lexer.tokens
    if lexer.problems:
        return SqlAnalysis(tuple(toks), tuple(lexer.problems))
    if not toks:
        lexer.problem(0, "is empty: write one SELECT statement")
        return SqlAnalysis((), tuple(lexer.problems))
    semis = [k for k, t in enumerate(toks) if t.kind == "semi"]
    body = toks[:semis[0]] if semis else list(toks)
    if semis and any(t.kind != "semi" for t in toks[semis[0]:]):
        extra = next(t for t in toks[semis[0]:] if t.kind != "semi")
        line, _ = lexer.where(toks[semis[0]].start)
        lexer.problem(extra.start, f"more than one statement: the first ends with ';' on line {line + 1}; a check "
                                   "is exactly one SELECT")
        return SqlAnalysis(tuple(toks), tuple(lexer.problems))
    first = next((t for t in body if t.kind != "lparen"), None)
    skip = -1
    if first is None or first.kind != "word" or first.text not in ("select", "with"):
        shown = "nothing" if first is None else repr(sql[first.start:first.end])
        where = (body[0].start if body else toks[0].start) if first is None else first.start
        lexer.problem(where, f"must be a SELECT (or WITH ... SELECT) statement; it starts with {shown}")
        skip = body.index(first) if first is not None else -1
    for k, t in enumerate(body):
        if k == skip:
            continue
        nxt = body[k + 1] if k + 1 < len(body) else None
        if t.kind == "word" and t.text == "for" and nxt is not None and nxt.kind == "word" and \
                nxt.text in _LOCKING_NEXT:
            lexer.problem(t.start, f"locking clause FOR {nxt.text.upper()}... is not allowed: checks must not lock "
                                   "rows")
            skip = k + 1
            continue
        if t.kind == "word" and t.text in _FORBIDDEN_WORDS:
            lexer.problem(t.start, f"{t.text.upper()} is not allowed: {_FORBIDDEN_WORDS[t.text]} (if this is a "
                                   f"column name, write it in double quotes)")
        if t.kind in ("word", "qident") and nxt is not None and nxt.kind == "lparen":
            reason = _function_problem(t.text.lower())
            if reason:
                lexer.problem(t.start, reason)
    return SqlAnalysis(tuple(toks), tuple(lexer.problems))


def _function_problem(name: str) -> str | None:
    if name.startswith("hera_"):
        if name in READ_ONLY_HERA:
            return None
        if name in _HERA_WRITERS:
            return f"calls {name}(), a HERA RPC that writes; custom checks may only read"
        return (f"calls {name}(), a HERA function not known to be read-only; checks may call only "
                f"{', '.join(sorted(READ_ONLY_HERA))}")
    if name.startswith("finance_"):
        return f"calls {name}(), a Finance DNA function that may write; custom checks may only read"
    if name in _PG_FUNCTIONS:
        return f"calls {name}(), which is not allowed: {_PG_FUNCTIONS[name]}"
    for prefix, why in _PG_PREFIXES.items():
        if name.startswith(prefix):
            return f"calls {name}(), which is not allowed: {why}"
    return None


def to_psycopg(sql: str) -> str:
    """The statement with :name parameters as psycopg's %(name)s and every literal % doubled."""
    tokens, problems = tokenize(sql)
    if problems:
        raise ValueError(problems[0].message)
    out: list[str] = []
    pos = 0
    for t in tokens:
        if t.kind == "param":
            out.append(sql[pos:t.start].replace("%", "%%"))
            out.append(f"%({t.text})s")
            pos = t.end
    out.append(sql[pos:].replace("%", "%%"))
    return "".join(out)
