"""Workspace search: matching, ranking, paging, visibility, snippets, index upkeep."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import event, select, update

from huddle.chat.models import Channel, ChannelKind, ChannelMember, Message
from huddle.core.time import utcnow
from huddle.search.service import KINDS, MAX_OFFSET, FullText, Terms, encode_cursor
from tests.helpers import assert_error, background
from tests.world import World, build_world

SEARCH = "/api/workspaces/{W}/search"


# --- helpers -------------------------------------------------------------------------------


async def _channel(
    world: World,
    name: str,
    *,
    workspace: str = "W",
    creator: str = "admin",
    private: bool = False,
    dm: bool = False,
    members: tuple[str, ...] = (),
    project: str | None = None,
) -> str:
    """A channel made with the ORM (the chat routes are not part of this suite)."""
    async with world.app.state.db.write_session() as session:
        channel = Channel(
            workspace_id=world.ids_uuid(workspace),
            project_id=world.ids_uuid(project) if project else None,
            name=name,
            kind=ChannelKind.dm if dm else ChannelKind.text,
            is_private=private or dm,
            dm_key=f"dm-{name}" if dm else None,
            created_by=world.ids_uuid(f"{creator}_id"),
        )
        session.add(channel)
        await session.flush()
        session.add_all(
            ChannelMember(channel_id=channel.id, user_id=world.ids_uuid(f"{m}_id")) for m in members
        )
        await session.commit()
    world.ids[name] = str(channel.id)
    return str(channel.id)


async def _post(
    world: World, channel: str, *contents: str, author: str = "member", parent: str | None = None
) -> list[str]:
    """Messages posted with the ORM; their ids in order."""
    async with world.app.state.db.write_session() as session:
        messages = [
            Message(
                channel_id=world.ids_uuid(channel),
                author_id=world.ids_uuid(f"{author}_id"),
                content=content,
                parent_id=uuid.UUID(parent) if parent else None,
            )
            for content in contents
        ]
        session.add_all(messages)
        await session.commit()
    return [str(m.id) for m in messages]


async def _edit(world: World, message_id: str, **values: object) -> None:
    async with world.app.state.db.write_session() as session:
        await session.execute(
            update(Message).where(Message.id == uuid.UUID(message_id)).values(**values)
        )
        await session.commit()


async def _task(world: World, title: str, project: str = "P", role: str = "admin", **fields):
    task = await world.ok(
        role, "POST", f"/api/projects/{{{project}}}/tasks", 201, json={"title": title, **fields}
    )
    return task["id"]


async def _search(world: World, role: str, q: str, **params: object) -> dict:
    return await world.ok(role, "GET", SEARCH, params={"q": q, **params})


async def _ids(world: World, role: str, q: str, **params: object) -> list[str]:
    return [item["id"] for item in (await _search(world, role, q, **params))["items"]]


def _assert_html_safe(snippet: str) -> None:
    """Only balanced <mark> tags; every other "<" or ">" is escaped."""
    assert snippet.count("<mark>") == snippet.count("</mark>")
    assert "<mark><mark>" not in snippet
    bare = snippet.replace("<mark>", "").replace("</mark>", "")
    assert "<" not in bare and ">" not in bare, snippet


async def _world_with_general(client, app) -> World:
    world = await build_world(client, app)
    await _channel(world, "general")
    return world


# --- matching ------------------------------------------------------------------------------


async def test_english_stemming_matches_other_forms(client, app):
    world = await _world_with_general(client, app)
    [deploying] = await _post(world, "general", "We were deploying the new build all night")
    await _post(world, "general", "Lunch is at noon", "Nothing to see here")
    task = await _task(world, "Deploys go out on Fridays")
    for q in ("deploy", "deployed", "Deploying", "DEPLOYS"):
        assert set(await _ids(world, "member", q)) == {deploying, task}, q


async def test_all_words_must_match_and_the_last_is_a_prefix(client, app):
    world = await _world_with_general(client, app)
    kraken, notes, sighting = await _post(
        world,
        "general",
        "Release the kraken tonight",
        "Release notes for version two",
        "Kraken sighting reported near the harbour",
    )
    assert await _ids(world, "member", "kraken rel") == [kraken]
    assert await _ids(world, "member", "release krak") == [kraken]
    assert await _ids(world, "member", "  release, KRAKEN!  ") == [kraken]
    assert set(await _ids(world, "member", "rel")) == {kraken, notes}
    assert set(await _ids(world, "member", "kra")) == {kraken, sighting}
    assert await _ids(world, "member", "notes kraken") == []
    # Only the last word is a prefix.
    assert await _ids(world, "member", "krak release") == []


async def test_query_syntax_is_never_interpreted(client, app):
    world = await _world_with_general(client, app)
    [quoted] = await _post(world, "general", 'He said "ship OR sink" and NOT much else')
    for q in ('"ship OR sink"', "ship | sink", "ship & !sink", "ship:* sink*", "NOT much)"):
        assert await _ids(world, "member", q) == [quoted], q
    assert await _ids(world, "member", "ship OR unicorn") == []  # OR is just a word


async def test_a_stop_word_only_query_is_not_an_error(client, app, is_postgres):
    world = await _world_with_general(client, app)
    [message] = await _post(world, "general", "the plan is the plan")
    page = await _search(world, "member", "the")
    if is_postgres:  # English stop words are not indexed there; SQLite indexes every word
        assert page == {"items": [], "next_cursor": None}
    assert await _ids(world, "member", "the plan") == [message]


# --- ranking and paging --------------------------------------------------------------------


async def test_denser_matches_rank_higher(client, app):
    world = await _world_with_general(client, app)
    await _post(world, "general", *(f"unrelated chatter number {n}" for n in range(6)))
    weak, strong = await _post(
        world,
        "general",
        "the rocket is one word among a great many other words in this rather long and "
        "winding message about nothing in particular at all",
        "rocket rocket launch rocket",
    )
    page = await _search(world, "member", "rocket")
    assert [item["id"] for item in page["items"]] == [strong, weak]
    assert page["items"][0]["score"] > page["items"][1]["score"] > 0


async def test_paging_with_cursors_has_no_duplicates_or_gaps(client, app):
    world = await _world_with_general(client, app)
    messages = await _post(
        world, "general", *(("pager " * (1 + n % 4)) + f"message {n}" for n in range(23))
    )
    tasks = [await _task(world, f"Pager task {n}") for n in range(6)]
    everything = (await _search(world, "member", "pager", limit=50))["items"]
    assert {item["id"] for item in everything} == set(messages + tasks)
    # Best first, ties broken by id, newest first.
    key = [(item["score"], uuid.UUID(item["id"])) for item in everything]
    assert key == sorted(key, reverse=True)

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 7} | ({"cursor": cursor} if cursor else {})
        page = await _search(world, "viewer", "pager", **params)
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 5 and seen == [item["id"] for item in everything]


async def test_types_filter(client, app):
    world = await _world_with_general(client, app)
    [message] = await _post(world, "general", "walrus sighting")
    task = await _task(world, "Count the walrus")
    assert set(await _ids(world, "member", "walrus")) == {message, task}
    assert await _ids(world, "member", "walrus", types="messages") == [message]
    assert await _ids(world, "member", "walrus", types="tasks") == [task]
    assert set(await _ids(world, "member", "walrus", types="tasks, messages")) == {message, task}
    page = await _search(world, "member", "walrus", types="tasks")
    assert [item["kind"] for item in page["items"]] == ["task"]


async def test_documents_and_files_join_the_search(client, app):
    world = await _world_with_general(client, app)
    doc = await world.ok(
        "member",
        "POST",
        "/api/projects/{P}/documents",
        201,
        json={"title": "Walrus census", "content": "We counted 40 walruses on the beach."},
    )
    upload = await world.call(
        "member",
        "POST",
        "/api/projects/{P}/files",
        files={"file": ("notes.md", b"# Field notes\n\nA walrus slept near the pier.")},
    )
    secret = await world.ok(
        "admin",
        "POST",
        "/api/projects/{Q}/documents",
        201,
        json={"title": "Hidden walrus", "content": "classified"},
    )
    found = (await _search(world, "member", "walrus"))["items"]
    by_kind = {item["kind"]: item for item in found}
    assert by_kind["document"]["id"] == doc["id"]
    assert by_kind["document"]["title"] == "Walrus census"
    assert "<mark>" in by_kind["document"]["snippet"]
    assert by_kind["file"]["id"] == upload.json()["id"]
    assert by_kind["file"]["title"] == "notes.md"
    assert by_kind["file"]["content_type"] == "text/markdown"
    assert "<mark>walrus</mark>" in by_kind["file"]["snippet"].lower()
    assert secret["id"] not in {item["id"] for item in found}
    assert secret["id"] in await _ids(world, "admin", "walrus", types="documents")
    assert await _ids(world, "member", "walrus", types="files") == [upload.json()["id"]]
    # Edits and deletes reach the index at once (triggers / expression indexes).
    await world.ok(
        "member",
        "PUT",
        f"/api/documents/{doc['id']}",
        json={"title": "Seal census", "content": "Only seals.", "base_version": 1},
    )
    assert doc["id"] not in await _ids(world, "member", "walrus", types="documents")
    assert await _ids(world, "member", "seals", types="documents") == [doc["id"]]
    await world.ok("member", "DELETE", f"/api/files/{upload.json()['id']}", 204)
    assert await _ids(world, "member", "pier") == []


# --- visibility ----------------------------------------------------------------------------


async def _zebra_world(client, app) -> tuple[World, dict[str, str]]:
    """One "zebra" item in every place with different visibility."""
    world = await _world_with_general(client, app)
    ids: dict[str, str] = {}
    ids["general"], ids["gone"], ids["tombstone"] = await _post(
        world, "general", "zebra crossing", "zebra gone", "zebra tombstone"
    )
    await _edit(world, ids["gone"], deleted_at=utcnow(), content="")
    await _edit(world, ids["tombstone"], deleted_at=utcnow())  # deleted, text still indexed
    [ids["reply"]] = await _post(
        world, "general", "a zebra reply", author="viewer", parent=ids["general"]
    )
    await _channel(world, "secret", private=True, members=("member",))
    [ids["secret"]] = await _post(world, "secret", "zebra secret plans")
    await _channel(world, "pair", dm=True, members=("member", "bystander"))
    [ids["dm"]] = await _post(world, "pair", "zebra in a DM")
    await _channel(world, "q-room", project="Q")  # public channel of private project Q
    [ids["q_channel"]] = await _post(world, "q-room", "zebra in Q", author="admin")
    await _channel(world, "p-room", project="P")
    [ids["p_channel"]] = await _post(world, "p-room", "zebra in P")
    await _channel(world, "theirs", workspace="W2", creator="outsider")
    [ids["other_ws"]] = await _post(world, "theirs", "zebra elsewhere", author="outsider")
    ids["task_p"] = await _task(world, "Zebra task public")
    ids["task_q"] = await _task(world, "Zebra task secret", project="Q")
    ids["task_other_ws"] = await _task(world, "Zebra task other", project="P2", role="outsider")
    world.ids["P3"] = (
        await world.ok("admin", "POST", "/api/workspaces/{W}/projects", 201, json={"name": "Old"})
    )["id"]
    ids["task_deleted_project"] = await _task(world, "Zebra task of a deleted project", "P3")
    await world.ok("admin", "DELETE", "/api/projects/{P3}", 204)
    return world, ids


async def test_each_caller_finds_exactly_what_they_may_see(client, app):
    world, ids = await _zebra_world(client, app)
    everyone = {"general", "reply", "p_channel", "task_p"}
    expected = {
        "member": everyone | {"secret", "dm"},
        "viewer": everyone,
        "bystander": everyone | {"dm"},
        "teammate": everyone,
        # Admins see private projects, but not private channels or DMs they are not in.
        "admin": everyone | {"q_channel", "task_q"},
    }
    for role, names in expected.items():
        found = await _ids(world, role, "zebra", limit=50)
        assert sorted(found) == sorted(ids[name] for name in names), role
    theirs = await world.ok("outsider", "GET", "/api/workspaces/{W2}/search", params={"q": "zebra"})
    assert {item["id"] for item in theirs["items"]} == {ids["other_ws"], ids["task_other_ws"]}


async def test_items_carry_their_fields(client, app):
    world, ids = await _zebra_world(client, app)
    items = {item["id"]: item for item in (await _search(world, "member", "zebra"))["items"]}
    reply = items[ids["reply"]]
    assert reply == {
        "kind": "message",
        "id": ids["reply"],
        "title": "general",
        "snippet": "a <mark>zebra</mark> reply",
        "score": reply["score"],
        "channel_id": world.ids["general"],
        "parent_id": ids["general"],
        "author_id": world.ids["viewer_id"],
        "created_at": reply["created_at"],
    }
    assert items[ids["dm"]]["title"] == "Direct message"
    assert items[ids["general"]]["parent_id"] is None
    await world.ok("admin", "PATCH", f"/api/tasks/{ids['task_p']}", json={"status": "done"})
    task = next(
        item
        for item in (await _search(world, "member", "zebra", types="tasks"))["items"]
        if item["id"] == ids["task_p"]
    )
    assert task == {
        "kind": "task",
        "id": ids["task_p"],
        "title": "Zebra task public",
        "snippet": "<mark>Zebra</mark> task public",
        "score": task["score"],
        "project_id": world.ids["P"],
        "status": "done",
        "created_at": task["created_at"],
    }


async def test_anonymous_and_outsiders_are_refused(client, app):
    world = await build_world(client, app)
    assert_error(
        await world.call("anonymous", "GET", SEARCH, params={"q": "x"}), 401, "not_authenticated"
    )
    assert_error(await world.call("outsider", "GET", SEARCH, params={"q": "x"}), 404, "not_found")
    assert_error(await world.call("superuser", "GET", SEARCH, params={"q": "x"}), 404, "not_found")
    unknown = f"/api/workspaces/{uuid.uuid4()}/search"
    assert_error(await world.call("member", "GET", unknown, params={"q": "x"}), 404, "not_found")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": "?! ... --- ¿¡"}, "q"),
        ({"q": "___"}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"q": "nul\x00byte"}, "q"),
        ({"q": "ok", "types": "notes"}, "types"),
        ({"q": "ok", "types": "messages,"}, "types"),
        ({"q": "ok", "types": ""}, "types"),
        ({"q": "ok", "cursor": "!!!"}, "cursor"),
        ({"q": "ok", "cursor": "aGVsbG8"}, "cursor"),  # base64 of "hello"
        ({"q": "ok", "cursor": encode_cursor(MAX_OFFSET + 1)}, "cursor"),
        ({"q": "ok", "limit": 0}, "limit"),
        ({"q": "ok", "limit": 51}, "limit"),
    ],
)
async def test_invalid_parameters_are_422(client, app, params, field):
    world = await build_world(client, app)
    body = assert_error(
        await world.call("member", "GET", SEARCH, params=params), 422, "validation_error"
    )
    assert [issue["loc"] for issue in body["details"]] == [["query", field]]


async def test_the_deepest_cursor_is_served(client, app):
    world = await _world_with_general(client, app)
    await _post(world, "general", "needle")
    page = await _search(world, "member", "needle", cursor=encode_cursor(MAX_OFFSET))
    assert page == {"items": [], "next_cursor": None}


# --- snippets ------------------------------------------------------------------------------


async def test_snippets_mark_matches_and_escape_everything_else(client, app):
    world = await _world_with_general(client, app)
    await _post(world, "general", 'deploying now <script>alert("hi")</script> & <b>bold</b> stuff')
    [snippet] = [i["snippet"] for i in (await _search(world, "member", "deploy"))["items"]]
    _assert_html_safe(snippet)
    assert snippet.startswith("<mark>deploying</mark> now")
    assert "&lt;script&gt;alert(&quot;hi&quot;)&lt;/script&gt;" in snippet
    assert "&amp; &lt;b&gt;bold&lt;/b&gt;" in snippet


async def test_snippets_are_about_twenty_words_around_the_match(client, app):
    world = await _world_with_general(client, app)
    words = [f"w{n}" for n in range(80)]
    words[50] = "narwhal"
    await _post(world, "general", " ".join(words))
    [snippet] = [i["snippet"] for i in (await _search(world, "member", "narwhal"))["items"]]
    _assert_html_safe(snippet)
    assert "<mark>narwhal</mark>" in snippet and "w0 " not in snippet
    assert 10 <= len(re.findall(r"w\d+|narwhal", snippet)) <= 25


async def test_stray_sentinels_in_text_cannot_unbalance_the_markup(client, app):
    world = await _world_with_general(client, app)
    await _post(world, "general", "\ue001 odd \ue000 text \ue001\ue001 about a zebu \ue000")
    [snippet] = [i["snippet"] for i in (await _search(world, "member", "zebu"))["items"]]
    _assert_html_safe(snippet)
    assert "<mark>zebu</mark>" in snippet


async def test_task_snippets_cover_title_and_description(client, app):
    world = await build_world(client, app)
    await _task(
        world, "Quarterly report", description="Gather the numbers, <i>then</i> add the okapi"
    )
    [by_title] = (await _search(world, "member", "quarterly"))["items"]
    assert "<mark>Quarterly</mark>" in by_title["snippet"]
    [by_description] = (await _search(world, "member", "okapi"))["items"]
    assert "&lt;i&gt;then&lt;/i&gt; add the <mark>okapi</mark>" in by_description["snippet"]
    assert by_description["title"] == "Quarterly report"
    _assert_html_safe(by_description["snippet"])


# --- the index follows changes -------------------------------------------------------------


async def test_index_follows_message_edits_and_deletion(client, app):
    world = await _world_with_general(client, app)
    [message] = await _post(world, "general", "apple pie recipe")
    assert await _ids(world, "member", "apple") == [message]
    await _edit(world, message, content="banana split recipe", edited_at=utcnow())
    assert await _ids(world, "member", "apple") == []
    assert await _ids(world, "member", "banana") == [message]
    await _edit(world, message, content="", deleted_at=utcnow())
    assert await _ids(world, "member", "banana") == []
    assert await _ids(world, "member", "recipe") == []


async def test_index_follows_task_changes(client, app):
    world = await build_world(client, app)
    task = await _task(world, "Persimmon harvest")
    assert await _ids(world, "member", "persimmon") == [task]
    await world.ok("member", "PATCH", f"/api/tasks/{task}", json={"title": "Quince harvest"})
    assert await _ids(world, "member", "persimmon") == []
    assert await _ids(world, "member", "quince harvest") == [task]
    await world.ok("member", "PATCH", f"/api/tasks/{task}", json={"description": "with ladders"})
    assert await _ids(world, "member", "ladder") == [task]
    await world.ok("admin", "DELETE", f"/api/tasks/{task}", 204)
    assert await _ids(world, "member", "quince") == []


# --- cost ----------------------------------------------------------------------------------


async def test_statement_count_does_not_grow_with_results(client, app, monkeypatch):
    import huddle.access.service as access_service

    monkeypatch.setattr(access_service, "_CLOCK_MARGIN", -3600.0)  # cache roles at once
    world = await _world_with_general(client, app)
    engine = app.state.db.engine.sync_engine
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        if statement.startswith("SELECT") and not background(statement):
            seen.append(statement)

    async def statements() -> tuple[int, int]:
        await world.ok("member", "GET", SEARCH, params={"q": "gadget"})  # warm the role cache
        seen.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            page = await _search(world, "member", "gadget", limit=50)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(page["items"]), len(seen)

    await _post(world, "general", "gadget one", "gadget two")
    await _task(world, "Gadget task")
    few = await statements()
    await _post(world, "general", *(f"gadget number {n}" for n in range(20)))
    for n in range(7):
        await _task(world, f"Gadget task {n}")
    many = await statements()
    assert few[0] == 3 and many[0] == 30
    # One query per kind (messages, tasks, documents, files) plus the access lookups; the
    # count stays the same however many hits there are.
    assert few[1] == many[1] <= 8, (few, many)


async def test_match_expressions_use_the_gin_indexes(client, app, postgres_only):
    async with app.state.db.read_session() as session:
        connection = await session.connection()
        await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        fulltext = FullText(postgres=True, terms=Terms.parse("deploy it"))
        for name, index in (
            ("messages", "ix_messages_search"),
            ("tasks", "ix_tasks_search"),
            ("documents", "ix_documents_search"),
            ("files", "ix_files_search"),
        ):
            kind = KINDS[name]
            query = select(kind.id).where(fulltext.match(kind))
            sql = query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
            plan = (await connection.exec_driver_sql(f"EXPLAIN {sql}")).scalars().all()
            assert any(index in line for line in plan), plan


async def test_openapi_documents_the_result_kinds(client):
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/api/workspaces/{wid}/search"]["get"]
    assert operation["summary"].startswith("Search the messages, tasks, documents and files")
    assert {"MessageHit", "TaskHit", "DocumentHit", "FileHit", "SearchPage"} <= set(
        spec["components"]["schemas"]
    )
    assert operation["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }


async def test_huddle_vacuum_keeps_search_right(client, app, settings, is_postgres):
    """SQLite may renumber the rowids of tables with UUID keys on VACUUM (current
    versions rarely do); ``huddle vacuum`` rebuilds the FTS5 indexes after it, and
    search still finds exactly the right rows."""
    from sqlalchemy import text

    from huddle.search.maintenance import vacuum

    world = await build_world(client, app, chat=True)
    words = ["alpha", "bravo", "charlie", "delta"]
    posted = [
        (
            await world.ok(
                "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": f"zz{w}"}
            )
        )["id"]
        for w in words
    ]
    async with app.state.db.write_session() as session:  # leave holes in the row numbers
        await session.execute(
            text("DELETE FROM messages WHERE content IN ('zzalpha', 'zzcharlie')")
        )
        await session.commit()
    await vacuum(settings)
    for word, message_id in ((words[1], posted[1]), (words[3], posted[3])):
        found = await world.ok(
            "member", "GET", "/api/workspaces/{W}/search", params={"q": f"zz{word}"}
        )
        assert [item["id"] for item in found["items"]] == [message_id], word
