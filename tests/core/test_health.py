"""GET /health and GET /ready."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from huddle.app import create_app
from tests.helpers import assert_error


async def test_health_is_always_ok(client):
    response = await client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_ready_checks_the_database(client):
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


async def test_ready_is_503_when_the_database_is_unreachable(make_settings, start_app, tmp_path):
    missing_dir = tmp_path / "no" / "such" / "dir"
    app = create_app(make_settings(database_url=f"sqlite+aiosqlite:///{missing_dir}/x.db"))
    client = await start_app(app)
    body = assert_error(await client.get("/ready"), 503, "service_unavailable")
    assert body["details"] == {"checks": {"database": "unreachable"}}
    assert (await client.get("/health")).status_code == 200


async def test_ready_is_503_when_redis_is_configured_but_down(make_settings, start_app):
    # Port 9 (discard) on loopback: nothing listens there.
    app = create_app(make_settings(redis_url="redis://127.0.0.1:9/0"))
    client = await start_app(app)
    body = assert_error(await client.get("/ready"), 503, "service_unavailable")
    assert body["details"]["checks"] == {"database": "ok", "redis": "unreachable"}


async def test_ready_checks_redis_when_configured(make_settings, start_app, redis_settings):
    client = await start_app(create_app(make_settings(**redis_settings)))
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


class _Answers(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"data": []}')

    def log_message(self, *args: object) -> None:
        return None


async def test_ready_reports_optional_dependencies_without_failing(make_settings, start_app):
    """The LLM provider and the Dapr sidecar answer (a local server), the SMTP server does
    not: still 200, status degraded, each named."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    server.paths = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        settings = make_settings(
            llm_base_url=url + "/v1",
            event_bus="dapr",
            dapr_http_endpoint=url,
            smtp_host="127.0.0.1",
            smtp_port=9,
        )
        client = await start_app(create_app(settings))
        response = await client.get("/ready")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "status": "degraded",
            "checks": {"database": "ok", "llm": "ok", "dapr": "ok", "smtp": "unreachable"},
        }
        paths = server.paths  # type: ignore[attr-defined]
        assert "/v1/models" in paths and "/v1.0/healthz/outbound" in paths
    finally:
        server.shutdown()
        server.server_close()
