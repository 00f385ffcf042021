"""The schema only changes through Alembic: models and migrations must agree."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from huddle.core.db import Database
from huddle.core.migrate import current_revision, head_revision, include_object
from huddle.registry import metadata


async def test_models_and_migrations_agree(settings):
    db = Database(settings)
    try:
        assert await current_revision(db.engine) == head_revision()
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync, opts={"compare_type": True, "include_object": include_object}
                    ),
                    metadata,
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


def test_existing_projects_get_default_columns_on_upgrade(database_url):
    """The boards migration gives projects created before it the three default columns."""
    import asyncio
    import uuid

    from alembic import command
    from sqlalchemy import text

    from huddle.config import Settings
    from huddle.core.db import create_engine
    from huddle.core.migrate import alembic_config, upgrade

    command.downgrade(alembic_config(database_url), "f983de5e1de7")
    workspace_id, project_id = uuid.uuid4(), uuid.uuid4()

    async def run(statements):
        engine = create_engine(Settings(_env_file=None, database_url=database_url))
        try:
            async with engine.begin() as conn:
                results = [await conn.execute(text(sql), params) for sql, params in statements]
                return [r.all() if r.returns_rows else None for r in results]
        finally:
            await engine.dispose()

    is_sqlite = database_url.startswith("sqlite")
    ws = workspace_id.hex if is_sqlite else workspace_id
    pid = project_id.hex if is_sqlite else project_id
    asyncio.run(
        run(
            [
                (
                    "INSERT INTO workspaces (id, name, slug, created_at)"
                    " VALUES (:id, 'Old', 'old', CURRENT_TIMESTAMP)",
                    {"id": ws},
                ),
                (
                    "INSERT INTO projects (id, workspace_id, name, description, is_private,"
                    " created_at, updated_at) VALUES (:id, :ws, 'Legacy', '', false,"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                    {"id": pid, "ws": ws},
                ),
            ]
        )
    )
    upgrade(database_url)
    rows = asyncio.run(
        run(
            [
                (
                    "SELECT key, position, is_done FROM board_columns"
                    " WHERE project_id = :p ORDER BY position",
                    {"p": pid},
                )
            ]
        )
    )[0]
    assert [tuple(r) for r in rows] == [
        ("todo", 0, False),
        ("in_progress", 1, False),
        ("done", 2, True),
    ]
    asyncio.run(
        run(
            [
                ("DELETE FROM board_columns", {}),
                ("DELETE FROM projects", {}),
                ("DELETE FROM workspaces", {}),
            ]
        )
    )


def test_upgrades_that_rebuild_tables_keep_their_children(database_url):
    """SQLite rebuilds a table to change a column (batch mode); with foreign keys on,
    dropping the old table would cascade into its children. Conversations (title became
    TEXT) keep their messages, projects (client_id added) keep their tasks' parents."""
    import asyncio
    import uuid

    from alembic import command
    from sqlalchemy import text

    from huddle.config import Settings
    from huddle.core.db import create_engine
    from huddle.core.migrate import alembic_config, upgrade

    command.downgrade(alembic_config(database_url), "6714a297a2b0")
    is_sqlite = database_url.startswith("sqlite")
    ids = {name: uuid.uuid4() for name in ("user", "ws", "project", "conv", "msg")}
    params = {k: (v.hex if is_sqlite else v) for k, v in ids.items()}

    async def run(statements):
        engine = create_engine(Settings(_env_file=None, database_url=database_url))
        try:
            async with engine.begin() as conn:
                return [
                    (await conn.execute(text(sql), params)).all()
                    if sql.startswith("SELECT")
                    else await conn.execute(text(sql), params)
                    for sql in statements
                ]
        finally:
            await engine.dispose()

    asyncio.run(
        run(
            [
                "INSERT INTO users (id, email, username, full_name, is_active, is_superuser,"
                " created_at) VALUES (:user, 'old@example.com', 'old', '', true, false,"
                " CURRENT_TIMESTAMP)",
                "INSERT INTO workspaces (id, name, slug, created_at)"
                " VALUES (:ws, 'Old', 'old', CURRENT_TIMESTAMP)",
                "INSERT INTO projects (id, workspace_id, name, description, is_private,"
                " created_at, updated_at) VALUES (:project, :ws, 'Legacy', '', false,"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                "INSERT INTO ai_conversations (id, owner_id, workspace_id, title, updated_at,"
                " created_at) VALUES (:conv, :user, :ws, 'Old talk', CURRENT_TIMESTAMP,"
                " CURRENT_TIMESTAMP)",
                "INSERT INTO ai_messages (id, conversation_id, position, role, content,"
                " created_at) VALUES (:msg, :conv, 0, 'user', 'hello', CURRENT_TIMESTAMP)",
            ]
        )
    )
    upgrade(database_url)
    counts = asyncio.run(
        run(
            [
                "SELECT count(*) FROM ai_messages WHERE conversation_id = :conv",
                "SELECT client_id FROM projects WHERE id = :project",
            ]
        )
    )
    assert counts[0] == [(1,)]
    assert counts[1] == [(None,)]
