"""Observability: Prometheus series at /metrics, the access log and JSON log lines, the
slow-query log, and error reports in Sentry's protocol to a local server."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from huddle.app import create_app
from huddle.core.logging import json_formatter
from huddle.core.requestid import reset_request_id, set_request_id
from tests.helpers import assert_error
from tests.world import build_world


async def scrape(client, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    response = await client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_requests_by_route_template_with_latency_and_db_time(client, app):
    world = await build_world(client, app)
    route = {"route": "/api/tasks/{tid}", "method": "GET"}
    before = await scrape(client)
    for _ in range(3):
        await world.ok("member", "GET", "/api/tasks/{TK}")
    missing = await world.call("member", "GET", f"/api/tasks/{uuid.uuid4()}")
    assert missing.status_code == 404
    await client.get("/no/such/path")
    after = await scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("huddle_http_requests_total", status="200", **route) == 3
    assert grew("huddle_http_requests_total", status="404", **route) == 1
    assert grew("huddle_http_requests_total", route="unmatched", method="GET", status="404") == 1
    # never one series per id
    assert not any(world.ids["TK"] in str(labels) for _, labels in after)
    assert grew("huddle_http_request_duration_seconds_count", **route) == 4
    assert grew("huddle_http_request_duration_seconds_sum", **route) > 0
    assert grew("huddle_http_request_db_seconds_count", **route) == 4
    assert grew("huddle_http_request_db_seconds_sum", **route) > 0
    assert grew("huddle_db_statements_total") >= 4


async def test_metrics_count_dispatched_events_their_lag_and_background_jobs(client, app):
    world = await build_world(client, app)
    await app.state.dispatcher.flush()
    before = await scrape(client)
    for title in ("one", "two"):
        await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": title})
    await app.state.dispatcher.flush()

    async def fine() -> None:
        return None

    async def broken() -> None:
        raise RuntimeError("job failed on purpose")

    app.state.background.spawn(fine(), name=f"ai-turn-{uuid.uuid4()}")
    app.state.background.spawn(broken(), name="mail to someone@example.com")
    await app.state.background.drain()
    after = await scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("huddle_events_dispatched_total") >= 2
    assert grew("huddle_event_dispatch_lag_seconds_count") >= 2
    assert grew("huddle_background_job_runs_total", job="ai-turn", outcome="ok") == 1
    assert grew("huddle_background_job_runs_total", job="mail", outcome="failed") == 1
    assert ("huddle_websocket_connections", ()) in after


async def test_metrics_token(make_settings, start_app):
    app = create_app(make_settings(metrics_token="scrape-me"))
    client = await start_app(app)
    assert_error(await client.get("/metrics"), 401, "not_authenticated")
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert_error(wrong, 401, "not_authenticated")
    samples = await scrape(client, {"Authorization": "Bearer scrape-me"})
    assert any(name == "huddle_http_requests_total" for name, _ in samples)


async def test_every_request_has_an_access_line(client, app, caplog):
    world = await build_world(client, app)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="huddle.access"):
        response = await world.call("member", "GET", "/api/tasks/{TK}")
    [line] = [r for r in caplog.records if r.name == "huddle.access"]
    assert line.route == "/api/tasks/{tid}" and line.path == f"/api/tasks/{world.ids['TK']}"
    assert line.status == 200 and line.method == "GET"
    assert line.user_id == world.ids["member_id"]
    assert line.duration_ms > 0 and line.db_ms > 0 and line.db_statements >= 1
    assert line.request_id == response.headers["X-Request-ID"]


async def test_the_access_log_can_be_turned_off(make_settings, start_app, caplog):
    client = await start_app(create_app(make_settings(access_log=False)))
    with caplog.at_level(logging.INFO, logger="huddle.access"):
        await client.get("/health")
    assert [r for r in caplog.records if r.name == "huddle.access"] == []


def test_json_log_lines_carry_the_request_and_the_extras():
    record = logging.LogRecord("huddle.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    record.route, record.status = "/x", 200
    token = set_request_id("req-42")
    try:
        logging.Filter()  # the handler's filter sets these; here by hand:
        record.request_id, record.user_id = "req-42", "u-1"
        line = json.loads(json_formatter().format(record))
    finally:
        reset_request_id(token)
    assert line["message"] == "GET /x" and line["level"] == "info"
    assert line["logger"] == "huddle.access" and line["request_id"] == "req-42"
    assert line["user_id"] == "u-1" and line["route"] == "/x" and line["status"] == 200
    assert "timestamp" in line


def run_script(script: str, tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a new Python process with Huddle settings of its own (on a fresh
    SQLite database), so what it configures globally stays there."""
    settings = {
        "HUDDLE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/script.db",
        "HUDDLE_DATA_DIR": str(tmp_path),
        "HUDDLE_SECRET_KEY": "k" * 40,
        "HUDDLE_RETENTION_JOB": "false",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "-c", script],
        env=settings | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_server_writes_json_logs(tmp_path):
    """`HUDDLE_LOG_FORMAT=json`: what a real process prints is one JSON object a line."""
    script = textwrap.dedent(
        """
        import asyncio, httpx
        from asgi_lifespan import LifespanManager
        from huddle.app import create_app
        from huddle.config import Settings
        from huddle.core.migrate import upgrade

        async def main():
            app = create_app(settings)
            async with LifespanManager(app) as manager:
                transport = httpx.ASGITransport(app=manager.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    await c.get("/health", headers={"X-Request-ID": "json-req-1"})

        settings = Settings()
        upgrade(settings.database_url)
        asyncio.run(main())
        """
    )
    done = run_script(script, tmp_path, HUDDLE_LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert lines, done.stderr
    [access] = [line for line in lines if line["logger"] == "huddle.access"]
    assert access["request_id"] == "json-req-1" and access["route"] == "/health"
    assert access["status"] == 200 and access["duration_ms"] > 0
    not_json = [line for line in done.stderr.splitlines() if line and not line.startswith("{")]
    assert not_json == [], not_json


async def test_slow_statements_are_logged_without_their_parameters(
    make_settings, start_app, caplog
):
    client = await start_app(create_app(make_settings(slow_query_ms=0.000001)))
    with caplog.at_level(logging.WARNING, logger="huddle.slow_query"):
        await client.post(
            "/api/auth/register",
            json={"email": "slow@example.com", "username": "slow", "password": "secret-pass-123"},
        )
    slow = [r for r in caplog.records if r.name == "huddle.slow_query"]
    assert slow and all(r.duration_ms >= 0 for r in slow)
    assert any("INSERT INTO users" in r.getMessage() for r in slow)
    assert not any("slow@example.com" in r.getMessage() for r in slow)


# --- error reports ----------------------------------------------------------------------


class _Collector(BaseHTTPRequestHandler):
    received: list[bytes]

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        if self.headers.get("content-encoding") == "gzip":
            import gzip

            body = gzip.decompress(body)
        self.server.received.append(body)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def sentry_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_unhandled_errors_are_reported_with_the_request_id(tmp_path, sentry_server):
    """The real sentry-sdk, in its own process, against a local server that speaks the
    envelope protocol: the 500 of an unhandled error is reported, tagged with its id."""
    port = sentry_server.server_address[1]
    script = textwrap.dedent(
        """
        import asyncio, httpx, sentry_sdk
        from asgi_lifespan import LifespanManager
        from huddle.app import create_app
        from huddle.config import Settings
        from huddle.core.migrate import upgrade

        async def main():
            app = create_app(settings)

            @app.get("/boom")
            async def boom():
                raise RuntimeError("the database caught fire")

            async with LifespanManager(app) as manager:
                transport = httpx.ASGITransport(app=manager.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    response = await c.get("/boom", headers={"X-Request-ID": "boom-1"})
                    assert response.status_code == 500, response.text
                    assert (await c.get("/health")).status_code == 200
            sentry_sdk.flush(timeout=10)

        settings = Settings()
        upgrade(settings.database_url)
        asyncio.run(main())
        """
    )
    done = run_script(
        script,
        tmp_path,
        HUDDLE_SENTRY_DSN=f"http://publickey@127.0.0.1:{port}/42",
        HUDDLE_SENTRY_ENVIRONMENT="ci",
    )
    assert done.returncode == 0, done.stderr
    received = b"\n".join(sentry_server.received)  # type: ignore[attr-defined]
    items = [json.loads(line) for line in received.splitlines() if line.startswith(b"{")]
    errors = [i for i in items if i.get("exception")]
    assert errors, received[:2000]
    error = errors[0]
    assert error["exception"]["values"][-1]["type"] == "RuntimeError"
    assert error["exception"]["values"][-1]["value"] == "the database caught fire"
    assert error["tags"]["request_id"] == "boom-1"
    assert error["environment"] == "ci"
