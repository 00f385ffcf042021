"""The schema only changes through Alembic: models and migrations must agree."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from huddle.core.db import Database
from huddle.core.migrate import current_revision, head_revision
from huddle.registry import metadata


async def test_models_and_migrations_agree(settings):
    db = Database(settings)
    try:
        assert await current_revision(db.engine) == head_revision()
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                )
            )
        assert diff == [], f"models differ from migrations; add a revision: {diff}"
    finally:
        await db.dispose()


def test_downgrade_to_base_and_back(database_url):
    """Every revision's downgrade works (run last against the emptied run database)."""
    from alembic import command

    from huddle.core.migrate import alembic_config, upgrade

    command.downgrade(alembic_config(database_url), "base")
    upgrade(database_url)
