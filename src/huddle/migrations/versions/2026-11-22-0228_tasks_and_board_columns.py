"""tasks and board columns

Revision ID: cdc9876b95e9
Revises: f983de5e1de7
Create Date: 2026-11-22 02:28:06.256573+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from huddle.core.ids import new_id
from huddle.core.time import utcnow

revision: str = "cdc9876b95e9"
down_revision: str | None = "f983de5e1de7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "board_columns",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=50), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("is_done", sa.Boolean(), nullable=False),
        sa.Column("task_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_board_columns_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_board_columns")),
        sa.UniqueConstraint("project_id", "key", name=op.f("uq_board_columns_project_id_key")),
    )
    with op.batch_alter_table("board_columns", schema=None) as batch_op:
        batch_op.create_index(
            "ix_board_columns_project_position", ["project_id", "position"], unique=False
        )

    op.create_table(
        "tasks",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("column_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "priority",
            sa.Enum(
                "none",
                "low",
                "medium",
                "high",
                "urgent",
                name="priority",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("assignee_id", sa.Uuid(), nullable=True),
        sa.Column("creator_id", sa.Uuid(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column(
            "position",
            sa.String(length=64).with_variant(sa.String(length=64, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignee_id"],
            ["users.id"],
            name=op.f("fk_tasks_assignee_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["column_id"],
            ["board_columns.id"],
            name=op.f("fk_tasks_column_id_board_columns"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["creator_id"],
            ["users.id"],
            name=op.f("fk_tasks_creator_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_tasks_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_assignee_id", ["assignee_id", "id"], unique=False)
        batch_op.create_index("ix_tasks_column_position", ["column_id", "position"], unique=False)
        batch_op.create_index("ix_tasks_project_due_date", ["project_id", "due_date"], unique=False)
        batch_op.create_index("ix_tasks_project_id", ["project_id", "id"], unique=False)

    # Projects created before boards existed get the default columns.
    projects = sa.table("projects", sa.column("id", sa.Uuid()))
    columns = sa.table(
        "board_columns",
        sa.column("id", sa.Uuid()),
        sa.column("project_id", sa.Uuid()),
        sa.column("name", sa.String()),
        sa.column("key", sa.String()),
        sa.column("position", sa.Integer()),
        sa.column("is_done", sa.Boolean()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    defaults = (
        ("To do", "todo", False),
        ("In progress", "in_progress", False),
        ("Done", "done", True),
    )
    now = utcnow() if op.get_bind().dialect.name != "sqlite" else utcnow().replace(tzinfo=None)
    rows = [
        {
            "id": new_id(),
            "project_id": pid,
            "name": name,
            "key": key,
            "position": n,
            "is_done": done,
            "created_at": now,
        }
        for (pid,) in op.get_bind().execute(sa.select(projects.c.id))
        for n, (name, key, done) in enumerate(defaults)
    ]
    if rows:
        op.bulk_insert(columns, rows)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_project_id")
        batch_op.drop_index("ix_tasks_project_due_date")
        batch_op.drop_index("ix_tasks_column_position")
        batch_op.drop_index("ix_tasks_assignee_id")

    op.drop_table("tasks")
    with op.batch_alter_table("board_columns", schema=None) as batch_op:
        batch_op.drop_index("ix_board_columns_project_position")

    op.drop_table("board_columns")
