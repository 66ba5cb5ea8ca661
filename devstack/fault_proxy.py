"""An HTTP reverse proxy on loopback that injects network faults.

Put it between a worker and moto (`WASABI_ENDPOINT` or `AWS_ENDPOINT_URL_SQS`
pointing at the proxy) to see what the worker does when storage or SQS is
slow, drops connections, answers 5xx, or cuts a transfer half-way. Requests
are forwarded byte for byte (Host header included, so signatures stay valid);
rules pick requests by method, path or header text and apply a fault to the
next `count` of them.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


@dataclass
class Rule:
    action: str  # "status", "drop", "delay", "cut", "throttle"
    count: int
    method: str | None = None
    path_contains: str | None = None
    header_contains: str | None = None
    status: int = 503
    seconds: float = 0.0
    keep_bytes: int = 0
    bytes_per_second: float = 0.0  # pace the answer's body ("throttle", or "cut" too)
    hits: int = 0

    def matches(self, method: str, path: str, headers: str) -> bool:
        return (
            self.count > 0
            and (self.method is None or self.method == method)
            and (self.path_contains is None or self.path_contains in path)
            and (self.header_contains is None or self.header_contains in headers)
        )


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.rules: list[Rule] = []
        self.down = False  # drop every connection at once
        self.log: list[tuple[str, str, str]] = []  # (method, path, fault or "")
        self.headers: list[tuple[str, str, dict[str, str]]] = []  # what went over the wire
        self._lock = threading.Lock()
        proxy = self

        class Handler(_Handler):
            state = proxy

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, action: str, count: int = 1, **match: Any) -> Rule:
        rule = Rule(action, count, **match)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
        self.down = False

    def take(self, method: str, path: str, headers: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path, headers):
                    rule.count -= 1
                    rule.hits += 1
                    return rule
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    state: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def _handle(self) -> None:
        body = self._body()
        header_text = str(self.headers)
        self.state.headers.append((self.command, self.path, dict(self.headers.items())))
        if self.state.down:
            self.state.log.append((self.command, self.path, "down"))
            self._drop()
            return
        rule = self.state.take(self.command, self.path, header_text)
        self.state.log.append((self.command, self.path, rule.action if rule else ""))
        if rule is not None and rule.action == "drop":
            self._drop()
            return
        if rule is not None and rule.action == "status":
            code = {403: "AccessDenied", 404: "NoSuchKey"}.get(rule.status, "ServiceUnavailable")
            payload = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
            self.send_response(rule.status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if rule is not None and rule.action in ("delay", "throttle"):
            time.sleep(rule.seconds)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection("127.0.0.1", self.state.upstream_port, timeout=120)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        except OSError:
            self._drop()
            return
        finally:
            upstream.close()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in HOP_BY_HOP | {"content-length", "date", "server"}:
                self.send_header(key, value)
        if self.command == "HEAD":  # no body, but the object's real length
            self.send_header("Content-Length", answer.getheader("Content-Length") or "0")
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        cut = rule is not None and rule.action == "cut"
        self._send(data[: rule.keep_bytes] if cut else data, rule.bytes_per_second if rule else 0)
        if cut:
            self._drop()

    def _send(self, data: bytes, bytes_per_second: float) -> None:
        if not bytes_per_second:
            self.wfile.write(data)
            return
        step = 64 * 1024
        started = time.monotonic()
        try:
            for offset in range(0, len(data), step):
                self.wfile.write(data[offset : offset + step])
                self.wfile.flush()
                ahead = (offset + step) / bytes_per_second - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        except OSError:  # the client went away (it may, once it has what it needs)
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle
