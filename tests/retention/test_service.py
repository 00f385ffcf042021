"""The retention pass: what goes, what stays, at the boundary, in batches, on both databases."""

from __future__ import annotations

import itertools
import logging
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from huddle.auth.models import RefreshToken
from huddle.chat.models import Message, MessageMention, Reaction, ReadMarker
from huddle.chat.unread import unread_counts
from huddle.core.db import Database
from huddle.events.models import Event, WebhookDelivery
from huddle.retention.service import run_pass
from huddle.search.models import Chunk, SourceKind
from huddle.workspaces.models import Invitation
from tests.retention.conftest import NOW
from tests.retention.seed import Seed, count, exists, generation

DAYS = 30
CUTOFF = NOW - timedelta(days=DAYS)


async def _latest_event(seed: Seed, ws_id) -> Event:
    """The newest event of the log (retention always keeps the highest seq)."""
    return await seed.event(ws_id, NOW, type="workspace.updated")


@pytest.mark.parametrize(
    "delta",
    [timedelta(seconds=1), timedelta(milliseconds=1), timedelta(microseconds=1)],
    ids=["1s", "1ms", "1us"],
)
async def test_only_messages_before_the_cutoff_go(db: Database, make_settings, delta):
    async with db.write_session() as session:
        seed = Seed(session)
        alice, bob = await seed.user(), await seed.user()
        ws = await seed.workspace(alice, days=DAYS)
        other = await seed.workspace(alice)  # no limit anywhere: nothing of it goes
        channel, elsewhere = await seed.channel(ws), await seed.channel(other)
        old = await seed.message(channel, alice, CUTOFF - delta, "old news")
        edge = await seed.message(channel, alice, CUTOFF, "exactly at the cut-off")
        new = await seed.message(channel, alice, CUTOFF + delta, "fresh")
        ancient = await seed.message(elsewhere, alice, CUTOFF - timedelta(days=900))
        for message, where, in_ws in ((old, channel, ws), (edge, channel, ws), (new, channel, ws)):
            await seed.decorate(message, bob, where, in_ws)
        await seed.decorate(ancient, bob, elsewhere, other)
        await _latest_event(seed, other.id)
        await session.commit()
    before_other = await generation(db, other.id)
    before = await generation(db, ws.id)

    report = await run_pass(db, make_settings(), now=NOW)

    assert not await exists(db, Message, old.id)
    for kept in (edge, new, ancient):
        assert await exists(db, Message, kept.id)
        assert await count(db, Reaction, Reaction.message_id == kept.id) == 1
        assert await count(db, MessageMention, MessageMention.message_id == kept.id) == 1
        assert await count(db, Chunk, Chunk.source_id == kept.id) == 1
        assert await count(db, Event, Event.subject_id == kept.id) == 1
    assert await count(db, Reaction, Reaction.message_id == old.id) == 0
    assert await count(db, MessageMention, MessageMention.message_id == old.id) == 0
    assert await count(db, Chunk, Chunk.source_id == old.id) == 0
    assert await count(db, Event, Event.subject_id == old.id) == 0
    # The in-process vector indexes learn that the workspace's chunks changed.
    assert await generation(db, ws.id) == before + 1
    assert await generation(db, other.id) == before_other
    totals = report.totals.as_dict()
    assert totals == {**dict.fromkeys(totals, 0)} | {
        "messages": 1,
        "reactions": 1,
        "mentions": 1,
        "chunks": 1,
        "events": 1,
    }
    assert set(report.workspaces) == {ws.id} and report.limits == {ws.id: DAYS}


async def test_events_and_deliveries_of_deleted_messages_go_the_outbox_stays(
    db: Database, make_settings
):
    async with db.write_session() as session:
        seed = Seed(session)
        alice = await seed.user()
        ws = await seed.workspace(alice, days=DAYS)
        other = await seed.workspace(alice, days=DAYS)
        channel = await seed.channel(ws)
        old = await seed.message(channel, alice, CUTOFF - timedelta(days=1))
        kept = await seed.message(channel, alice, CUTOFF + timedelta(days=1))
        created = await seed.event(ws.id, old.created_at, subject_id=old.id)
        # Newer than the limit, but about the deleted message: it goes with it.
        reacted = await seed.event(ws.id, NOW, subject_id=old.id, type="reaction.added")
        kept_event = await seed.event(ws.id, kept.created_at, subject_id=kept.id)
        # History older than the limit goes too (the task is not deleted, its past is).
        task_event = await seed.event(ws.id, CUTOFF - timedelta(seconds=1), type="task.created")
        edge_event = await seed.event(ws.id, CUTOFF, type="task.updated")
        # Not yet published: the outbox still needs it, whatever its age.
        unpublished = await seed.event(ws.id, CUTOFF - timedelta(days=5), published=False)
        # Another workspace's old event with a hook of its own; and one without workspace.
        foreign = await seed.event(other.id, CUTOFF + timedelta(hours=1))
        siteless = await seed.event(None, CUTOFF - timedelta(days=5), type="user.updated")
        hook, other_hook = await seed.webhook(ws), await seed.webhook(other)
        gone_deliveries = [await seed.delivery(hook, e) for e in (created, reacted, task_event)]
        kept_deliveries = [
            await seed.delivery(hook, kept_event),
            await seed.delivery(hook, None),  # a test ping
            await seed.delivery(other_hook, foreign),
        ]
        await _latest_event(seed, other.id)
        await session.commit()

    report = await run_pass(db, make_settings(), now=NOW)

    for gone in (created, reacted, task_event):
        assert not await exists(db, Event, gone.id)
    for stays in (kept_event, edge_event, unpublished, foreign, siteless):
        assert await exists(db, Event, stays.id)
    for delivery in gone_deliveries:
        assert not await exists(db, WebhookDelivery, delivery.id)
    for delivery in kept_deliveries:
        assert await exists(db, WebhookDelivery, delivery.id)
    assert report.workspaces[ws.id].events == 3
    assert report.workspaces[ws.id].webhook_deliveries == 3
    assert other.id not in report.workspaces


async def test_the_newest_event_of_the_log_is_kept_until_a_newer_one_exists(
    db: Database, make_settings
):
    """The dispatcher numbers new events after the highest seq: it must never go back."""
    async with db.write_session() as session:
        seed = Seed(session)
        ws = await seed.workspace(await seed.user(), days=DAYS)
        first = await seed.event(ws.id, CUTOFF - timedelta(days=3), type="task.created")
        last = await seed.event(ws.id, CUTOFF - timedelta(days=2), type="task.updated")
        await session.commit()
    await run_pass(db, make_settings(), now=NOW)
    assert not await exists(db, Event, first.id)
    assert await exists(db, Event, last.id)
    async with db.write_session() as session:
        seed = Seed(session)
        seed.seq = itertools.count(last.seq + 1)
        newer = await seed.event(ws.id, NOW, type="task.updated")
        await session.commit()
    await run_pass(db, make_settings(), now=NOW)
    assert not await exists(db, Event, last.id)
    assert await exists(db, Event, newer.id)


async def test_a_workspace_limit_shorter_than_the_site_one_wins(db: Database, make_settings):
    async with db.write_session() as session:
        seed = Seed(session)
        alice = await seed.user()
        short = await seed.workspace(alice, days=7)
        plain = await seed.workspace(alice)  # the site's 30 days
        longer = await seed.workspace(alice, days=90)  # capped by the site's 30
        messages = {}
        for ws in (short, plain, longer):
            channel = await seed.channel(ws)
            for age in (6, 8, 29, 31):
                message = await seed.message(channel, alice, NOW - timedelta(days=age))
                messages[(ws.id, age)] = message.id
        await _latest_event(seed, plain.id)
        await session.commit()

    report = await run_pass(db, make_settings(data_retention_days=30), now=NOW)

    left = {key for key, message_id in messages.items() if await exists(db, Message, message_id)}
    assert left == {
        (short.id, 6),
        (plain.id, 6),
        (plain.id, 8),
        (plain.id, 29),
        (longer.id, 6),
        (longer.id, 8),
        (longer.id, 29),
    }
    assert report.limits == {short.id: 7, plain.id: 30, longer.id: 30}


async def test_a_workspace_limit_applies_without_a_site_limit(db: Database, make_settings):
    async with db.write_session() as session:
        seed = Seed(session)
        alice = await seed.user()
        limited, unlimited = await seed.workspace(alice, days=7), await seed.workspace(alice)
        gone = await seed.message(await seed.channel(limited), alice, NOW - timedelta(days=8))
        kept = await seed.message(await seed.channel(unlimited), alice, NOW - timedelta(days=3000))
        old_siteless = await seed.event(None, NOW - timedelta(days=3000), type="user.updated")
        await _latest_event(seed, unlimited.id)
        await session.commit()

    report = await run_pass(db, make_settings(), now=NOW)

    assert not await exists(db, Message, gone.id)
    assert await exists(db, Message, kept.id)
    assert await exists(db, Event, old_siteless.id)  # no site limit: kept
    assert report.limits == {limited.id: 7}


async def test_a_site_limit_also_clears_events_of_no_workspace(db: Database, make_settings):
    async with db.write_session() as session:
        seed = Seed(session)
        old = await seed.event(None, CUTOFF - timedelta(seconds=1), type="user.updated")
        edge = await seed.event(None, CUTOFF, type="user.updated")
        await seed.event(None, NOW, type="user.updated")
        await session.commit()
    report = await run_pass(db, make_settings(data_retention_days=DAYS), now=NOW)
    assert not await exists(db, Event, old.id)
    assert await exists(db, Event, edge.id)
    assert report.site.events == 1


async def test_thread_roots_become_tombstones_until_their_last_reply_expires(
    db: Database, make_settings
):
    async with db.write_session() as session:
        seed = Seed(session)
        alice, bob = await seed.user(), await seed.user()
        ws = await seed.workspace(alice, days=DAYS)
        channel = await seed.channel(ws)
        root = await seed.message(channel, alice, NOW - timedelta(days=40), "the question")
        early = await seed.message(channel, bob, NOW - timedelta(days=35), "old answer", root)
        late = await seed.message(channel, bob, NOW - timedelta(days=10), "new answer", root)
        # A thread that expired entirely goes in the same pass, replies first.
        gone_root = await seed.message(channel, alice, NOW - timedelta(days=50), "gone")
        gone_reply = await seed.message(channel, bob, NOW - timedelta(days=45), "gone", gone_root)
        for message in (root, early, late, gone_root, gone_reply):
            await seed.decorate(message, bob, channel, ws)
        await _latest_event(seed, ws.id)
        await session.commit()

    first = await run_pass(db, make_settings(), now=NOW)

    async with db.read_session() as session:
        tomb = await session.get(Message, root.id)
        reply = await session.get(Message, late.id)
    assert tomb is not None and reply is not None
    assert tomb.content == "" and tomb.deleted_at == NOW
    assert tomb.reply_count == 1 and tomb.last_reply_at == late.created_at
    assert reply.content == "new answer" and reply.deleted_at is None
    for message_id in (early.id, gone_root.id, gone_reply.id):
        assert not await exists(db, Message, message_id)
    # The tombstone keeps nothing of what it was: reactions, mentions, chunks, events.
    assert await count(db, Reaction, Reaction.message_id == root.id) == 0
    assert await count(db, MessageMention, MessageMention.message_id == root.id) == 0
    assert await count(db, Chunk, Chunk.source_id == root.id) == 0
    assert await count(db, Event, Event.subject_id == root.id) == 0
    assert await count(db, Reaction, Reaction.message_id == late.id) == 1
    assert first.totals.messages == 3 and first.totals.tombstones == 1

    # Once its last reply has expired, the root goes too.
    later = NOW + timedelta(days=21)
    second = await run_pass(db, make_settings(), now=later)
    assert not await exists(db, Message, late.id)
    assert not await exists(db, Message, root.id)
    assert second.totals.messages == 2 and second.totals.tombstones == 0


async def test_read_markers_move_back_and_unread_counts_do_not_change(db: Database, make_settings):
    async with db.write_session() as session:
        seed = Seed(session)
        alice, bob, carol, dave = [await seed.user() for _ in range(4)]
        ws = await seed.workspace(alice, days=DAYS)
        channel, quiet = await seed.channel(ws), await seed.channel(ws)
        root = await seed.message(channel, alice, NOW - timedelta(days=40))
        await seed.message(channel, alice, NOW - timedelta(days=1), "reply", root)
        read_to = await seed.message(channel, alice, NOW - timedelta(days=35))
        fresh = await seed.message(channel, alice, NOW - timedelta(days=2))
        await seed.message(channel, alice, NOW - timedelta(days=1))
        lonely = await seed.message(quiet, alice, NOW - timedelta(days=33))
        await seed.message(quiet, alice, NOW - timedelta(hours=1))
        await seed.marker(channel, bob, read_to)  # expired: moves to the root's tombstone
        await seed.marker(channel, carol, fresh)  # not expired: stays
        await seed.marker(quiet, dave, lonely)  # nothing older left: moves to none
        await _latest_event(seed, ws.id)
        await session.commit()

    async def unread() -> list[tuple[int, int]]:
        async with db.read_session() as session:
            result = []
            for user, where in ((bob, channel), (carol, channel), (dave, quiet)):
                counts = await unread_counts(session, user.id, [where.id])
                result.append(counts[where.id][:2])
            return result

    before = await unread()
    report = await run_pass(db, make_settings(), now=NOW)
    assert await unread() == before

    async with db.read_session() as session:
        markers = {
            (m.channel_id, m.user_id): m.last_read_message_id
            for m in await session.scalars(select(ReadMarker))
        }
    assert markers == {
        (channel.id, bob.id): root.id,
        (channel.id, carol.id): fresh.id,
        (quiet.id, dave.id): None,
    }
    assert report.totals.read_markers == 2


async def test_batches_are_separate_transactions(db: Database, make_settings):
    async with db.write_session() as session:
        seed = Seed(session)
        alice = await seed.user()
        ws = await seed.workspace(alice, days=DAYS)
        channel = await seed.channel(ws)
        old = [await seed.message(channel, alice, CUTOFF - timedelta(hours=n)) for n in range(1, 6)]
        kept = await seed.message(channel, alice, CUTOFF)
        for n in range(5):
            await seed.invitation(ws, NOW - timedelta(days=n + 1))
        await _latest_event(seed, ws.id)
        await session.commit()
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith(("DELETE FROM messages", "DELETE FROM invitations", "COMMIT")):
            statements.append(statement.split(" WHERE")[0])

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    commits: list[int] = []

    def committed(conn):
        commits.append(1)

    event.listen(db.engine.sync_engine, "commit", committed)
    try:
        report = await run_pass(db, make_settings(retention_batch=2), now=NOW)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
        event.remove(db.engine.sync_engine, "commit", committed)

    assert report.totals.messages == 5 and report.totals.invitations == 5
    assert statements.count("DELETE FROM messages") == 3  # 2 + 2 + 1
    assert statements.count("DELETE FROM invitations") == 3
    assert len(commits) >= 6  # each step committed on its own
    for message in old:
        assert not await exists(db, Message, message.id)
    assert await exists(db, Message, kept.id)
    assert await count(db, Invitation) == 0


async def test_expired_invitations_and_dead_refresh_tokens_go_without_any_limit(
    db: Database, make_settings
):
    async with db.write_session() as session:
        seed = Seed(session)
        alice = await seed.user()
        ws = await seed.workspace(alice)
        second = timedelta(seconds=1)
        invitations = {
            "expired": await seed.invitation(ws, NOW - second),
            "expires now": await seed.invitation(ws, NOW),
            "revoked, expired": await seed.invitation(
                ws, NOW - second, revoked_at=NOW - 2 * second
            ),
            "pending": await seed.invitation(ws, NOW + second),
            "revoked, pending": await seed.invitation(ws, NOW + second, revoked_at=NOW),
            "accepted": await seed.invitation(
                ws,
                NOW - timedelta(days=300),
                accepted_at=NOW - timedelta(days=301),
                accepted_by=alice.id,
            ),
        }
        dead, alive, fresh, now_dead = (uuid.uuid4() for _ in range(4))
        tokens = {
            # A login whose every token has expired.
            "dead used": await seed.refresh_token(
                alice, dead, NOW - timedelta(days=2), revoked_at=NOW - timedelta(days=3)
            ),
            "dead last": await seed.refresh_token(alice, dead, NOW - second),
            # A used token of a live login: kept, so presenting it again is caught.
            "live used": await seed.refresh_token(
                alice, alive, NOW - timedelta(days=1), revoked_at=NOW - timedelta(days=20)
            ),
            "live last": await seed.refresh_token(alice, alive, NOW + timedelta(days=9)),
            "fresh": await seed.refresh_token(alice, fresh, NOW + second),
            "expires now": await seed.refresh_token(alice, now_dead, NOW),
        }
        await session.commit()

    report = await run_pass(db, make_settings(), now=NOW)

    left = {name for name, row in invitations.items() if await exists(db, Invitation, row.id)}
    assert left == {"pending", "revoked, pending", "accepted"}
    left = {name for name, row in tokens.items() if await exists(db, RefreshToken, row.id)}
    assert left == {"live used", "live last", "fresh"}
    assert report.site.invitations == 3 and report.site.refresh_tokens == 3
    assert report.limits == {}


@pytest.mark.parametrize("delete_files", [False, True])
async def test_files_go_only_when_configured(db: Database, make_settings, tmp_path, delete_files):
    from huddle.documents.models import File
    from huddle.documents.storage import FileStore

    settings = make_settings(retention_delete_files=delete_files, upload_dir=tmp_path / "up")
    store = FileStore(settings.upload_path)
    async with db.write_session() as session:
        seed = Seed(session)
        alice = await seed.user()
        ws = await seed.workspace(alice, days=DAYS)
        project = await seed.project(ws)
        old = await seed.file(ws, project, CUTOFF - timedelta(seconds=1), store)
        missing = await seed.file(ws, project, CUTOFF - timedelta(days=3), store)
        edge = await seed.file(ws, project, CUTOFF, store)
        for row in (old, edge):
            await seed.chunk(ws, SourceKind.file, row.id, project_id=project.id)
            await seed.event(ws.id, NOW, subject_id=row.id, type="file.uploaded")
        await _latest_event(seed, ws.id)
        await session.commit()
    store.path(missing.storage_name).unlink()  # bytes already gone: not an error

    report = await run_pass(db, settings, now=NOW)

    assert store.path(edge.storage_name).exists() and await exists(db, File, edge.id)
    assert await count(db, Chunk, Chunk.source_id == edge.id) == 1
    if delete_files:
        assert not await exists(db, File, old.id) and not await exists(db, File, missing.id)
        assert not store.path(old.storage_name).exists()
        assert await count(db, Chunk, Chunk.source_id == old.id) == 0
        assert await count(db, Event, Event.subject_id == old.id) == 0
        assert report.totals.files == 2
    else:
        assert await exists(db, File, old.id) and store.path(old.storage_name).exists()
        assert await count(db, Chunk, Chunk.source_id == old.id) == 1
        assert report.totals.files == 0


async def test_one_info_line_per_pass_and_only_debug_when_idle(db: Database, make_settings, caplog):
    caplog.set_level(logging.DEBUG, logger="huddle.retention")
    async with db.write_session() as session:
        seed = Seed(session)
        alice = await seed.user()
        ws = await seed.workspace(alice, days=DAYS)
        await seed.message(await seed.channel(ws), alice, CUTOFF - timedelta(days=1))
        await seed.invitation(ws, NOW - timedelta(days=1))
        await session.commit()
    await run_pass(db, make_settings(), now=NOW)
    infos = [
        r for r in caplog.records if r.name == "huddle.retention" and r.levelno >= logging.INFO
    ]
    assert len(infos) == 1
    line = infos[0].getMessage()
    assert "messages=1" in line and "invitations=1" in line
    assert f"workspace {ws.id} ({DAYS} days): messages=1" in line

    caplog.clear()
    await run_pass(db, make_settings(), now=NOW)
    records = [r for r in caplog.records if r.name == "huddle.retention"]
    assert [r.levelno for r in records] == [logging.DEBUG]
    assert "nothing to delete" in records[0].getMessage()
