"""``huddle encryption rotate``: every encrypted value and file under the current key.

Safe while serving. Rows are taken in primary-key order, ``HUDDLE_ENCRYPTION_BATCH`` at
a time, each batch in its own short transaction that locks its rows (``FOR UPDATE`` on
PostgreSQL; SQLite's single writer) so that an edit made at the same moment is never
overwritten with an older value; the position reached is saved in the same transaction
(``system_state`` rows ``encryption.rotate:<table>``), so an interrupted rotation resumes
where it stopped. Plaintext written before encryption was turned on is encrypted.
Files are rewritten atomically (a reader sees the old bytes or the new ones).

A pass that changed something is followed by another, until one finds everything on the
current key: rows another instance wrote with an older key meanwhile are caught. Only
then is the key check moved to the current key (see :mod:`huddle.encryption.keycheck`),
which is what lets a server start without the old key.

The columns come from the models: every column of type EncryptedText, EncryptedJSON or
EncryptedBytes, so a new encrypted column is rotated without touching this module.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    Table,
    bindparam,
    delete,
    func,
    select,
    text,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.core.crypto import EncryptedBytes, EncryptedJSON, EncryptedText, Keyring, is_sealed
from huddle.core.db import Database
from huddle.core.state_models import SystemState
from huddle.documents.models import File
from huddle.documents.storage import FileStore
from huddle.encryption.keycheck import key_id, record_current_key
from huddle.registry import metadata

log = logging.getLogger("huddle.encryption")

CURSOR_PREFIX = "encryption.rotate:"
FILES = "uploads"
MAX_PASSES = 5
ENCRYPTED_TYPES = (EncryptedText, EncryptedJSON, EncryptedBytes)


@dataclass(frozen=True)
class Target:
    """One table's encrypted columns."""

    table: Table
    columns: tuple[Column[Any], ...]

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def key(self) -> tuple[Column[Any], ...]:
        return tuple(self.table.primary_key.columns)


def targets() -> list[Target]:
    found = []
    for table in metadata.sorted_tables:
        columns = tuple(c for c in table.columns if isinstance(c.type, ENCRYPTED_TYPES))
        if columns:
            found.append(Target(table, columns))
    return found


@dataclass
class TableReport:
    rows: int = 0  # rows looked at
    changed: int = 0  # values re-encrypted (or encrypted for the first time)


@dataclass
class RotationReport:
    passes: int = 0
    tables: dict[str, TableReport] = field(default_factory=dict)
    files_missing: int = 0
    finished: bool = False

    def table(self, name: str) -> TableReport:
        return self.tables.setdefault(name, TableReport())

    @property
    def changed(self) -> int:
        return sum(report.changed for report in self.tables.values())


Advance = Callable[[int], Any]  # called with the rows each step went through


def _raw(column: Column[Any], dialect: Any) -> Any:
    """The column's storage type, so values are read and written as stored."""
    return column.type.load_dialect_impl(dialect)  # type: ignore[attr-defined]


def _raw_select(query: Any, target: Target, dialect: Any) -> Any:
    """``query`` with the encrypted columns read through their storage types."""
    columns = [*target.key] + [
        type_coerce(c, _raw(c, dialect)).label(c.name) for c in target.columns
    ]
    return query.with_only_columns(*columns)


def _encode_key(values: Sequence[Any]) -> list[Any]:
    return [str(v) if isinstance(v, uuid.UUID) else v for v in values]


def _decode_key(target: Target, values: list[Any]) -> list[Any]:
    decoded = []
    for column, value in zip(target.key, values, strict=True):
        python_type = column.type.python_type
        decoded.append(uuid.UUID(value) if python_type is uuid.UUID else python_type(value))
    return decoded


class Rotation:
    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        store: FileStore,
        *,
        batch: int = 500,
        progress: Callable[[str, int], Advance] | None = None,
    ) -> None:
        if not keyring.enabled:
            raise ValueError("key rotation needs HUDDLE_ENCRYPTION_KEYS")
        self.db = db
        self.keyring = keyring
        self.store = store
        self.batch = batch
        self.kid = key_id(keyring.keys[0])
        self.progress = progress  # (label, total) → a callable advanced with row counts
        self.postgres = db.engine.dialect.name == "postgresql"

    # --- the saved position --------------------------------------------------------------

    async def _cursor(self, session: AsyncSession, name: str) -> dict[str, Any] | None:
        row = await session.get(SystemState, CURSOR_PREFIX + name)
        if row is None:
            return None
        state: dict[str, Any] = json.loads(row.value)
        return state if state.get("key") == self.kid else None

    async def _save(self, session: AsyncSession, name: str, state: dict[str, Any]) -> None:
        state = {"key": self.kid, **state}
        row = await session.get(SystemState, CURSOR_PREFIX + name)
        if row is None:
            session.add(SystemState(name=CURSOR_PREFIX + name, value=json.dumps(state)))
        else:
            row.value = json.dumps(state)

    # --- tables ---------------------------------------------------------------------------

    async def _count(self, target: Target) -> int:
        async with self.db.read_session() as session:
            return int(await session.scalar(select(func.count()).select_from(target.table)) or 0)

    async def _table(self, target: Target, report: TableReport) -> None:
        async with self.db.read_session() as session:
            state = await self._cursor(session, target.name)
        if state and state.get("done"):
            report.changed += int(state.get("changed", 0))
            return
        after = _decode_key(target, state["after"]) if state and state.get("after") else None
        changed_before = int(state.get("changed", 0)) if state else 0
        report.changed += changed_before
        advance = self.progress(target.name, await self._count(target)) if self.progress else None
        while True:
            async with self.db.write_session() as session:
                keys = target.key
                query = select(*keys, *target.columns).order_by(*keys).limit(self.batch)
                if after is not None:
                    query = query.where(tuple_(*keys) > tuple_(*after))
                if self.postgres:
                    query = query.with_for_update()
                # Read the stored values, not what the column types make of them.
                dialect = session.get_bind().dialect
                rows = (await session.execute(_raw_select(query, target, dialect))).all()
                if not rows:
                    await self._save(
                        session, target.name, {"done": True, "changed": report.changed}
                    )
                    await session.commit()
                    return
                # The rows to change, grouped by which columns change: one executemany
                # UPDATE per group.
                groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
                for row in rows:
                    values = row._mapping
                    new = {}
                    for column in target.columns:
                        stored = values[column.name]
                        if stored is None:
                            continue
                        resealed = self.keyring.reseal(stored)
                        if resealed is not None:
                            new[column.name] = resealed
                    if new:
                        params = {f"k_{k.name}": values[k.name] for k in keys}
                        params.update({f"v_{name}": value for name, value in new.items()})
                        groups.setdefault(tuple(sorted(new)), []).append(params)
                for names, params_list in groups.items():
                    stmt = (
                        update(target.table)
                        .where(*(k == bindparam(f"k_{k.name}", type_=k.type) for k in keys))
                        .values(
                            {
                                name: bindparam(
                                    f"v_{name}", type_=_raw(target.table.c[name], dialect)
                                )
                                for name in names
                            }
                        )
                    )
                    await session.execute(stmt, params_list)
                    report.changed += len(params_list)
                report.rows += len(rows)
                after = [rows[-1]._mapping[k.name] for k in keys]
                await self._save(
                    session, target.name, {"after": _encode_key(after), "changed": report.changed}
                )
                await session.commit()
            if advance is not None:
                advance(len(rows))

    # --- files ----------------------------------------------------------------------------

    async def _files(self, report: TableReport, totals: RotationReport) -> None:
        async with self.db.read_session() as session:
            state = await self._cursor(session, FILES)
            total = int(await session.scalar(select(func.count()).select_from(File)) or 0)
        if state and state.get("done"):
            report.changed += int(state.get("changed", 0))
            return
        after = uuid.UUID(state["after"]) if state and state.get("after") else None
        report.changed += int(state.get("changed", 0)) if state else 0
        advance = self.progress(FILES, total) if self.progress else None
        while True:
            async with self.db.read_session() as session:
                query = select(File.id, File.storage_name).order_by(File.id).limit(self.batch)
                if after is not None:
                    query = query.where(File.id > after)
                rows = (await session.execute(query)).all()
            for file_id, name in rows:
                try:
                    stored = self.store.read_stored(name)
                except FileNotFoundError:
                    totals.files_missing += 1
                    continue
                resealed = self.keyring.reseal(stored)
                if resealed is not None:
                    self.store.replace_stored(name, resealed)
                    report.changed += 1
                after = file_id
            report.rows += len(rows)
            async with self.db.write_session() as session:
                if rows:
                    state = {"after": str(after), "changed": report.changed}
                else:
                    state = {"done": True, "changed": report.changed}
                await self._save(session, FILES, state)
                await session.commit()
            if advance is not None and rows:
                advance(len(rows))
            if not rows:
                return

    # --- the whole rotation ---------------------------------------------------------------

    async def _clear_cursors(self) -> None:
        async with self.db.write_session() as session:
            await session.execute(
                delete(SystemState).where(SystemState.name.startswith(CURSOR_PREFIX))
            )
            await session.commit()

    async def run(self) -> RotationReport:
        report = RotationReport()
        for _ in range(MAX_PASSES):
            report.passes += 1
            this_pass = RotationReport()
            for target in targets():
                await self._table(target, this_pass.table(target.name))
            await self._files(this_pass.table(FILES), this_pass)
            for name, table in this_pass.tables.items():
                total = report.table(name)
                total.rows += table.rows
                total.changed += table.changed
            report.files_missing = this_pass.files_missing
            await self._clear_cursors()
            if this_pass.changed == 0:
                break
        else:
            log.warning(
                "key rotation: values still changed after %d passes; another instance "
                "may be writing with an older key (give every instance the new key first)",
                MAX_PASSES,
            )
            return report
        async with self.db.write_session() as session:
            await record_current_key(session, self.keyring)
            await session.commit()
        if not self.postgres:
            await self._optimize_sqlite_fts()
        report.finished = True
        log.info(
            "key rotation finished in %d passes: %d values re-encrypted",
            report.passes,
            report.changed,
        )
        return report

    async def _optimize_sqlite_fts(self) -> None:
        """Merge FTS5 segments, so terms of replaced plaintext leave the index's pages."""
        from huddle.search.service import KINDS

        async with self.db.write_session() as session:
            for table in (kind.fts_table for kind in KINDS.values()):
                await session.execute(text(f"INSERT INTO {table}({table}) VALUES ('optimize')"))  # noqa: S608
            await session.commit()


@dataclass
class StatusReport:
    """Values per table: in clear, under the current key, under an older key."""

    clear: dict[str, int] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    older: dict[str, int] = field(default_factory=dict)


async def status(
    db: Database, keyring: Keyring, store: FileStore, batch: int = 2000
) -> StatusReport:
    """Count every stored value by how it is stored (a full read: for audits and tests)."""
    report = StatusReport()

    def count(name: str, stored: Any) -> None:
        if stored is None:
            return
        if not is_sealed(stored):
            bucket = report.clear
        elif keyring.enabled and keyring.reseal(stored) is None:
            bucket = report.current
        else:
            bucket = report.older
        bucket[name] = bucket.get(name, 0) + 1

    for target in targets():
        async with db.read_session() as session:
            dialect = session.get_bind().dialect
            query = _raw_select(select(*target.key), target, dialect)
            result = await session.stream(query.execution_options(yield_per=batch))
            async for row in result:
                for column in target.columns:
                    count(target.name, row._mapping[column.name])
    async with db.read_session() as session:
        names = (await session.scalars(select(File.storage_name))).all()
    for name in names:
        try:
            count(FILES, store.read_stored(name))
        except FileNotFoundError:
            continue
    return report
