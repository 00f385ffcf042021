"""The database core: URLs, SQLite pragmas and write locking, types, ids."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text

from huddle.auth.models import User
from huddle.config import Settings
from huddle.core.db import Database, behind_pooler, create_engine, normalize_database_url
from huddle.core.ids import new_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgres://u:p@h/db", "postgresql+asyncpg://u:***@h/db"),
        ("postgresql://u@h:5433/db", "postgresql+asyncpg://u@h:5433/db"),
        (
            "postgresql://u:p@ep-x-pooler.neon.tech/db?sslmode=require&channel_binding=require",
            "postgresql+asyncpg://u:***@ep-x-pooler.neon.tech/db?ssl=require",
        ),
        ("postgresql+asyncpg://h/db?ssl=require", "postgresql+asyncpg://h/db?ssl=require"),
        ("sqlite+aiosqlite:///./huddle.db", "sqlite+aiosqlite:///./huddle.db"),
    ],
)
def test_database_urls_are_normalised_for_asyncpg(raw, expected):
    url, _ = normalize_database_url(raw)
    assert str(url) == expected


def test_pooler_detection_turns_statement_caches_off():
    assert behind_pooler("postgresql://u@ep-cool-pooler.eu.aws.neon.tech/db")
    assert behind_pooler("postgresql://u@db.internal/db?pgbouncer=true")
    assert not behind_pooler("postgresql://u@127.0.0.1/db")
    engine = create_engine(Settings(_env_file=None, database_url="postgresql://u@h-pooler/db"))
    assert engine.url.query["prepared_statement_cache_size"] == "0"
    plain = create_engine(Settings(_env_file=None, database_url="postgresql://u@h/db"))
    assert "prepared_statement_cache_size" not in plain.url.query


def test_uuid7_ids_are_time_ordered():
    ids = [new_id() for _ in range(1000)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000


async def test_sqlite_connections_get_wal_foreign_keys_and_busy_timeout(settings):
    if not settings.is_sqlite:
        pytest.skip("SQLite-specific pragmas (this run is on PostgreSQL)")
    db = Database(settings)
    try:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 5000
    finally:
        await db.dispose()


async def test_concurrent_writers_do_not_fail(settings):
    """Many concurrent read-then-write transactions all commit (BEGIN IMMEDIATE on SQLite)."""
    db = Database(settings)

    async def writer(n: int) -> None:
        async with db.write_session() as session:
            count = await session.scalar(select(func.count()).select_from(User))
            await asyncio.sleep(0.005)  # hold the transaction open across an await
            session.add(
                User(email=f"w{n}@example.com", username=f"writer{n}", full_name=str(count))
            )
            await session.commit()

    try:
        await asyncio.gather(*(writer(n) for n in range(30)))
        async with db.read_session() as session:
            assert await session.scalar(select(func.count()).select_from(User)) == 30
    finally:
        await db.dispose()


async def test_timestamps_round_trip_as_aware_utc(settings):
    db = Database(settings)
    local = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    try:
        async with db.write_session() as session:
            user = User(email="t@example.com", username="timer", created_at=local)
            session.add(user)
            await session.commit()
            user_id = user.id
        async with db.read_session() as session:
            loaded = await session.get(User, user_id)
        assert loaded.created_at == local
        assert loaded.created_at.tzinfo == UTC
        assert loaded.created_at.hour == 1
        assert isinstance(loaded.id, uuid.UUID)
        async with db.write_session() as session:
            session.add(
                User(email="n@example.com", username="naive", created_at=datetime(2026, 1, 1))
            )
            with pytest.raises(Exception, match="naive datetime"):
                await session.commit()
    finally:
        await db.dispose()
