"""The startup check that the configured keys open this database's encrypted content.

The first time a server starts with encryption on, it stores a short known value
encrypted with its current key (``system_state`` row ``encryption.key_check``). Every
start after that must open it with one of ``HUDDLE_ENCRYPTION_KEYS``; a finished key
rotation re-encrypts it with the new key, which is what makes the old key removable.
A server without keys refuses to start on a database that holds encrypted content.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.core.crypto import Keyring
from huddle.core.db import Database
from huddle.core.state_models import SystemState

log = logging.getLogger("huddle.encryption")

KEY_CHECK = "encryption.key_check"
_KNOWN = b"huddle encryption key check"


class EncryptionKeyError(Exception):
    """The configured keys cannot serve this database (a startup error)."""


def key_id(key: str) -> str:
    """A short public name for a key (not reversible): tells keys apart in progress rows."""
    return hmac.new(key.encode("ascii"), b"huddle key id", hashlib.sha256).hexdigest()[:12]


async def check_keys(db: Database, keyring: Keyring) -> None:
    """Raise :class:`EncryptionKeyError` when the keys cannot open the stored content;
    record the key check on the first start with encryption on."""
    async with db.read_session() as session:
        row = await session.get(SystemState, KEY_CHECK)
        value = None if row is None else row.value
    if value is None:
        if not keyring.enabled:
            return
        # A write transaction (IMMEDIATE on SQLite): instances starting at the same moment
        # record one check between them.
        async with db.write_session() as session:
            row = await session.get(SystemState, KEY_CHECK)
            if row is None:
                token = keyring.encrypt(_KNOWN).decode("ascii")
                session.add(SystemState(name=KEY_CHECK, value=token))
                try:
                    await session.commit()
                    return
                except IntegrityError:  # PostgreSQL: another instance inserted it first
                    await session.rollback()
                    row = await session.get(SystemState, KEY_CHECK)
                    assert row is not None
            value = row.value
    if not keyring.enabled:
        raise EncryptionKeyError(
            "this database holds encrypted content but HUDDLE_ENCRYPTION_KEYS is not "
            "set: start the server with the keys it was encrypted with"
        )
    if keyring.key_index(value.encode("ascii")) is None:
        raise EncryptionKeyError(
            "none of the keys in HUDDLE_ENCRYPTION_KEYS opens this database's encrypted "
            "content: it was encrypted with another key. Put that key back (after the "
            "new one, which then encrypts) and, to retire it, run `huddle encryption "
            "rotate` before removing it"
        )


async def record_current_key(session: AsyncSession, keyring: Keyring) -> None:
    """After a finished rotation: the key check now needs the current key."""
    token = keyring.encrypt(_KNOWN).decode("ascii")
    row = await session.get(SystemState, KEY_CHECK)
    if row is None:
        session.add(SystemState(name=KEY_CHECK, value=token))
    else:
        row.value = token


class KeyGate:
    """The startup check, when the database did not answer at startup.

    The server then starts (``/ready`` says the database is unreachable) and checks the
    keys as soon as the database answers; until then, and for good if the keys turn out
    wrong, every unit of work is refused with 503 and the reason (never run with keys
    that cannot open the data)."""

    def __init__(self, db: Database, keyring: Keyring, retry: float = 2.0) -> None:
        self.problem: str | None = None
        self._db, self._keyring, self._retry = db, keyring, retry
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Check now; a database error defers the check to a background task."""
        try:
            await check_keys(self._db, self._keyring)
        except EncryptionKeyError:
            raise
        except Exception as exc:  # unreachable database: checked once it answers
            log.warning("encryption keys not checked yet: the database did not answer (%r)", exc)
            self.problem = "The server is waiting for the database to check its encryption keys"
            self._task = asyncio.create_task(self._retry_until_checked(), name="key-check")

    async def _retry_until_checked(self) -> None:
        while True:
            await asyncio.sleep(self._retry)
            try:
                await check_keys(self._db, self._keyring)
            except EncryptionKeyError as exc:
                log.critical("refusing every request: %s", exc)
                self.problem = f"Encryption keys refused: {exc}"
                return
            except Exception as exc:  # still unreachable
                log.debug("encryption key check: database still unreachable (%r)", exc)
                continue
            log.info("encryption keys checked")
            self.problem = None
            return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
