"""The kubelet's log endpoint, which the API server proxies ``pods/log`` requests to.

One HTTPS server per simulated node, on the port the Node reports in
``status.daemonEndpoints.kubeletEndpoint.Port``. It serves
``GET /containerLogs/<namespace>/<pod>/<container>`` with the query parameters ``follow``,
``tailLines``, ``limitBytes``, ``timestamps``, ``previous``, ``sinceSeconds`` and
``sinceTime``. The API server authenticates with a client certificate; the server
verifies it only when a client CA is configured.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from tests.cluster.node_agent.logs import format_time, limit_bytes, parse_record, read_records, render, select_records

log = logging.getLogger("node_agent.logs")

FOLLOW_POLL_SECONDS = 0.2

# Finds the log of a container on a node: (namespace, pod, container, previous) ->
# (log file or None, whether the container still runs, text explaining a missing log).
LogLocator = Callable[[str, str, str, bool], tuple[Path | None, bool, str]]


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[0].lower() in ("true", "1")


def _integer(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    return int(values[0]) if values else None


def since_time(query: dict[str, list[str]]) -> str | None:
    """Convert ``sinceSeconds`` or ``sinceTime`` to the log's time format for comparison."""
    if "sinceSeconds" in query:
        moment = datetime.now(timezone.utc) - timedelta(seconds=int(query["sinceSeconds"][0]))
        return format_time(moment)
    if "sinceTime" in query:
        moment = datetime.fromisoformat(query["sinceTime"][0].replace("Z", "+00:00"))
        return format_time(moment.astimezone(timezone.utc))
    return None


class _Handler(BaseHTTPRequestHandler):
    server: "LogServer"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - name fixed by the base class
        log.debug("log endpoint request", extra={"request": format % args})

    def do_GET(self) -> None:  # noqa: N802 - name fixed by the base class
        url = urlparse(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts == ["healthz"]:
            self._reply(200, b"ok")
            return
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._reply(404, b"not found: only /containerLogs/<namespace>/<pod>/<container> is served\n")
            return
        try:
            self._serve_logs(parts[1], parts[2], parts[3], parse_qs(url.query))
        except ValueError as error:
            self._reply(400, f"invalid log request: {error}\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve_logs(self, namespace: str, pod: str, container: str, query: dict[str, list[str]]) -> None:
        path, live, problem = self.server.locate(namespace, pod, container, _flag(query, "previous"))
        if path is None or not path.exists():
            self._reply(400 if problem.startswith("container") else 404, (problem or "log not found").encode() + b"\n")
            return

        timestamps = _flag(query, "timestamps")
        remaining = _integer(query, "limitBytes")
        records = select_records(read_records(path), _integer(query, "tailLines"), since_time(query))
        with path.open("rb") as stream:
            stream.seek(0, 2)
            offset = stream.tell()

        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        remaining = self._send(render(records, timestamps), remaining)
        if not _flag(query, "follow"):
            return

        pending = b""
        while remaining is None or remaining > 0:
            with path.open("rb") as stream:
                stream.seek(offset)
                data = stream.read()
            offset += len(data)
            pending += data
            lines = pending.split(b"\n")
            pending = lines.pop()
            new_records = [r for r in (parse_record(line) for line in lines) if r is not None]
            if new_records:
                remaining = self._send(render(new_records, timestamps), remaining)
                continue
            _, live, _ = self.server.locate(namespace, pod, container, False)
            if not live:
                return
            time.sleep(FOLLOW_POLL_SECONDS)

    def _send(self, data: bytes, remaining: int | None) -> int | None:
        data = limit_bytes(data, remaining)
        if data:
            self.wfile.write(data)
            self.wfile.flush()
        return None if remaining is None else remaining - len(data)


class LogServer(ThreadingHTTPServer):
    """HTTPS log endpoint of one node."""

    daemon_threads = True

    def __init__(self, port: int, cert: str, key: str, client_ca: str | None, locate: LogLocator) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        if client_ca:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.locate = locate

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, name=f"log-server-{self.server_address[1]}", daemon=True).start()
