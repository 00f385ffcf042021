"""full-text search skips encrypted content; AI conversation titles as text

With encryption at rest on, messages, document texts and file texts are stored as Fernet
tokens. The full-text indexes must not index those (random tokens would make false
matches, and a large encrypted document overflows PostgreSQL's tsvector limit), so they
index an empty string in their place:

- PostgreSQL: the GIN expression indexes use ``CASE WHEN col LIKE 'gAAAAA%' THEN '' ...``
  (the same expression as :mod:`huddle.search.service`);
- SQLite: the FTS5 tables read their external content through views that apply the same
  rule (so 'rebuild' and snippets see it too), and the triggers index the same values.

AI conversation titles (the first words of the first message) are encrypted too, and an
encrypted title outgrows VARCHAR(200).

Revision ID: 3c1e9a7d2b40
Revises: f03d4ad5557c
Create Date: 2026-12-02 18:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3c1e9a7d2b40"
down_revision: str | None = "f03d4ad5557c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TOKENIZE = "tokenize='porter unicode61 remove_diacritics 2'"
# (FTS5 table, source table, columns, encrypted columns). Keep these in step with
# huddle/search/service.py.
_SQLITE = [
    ("messages_fts", "messages", ("content",), ("content",)),
    ("documents_fts", "documents", ("title", "content"), ("content",)),
    ("files_fts", "files", ("filename", "text"), ("text",)),
]
_PG_OLD = {
    "ix_messages_search": ("messages", "to_tsvector('english', content)"),
    "ix_documents_search": (
        "documents",
        "to_tsvector('english', coalesce(title, '') || ' ' || coalesce(content, ''))",
    ),
    "ix_files_search": (
        "files",
        "to_tsvector('english', coalesce(filename, '') || ' ' || coalesce(text, ''))",
    ),
}


def _clear(column: str) -> str:
    return f"CASE WHEN {column} LIKE 'gAAAAA%' THEN '' ELSE coalesce({column}, '') END"


_PG_NEW = {
    "ix_messages_search": ("messages", f"to_tsvector('english', {_clear('content')})"),
    "ix_documents_search": (
        "documents",
        f"to_tsvector('english', coalesce(title, '') || ' ' || {_clear('content')})",
    ),
    "ix_files_search": (
        "files",
        f"to_tsvector('english', coalesce(filename, '') || ' ' || {_clear('text')})",
    ),
}


def _sqlite_value(prefix: str, column: str, encrypted: tuple[str, ...]) -> str:
    ref = f"{prefix}{column}"
    if column in encrypted:  # GLOB: case-sensitive, unlike SQLite's LIKE
        return f"CASE WHEN {ref} GLOB 'gAAAAA*' THEN '' ELSE {ref} END"
    return ref


def _sqlite_statements(
    fts: str, table: str, columns: tuple[str, ...], encrypted: tuple[str, ...], *, views: bool
) -> list[str]:
    # Names below are this module's constants, never input.
    cols = ", ".join(columns)
    enc = encrypted if views else ()
    new = ", ".join(_sqlite_value("new.", c, enc) for c in columns)
    old = ", ".join(_sqlite_value("old.", c, enc) for c in columns)
    delete = f"INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.rowid, {old});"  # noqa: S608
    insert = f"INSERT INTO {fts}(rowid, {cols}) VALUES (new.rowid, {new});"  # noqa: S608
    statements = []
    if views:
        source = f"{fts}_source"
        selected = ", ".join(f"{_sqlite_value('', c, enc)} AS {c}" for c in columns)
        statements += [
            f"CREATE VIEW {source} AS SELECT rowid AS rid, {selected} FROM {table}",  # noqa: S608
            f"CREATE VIRTUAL TABLE {fts} USING fts5({cols}, content='{source}', "
            f"content_rowid='rid', {_TOKENIZE})",
        ]
    else:
        statements.append(
            f"CREATE VIRTUAL TABLE {fts} USING fts5({cols}, content='{table}', {_TOKENIZE})"
        )
    return [
        *statements,
        f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN {insert} END",
        f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN {delete} END",
        f"CREATE TRIGGER {fts}_au AFTER UPDATE OF {cols} ON {table} BEGIN {delete} {insert} END",
        f"INSERT INTO {fts}({fts}) VALUES ('rebuild')",  # noqa: S608
    ]


def _sqlite_drop(fts: str) -> None:
    for suffix in ("ai", "ad", "au"):
        op.execute(f"DROP TRIGGER IF EXISTS {fts}_{suffix}")
    op.execute(f"DROP TABLE IF EXISTS {fts}")
    op.execute(f"DROP VIEW IF EXISTS {fts}_source")


def _search(*, views: bool) -> None:
    if op.get_bind().dialect.name == "sqlite":
        for fts, table, columns, encrypted in _SQLITE:
            _sqlite_drop(fts)
            for statement in _sqlite_statements(fts, table, columns, encrypted, views=views):
                op.execute(statement)
    else:
        for name, (table, expression) in (_PG_NEW if views else _PG_OLD).items():
            op.execute(f"DROP INDEX IF EXISTS {name}")
            op.execute(f"CREATE INDEX {name} ON {table} USING gin (({expression}))")


def upgrade() -> None:
    _search(views=True)
    with op.batch_alter_table("ai_conversations", schema=None) as batch_op:
        batch_op.alter_column(
            "title", existing_type=sa.String(length=200), type_=sa.Text(), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ai_conversations", schema=None) as batch_op:
        batch_op.alter_column(
            "title", existing_type=sa.Text(), type_=sa.String(length=200), existing_nullable=False
        )
    _search(views=False)
