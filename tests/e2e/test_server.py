"""Black-box: the real server process, as a user runs it."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx
import pytest

from tests.e2e.server import Server, huddle_env, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def server_env(tmp_path, database_url):
    return huddle_env(tmp_path, database_url=database_url)


@pytest.fixture
def server(server_env, tmp_path):
    srv = Server(server_env, tmp_path)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_register_login_me_refresh_and_reuse_against_the_running_server(server):
    with httpx.Client(base_url=server.url, timeout=10) as http:
        user = http.post(
            "/api/auth/register",
            json={"email": "ada@example.com", "username": "ada", "password": "a long password"},
        )
        assert user.status_code == 201, user.text
        tokens = http.post(
            "/api/auth/token", data={"username": "ada", "password": "a long password"}
        )
        assert tokens.status_code == 200, tokens.text
        first = tokens.json()
        me = http.get("/api/auth/me", headers={"Authorization": f"Bearer {first['access_token']}"})
        assert me.status_code == 200 and me.json()["id"] == user.json()["id"]
        refreshed = http.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert refreshed.status_code == 200
        second = refreshed.json()
        reuse = http.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert reuse.status_code == 401 and reuse.json()["code"] == "invalid_token"
        # The family is revoked: the second refresh token is dead too.
        dead = http.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert dead.status_code == 401
        assert "X-Request-ID" in dead.headers


def test_docs_health_and_ready_are_served_offline(server):
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/health").json() == {"status": "ok"}
        assert http.get("/ready").status_code == 200
        for page in ("/docs", "/redoc"):
            html = http.get(page).text
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert any(a.endswith(".js") for a in assets)
            for asset in assets:
                assert asset.startswith("/"), asset
                assert http.get(urljoin(server.url, asset)).status_code == 200
        assert http.get("/openapi.json").json()["info"]["title"] == "Huddle"


def test_serve_creates_sqlite_database_and_secret_key_itself(tmp_path):
    """A new user runs `huddle serve` with no settings: migrations and key happen by themselves."""
    env = huddle_env(tmp_path)
    env.pop("HUDDLE_DATA_DIR")
    srv = Server(env, tmp_path)
    try:
        srv.wait_ready()
        response = httpx.post(
            f"{srv.url}/api/auth/register",
            json={"email": "new@example.com", "username": "newbie", "password": "password123"},
        )
        assert response.status_code == 201, response.text
    finally:
        srv.stop()
    assert (tmp_path / "huddle.db").exists()
    assert (tmp_path / "data" / "secret_key").exists()
    assert "HUDDLE_SECRET_KEY is not set" in srv.output()


def test_workers_without_redis_are_refused(tmp_path):
    result = run_cli("serve", "--workers", "2", env=huddle_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "HUDDLE_REDIS_URL" in result.stderr


def test_two_workers_with_redis_serve_and_share_login_limits(tmp_path, redis_settings):
    env = huddle_env(
        tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/multi.db",
        redis_url=redis_settings["redis_url"],
        redis_key_prefix=redis_settings["redis_key_prefix"],
        rate_login="3/15m",
    )
    srv = Server(env, tmp_path, "--workers", "2")
    try:
        srv.wait_ready()
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            assert (
                http.post(
                    "/api/auth/register",
                    json={
                        "email": "w@example.com",
                        "username": "worker",
                        "password": "password123",
                    },
                ).status_code
                == 201
            )
            # New connections spread over both workers; the limit is shared through Redis.
            statuses = []
            for _ in range(4):
                with httpx.Client(base_url=srv.url, timeout=10) as fresh:
                    statuses.append(
                        fresh.post(
                            "/api/auth/token", data={"username": "worker", "password": "wrong-one"}
                        ).status_code
                    )
            assert statuses == [401, 401, 401, 429]
    finally:
        srv.stop()


def test_client_address_comes_from_trusted_proxies_only(tmp_path, database_url):
    """Behind a proxy named in HUDDLE_TRUSTED_PROXIES each client has its own login limit."""
    env = huddle_env(
        tmp_path, database_url=database_url, rate_login="2/15m", trusted_proxies="127.0.0.1"
    )
    srv = Server(env, tmp_path)
    try:
        srv.wait_ready()
        with httpx.Client(base_url=srv.url, timeout=10) as http:

            def guess(address: str, name: str) -> int:
                return http.post(
                    "/api/auth/token",
                    data={"username": name, "password": "wrong-one"},
                    headers={"X-Forwarded-For": address},
                ).status_code

            # Different accounts, so only the per-address limit applies.
            assert [guess("192.0.2.1", f"nobody{n}") for n in range(3)] == [401, 401, 429]
            assert guess("192.0.2.2", "nobody9") == 401  # another client behind the proxy
    finally:
        srv.stop()


def test_forwarded_for_is_ignored_without_trusted_proxies(server):
    with httpx.Client(base_url=server.url, timeout=10) as http:
        statuses = [
            http.post(
                "/api/auth/token",
                data={"username": f"ghost{n}", "password": "wrong-one"},
                headers={"X-Forwarded-For": f"192.0.2.{n}"},
            ).status_code
            for n in range(11)
        ]
    assert statuses == [401] * 10 + [429]


def test_websocket_frames_are_not_compressed_unless_asked(server_env, tmp_path):
    """`huddle serve` refuses permessage-deflate by default (every frame would be
    compressed once per socket) and offers it with HUDDLE_WS_COMPRESSION=true."""
    import asyncio

    import websockets

    async def negotiated(url: str) -> list[str]:
        async with websockets.connect(url.replace("http://", "ws://") + "/ws") as ws:
            return [ext.name for ext in ws.protocol.extensions]

    for setting, expected in ((None, []), ("true", ["permessage-deflate"])):
        env = dict(server_env)
        if setting is not None:
            env["HUDDLE_WS_COMPRESSION"] = setting
        srv = Server(env, tmp_path)
        try:
            srv.wait_ready()
            assert asyncio.run(negotiated(srv.url)) == expected
        finally:
            srv.stop()
