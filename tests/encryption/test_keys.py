"""Keys: bad settings, wrong or missing keys refused at startup, the CLI, and values that
only look encrypted."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError
from sqlalchemy import Text, select, type_coerce

from huddle.app import create_app
from huddle.chat.models import Message
from huddle.config import Settings
from huddle.core import crypto
from huddle.encryption.keycheck import EncryptionKeyError
from huddle.encryption.rotation import Rotation
from tests.e2e.server import huddle_env, run_cli
from tests.world import build_world

K1, K2, K3 = (Fernet.generate_key().decode() for _ in range(3))


@pytest.fixture(autouse=True)
def _keyring_off():
    yield
    crypto.configure([])


def test_a_key_that_is_not_a_fernet_key_is_refused_with_its_position():
    with pytest.raises(ValidationError, match="key 2 of HUDDLE_ENCRYPTION_KEYS is not a Fernet"):
        Settings(encryption_keys=f"{K1},not-a-key")
    with pytest.raises(ValidationError, match="the same key twice"):
        Settings(encryption_keys=f"{K1}, {K1}")
    assert Settings(encryption_keys=f" {K1} , {K2} ").encryption_keys == [K1, K2]
    assert Settings(encryption_keys="").encryption_keys == []


async def test_wrong_or_missing_keys_stop_the_server_at_startup(make_settings, start_app):
    first = create_app(make_settings(encryption_keys=[K1]))
    await start_app(first)  # records the key check

    with pytest.raises(EncryptionKeyError, match="none of the keys in HUDDLE_ENCRYPTION_KEYS"):
        await start_app(create_app(make_settings(encryption_keys=[K3])))
    with pytest.raises(EncryptionKeyError, match="HUDDLE_ENCRYPTION_KEYS is not set"):
        await start_app(create_app(make_settings()))
    # The old key after a new one is fine (the first step of a rotation).
    await start_app(create_app(make_settings(encryption_keys=[K3, K1])))
    # Until a rotation finishes, the old key cannot go.
    with pytest.raises(EncryptionKeyError):
        await start_app(create_app(make_settings(encryption_keys=[K3])))


async def test_text_that_only_looks_encrypted_stays_what_the_user_wrote(make_settings, start_app):
    """A message that happens to be a Fernet token (of another key) written while
    encryption was off: it reads back as written after encryption is on, and the rotation
    encrypts it like any other plaintext."""
    lookalike = Fernet(K3).encrypt(b"someone else's secret").decode()
    plain = create_app(make_settings())
    client = await start_app(plain)
    world = await build_world(client, plain, chat=True)
    posted = await world.ok(
        "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": lookalike}
    )

    app = create_app(make_settings(encryption_keys=[K1]))
    world.client, world.app = await start_app(app), app
    got = await world.ok("member", "GET", f"/api/messages/{posted['id']}")
    assert got["content"] == lookalike

    await Rotation(app.state.db, crypto.keyring(), app.state.file_store).run()
    async with app.state.db.read_session() as session:
        stored = await session.scalar(
            select(type_coerce(Message.content, Text)).where(Message.id == uuid.UUID(posted["id"]))
        )
    assert stored != lookalike and Fernet(K1).decrypt(stored.encode()) == lookalike.encode()
    got = await world.ok("member", "GET", f"/api/messages/{posted['id']}")
    assert got["content"] == lookalike


def test_cli_keygen_rotate_status_and_serve_refusal(tmp_path, database_url):
    keygen = run_cli("encryption", "keygen", env=huddle_env(tmp_path), cwd=tmp_path)
    assert keygen.returncode == 0, keygen.stderr
    new_key = keygen.stdout.strip()
    Fernet(new_key)  # a valid key

    env = huddle_env(tmp_path, database_url=database_url, encryption_keys=K1)
    status = run_cli("encryption", "status", env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "in clear" in status.stdout and "current key" in status.stdout

    env = huddle_env(tmp_path, database_url=database_url, encryption_keys=f"{new_key},{K1}")
    rotate = run_cli("encryption", "rotate", env=env, cwd=tmp_path)
    assert rotate.returncode == 0, rotate.stderr
    assert "older keys may now be removed" in rotate.stdout
    assert "%|" in rotate.stderr or "row" in rotate.stderr  # tqdm's progress bars

    # The old key alone no longer opens the database: serve, worker and rotate refuse.
    env = huddle_env(tmp_path, database_url=database_url, encryption_keys=K1)
    refused = run_cli("encryption", "rotate", "--quiet", env=env, cwd=tmp_path)
    assert refused.returncode == 2
    assert "none of the keys in HUDDLE_ENCRYPTION_KEYS" in refused.stderr
    serve = run_cli("serve", "--port", "1", env=env, cwd=tmp_path)
    assert serve.returncode == 2 and "none of the keys" in serve.stderr

    no_keys = run_cli("encryption", "rotate", env=huddle_env(tmp_path), cwd=tmp_path)
    assert no_keys.returncode == 2 and "HUDDLE_ENCRYPTION_KEYS" in no_keys.stderr


async def test_keys_are_checked_once_a_database_that_was_down_answers(
    make_settings, start_app, tmp_path
):
    """The server starts without its database (``/ready`` says so) and refuses work with
    503 until it could check the keys; wrong keys then keep it refusing, with the reason."""
    from huddle.core.migrate import upgrade
    from huddle.core.state_models import SystemState
    from huddle.encryption.keycheck import KEY_CHECK
    from tests.helpers import assert_error

    async def wait_for(client, status: int, timeout: float = 15.0):
        """The first answer with ``status`` once the key check has run."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            response = await client.post("/api/auth/token", data={"username": "x", "password": "y"})
            if response.status_code == status and "waiting" not in response.text:
                return response
            assert asyncio.get_running_loop().time() < deadline, response.text
            await asyncio.sleep(0.2)

    for keys, expected in (([K1], 401), ([K2], 503)):
        folder = tmp_path / f"later-{expected}"
        url = f"sqlite+aiosqlite:///{folder}/huddle.db"
        app = create_app(make_settings(database_url=url, encryption_keys=keys))
        client = await start_app(app)
        waiting = assert_error(
            await client.post("/api/auth/token", data={"username": "x", "password": "y"}),
            503,
            "service_unavailable",
        )
        assert "encryption keys" in waiting["error"]

        # The database comes up, holding content encrypted with K1.
        folder.mkdir()
        await asyncio.to_thread(upgrade, url)
        async with app.state.db.write_session() as session:
            session.add(SystemState(name=KEY_CHECK, value=Fernet(K1).encrypt(b"x").decode()))
            await session.commit()
        answered = await wait_for(client, expected)
        if expected == 503:
            body = assert_error(answered, 503, "service_unavailable")
            assert "none of the keys in HUDDLE_ENCRYPTION_KEYS" in body["error"]
