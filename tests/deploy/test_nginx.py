"""The real nginx with deploy/nginx's production configuration (TLS included) in front of
two real ``huddle serve`` processes sharing the test database and Redis.

Three proxies run the same configuration with different upstream lists: one balancing
over both processes (as in production), and one pinned to each process, so that a socket
is known to land on process A or B and cross-instance delivery through the proxy is
proved, not hoped for.

Needs Debian's ``nginx`` (``.ci/run`` installs it): without it these tests skip, or fail
when ``HUDDLE_TEST_REQUIRE_SERVICES`` names nginx. The live-stack tests need Redis too.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from huddle.core.middleware import HSTS, SECURITY_HEADERS
from tests.deploy.nginx import Nginx, nginx_binary, self_signed_certificate
from tests.e2e.server import Server, free_port, huddle_env
from tests.realtime.wsclient import Client

PASSWORD = "a long password"
StartNginx = Callable[[str, list[str]], Nginx]


def assert_security_headers(response: httpx.Response) -> None:
    """Huddle's security headers, HSTS included, each exactly once (whether Huddle or
    nginx wrote the answer)."""
    for name, value in [*SECURITY_HEADERS, ("Strict-Transport-Security", HSTS)]:
        assert response.headers.get_list(name) == [value], (name, response.headers)


def https(proxy: Nginx) -> httpx.AsyncClient:
    """A client of the proxy's TLS server that trusts exactly its test certificate."""
    return httpx.AsyncClient(base_url=proxy.url, verify=proxy.ssl, timeout=10)


@pytest.fixture
def start_nginx(tmp_path: Path) -> Iterator[StartNginx]:
    binary = nginx_binary()
    certificate = self_signed_certificate(tmp_path / "certs")
    started: list[Nginx] = []

    def start(name: str, upstreams: list[str]) -> Nginx:
        proxy = Nginx(binary, tmp_path / f"nginx-{name}", upstreams, certificate)
        started.append(proxy)
        proxy.wait_ready()
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


# --- without Huddle ---------------------------------------------------------------------


async def test_plain_http_redirects_to_https_except_acme_challenges(start_nginx: StartNginx):
    proxy = start_nginx("alone", [f"127.0.0.1:{free_port()}"])  # nothing listens there
    challenge = proxy.acme / ".well-known" / "acme-challenge"
    challenge.mkdir(parents=True)
    (challenge / "token-123").write_text("token-123.key-authorization")
    async with httpx.AsyncClient(base_url=proxy.plain_url, timeout=10) as plain:
        moved = await plain.get("/api/auth/me?cursor=x")
        assert moved.status_code == 301
        assert moved.headers["Location"] == "https://127.0.0.1/api/auth/me?cursor=x"
        acme = await plain.get("/.well-known/acme-challenge/token-123")
        assert (acme.status_code, acme.text) == (200, "token-123.key-authorization")
        assert (await plain.get("/nginx-health")).status_code == 200
    async with https(proxy) as http:
        # Paths that are not Huddle's public routes are answered by nginx itself, in
        # Huddle's error shape, with the security headers.
        missing = await http.get("/metrics")
        assert missing.status_code == 404
        assert missing.json() == {"error": "Not found", "code": "not_found", "details": None}
        assert_security_headers(missing)
        down = await http.get("/ready")
        assert (down.status_code, down.json()["code"]) == (502, "bad_gateway")
        assert_security_headers(down)
    # /metrics never reached an upstream.
    assert "upstream=- " in await proxy.log_line('"GET /metrics ')


# --- in front of two Huddle processes ---------------------------------------------------


@dataclass
class Stack:
    a: Server
    b: Server
    both: Nginx  # balances over a and b, like production
    only_a: Nginx
    only_b: Nginx

    def upstream(self, server: Server) -> str:
        return f"upstream=127.0.0.1:{server.port} "


@pytest.fixture
async def stack(
    start_nginx: StartNginx, tmp_path: Path, database_url: str, redis_settings: dict[str, str]
) -> AsyncIterator[Stack]:
    env = huddle_env(
        tmp_path,
        database_url=database_url,
        secret_key="nginx-stack-secret-" + "x" * 32,
        rate_messages="1000/1m",
        # The proxies connect from loopback: Huddle believes their X-Forwarded-* headers.
        trusted_proxies="127.0.0.1",
        **redis_settings,
    )
    servers = [Server(env, tmp_path), Server(env, tmp_path)]
    try:
        await asyncio.gather(*(asyncio.to_thread(s.wait_ready) for s in servers))
        a, b = (f"127.0.0.1:{s.port}" for s in servers)
        yield Stack(
            servers[0],
            servers[1],
            both=start_nginx("both", [a, b]),
            only_a=start_nginx("a", [a]),
            only_b=start_nginx("b", [b]),
        )
    finally:
        for server in servers:
            server.stop()


async def register(http: httpx.AsyncClient, name: str) -> tuple[str, str]:
    """A new user: (id, access token)."""
    created = await http.post(
        "/api/auth/register",
        json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
    )
    assert created.status_code == 201, created.text
    assert_security_headers(created)
    token = await http.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return created.json()["id"], token.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def api_works_through_the_proxy(stack: Stack) -> None:
    proxy = stack.both
    async with https(proxy) as http:
        name = f"ada{uuid.uuid4().hex[:6]}"
        _, token = await register(http, name)
        auth = bearer(token)

        me = await http.get("/api/auth/me", headers={**auth, "X-Request-ID": "deploy-check.1"})
        assert (me.status_code, me.json()["username"]) == (200, name)
        assert_security_headers(me)
        # The client's request id goes through to Huddle and comes back...
        assert me.headers["X-Request-ID"] == "deploy-check.1"
        await proxy.log_line('"GET /api/auth/me ', "rid=deploy-check.1 ")
        # ...and without one, nginx's own id is the one Huddle uses.
        fresh = await http.get("/api/auth/me", headers=auth)
        request_id = fresh.headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
        await proxy.log_line('"GET /api/auth/me ', f"rid={request_id} ")

        # X-Forwarded-Proto reaches Huddle, which trusts the proxy: its redirects stay on
        # https (without the header they would point at http://).
        moved = await http.get("/api/workspaces/", headers=auth)
        assert moved.status_code == 307, moved.text
        assert moved.headers["Location"].startswith("https://127.0.0.1"), moved.headers

        ready = await http.get("/ready")
        assert ready.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}

        # The API docs work behind the proxy, assets included.
        docs = await http.get("/docs")
        assert docs.status_code == 200 and "text/html" in docs.headers["Content-Type"]
        assets = re.findall(r"""["'](/static-offline-docs/[^"']+)["']""", docs.text)
        assert assets, docs.text
        assert (await http.get(assets[0])).status_code == 200
        openapi = await http.get("/openapi.json")
        assert "/api/auth/me" in openapi.json()["paths"]

        # The admin panel's paths reach Huddle, whatever it answers there.
        await http.get("/admin/")
        assert "upstream=127.0.0.1:" in await proxy.log_line('"GET /admin/ ')

        # MCP (streamable HTTP) through the proxy.
        workspace = await http.post("/api/workspaces", json={"name": "Proxied"}, headers=auth)
        assert workspace.status_code == 201, workspace.text
        listed = await http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={**auth, "Accept": "application/json, text/event-stream"},
        )
        assert listed.status_code == 200, listed.text
        assert "create_task" in {tool["name"] for tool in listed.json()["result"]["tools"]}

        # Both processes answer: the upstream list balances requests over them.
        for _ in range(4):
            assert (await http.get("/ready")).status_code == 200
    await proxy.log_line('"GET /ready ', stack.upstream(stack.a))
    await proxy.log_line('"GET /ready ', stack.upstream(stack.b))


async def messages_cross_processes_through_the_proxies(stack: Stack) -> None:
    async with https(stack.both) as http:
        _, alice_token = await register(http, f"alice{uuid.uuid4().hex[:6]}")
        bob_id, bob_token = await register(http, f"bob{uuid.uuid4().hex[:6]}")
        alice = bearer(alice_token)
        ws = (await http.post("/api/workspaces", json={"name": "Two"}, headers=alice)).json()
        added = await http.post(
            f"/api/workspaces/{ws['id']}/members", json={"user_id": bob_id}, headers=alice
        )
        assert added.status_code == 201, added.text
        channel = await http.post(
            f"/api/workspaces/{ws['id']}/channels", json={"name": "both"}, headers=alice
        )
        assert channel.status_code == 201, channel.text
    channel_id = channel.json()["id"]

    # Alice's socket goes through the proxy pinned to process A, Bob's through B's.
    async with AsyncExitStack() as sockets:
        on_a = await Client.connect(stack.only_a.ws_url, alice_token, ssl=stack.only_a.ssl)
        sockets.push_async_callback(on_a.close)
        on_b = await Client.connect(stack.only_b.ws_url, bob_token, ssl=stack.only_b.ssl)
        sockets.push_async_callback(on_b.close)
        for client in (on_a, on_b):
            await client.ok("subscribe", topic=f"channel:{channel_id}")
        sent = await on_a.ok("message.send", channel_id=channel_id, content="across the proxy")
        arrived = await on_b.event("message.created")
        assert arrived["data"]["id"] == sent["id"]
        assert arrived["data"]["content"] == "across the proxy"
        await on_b.ok("typing", channel_id=channel_id)
        typing = await on_a.wait_for(lambda frame: frame.get("type") == "typing")
        assert typing["user_id"] == bob_id
    # Each socket was upgraded by its proxy and landed on its process.
    await stack.only_a.log_line('"GET /ws ', '" 101 ', stack.upstream(stack.a))
    await stack.only_b.log_line('"GET /ws ', '" 101 ', stack.upstream(stack.b))

    # With its process gone, B's proxy answers in Huddle's error shape.
    stack.b.stop()
    async with https(stack.only_b) as http:
        down = await http.get("/ready")
        assert (down.status_code, down.json()["code"]) == (502, "bad_gateway")


async def test_huddle_behind_nginx(stack: Stack):
    """One test, two checks: each pair of Huddle processes costs seconds to start."""
    await api_works_through_the_proxy(stack)
    await messages_cross_processes_through_the_proxies(stack)  # stops process B at the end
