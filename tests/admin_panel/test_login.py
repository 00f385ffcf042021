"""Who may sign in to /admin, the session cookie, and being signed out."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from huddle.auth.models import User
from tests.admin_panel.conftest import panel_login, rows_of, set_cookie
from tests.world import add_user


async def _set(app: FastAPI, username: str, **values: object) -> None:
    async with app.state.db.write_session() as session:
        await session.execute(update(User).where(User.username == username).values(**values))
        await session.commit()


async def test_anonymous_is_sent_to_login(client: httpx.AsyncClient) -> None:
    for path in ("/admin/", "/admin/user/list", "/admin/user/action/deactivate?pks=x"):
        response = await client.get(path)
        assert response.status_code == 302, path
        assert response.headers["location"].endswith("/admin/login")
    page = await client.get("/admin/login")
    assert page.status_code == 200
    assert 'name="password"' in page.text


async def test_member_with_right_password_is_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_user(app, "member")
    response = await panel_login(client, "member")
    assert response.status_code == 400
    assert "Invalid credentials" in response.text
    assert (await client.get("/admin/")).status_code == 302
    # The same password works on the API: it is the panel that refuses.
    api = await client.post(
        "/api/auth/token", data={"username": "member", "password": "correct horse battery"}
    )
    assert api.status_code == 200


async def test_inactive_superuser_and_wrong_password_are_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_user(app, "retired", superuser=True)
    await _set(app, "retired", is_active=False)
    assert (await panel_login(client, "retired")).status_code == 400
    await add_user(app, "root", superuser=True)
    assert (await panel_login(client, "root", "wrong password")).status_code == 400
    assert (await client.get("/admin/")).status_code == 302


async def test_superuser_signs_in_lists_and_searches_users(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_user(app, "root", superuser=True)
    await add_user(app, "alice")
    await add_user(app, "bob")
    response = await panel_login(client, "root@example.com")  # email works too
    assert response.status_code == 302
    assert response.headers["location"].endswith("/admin/")
    cookie = set_cookie(response).lower()
    assert "huddle_admin=" in cookie
    for flag in ("httponly", "samesite=strict", "secure", "path=/admin", "max-age=28800"):
        assert flag in cookie, (flag, cookie)
    assert (await client.get("/admin/")).status_code == 200
    users = await client.get("/admin/user/list")
    assert users.status_code == 200
    assert all(name in rows_of(users.text) for name in ("root", "alice", "bob"))
    found = await client.get("/admin/user/list", params={"search": "alic"})
    assert "alice@example.com" in rows_of(found.text)
    assert "bob@example.com" not in rows_of(found.text)
    by_flag = await client.get("/admin/user/list", params={"is_superuser": "true"})
    assert "root@example.com" in rows_of(by_flag.text)
    assert "alice@example.com" not in rows_of(by_flag.text)
    await client.get("/admin/logout")
    assert (await client.get("/admin/user/list")).status_code == 302


async def test_deactivated_or_demoted_superuser_is_signed_out_at_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_user(app, "root", superuser=True)
    await panel_login(client, "root")
    assert (await client.get("/admin/user/list")).status_code == 200
    await _set(app, "root", is_active=False)
    assert (await client.get("/admin/user/list")).status_code == 302
    await _set(app, "root", is_active=True)
    # The session was cleared, not just refused once.
    assert (await client.get("/admin/user/list")).status_code == 302
    await panel_login(client, "root")
    await _set(app, "root", is_superuser=False)
    assert (await client.get("/admin/")).status_code == 302


async def test_password_change_ends_the_session(app: FastAPI, client: httpx.AsyncClient) -> None:
    await add_user(app, "root", superuser=True)
    await panel_login(client, "root")
    assert (await client.get("/admin/")).status_code == 200
    await _set(app, "root", hashed_password=await app.state.auth.hasher.hash("another one"))
    assert (await client.get("/admin/")).status_code == 302


async def test_failed_panel_logins_count_against_the_login_limit(
    make_settings: object, start_app: object
) -> None:
    from tests.admin_panel.conftest import with_panel

    settings = make_settings(rate_login="3/15m")  # type: ignore[operator]
    app = with_panel(settings)
    client: httpx.AsyncClient = await start_app(app)  # type: ignore[operator]
    client.base_url = httpx.URL("https://testserver")
    await add_user(app, "root", superuser=True)
    for _ in range(3):
        assert (await panel_login(client, "root", "guess")).status_code == 400
    limited = await panel_login(client, "root")  # even the right password now waits
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    api = await client.post("/api/auth/token", data={"username": "root", "password": "x"})
    assert api.status_code == 429
