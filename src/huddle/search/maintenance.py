"""``huddle vacuum``: compact the database without breaking full-text search.

On SQLite, ``VACUUM`` may renumber the implicit rowids of ``messages`` and ``tasks``,
which the FTS5 tables (external content, see the chat-and-search migration) point at;
so the indexes are rebuilt from their tables right after. On PostgreSQL it is a plain
``VACUUM (ANALYZE)``; the GIN indexes need nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3

from sqlalchemy import text
from sqlalchemy.engine import make_url

from huddle.config import Settings
from huddle.core.db import create_engine
from huddle.search.service import KINDS


def _vacuum_sqlite(path: str, busy_timeout_s: float) -> None:
    # A plain connection outside any transaction: VACUUM cannot run inside one.
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_s)
    try:
        conn.execute("VACUUM")
        for table in (kind.fts_table for kind in KINDS.values()):
            conn.execute(f"INSERT INTO {table}({table}) VALUES ('rebuild')")  # noqa: S608
    finally:
        conn.close()


async def vacuum(settings: Settings) -> None:
    if settings.is_sqlite:
        path = make_url(settings.database_url).database or ""
        await asyncio.to_thread(_vacuum_sqlite, path, 30.0)
        return
    engine = create_engine(settings)
    try:
        async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            await conn.execute(text("VACUUM (ANALYZE)"))
    finally:
        await engine.dispose()
