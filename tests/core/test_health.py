"""GET /health and GET /ready."""

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
