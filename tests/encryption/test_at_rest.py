"""Encryption at rest: nothing readable in the raw database or the upload folder, the API
unchanged, plaintext from before readable, rotation while serving, key checks at startup,
and how search behaves."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from huddle.app import create_app
from huddle.core import crypto
from huddle.encryption.rotation import CURSOR_PREFIX, Rotation, status
from tests.search.test_semantic import indexed
from tests.world import World, build_world

pytestmark = pytest.mark.semantic

K1, K2, K3 = (Fernet.generate_key().decode() for _ in range(3))

# Made-up words: found anywhere in the raw data, they can only have come from these texts.
MESSAGE = "Vorbulax quintessa: the launch moves to Thursday after the load test"
REPLY = "Zephyrinth agrees with the new launch date"
EDITED = "Vorbulax quintessa (edited): launch on Friday"
DOCUMENT = "# Plan\n\nThe Marmalisk budget doubles in the spring for the new office"
DOCUMENT_V2 = "# Plan\n\nThe Marmalisk budget triples; Glorvenbeck leads the hiring"
FILE = b"Salaries 2027: Obsidrake earns more than Quillotrope, and nobody must know"
SECRETS = ["vorbulax", "quintessa", "zephyrinth", "marmalisk", "glorvenbeck", "obsidrake"]
SECRETS += ["quillotrope"]


@pytest.fixture(autouse=True)
def _keyring_off():
    yield
    crypto.configure([])


async def _tables(conn: AsyncConnection) -> list[tuple[str, list[str]]]:
    """Every table of the database with its columns: the models' and the rest (SQLite's
    FTS5 shadow tables, PostgreSQL's pgvector column, Alembic's version table)."""

    def read(sync: Any) -> list[tuple[str, list[str]]]:
        inspector = inspect(sync)
        names = inspector.get_table_names()
        if sync.dialect.name == "sqlite":
            rows = sync.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
            names = sorted(set(names) | {row[0] for row in rows})
        return [(name, [c["name"] for c in inspector.get_columns(name)]) for name in names]

    return await conn.run_sync(read)


async def raw_scan(app, words: list[str]) -> list[str]:
    """Where any of ``words`` (or the tail of one: FTS5 stores terms prefix-compressed)
    appears in any column of any row, read as stored."""
    probes = {word: word[-7:] for word in words}
    found = []
    engine = app.state.db.engine
    async with engine.connect() as conn:
        for table, columns in await _tables(conn):
            if not columns:
                continue
            quoted = ", ".join(f'"{c}"' for c in columns)
            rows = (await conn.execute(text(f'SELECT {quoted} FROM "{table}"'))).all()  # noqa: S608
            for row in rows:
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    if isinstance(value, (bytes, memoryview)):
                        raw = bytes(value).decode("latin-1")
                    else:
                        raw = str(value)
                    raw = raw.lower()
                    for word, probe in probes.items():
                        if probe in raw:
                            found.append(f"{table}.{column}: {word}")
    return found


def folder_scan(root: Path, words: list[str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes().lower()
            found += [f"{path}: {w}" for w in words if w.encode() in data]
    return found


async def _content(world: World) -> dict[str, str]:
    """A message with a reply and an edit (posted with an Idempotency-Key, so a response is
    stored), a document saved twice, an uploaded file, and a webhook that gets them all."""
    hook = await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/webhooks",
        201,
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["*"]},
    )
    # A test ping stores its body in the delivery row (event deliveries are built from
    # the event when sent).
    await world.ok("admin", "POST", f"/api/workspaces/{{W}}/webhooks/{hook['id']}/test")
    message = await world.ok(
        "member",
        "POST",
        "/api/channels/{CH}/messages",
        201,
        json={"content": MESSAGE},
        headers={"Idempotency-Key": "first-post"},
    )
    await world.ok(
        "member",
        "POST",
        "/api/channels/{CH}/messages",
        201,
        json={"content": REPLY, "parent_id": message["id"]},
    )
    await world.ok("member", "PATCH", f"/api/messages/{message['id']}", json={"content": EDITED})
    doc = await world.ok(
        "member",
        "POST",
        "/api/projects/{P}/documents",
        201,
        json={"title": "Plan", "content": DOCUMENT},
    )
    await world.ok(
        "member",
        "PUT",
        f"/api/documents/{doc['id']}",
        json={"title": "Plan", "content": DOCUMENT_V2, "base_version": 1},
    )
    up = await world.call(
        "member", "POST", "/api/projects/{P}/files", files={"file": ("pay.txt", FILE)}
    )
    assert up.status_code == 201, up.text
    return {"message": message["id"], "doc": doc["id"], "file": up.json()["id"]}


async def _api_intact(world: World, ids: dict[str, str]) -> None:
    message = await world.ok("member", "GET", f"/api/messages/{ids['message']}")
    assert message["content"] == EDITED
    thread = await world.ok(
        "member", "GET", "/api/channels/{CH}/messages", params={"parent_id": ids["message"]}
    )
    assert [m["content"] for m in thread["items"]] == [REPLY]
    doc = await world.ok("member", "GET", f"/api/documents/{ids['doc']}")
    assert doc["content"] == DOCUMENT_V2
    first = await world.ok("member", "GET", f"/api/documents/{ids['doc']}/versions/1")
    assert first["content"] == DOCUMENT
    download = await world.call("member", "GET", f"/api/files/{ids['file']}/download")
    assert download.status_code == 200 and download.content == FILE
    events = await world.ok("member", "GET", "/api/events", params={"limit": 200})
    created = [e for e in events["items"] if e["type"] == "message.created"]
    assert any(e["data"]["content"] == MESSAGE for e in created)


async def _wait_deliveries(app, timeout: float = 30.0) -> None:
    from sqlalchemy import func, select

    from huddle.events.models import WebhookDelivery

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with app.state.db.read_session() as session:
            count = await session.scalar(select(func.count()).select_from(WebhookDelivery))
        if count and count >= 5:
            return
        assert asyncio.get_running_loop().time() < deadline, count
        await asyncio.sleep(0.05)


def _rotation(app, **kwargs: Any) -> Rotation:
    return Rotation(app.state.db, crypto.keyring(), app.state.file_store, **kwargs)


async def test_nothing_readable_at_rest_and_the_api_returns_everything(make_settings, start_app):
    app = create_app(make_settings(encryption_keys=[K1], webhook_allow_private=True))
    client = await start_app(app)
    world = await build_world(client, app, chat=True)
    ids = await _content(world)
    await indexed(app)
    await _wait_deliveries(app)

    assert await raw_scan(app, SECRETS) == []
    assert folder_scan(app.state.settings.upload_path, SECRETS) == []
    await _api_intact(world, ids)

    # Every encrypted value is under the key, and the key check was recorded.
    report = await status(app.state.db, crypto.keyring(), app.state.file_store)
    assert report.clear == {} and report.older == {}
    for table in ("messages", "documents", "document_versions", "files", "events", "chunks"):
        assert report.current.get(table), (table, report.current)
    assert report.current.get("webhook_deliveries") and report.current.get("idempotency_keys")
    assert report.current.get("uploads") == 1

    # The AI search answers from the encrypted index, in clear.
    hits = await world.ok(
        "member",
        "POST",
        "/api/ai/search",
        json={"query": "when is the launch", "workspace_id": world.ids["W"]},
    )
    texts = " ".join(hit["snippet"] for hit in hits["sources"])
    assert "Vorbulax" in texts and "gAAAAA" not in texts


async def test_full_text_search_leaves_encrypted_content_out(make_settings, start_app):
    """The choice documented in docs/encryption.md: keyword search sees what is stored in
    clear (task titles and texts, document titles, file names); encrypted texts are found
    by semantic search only. No encrypted text ever shows up as a match or in a snippet."""
    app = create_app(make_settings(encryption_keys=[K1], webhook_allow_private=True))
    client = await start_app(app)
    world = await build_world(client, app, chat=True)
    await _content(world)
    await world.ok(
        "member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Vorbulax checklist"}
    )
    found = await world.ok("member", "GET", "/api/workspaces/{W}/search", params={"q": "vorbulax"})
    kinds = [hit["kind"] for hit in found["items"]]
    assert kinds == ["task"], found
    by_title = await world.ok("member", "GET", "/api/workspaces/{W}/search", params={"q": "plan"})
    assert [hit["kind"] for hit in by_title["items"]] == ["document"]
    assert "gAAAAA" not in by_title["items"][0]["snippet"]
    # Random-looking prefixes never match the ciphertext.
    for probe in ("gAAAAA", "gaaaaab", "x"):
        result = await world.ok("member", "GET", "/api/workspaces/{W}/search", params={"q": probe})
        assert all(hit["kind"] == "task" for hit in result["items"]), (probe, result)


async def test_plaintext_from_before_stays_readable_and_rotation_encrypts_it(
    make_settings, start_app
):
    plain = create_app(make_settings(webhook_allow_private=True))
    client = await start_app(plain)
    world = await build_world(client, plain, chat=True)
    ids = await _content(world)
    await indexed(plain)
    assert await raw_scan(plain, ["vorbulax"]) != []  # stored in clear, as asked

    app = create_app(make_settings(encryption_keys=[K1], webhook_allow_private=True))
    client = await start_app(app)
    world.client, world.app = client, app
    await _api_intact(world, ids)
    newer = await world.ok(
        "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": "Glorvenbeck x"}
    )
    before = await status(app.state.db, crypto.keyring(), app.state.file_store)
    assert before.clear.get("messages") and before.current.get("messages")

    report = await _rotation(app, batch=3).run()
    assert report.finished and report.changed > 0
    after = await status(app.state.db, crypto.keyring(), app.state.file_store)
    assert after.clear == {} and after.older == {}
    assert await raw_scan(app, SECRETS) == []
    assert folder_scan(app.state.settings.upload_path, SECRETS) == []
    await _api_intact(world, ids)
    message = await world.ok("member", "GET", f"/api/messages/{newer['id']}")
    assert message["content"] == "Glorvenbeck x"


async def test_rotation_while_serving_then_the_old_key_goes(make_settings, start_app):
    app = create_app(make_settings(encryption_keys=[K1], webhook_allow_private=True))
    client = await start_app(app)
    world = await build_world(client, app, chat=True)
    ids = await _content(world)
    for n in range(30):
        await world.ok(
            "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": f"old {n}"}
        )

    # Step 1: every instance gets the new key first, the old one after it.
    app = create_app(make_settings(encryption_keys=[K2, K1], webhook_allow_private=True))
    client = await start_app(app)
    world.client, world.app = client, app
    written: list[str] = []
    failures: list[str] = []

    async def traffic() -> None:
        for n in range(40):
            sent = await world.call(
                "member", "POST", "/api/channels/{CH}/messages", json={"content": f"during {n}"}
            )
            read = await world.call("member", "GET", "/api/channels/{CH}/messages")
            if sent.status_code != 201 or read.status_code != 200:
                failures.append(f"{sent.status_code} {read.status_code}")
            else:
                written.append(sent.json()["id"])
            await asyncio.sleep(0)

    # Step 2: rotate while the server answers (small batches, so they interleave).
    report, _ = await asyncio.gather(_rotation(app, batch=4).run(), traffic())
    assert failures == []
    assert report.finished
    after = await status(app.state.db, crypto.keyring(), app.state.file_store)
    assert after.older == {} and after.clear == {}

    # Step 3: the old key is removed; everything still reads.
    app = create_app(make_settings(encryption_keys=[K2], webhook_allow_private=True))
    client = await start_app(app)
    world.client, world.app = client, app
    await _api_intact(world, ids)
    history = await world.ok("member", "GET", "/api/channels/{CH}/messages", params={"limit": 100})
    contents = {m["content"] for m in history["items"]}
    assert {f"old {n}" for n in range(30)} <= contents
    assert {f"during {n}" for n in range(40)} <= contents
    assert len(written) == 40


async def test_an_interrupted_rotation_resumes_where_it_stopped(make_settings, start_app):
    app = create_app(make_settings(encryption_keys=[K1], webhook_allow_private=True))
    client = await start_app(app)
    world = await build_world(client, app, chat=True)
    for n in range(12):
        await world.ok(
            "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": f"m {n}"}
        )
    crypto.configure([K2, K1])
    steps: list[tuple[str, int]] = []

    class Stop(Exception):
        pass

    def progress(label: str, total: int):
        def advance(done: int) -> None:
            steps.append((label, done))
            if label == "messages" and len([s for s in steps if s[0] == "messages"]) == 2:
                raise Stop

        return advance

    with pytest.raises(Stop):
        await _rotation(app, batch=5, progress=progress).run()
    async with app.state.db.read_session() as session:
        from huddle.core.state_models import SystemState

        saved = await session.get(SystemState, CURSOR_PREFIX + "messages")
        assert saved is not None and '"after"' in saved.value
    mixed = await status(app.state.db, crypto.keyring(), app.state.file_store)
    assert mixed.current.get("messages") == 10 and mixed.older.get("messages")

    total = mixed.current["messages"] + mixed.older["messages"]
    report = await _rotation(app, batch=5).run()
    assert report.finished and report.passes == 2
    # The first pass picked up after the 10 messages done before the interruption; the
    # second read everything again and found nothing left to change.
    assert report.tables["messages"].rows == (total - 10) + total
    assert report.tables["messages"].changed == total
    final = await status(app.state.db, crypto.keyring(), app.state.file_store)
    assert final.older == {} and final.current["messages"] == total
    async with app.state.db.read_session() as session:
        from sqlalchemy import select

        from huddle.core.state_models import SystemState

        left = await session.scalars(
            select(SystemState.name).where(SystemState.name.startswith(CURSOR_PREFIX))
        )
        assert left.all() == []
