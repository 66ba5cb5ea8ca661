"""A small PostgREST-compatible HTTP gateway in front of a real PostgreSQL.

No PostgREST binary can be installed here, so the tests (and the local demo)
put this in its place. It implements the part of PostgREST's API that the
workers and the `supabase` client use, with PostgREST's request and response
shapes:

- `GET /rest/v1/{table}` with `select=`, column filters (`eq`, `neq`, `gt`,
  `gte`, `lt`, `lte`, `like`, `ilike`, `is`, `in`, each optionally `not.`),
  `or=(…)` / `and=(…)` trees, `order=col.asc|desc[.nullsfirst|nullslast]`,
  `limit`, `offset`;
- `POST` (insert, JSON object or array), `PATCH` (update) and `DELETE`, with
  `Prefer: return=representation|minimal`; an upsert is a `POST` with
  `on_conflict=cols` and `Prefer: resolution=merge-duplicates`;
- errors as `{"code", "message", "details", "hint"}` with PostgREST's status
  mapping (22xxx/23502 → 400, 23505 → 409, 42P01 → 404, the rest 500);
- the `apikey` / `Authorization: Bearer` check against one configured key.

Values go to PostgreSQL as untyped parameters, so PostgreSQL casts them to the
column's type exactly as it does behind PostgREST (an invalid UUID is a 400
with code 22P02). Results are serialised by PostgreSQL's own `json_agg`, which
gives the same JSON (timestamps, numerics, jsonb) that PostgREST returns.

Fault injection for the tests: `fail_next(n, status)` answers the next n
requests with an error, `fail_matching(...)` the next n requests of a method
whose body contains a text, and `delay_seconds` slows every answer.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from psycopg import sql

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
RESERVED = {"select", "order", "limit", "offset", "or", "and", "on_conflict", "columns"}


class RequestError(Exception):
    def __init__(self, status: int, code: str, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def ident(name: str) -> sql.Identifier:
    if not IDENT.match(name):
        raise RequestError(400, "PGRST100", f'"failed to parse" column "{name}"')
    return sql.Identifier(name)


def split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses or double quotes."""
    parts, depth, quoted, current = [], 0, False, []
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p != ""]


def unquote_value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def condition(column: str, expression: str, args: list[Any]) -> sql.Composable:
    """`column` + `op.value` (PostgREST's filter syntax) → SQL."""
    negate = False
    if expression.startswith("not."):
        negate, expression = True, expression[4:]
    op, sep, value = expression.partition(".")
    if not sep:
        raise RequestError(400, "PGRST100", f'"failed to parse filter ({expression})"')
    col = ident(column)
    if op != "in":
        value = unquote_value(value)
    if op in OPERATORS:
        args.append(value)
        clause = sql.SQL("{} {} %s").format(col, sql.SQL(OPERATORS[op]))
    elif op in ("like", "ilike"):
        args.append(value.replace("*", "%"))
        clause = sql.SQL("{} {} %s").format(col, sql.SQL(op.upper()))
    elif op == "is":
        keyword = {"null": "NULL", "true": "TRUE", "false": "FALSE", "unknown": "UNKNOWN"}
        if value.lower() not in keyword:
            raise RequestError(400, "PGRST100", f'"failed to parse filter (is.{value})"')
        clause = sql.SQL("{} IS " + keyword[value.lower()]).format(col)
    elif op == "in":
        if not (value.startswith("(") and value.endswith(")")):
            raise RequestError(400, "PGRST100", f'"failed to parse filter (in.{value})"')
        items = [unquote_value(v) for v in split_top(value[1:-1])]
        if not items:
            clause = sql.SQL("FALSE")
        else:
            args.extend(items)
            placeholders = sql.SQL(", ").join(sql.Placeholder() * len(items))
            clause = sql.SQL("{} IN ({})").format(col, placeholders)
    else:
        raise RequestError(400, "PGRST100", f'"failed to parse filter ({op})"')
    return sql.SQL("NOT ({})").format(clause) if negate else clause


def logic_tree(operator: str, body: str, args: list[Any]) -> sql.Composable:
    """`or=(a.eq.1,and(b.gt.2,c.is.null))` → SQL."""
    if not (body.startswith("(") and body.endswith(")")):
        raise RequestError(400, "PGRST100", f'"failed to parse logic tree ({body})"')
    parts = []
    for item in split_top(body[1:-1]):
        match = re.match(r"^(not\.)?(and|or)(\(.*\))$", item)
        if match:
            inner = logic_tree(match.group(2), match.group(3), args)
            parts.append(sql.SQL("NOT ({})").format(inner) if match.group(1) else inner)
        else:
            column, _, expression = item.partition(".")
            parts.append(condition(column, expression, args))
    joiner = sql.SQL(" OR " if operator == "or" else " AND ")
    return sql.SQL("({})").format(joiner.join(parts))


def where_clause(params: list[tuple[str, str]], args: list[Any]) -> sql.Composable:
    parts: list[sql.Composable] = []
    for key, value in params:
        if key in ("or", "and"):
            parts.append(logic_tree(key, value, args))
        elif key.startswith("not.") and key[4:] in ("or", "and"):
            parts.append(sql.SQL("NOT {}").format(logic_tree(key[4:], value, args)))
        elif key not in RESERVED:
            parts.append(condition(key, value, args))
    if not parts:
        return sql.SQL("TRUE")
    return sql.SQL(" AND ").join(parts)


def select_list(params: dict[str, str]) -> sql.Composable:
    columns = params.get("select", "*").strip()
    if columns in ("", "*"):
        return sql.SQL("*")
    return sql.SQL(", ").join(ident(c.strip()) for c in columns.split(","))


def order_clause(params: dict[str, str]) -> sql.Composable:
    if "order" not in params:
        return sql.SQL("")
    terms = []
    for term in params["order"].split(","):
        bits = term.split(".")
        parts = [ident(bits[0])]
        for modifier in bits[1:]:
            words = {"asc": "ASC", "desc": "DESC", "nullsfirst": "NULLS FIRST",
                     "nullslast": "NULLS LAST"}  # fmt: skip
            if modifier not in words:
                raise RequestError(400, "PGRST100", f'"failed to parse order ({term})"')
            parts.append(sql.SQL(words[modifier]))
        terms.append(sql.SQL(" ").join(parts))
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(terms)


def paging(params: dict[str, str]) -> sql.Composable:
    text = ""
    for name in ("limit", "offset"):
        if name in params:
            if not params[name].isdigit():
                raise RequestError(400, "PGRST100", f'"failed to parse {name}"')
            text += f" {name.upper()} {int(params[name])}"
    return sql.SQL(text)


def error_status(sqlstate: str) -> int:
    if sqlstate == "23505":
        return 409
    if sqlstate == "42P01":
        return 404
    if sqlstate.startswith(("22", "23")):
        return 400
    if sqlstate == "42501":
        return 403
    if sqlstate.startswith("42"):
        return 400
    return 500


def upsert_clause(params: dict[str, str], prefer: str, columns: list[str]) -> sql.Composable:
    """PostgREST's upsert: `on_conflict=a,b` with `resolution=merge-duplicates`
    updates the conflicting row's sent columns (`ignore-duplicates`: leaves it)."""
    targets = [c.strip() for c in params.get("on_conflict", "").split(",") if c.strip()]
    if not targets or "resolution=" not in prefer:
        return sql.SQL("")
    conflict = sql.SQL(", ").join(ident(c) for c in targets)
    if "resolution=ignore-duplicates" in prefer:
        return sql.SQL("ON CONFLICT ({}) DO NOTHING").format(conflict)
    sets = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(ident(c)) for c in columns)
    return sql.SQL("ON CONFLICT ({}) DO UPDATE SET {}").format(conflict, sets)


class Gateway:
    """The gateway's state: database, key, and the faults the tests inject."""

    def __init__(self, dsn: str, api_key: str | None = None) -> None:
        self.dsn = dsn
        self.api_key = api_key
        self.delay_seconds = 0.0
        self.requests: list[tuple[str, str]] = []
        self.writes: list[tuple[str, str, bytes]] = []  # (method, path, body) of each write
        self._fail: list[int] = []
        self._rules: list[list[Any]] = []
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._fail.extend([status] * count)

    def fail_matching(
        self, method: str, body_contains: str, count: int, status: int = 503, table: str = ""
    ) -> None:
        """Answer the next `count` `method` requests whose body contains the
        text (and, if given, that go to `table`) with an error."""
        with self._lock:
            self._rules.append([method, body_contains.encode(), count, status, table])

    def take_fault(self, method: str = "", body: bytes = b"", path: str = "") -> int | None:
        with self._lock:
            for rule in self._rules:
                table_ok = not rule[4] or path.rstrip("/").endswith("/" + rule[4])
                if rule[2] > 0 and rule[0] == method and rule[1] in body and table_ok:
                    rule[2] -= 1
                    return int(rule[3])
            return self._fail.pop(0) if self._fail else None

    def clear_faults(self) -> None:
        with self._lock:
            self._fail.clear()
            self._rules.clear()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        gateway = self

        class Handler(GatewayHandler):
            state = gateway

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return f"http://{host}:{self.server.server_address[1]}"

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def execute(self, method: str, table: str, query: list[tuple[str, str]],
                body: Any, prefer: str) -> tuple[int, Any]:  # fmt: skip
        params = dict(query)
        args: list[Any] = []
        target = ident(table)
        representation = "return=representation" in prefer
        if method == "GET":
            statement = sql.SQL("SELECT {} FROM {} WHERE {}{}{}").format(
                select_list(params), target, where_clause(query, args),
                order_clause(params), paging(params),
            )  # fmt: skip
        elif method in ("PATCH", "POST"):
            if not isinstance(body, (dict, list)) or (
                method == "PATCH" and not isinstance(body, dict)
            ):
                raise RequestError(400, "PGRST102", "Empty or invalid json")
            rows = body if isinstance(body, list) else [body]
            columns = sorted({k for row in rows for k in row}) if rows else []
            if not columns:
                raise RequestError(400, "PGRST102", "Empty or invalid json")
            column_list = sql.SQL(", ").join(ident(c) for c in columns)
            pick = sql.SQL(", ").join(sql.SQL("r.") + ident(c) for c in columns)
            if method == "PATCH":
                args.append(json.dumps(body))
                statement = sql.SQL(
                    "UPDATE {t} SET ({cols}) = (SELECT {pick} FROM "
                    "json_populate_record(NULL::{t}, %s::json) AS r) WHERE {where} RETURNING {t}.*"
                ).format(t=target, cols=column_list, pick=pick, where=where_clause(query, args))
            else:
                args.append(json.dumps(rows))
                statement = sql.SQL(
                    "INSERT INTO {t} ({cols}) SELECT {pick} FROM "
                    "json_populate_recordset(NULL::{t}, %s::json) AS r {upsert} RETURNING {t}.*"
                ).format(t=target, cols=column_list, pick=pick,
                         upsert=upsert_clause(params, prefer, columns))  # fmt: skip
        elif method == "DELETE":
            statement = sql.SQL("DELETE FROM {} WHERE {} RETURNING *").format(
                target, where_clause(query, args)
            )
        else:
            raise RequestError(405, "PGRST117", f"Unsupported HTTP method: {method}")
        wrapped = sql.SQL(
            "WITH pgrst_source AS ({}) "
            "SELECT coalesce(json_agg(pgrst_source), '[]') FROM pgrst_source"
        )
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            try:
                (data,) = conn.execute(wrapped.format(statement), args).fetchone()
            except psycopg.Error as exc:
                diag = exc.diag
                state = diag.sqlstate or "XX000"
                raise RequestError(
                    error_status(state),
                    state,
                    diag.message_primary or str(exc),
                    diag.message_detail,
                ) from exc
        if method == "GET":
            return 200, data
        if representation:
            return (201 if method == "POST" else 200), data
        return (201 if method == "POST" else 204), None


class GatewayHandler(BaseHTTPRequestHandler):
    state: Gateway
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _reply(self, status: int, payload: Any = None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, details: str | None = None) -> None:
        self._reply(status, {"code": code, "details": details, "hint": None, "message": message})

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        self.state.requests.append((self.command, url.path))
        if self.command != "GET":
            self.state.writes.append((self.command, url.path, raw))
        if self.state.delay_seconds:
            threading.Event().wait(self.state.delay_seconds)
        fault = self.state.take_fault(self.command, raw, url.path)
        if fault is not None:
            self._reply(fault, {"message": "injected fault", "code": str(fault)})
            return
        key = self.state.api_key
        bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if key and key not in (self.headers.get("apikey"), bearer):
            self._error(401, "PGRST301", "JWSError (CompactDecodeError Invalid number of parts)")
            return
        match = re.match(r"^/rest/v1/([^/]+)$", url.path)
        if not match:
            self._error(404, "PGRST125", f"Invalid path specified in request URL: {url.path}")
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._error(400, "PGRST102", "Empty or invalid json")
            return
        query = parse_qsl(url.query, keep_blank_values=True)
        try:
            status, data = self.state.execute(
                self.command, unquote(match.group(1)), query, body,
                self.headers.get("Prefer") or "",
            )  # fmt: skip
        except RequestError as exc:
            self._error(exc.status, exc.code, exc.message, exc.details)
            return
        except psycopg.OperationalError as exc:
            self._error(503, "PGRST000", "Database connection error", str(exc)[:200])
            return
        self._reply(status, data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_HEAD = _handle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key")
    options = parser.parse_args()
    gateway = Gateway(options.dsn, options.api_key)
    print(gateway.start(options.host, options.port), flush=True)
    assert gateway.thread is not None
    gateway.thread.join()


if __name__ == "__main__":
    main()
