"""The control API: a small HTTP/JSON server on localhost for operators, with a bearer token.

    GET   /status         the agent's state (feed, session, kill switch, counts)
    GET   /positions      position and P&L per instrument, and totals
    GET   /orders         open orders
    GET   /risk/limits    the risk limits in force
    PATCH /risk/limits    change limits: a JSON object of field -> value; all or nothing
    POST  /kill           engage the kill switch: {"reason": "..."}; every open order is canceled
    POST  /kill/reset     release it: {"operator": "..."}
    GET   /metrics        Prometheus exposition (counters and latency histograms)

Every request needs `Authorization: Bearer <token>`. A bad request gets a 4xx with a JSON body
{"error": "..."} that says what was wrong, and changes nothing: unknown path 404, wrong method 405, no or
wrong token 401, a body that is not a JSON object or too large 400/413, a limit that fails validation 400
naming the field.

The server runs in its own thread but never touches the agent's state there: each call is queued
(`CommandQueue`) and run by the agent's loop between two iterations (`run_pending`), so the hot path needs
no lock; the HTTP thread waits for the answer (503 when the agent does not answer in time).
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from pydantic import Field

from .validated import ConfigError, ConfigModel

__all__ = ["CommandQueue", "ControlConfig", "ControlServer", "Controllable"]

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


class ControlConfig(ConfigModel):
    """[control] section of the agent's configuration."""

    enabled: bool = True
    host: str = Field("127.0.0.1", description="address to listen on; localhost by default")
    port: int = Field(8470, ge=0, le=65535, description="0: any free port")
    token: str = Field(..., min_length=16, description="bearer token every request must carry")
    answer_timeout_s: float = Field(2.0, gt=0)


class Controllable(Protocol):
    """What the control API asks the agent; every method runs on the agent's thread."""

    def status(self) -> dict[str, Any]: ...
    def positions(self) -> dict[str, Any]: ...
    def open_orders(self) -> list[dict[str, Any]]: ...
    def risk_limits(self) -> dict[str, Any]: ...
    def set_risk_limits(self, changes: dict[str, Any]) -> dict[str, Any]: ...  # raises ConfigError
    def kill(self, reason: str) -> dict[str, Any]: ...
    def reset_kill(self, operator: str) -> dict[str, Any]: ...
    def metrics_text(self) -> bytes: ...


class CommandQueue:
    """Calls posted from other threads, run on the agent's thread by `run_pending`."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Future, Callable[[], Any]]] = queue.SimpleQueue()

    def call(self, fn: Callable[[], Any], timeout: float) -> Any:
        future: Future = Future()
        self._calls.put((future, fn))
        return future.result(timeout)

    def run_pending(self) -> int:
        """Run every queued call (the agent loop calls this); returns how many ran."""
        n = 0
        while True:
            try:
                future, fn = self._calls.get_nowait()
            except queue.Empty:
                return n
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as e:  # the caller's thread re-raises it
                    future.set_exception(e)
            n += 1


class _BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class ControlServer:
    """The HTTP server; `start()` serves in a daemon thread, `stop()` shuts it down."""

    def __init__(self, agent: Controllable, commands: CommandQueue, config: ControlConfig) -> None:
        self.agent = agent
        self.commands = commands
        self.config = config
        self._server = ThreadingHTTPServer((config.host, config.port), self._handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> ControlServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="control-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join()

    # --- routing -------------------------------------------------------------------------------------------

    def _route(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[HTTPStatus, Any]:
        agent = self.agent
        routes: dict[str, dict[str, Callable[[], Any]]] = {
            "/status": {"GET": agent.status},
            "/positions": {"GET": agent.positions},
            "/orders": {"GET": agent.open_orders},
            "/risk/limits": {"GET": agent.risk_limits, "PATCH": lambda: agent.set_risk_limits(_object(body))},
            "/kill": {"POST": lambda: agent.kill(_text(body, "reason"))},
            "/kill/reset": {"POST": lambda: agent.reset_kill(_text(body, "operator"))},
            "/metrics": {"GET": agent.metrics_text},
        }
        methods = routes.get(path)
        if methods is None:
            raise _BadRequest(HTTPStatus.NOT_FOUND, f"no such endpoint {path!r} (have: {', '.join(routes)})")
        fn = methods.get(method)
        if fn is None:
            raise _BadRequest(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} takes {', '.join(methods)}, not {method}")
        try:
            return HTTPStatus.OK, self.commands.call(fn, self.config.answer_timeout_s)
        except ConfigError as e:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, "; ".join(e.problems)) from None
        except FutureTimeout:
            raise _BadRequest(HTTPStatus.SERVICE_UNAVAILABLE, "the agent did not answer in time") from None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "wirebook-control"

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def _serve(self, method: str) -> None:
                try:
                    self._authorize()
                    body = self._body() if method in ("POST", "PATCH", "PUT") else None
                    status, result = server._route(method, self.path.split("?", 1)[0].rstrip("/") or "/", body)
                except _BadRequest as e:
                    self._send(e.status, {"error": str(e)})
                    return
                if isinstance(result, bytes):
                    self._send_bytes(status, result, "text/plain; version=0.0.4; charset=utf-8")
                else:
                    self._send(status, result)

            def _authorize(self) -> None:
                given = self.headers.get("Authorization", "")
                expected = f"Bearer {server.config.token}"
                if not hmac.compare_digest(given.encode(), expected.encode()):
                    raise _BadRequest(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")

            def _body(self) -> dict[str, Any] | None:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    raise _BadRequest(HTTPStatus.BAD_REQUEST, "Content-Length is not a number") from None
                if length > MAX_BODY:
                    raise _BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body of {length} bytes > {MAX_BODY}")
                if not length:
                    return None
                raw = self.rfile.read(length)
                try:
                    return json.loads(raw)
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    raise _BadRequest(HTTPStatus.BAD_REQUEST, f"body is not JSON: {e}") from None

            def _send(self, status: HTTPStatus, payload: Any) -> None:
                self._send_bytes(status, json.dumps(payload, default=str).encode(), "application/json")

            def _send_bytes(self, status: HTTPStatus, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                log.info("control API %s: %s", self.address_string(), format % args)

        return Handler


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not body:
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "body must be a non-empty JSON object of field -> value")
    return body


def _text(body: Any, key: str) -> str:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise _BadRequest(HTTPStatus.BAD_REQUEST, f'body must be a JSON object with a non-empty "{key}" string')
    return value.strip()
