"""The control API over real HTTP on localhost: token, routes, bad requests change nothing."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any

import pytest
from pydantic import Field

from wirebook.host.control import CommandQueue, ControlConfig, ControlServer
from wirebook.host.validated import ConfigError, ConfigModel, validate_section

TOKEN = "t0ken-for-the-tests-only"


class Limits(ConfigModel):
    max_order_shares: int = Field(1000, gt=0)
    max_open_orders: int = Field(10, gt=0)


class FakeAgent:
    """Stands in for the agent: records what the API asked, on the thread that runs the queue."""

    def __init__(self) -> None:
        self.limits = Limits()
        self.killed = ""
        self.threads: set[str] = set()

    def _seen(self) -> None:
        self.threads.add(threading.current_thread().name)

    def status(self) -> dict[str, Any]:
        self._seen()
        return {"state": "running", "killed": bool(self.killed)}

    def positions(self) -> dict[str, Any]:
        return {"AAPL": {"position": 100}}

    def open_orders(self) -> list[dict[str, Any]]:
        return [{"token": "WB000000000001"}]

    def risk_limits(self) -> dict[str, Any]:
        return self.limits.model_dump()

    def set_risk_limits(self, changes: dict[str, Any]) -> dict[str, Any]:
        merged = {**self.limits.model_dump(), **changes}
        self.limits = validate_section(Limits, merged, "control API", "risk")
        return self.limits.model_dump()

    def kill(self, reason: str) -> dict[str, Any]:
        self.killed = reason
        return {"killed": True, "reason": reason}

    def reset_kill(self, operator: str) -> dict[str, Any]:
        self.killed = ""
        return {"killed": False, "by": operator}

    def metrics_text(self) -> bytes:
        return b"wirebook_fills_total 3.0\n"


@pytest.fixture
def api():
    agent, commands = FakeAgent(), CommandQueue()
    server = ControlServer(agent, commands, ControlConfig(port=0, token=TOKEN, answer_timeout_s=1.0)).start()
    stop = threading.Event()

    def agent_loop() -> None:  # the agent's thread: runs queued calls between iterations
        while not stop.is_set():
            commands.run_pending()
            stop.wait(0.001)

    loop = threading.Thread(target=agent_loop, name="agent-loop")
    loop.start()
    yield agent, server.port
    stop.set()
    loop.join()
    server.stop()


def request(port: int, method: str, path: str, body: Any = None, token: str | None = TOKEN, raw: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if data is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    kind = response.getheader("Content-Type", "")
    return response.status, (json.loads(payload) if kind.startswith("application/json") else payload)


def test_reads_run_on_the_agents_thread(api):
    agent, port = api
    assert request(port, "GET", "/status") == (200, {"state": "running", "killed": False})
    assert agent.threads == {"agent-loop"}
    assert request(port, "GET", "/positions") == (200, {"AAPL": {"position": 100}})
    assert request(port, "GET", "/orders") == (200, [{"token": "WB000000000001"}])
    assert request(port, "GET", "/metrics") == (200, b"wirebook_fills_total 3.0\n")


def test_token_is_required(api):
    _, port = api
    assert request(port, "GET", "/status", token=None)[0] == 401
    status, body = request(port, "GET", "/status", token="wrong-token-wrong-token")
    assert (status, body) == (401, {"error": "missing or wrong bearer token"})


def test_limits_change_all_or_nothing(api):
    agent, port = api
    assert request(port, "PATCH", "/risk/limits", {"max_order_shares": 500})[1]["max_order_shares"] == 500
    status, body = request(port, "PATCH", "/risk/limits", {"max_order_shares": 200, "max_open_orders": -1})
    assert status == 400
    assert "risk.max_open_orders" in body["error"] and "-1" in body["error"]
    assert agent.limits == Limits(max_order_shares=500)  # the valid half was not applied either
    status, body = request(port, "PATCH", "/risk/limits", {"no_such_limit": 1})
    assert status == 400 and "risk.no_such_limit" in body["error"]


def test_kill_switch_round_trip(api):
    agent, port = api
    assert request(port, "POST", "/kill", {"reason": "operator drill"}) == (
        200,
        {"killed": True, "reason": "operator drill"},
    )
    assert agent.killed == "operator drill"
    assert request(port, "POST", "/kill/reset", {"operator": "alice"}) == (200, {"killed": False, "by": "alice"})


@pytest.mark.parametrize(
    ("method", "path", "body", "raw", "status", "says"),
    [
        ("GET", "/nope", None, None, 404, "no such endpoint"),
        ("DELETE", "/status", None, None, 405, "/status takes GET"),
        ("POST", "/kill", None, b"{not json", 400, "not JSON"),
        ("POST", "/kill", {"reason": ""}, None, 400, '"reason"'),
        ("PATCH", "/risk/limits", [1, 2], None, 400, "JSON object"),
    ],
)
def test_bad_requests_get_4xx_and_change_nothing(api, method, path, body, raw, status, says):
    agent, port = api
    got, answer = request(port, method, path, body, raw=raw)
    assert got == status and says in answer["error"]
    assert agent.killed == "" and agent.limits == Limits()


def test_too_large_body_is_refused(api):
    _, port = api
    status, body = request(port, "POST", "/kill", raw=b" " * (64 * 1024 + 1))
    assert status == 413 and "65537 bytes" in body["error"]


def test_unanswered_call_is_503():
    commands = CommandQueue()  # nobody runs the queue
    server = ControlServer(FakeAgent(), commands, ControlConfig(port=0, token=TOKEN, answer_timeout_s=0.2)).start()
    try:
        assert request(server.port, "GET", "/status")[0] == 503
    finally:
        server.stop()


def test_config_refuses_a_short_token():
    with pytest.raises(ConfigError, match=r"control\.token"):
        validate_section(ControlConfig, {"token": "short"}, "agent.toml", "control")
