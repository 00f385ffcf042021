"""Running passes: one at a time (both databases, across processes), the background job the
app's lifespan starts, and ``huddle retention run``."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from huddle.app import create_app
from huddle.core.db import Database
from huddle.core.state_models import SystemState
from huddle.core.time import utcnow
from huddle.retention import service
from huddle.retention.lock import RETENTION_LOCK
from huddle.retention.runner import RetentionJob
from huddle.retention.service import LAST_RUN, last_pass, run_pass
from huddle.workspaces.models import Invitation
from tests.e2e.server import huddle_env, run_cli
from tests.retention.conftest import NOW
from tests.retention.seed import Seed, exists


async def _expired_invitation(db: Database, when=NOW) -> Invitation:
    async with db.write_session() as session:
        seed = Seed(session)
        invitation = await seed.invitation(
            await seed.workspace(await seed.user()), when - timedelta(days=1)
        )
        await session.commit()
        return invitation


async def _wait_for(condition: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


class OtherProcessLock:
    """Holds the lock another process's pass would hold, the way that process would."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: Any = None
        self._fd: int | None = None

    async def __aenter__(self) -> OtherProcessLock:
        if self.db.engine.dialect.name == "postgresql":
            self._conn = await self.db.engine.connect()
            await self._conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": RETENTION_LOCK})
            await self._conn.commit()
        else:
            path = self.db.engine.url.database + ".retention.lock"
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            await self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RETENTION_LOCK})
            await self._conn.close()
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)

    async def free(self) -> bool:
        """Could another process take the lock right now?"""
        if self.db.engine.dialect.name == "postgresql":
            async with self.db.engine.connect() as conn:
                got = (
                    await conn.execute(
                        text("SELECT pg_try_advisory_lock(:k)"), {"k": RETENTION_LOCK}
                    )
                ).scalar()
                if got:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RETENTION_LOCK})
                return bool(got)
        fd = os.open(self.db.engine.url.database + ".retention.lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True


# --- one runner at a time -------------------------------------------------------------------


async def test_a_pass_skips_while_another_process_holds_the_lock(db, make_settings):
    """PostgreSQL: pg_try_advisory_lock; SQLite: flock on <database>.retention.lock."""
    invitation = await _expired_invitation(db)
    async with OtherProcessLock(db):
        skipped = await run_pass(db, make_settings(), now=NOW)
        assert skipped.skipped and not skipped.totals
        assert await exists(db, Invitation, invitation.id)
    done = await run_pass(db, make_settings(), now=NOW)
    assert not done.skipped and done.site.invitations == 1
    assert not await exists(db, Invitation, invitation.id)


async def test_the_lock_is_held_for_the_whole_pass_and_released_after(
    db, make_settings, monkeypatch
):
    await _expired_invitation(db)
    probe = OtherProcessLock(db)
    seen: list[bool] = []
    purge = service._purge

    async def watched(*args: Any) -> None:
        seen.append(await probe.free())
        await purge(*args)
        seen.append(await probe.free())

    monkeypatch.setattr(service, "_purge", watched)
    report = await run_pass(db, make_settings(), now=NOW)
    assert seen == [False, False] and report.site.invitations == 1
    assert await probe.free()  # released


async def test_two_passes_at_once_in_one_process_run_once(db, make_settings):
    await _expired_invitation(db)
    first, second = await asyncio.gather(
        run_pass(db, make_settings(), now=NOW), run_pass(db, make_settings(), now=NOW)
    )
    assert (first.skipped, second.skipped) == (False, True)
    assert first.site.invitations == 1 and not second.totals


async def test_a_completed_pass_is_recorded_and_sets_the_schedule(db, make_settings):
    assert await last_pass(db) is None
    await run_pass(db, make_settings(), now=NOW)
    assert await last_pass(db) == NOW
    job = RetentionJob(db, make_settings(retention_interval=3600))
    async with db.write_session() as session:
        row = await session.get(SystemState, LAST_RUN)
        row.value = (utcnow() - timedelta(seconds=600)).isoformat()
        await session.commit()
    assert 2990 < await job._seconds_until_due() <= 3000
    async with db.write_session() as session:
        row = await session.get(SystemState, LAST_RUN)
        row.value = (utcnow() - timedelta(hours=2)).isoformat()
        await session.commit()
    assert await job._seconds_until_due() < 0  # overdue: runs at once
    async with db.write_session() as session:
        row = await session.get(SystemState, LAST_RUN)
        row.value = (utcnow() + timedelta(hours=5)).isoformat()  # a clock ahead of ours
        await session.commit()
    assert await job._seconds_until_due() <= 3600


# --- the background job ---------------------------------------------------------------------


async def test_the_lifespan_runs_passes_in_the_background(make_settings, start_app):
    settings = make_settings(retention_job=True, retention_interval=0.2)
    app = create_app(settings)
    seeding = Database(settings)
    try:
        first = await _expired_invitation(seeding, utcnow())
        await start_app(app)
        assert isinstance(app.state.retention, RetentionJob)
        await _wait_for(lambda: _gone(seeding, first))  # the first pass runs at startup
        second = await _expired_invitation(seeding, utcnow())
        await _wait_for(lambda: _gone(seeding, second))  # and then every interval
        assert await last_pass(seeding) is not None
    finally:
        await seeding.dispose()


async def _gone(db: Database, invitation: Invitation) -> bool:
    return not await exists(db, Invitation, invitation.id)


async def test_the_job_stops_with_the_app_and_can_be_turned_off(make_settings, start_app):
    app = create_app(make_settings(retention_job=True, retention_interval=3600))
    await start_app(app)
    job = app.state.retention
    await _wait_for(lambda: _recorded(app.state.db))
    task = job._task
    assert task is not None and not task.done()
    await job.stop()
    assert task.done() and job._task is None

    off = create_app(make_settings(retention_job=False))
    await start_app(off)
    assert off.state.retention is None


async def _recorded(db: Database) -> bool:
    return await last_pass(db) is not None


# --- huddle retention run -------------------------------------------------------------------


def test_cli_runs_one_pass_and_prints_what_it_did(tmp_path, database_url):
    settings_env = {"database_url": database_url, "data_retention_days": "30"}
    env = huddle_env(tmp_path, **settings_env)
    url = database_url

    async def seed() -> tuple[Any, Any]:
        from huddle.config import Settings

        db = Database(Settings(_env_file=None, database_url=url, secret_key="x" * 32))
        try:
            async with db.write_session() as session:
                s = Seed(session)
                alice = await s.user()
                ws = await s.workspace(alice, days=7)
                channel = await s.channel(ws)
                old = await s.message(channel, alice, utcnow() - timedelta(days=8))
                new = await s.message(channel, alice, utcnow() - timedelta(days=6))
                await s.invitation(ws, utcnow() - timedelta(days=1))
                await session.commit()
                return ws.id, (old.id, new.id)
        finally:
            await db.dispose()

    workspace_id, (old_id, new_id) = asyncio.run(seed())
    result = run_cli("retention", "run", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "huddle: retention: deleted: messages=1 invitations=1" in lines
    assert f"huddle: retention: workspace {workspace_id} (7 days): messages=1" in lines
    assert "huddle: retention: site: invitations=1" in lines

    async def left() -> tuple[bool, bool]:
        from huddle.chat.models import Message
        from huddle.config import Settings

        db = Database(Settings(_env_file=None, database_url=url, secret_key="x" * 32))
        try:
            return await exists(db, Message, old_id), await exists(db, Message, new_id)
        finally:
            await db.dispose()

    assert asyncio.run(left()) == (False, True)
    again = run_cli("retention", "run", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "huddle: retention: deleted: nothing" in again.stdout


def test_cli_says_so_when_another_pass_is_running(tmp_path, database_url):
    env = huddle_env(tmp_path, database_url=database_url)

    async def held() -> Any:
        from huddle.config import Settings

        db = Database(Settings(_env_file=None, database_url=database_url, secret_key="x" * 32))
        try:
            async with OtherProcessLock(db):
                return await asyncio.to_thread(run_cli, "retention", "run", env=env, cwd=tmp_path)
        finally:
            await db.dispose()

    result = asyncio.run(held())
    assert result.returncode == 2
    assert "another retention pass is running" in result.stderr
