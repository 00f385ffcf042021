"""Semantic search (POST /api/ai/search): indexing after commit, meaning over words,
visibility, filters, re-indexing and removal."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from sqlalchemy import func, select, update

from huddle.events.models import BusCursor
from huddle.events.service import latest_seq
from huddle.search.embeddings import LOCAL_MODEL
from huddle.search.indexer import cursor_name
from huddle.search.models import Chunk, IndexGeneration, SourceKind
from tests.documents.test_extract import make_pdf
from tests.helpers import assert_error
from tests.world import build_world

pytestmark = pytest.mark.semantic

RUNBOOK = """# Deploying the API

Production deploys run from the release branch. Tag the commit, then run
`make deploy ENV=production`; the pipeline builds the image and rolls it out one node
at a time.

# Rolling back

If the error rate climbs after a rollout, run `make rollback` to return every node to
the previous image within two minutes.
"""

VACATION = """# Holidays

Every employee gets 25 paid days off per year. Ask your manager at least two weeks
before you plan to be away, and note it in the team calendar.
"""


async def indexed(app, timeout: float = 60.0) -> None:
    """Wait until the search indexer has consumed every event recorded so far."""
    deadline = time.monotonic() + timeout
    while True:
        async with app.state.db.read_session() as session:
            published = await latest_seq(session, published=True)
            numbered = await latest_seq(session)
            from huddle.events.models import Event

            pending = await session.scalar(
                select(func.count()).select_from(Event).where(Event.seq.is_(None))
            )
            cursor = await session.scalar(
                select(BusCursor.seq).where(BusCursor.name == cursor_name(LOCAL_MODEL))
            )
        if not pending and published == numbered and cursor is not None and cursor >= published:
            return
        assert time.monotonic() < deadline, (published, numbered, pending, cursor)
        await asyncio.sleep(0.05)


async def ask(world, role, query, expect=200, **body):
    body = {"query": query, "workspace_id": world.ids["W"], **body}
    return await world.ok(role, "POST", "/api/ai/search", expect, json=body)


async def _content(world):
    """A PDF, a markdown file and a document in P, messages in public and private places,
    a document in the private project Q."""
    pdf = make_pdf(["Expense policy", "Travel costs are refunded within thirty days of the trip."])
    up = await world.call(
        "member", "POST", "/api/projects/{P}/files", files={"file": ("expenses.pdf", pdf)}
    )
    assert up.status_code == 201, up.text
    md = await world.call(
        "member",
        "POST",
        "/api/projects/{P}/files",
        files={"file": ("holidays.md", VACATION.encode())},
    )
    doc = await world.ok(
        "member",
        "POST",
        "/api/projects/{P}/documents",
        201,
        json={"title": "Runbook", "content": "draft"},
    )
    doc = await world.ok(
        "member",
        "PUT",
        f"/api/documents/{doc['id']}",
        json={"title": "Runbook", "content": RUNBOOK, "base_version": 1},
    )
    secret = await world.ok(
        "admin",
        "POST",
        "/api/projects/{Q}/documents",
        201,
        json={"title": "Acquisition", "content": "We will acquire Initech for 40 million."},
    )
    message = await world.ok(
        "member",
        "POST",
        "/api/channels/{CH}/messages",
        201,
        json={"content": "The coffee machine on the third floor is broken again"},
    )
    private = await world.ok(
        "member",
        "POST",
        "/api/channels/{PC2}/messages",
        201,
        json={"content": "The board decided to buy another company next quarter"},
    )
    return {
        "pdf": up.json()["id"],
        "md": md.json()["id"],
        "doc": doc["id"],
        "secret": secret["id"],
        "message": message["id"],
        "private": private["id"],
    }


async def test_questions_phrased_differently_find_the_right_sources(client, app):
    world = await build_world(client, app, chat=True)
    ids = await _content(world)
    await indexed(app)

    # Nothing below shares its key words with the text it should find.
    rollback = await ask(world, "viewer", "how do I undo a bad release?")
    top = rollback["sources"][0]
    assert (top["kind"], top["id"], top["title"]) == ("document", ids["doc"], "Runbook")
    assert "rollback" in top["snippet"] and top["project_id"] == world.ids["P"]
    assert rollback["answer"] is None  # no LLM configured

    money = await ask(world, "viewer", "when do I get reimbursed for a business trip?")
    assert (money["sources"][0]["kind"], money["sources"][0]["id"]) == ("file", ids["pdf"])
    assert money["sources"][0]["title"] == "expenses.pdf"

    leave = await ask(world, "viewer", "how much vacation can I take?")
    assert leave["sources"][0]["id"] == ids["md"]

    coffee = await ask(world, "viewer", "espresso maker out of order", limit=1)
    assert [(s["kind"], s["id"], s["title"]) for s in coffee["sources"]] == [
        ("message", ids["message"], "general")
    ]
    assert coffee["sources"][0]["channel_id"] == world.ids["CH"]

    # Each source links back to where it is read, and the link works for the asker.
    for found, kind in ((top, "documents"), (money["sources"][0], "files")):
        assert found["url"] == f"/api/{kind}/{found['id']}"
    assert coffee["sources"][0]["url"] == f"/api/messages/{ids['message']}"
    for found in (top, money["sources"][0], coffee["sources"][0]):
        followed = await world.ok("viewer", "GET", found["url"])
        assert followed["id"] == found["id"]

    # Every source appears once, best first.
    scores = [s["score"] for s in rollback["sources"]]
    assert scores == sorted(scores, reverse=True)
    assert len({s["id"] for s in rollback["sources"]}) == len(rollback["sources"])


async def test_nobody_finds_what_they_cannot_read(client, app):
    world = await build_world(client, app, chat=True)
    ids = await _content(world)
    await indexed(app)
    question = "which company are we going to buy?"

    # Workspace admins see Q's document; the private channel PC2 only its members read.
    found = {s["id"] for s in (await ask(world, "admin", question))["sources"]}
    assert ids["secret"] in found and ids["private"] not in found
    member = {s["id"] for s in (await ask(world, "member", question))["sources"]}
    assert ids["secret"] not in member and ids["private"] in member
    viewer = {s["id"] for s in (await ask(world, "viewer", question))["sources"]}
    assert not {ids["secret"], ids["private"]} & viewer

    # An outsider asking the same in their own workspace finds nothing of W; asking in W
    # is a 404 (they are not a member), as is anonymous access a 401.
    theirs = await world.ok(
        "outsider",
        "POST",
        "/api/ai/search",
        json={"query": question, "workspace_id": world.ids["W2"]},
    )
    assert theirs["sources"] == []
    body = {"query": question, "workspace_id": world.ids["W"]}
    assert_error(
        await world.call("outsider", "POST", "/api/ai/search", json=body), 404, "not_found"
    )
    assert_error(
        await world.call("superuser", "POST", "/api/ai/search", json=body), 404, "not_found"
    )
    assert_error(
        await world.call("anonymous", "POST", "/api/ai/search", json=body),
        401,
        "not_authenticated",
    )

    # A grant opens the private project: the viewer now finds its document.
    await world.ok(
        "admin", "PUT", "/api/projects/{Q}/permissions/{viewer_id}", json={"role": "viewer"}
    )
    granted = {s["id"] for s in (await ask(world, "viewer", question))["sources"]}
    assert ids["secret"] in granted


async def test_filters_by_project_and_channel(client, app):
    world = await build_world(client, app, chat=True)
    ids = await _content(world)
    await indexed(app)
    question = "which company are we going to buy?"
    only_p = await ask(world, "admin", question, project_id=world.ids["P"])
    assert ids["secret"] not in {s["id"] for s in only_p["sources"]}
    assert all(s["project_id"] == world.ids["P"] for s in only_p["sources"])
    only_q = await ask(world, "admin", question, project_id=world.ids["Q"])
    assert [s["id"] for s in only_q["sources"]] == [ids["secret"]]
    in_channel = await ask(world, "member", "coffee", channel_ids=[world.ids["CH"]])
    assert {s["kind"] for s in in_channel["sources"]} == {"message"}
    assert {s["channel_id"] for s in in_channel["sources"]} == {world.ids["CH"]}
    # A project or channel the caller cannot see is a 404, not an empty answer.
    hidden = await world.call(
        "member",
        "POST",
        "/api/ai/search",
        json={"query": "x", "workspace_id": world.ids["W"], "project_id": world.ids["Q"]},
    )
    assert_error(hidden, 404, "not_found")
    unread = await world.call(
        "admin",
        "POST",
        "/api/ai/search",
        json={"query": "x", "workspace_id": world.ids["W"], "channel_ids": [world.ids["PC2"]]},
    )
    assert_error(unread, 404, "not_found")


async def test_edits_reindex_and_deletes_remove(client, app):
    world = await build_world(client, app, chat=True)
    ids = await _content(world)
    await indexed(app)
    doc = await world.ok("viewer", "GET", f"/api/documents/{ids['doc']}")
    assert doc["indexed_at"] is not None
    file = await world.ok("viewer", "GET", f"/api/files/{ids['pdf']}")
    assert file["indexed_at"] is not None

    # Rewrite the runbook about something else: the old passages are gone.
    edited = await world.ok(
        "member",
        "PUT",
        f"/api/documents/{ids['doc']}",
        json={
            "title": "Runbook",
            "content": "Water the office plants on Fridays.",
            "base_version": 2,
        },
    )
    assert edited["indexed_at"] is None
    await indexed(app)
    assert (await world.ok("viewer", "GET", f"/api/documents/{ids['doc']}"))["indexed_at"]
    plants = await ask(world, "viewer", "who looks after the greenery?", limit=1)
    assert plants["sources"][0]["id"] == ids["doc"]
    assert "plants" in plants["sources"][0]["snippet"]
    rollback = await ask(world, "viewer", "how do I undo a bad release?")
    assert all("rollback" not in s["snippet"] for s in rollback["sources"])

    for path in (
        f"/api/documents/{ids['doc']}",
        f"/api/files/{ids['pdf']}",
        f"/api/messages/{ids['message']}",
    ):
        assert (await world.call("member", "DELETE", path)).status_code == 204
    await indexed(app)
    async with app.state.db.read_session() as session:
        left = set(await session.scalars(select(Chunk.source_id).distinct()))
    gone = {ids["doc"], ids["pdf"], ids["message"]}
    assert not {str(i) for i in left} & gone
    after = await ask(world, "viewer", "reimbursed business trip plants coffee")
    assert not {s["id"] for s in after["sources"]} & gone


async def test_unchanged_text_is_not_embedded_again(client, app):
    world = await build_world(client, app)
    doc = await world.ok(
        "member", "POST", "/api/projects/{P}/documents", 201, json={"title": "A", "content": "B"}
    )
    await indexed(app)
    async with app.state.db.read_session() as session:
        before = set(await session.scalars(select(Chunk.id)))
    # Replaying the whole log (a fresh cursor) re-reads every source and changes nothing.
    indexer = next(f for f in app.state.events.forwarders if f.name == cursor_name(LOCAL_MODEL))
    await indexer.bus.index([(SourceKind.document, uuid.UUID(doc["id"]))])
    async with app.state.db.read_session() as session:
        after = set(await session.scalars(select(Chunk.id)))
    assert before == after and before


async def test_only_vectors_of_the_configured_model_are_compared(client, app):
    """Vectors another model made live in another space: a search never mixes them in,
    and the indexer of a new model has its own cursor, so it replays the whole log."""
    world = await build_world(client, app)
    doc = await world.ok(
        "member",
        "POST",
        "/api/projects/{P}/documents",
        201,
        json={"title": "Boats", "content": "The sailing club meets on the lake every Sunday."},
    )
    await indexed(app)
    found = await ask(world, "member", "when does the yacht group gather?")
    assert [s["id"] for s in found["sources"]] == [doc["id"]]

    async with app.state.db.write_session() as session:
        await session.execute(update(Chunk).values(model="an-older-model"))
        await session.execute(
            update(IndexGeneration).values(generation=IndexGeneration.generation + 1)
        )
        await session.commit()
    assert (await ask(world, "member", "when does the yacht group gather?"))["sources"] == []
    assert cursor_name("an-older-model") != cursor_name(LOCAL_MODEL)

    # Re-indexing the source (what the new model's replay does) embeds it again.
    indexer = next(f for f in app.state.events.forwarders if f.name == cursor_name(LOCAL_MODEL))
    await indexer.bus.index([(SourceKind.document, uuid.UUID(doc["id"]))])
    async with app.state.db.read_session() as session:
        assert set(await session.scalars(select(Chunk.model))) == {LOCAL_MODEL}
    found = await ask(world, "member", "when does the yacht group gather?")
    assert [s["id"] for s in found["sources"]] == [doc["id"]]


async def test_bad_requests_are_422(client, app):
    world = await build_world(client, app)
    for body in (
        {"query": "", "workspace_id": world.ids["W"]},
        {"query": "x" * 1001, "workspace_id": world.ids["W"]},
        {"query": "ok"},
        {"query": "ok", "workspace_id": world.ids["W"], "limit": 0},
        {"query": "ok", "workspace_id": world.ids["W"], "limit": 51},
        {"query": "ok", "workspace_id": world.ids["W"], "channel_ids": ["nope"]},
        {"query": "ok", "workspace_id": world.ids["W"], "extra": True},
        {"query": "a\x00b", "workspace_id": world.ids["W"]},
    ):
        response = await world.call("member", "POST", "/api/ai/search", json=body)
        assert_error(response, 422, "validation_error")
