"""Running Alembic from code: ``huddle migrate``, ``huddle serve`` and the tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from huddle.config import Settings
from huddle.core.db import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply pending migrations (blocking; call it outside an event loop)."""
    command.upgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def pending(settings: Settings) -> tuple[str | None, str | None]:
    """(current, head) revisions of the configured database."""
    engine = create_engine(settings)
    try:
        return await current_revision(engine), head_revision()
    finally:
        await engine.dispose()


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """What autogenerate compares: everything but dialect-specific DDL written by hand in
    the revisions: full-text search (SQLite FTS5 tables and their shadow tables,
    PostgreSQL GIN expression indexes named ``*_search``) and pgvector's column and index
    on ``chunks``, which exist only where the server has the extension."""
    if type_ == "table" and name and "_fts" in name:
        return False
    if type_ == "column" and name == "embedding_vec":
        return False
    return not (type_ == "index" and name and name.endswith(("_search", "_hnsw")))
