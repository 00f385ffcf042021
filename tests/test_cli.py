"""The huddle command: migrate, createsuperuser, serve's checks."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import TEST_DATABASE_URL, _pg_admin
from tests.e2e.server import Server, huddle_env, run_cli


def _login(url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/api/auth/token", data={"username": username, "password": password})


def test_createsuperuser_with_password_flag_and_stdin(tmp_path, database_url):
    env = huddle_env(tmp_path, database_url=database_url)
    first = run_cli(
        "createsuperuser",
        "--email",
        "Root@Example.com",
        "--username",
        "root",
        "--password",
        "super secret 1",
        env=env,
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    assert "superuser root created" in first.stdout
    second = run_cli(
        "createsuperuser",
        "--email",
        "admin2@example.com",
        "--username",
        "admin2",
        env=env,
        cwd=tmp_path,
        stdin="from stdin 123\n",
    )
    assert second.returncode == 0, second.stderr
    server = Server(env, tmp_path)
    try:
        server.wait_ready()
        for username, password in (("root", "super secret 1"), ("admin2", "from stdin 123")):
            tokens = _login(server.url, username, password)
            assert tokens.status_code == 200, tokens.text
            me = httpx.get(
                f"{server.url}/api/auth/me",
                headers={"Authorization": f"Bearer {tokens.json()['access_token']}"},
            ).json()
            assert me["is_superuser"] is True and me["username"] == username
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--email", "x@example.com", "--username", "x1", "--password", "short"], None, "password"),
        (["--email", "nope", "--username", "x1", "--password", "long enough"], None, "email"),
        (["--email", "x@example.com", "--username", "x1"], "\n", "password"),
    ],
)
def test_createsuperuser_reports_bad_input(tmp_path, database_url, args, stdin, message):
    env = huddle_env(tmp_path, database_url=database_url)
    result = run_cli("createsuperuser", *args, env=env, cwd=tmp_path, stdin=stdin)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_createsuperuser_refuses_duplicates(tmp_path, database_url):
    env = huddle_env(tmp_path, database_url=database_url)
    args = (
        "createsuperuser",
        "--email",
        "dup@example.com",
        "--username",
        "dup",
        "--password",
        "long enough",
    )
    assert run_cli(*args, env=env, cwd=tmp_path).returncode == 0
    again = run_cli(*args, env=env, cwd=tmp_path)
    assert again.returncode == 2 and "already taken" in again.stderr


def test_invalid_settings_are_a_clear_startup_error(tmp_path):
    env = huddle_env(tmp_path, rate_login="lots")
    result = run_cli("migrate", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid settings" in result.stderr and "rate_login" in result.stderr
    short_key = run_cli("serve", env=huddle_env(tmp_path, secret_key="short"), cwd=tmp_path)
    assert short_key.returncode == 2 and "at least 32" in short_key.stderr


def test_postgres_serve_waits_for_migrate(tmp_path, postgres_only):
    """On PostgreSQL, `serve` refuses an unmigrated database; `migrate` fixes it."""
    name = f"huddle_cli_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_admin(TEST_DATABASE_URL, f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
        env = huddle_env(tmp_path, database_url=url)
        refused = run_cli("serve", env=env, cwd=tmp_path)
        assert refused.returncode == 2 and "huddle migrate" in refused.stderr
        migrated = run_cli("migrate", env=env, cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        server = Server(env, tmp_path)
        try:
            server.wait_ready()
            assert httpx.get(f"{server.url}/ready").status_code == 200
        finally:
            server.stop()
    finally:
        asyncio.run(_pg_admin(TEST_DATABASE_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
