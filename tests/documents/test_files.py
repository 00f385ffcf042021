"""Files: upload checks (size, type by content, unreadable PDFs), download, delete."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from huddle.app import create_app
from huddle.documents.files import clean_filename
from huddle.documents.models import File
from tests.documents.test_extract import encrypt, make_pdf
from tests.helpers import assert_error
from tests.world import build_world, events

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def _upload(world, name, data, role="member", project="{P}", content_type=None, **form):
    part = (name, data, content_type) if content_type else (name, data)
    return await world.call(
        role, "POST", f"/api/projects/{project}/files", files={"file": part}, data=form
    )


def _stored(app) -> list[Path]:
    root = app.state.settings.upload_path
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_upload_a_pdf_and_markdown_then_list_download_and_delete(client, app):
    world = await build_world(client, app)
    pdf = make_pdf(["Quarterly report", "Revenue grew in the third quarter"])
    up = await _upload(world, "report.pdf", pdf)
    assert up.status_code == 201, up.text
    meta = up.json()
    assert meta["filename"] == "report.pdf" and meta["content_type"] == "application/pdf"
    assert meta["size"] == len(pdf) and meta["uploaded_by"] == world.ids["member_id"]
    md = await _upload(world, "notes.md", b"# Notes\n\nShip on Friday.")
    assert md.status_code == 201 and md.json()["content_type"] == "text/markdown"

    async with app.state.db.read_session() as session:
        row = await session.get(File, __import__("uuid").UUID(meta["id"]))
        assert row is not None and "third quarter" in row.text
        assert row.storage_name not in ("report.pdf",) and "/" not in row.storage_name
    # Stored under a generated name, byte for byte.
    files = _stored(app)
    assert len(files) == 2 and pdf in {p.read_bytes() for p in files}
    assert not any(p.name.endswith((".pdf", ".md")) for p in files)

    listed = await world.ok("viewer", "GET", "/api/projects/{P}/files")
    assert [f["filename"] for f in listed["items"]] == ["notes.md", "report.pdf"]
    down = await world.call("viewer", "GET", f"/api/files/{meta['id']}/download")
    assert down.status_code == 200 and down.content == pdf
    assert down.headers["content-type"] == "application/pdf"
    assert down.headers["content-disposition"] == 'attachment; filename="report.pdf"'
    assert down.headers["x-content-type-options"] == "nosniff"
    text = await world.call("viewer", "GET", f"/api/files/{md.json()['id']}/download")
    assert text.headers["content-type"] == "text/markdown; charset=utf-8"

    feed = await events(world, "viewer", topic=f"project:{world.ids['P']}")
    uploaded = [e for e in feed if e["type"] == "file.uploaded"]
    assert [e["data"]["filename"] for e in uploaded] == ["report.pdf", "notes.md"]

    assert (await world.call("member", "DELETE", f"/api/files/{meta['id']}")).status_code == 204
    assert_error(await world.call("member", "GET", f"/api/files/{meta['id']}"), 404, "not_found")
    assert len(_stored(app)) == 1  # the bytes went with the row
    feed = await events(world, "viewer", topic=f"project:{world.ids['P']}")
    assert feed[-1]["type"] == "file.deleted" and feed[-1]["subject_id"] == meta["id"]


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("image.pdf", PNG, 415, "unsupported_media_type"),
        ("photo.png", PNG, 415, "unsupported_media_type"),
        ("notes.txt", make_pdf(["hi"]), 415, "unsupported_media_type"),
        ("bin.txt", b"abc\x00\x01\x02def", 415, "unsupported_media_type"),
        ("broken.pdf", make_pdf(["some text"])[:60], 422, None),
        ("garbage.pdf", b"%PDF-1.7\n" + b"\xde\xad\xbe\xef" * 50, 422, None),
        ("locked.pdf", encrypt(make_pdf(["secret plan"]), "hunter2"), 422, None),
    ],
)
async def test_rejected_uploads_keep_nothing(client, app, name, data, status, code):
    world = await build_world(client, app)
    answer = await _upload(world, name, data)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] and (code is None or body["code"] == code)
    async with app.state.db.read_session() as session:
        assert await session.scalar(select(func.count()).select_from(File)) == 0
    assert _stored(app) == []


async def test_size_limit_is_413(make_settings, start_app):
    small = create_app(make_settings(max_upload_mb=1, max_body_kb=4))
    world = await build_world(await start_app(small), small)
    if True:
        big = b"a" * (1024 * 1024 + 1)
        assert_error(await _upload(world, "big.txt", big), 413, "payload_too_large")
        ok = await _upload(world, "fits.txt", b"a" * (1024 * 1024 - 10))
        assert ok.status_code == 201
        # Other requests are held to HUDDLE_MAX_BODY_KB, declared or chunked.
        doc = {"title": "x", "content": "y" * 5000}
        too_big = await world.call("member", "POST", "/api/projects/{P}/documents", json=doc)
        assert_error(too_big, 413, "payload_too_large")

        async def chunks():
            for _ in range(5):
                yield b" " * 1024

        chunked = await world.call(
            "member",
            "POST",
            "/api/projects/{P}/documents",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert_error(chunked, 413, "payload_too_large")


async def test_client_paths_never_reach_the_disk(client, app):
    world = await build_world(client, app)
    answer = await _upload(world, "../../etc/passwd.txt", b"root:x:0:0")
    assert answer.status_code == 201 and answer.json()["filename"] == "passwd.txt"
    windows = await _upload(world, "C:\\Users\\me\\plan.md", b"# Plan")
    assert windows.json()["filename"] == "plan.md"
    root = app.state.settings.upload_path
    assert all(root in p.parents for p in _stored(app))
    # (httpx percent-encodes quotes and line breaks in multipart names, so the cleaning
    # of those is checked on the function itself.)
    assert clean_filename('a"b\r\nc.txt') == "abc.txt"
    assert clean_filename("..") == clean_filename("") == "upload"
    accented = await _upload(world, "résumé.txt", b"hello")
    down = await world.call("member", "GET", f"/api/files/{accented.json()['id']}/download")
    assert "filename*=utf-8''r%C3%A9sum%C3%A9.txt" in down.headers["content-disposition"]


async def test_who_may_upload_download_and_delete(client, app):
    world = await build_world(client, app, chat=True)
    assert_error(await _upload(world, "a.txt", b"x", role="viewer"), 403, "forbidden")
    assert_error(await _upload(world, "a.txt", b"x", role="outsider"), 404, "not_found")
    assert_error(await _upload(world, "a.txt", b"x", role="anonymous"), 401, "not_authenticated")
    mine = (await _upload(world, "a.txt", b"x", channel_id=world.ids["CH"])).json()
    assert mine["channel_id"] == world.ids["CH"]
    for role in ("outsider", "anonymous"):
        got = await world.call(role, "GET", f"/api/files/{mine['id']}/download")
        assert got.status_code in (401, 404)
    other = await world.call("bystander", "DELETE", f"/api/files/{mine['id']}")
    assert_error(other, 403, "forbidden")
    assert (await world.call("teammate", "DELETE", f"/api/files/{mine['id']}")).status_code == 204
    secret = await _upload(world, "s.txt", b"classified", role="admin", project="{Q}")
    for role in ("member", "viewer", "outsider"):
        got = await world.call(role, "GET", f"/api/files/{secret.json()['id']}/download")
        assert_error(got, 404, "not_found")
    hidden = await _upload(world, "a.txt", b"x", channel_id=world.ids["PC2"], role="admin")
    assert_error(hidden, 422, "validation_error")
