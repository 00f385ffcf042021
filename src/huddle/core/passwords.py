"""Argon2id password hashing, run off the event loop in a bounded thread pool.

Hashing deliberately burns CPU for tens of milliseconds; on the event loop it would
stall every other request. The pool bounds how many hashes run at once (by default one
per CPU), so a burst of logins queues instead of starving the server.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from huddle.config import Settings


class PasswordHasher:
    def __init__(self, settings: Settings) -> None:
        self._hash = PasswordHash(
            (
                Argon2Hasher(
                    time_cost=settings.argon2_time_cost,
                    memory_cost=settings.argon2_memory_kib,
                    parallelism=settings.argon2_parallelism,
                ),
            )
        )
        workers = settings.password_hash_workers or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pwhash")
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._hash.hash, password)

    async def verify(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        """Check ``password``; returns (valid, new hash if the parameters changed).

        With no stored hash (an account that logs in elsewhere, or none at all) a dummy
        hash is checked anyway, so timing does not tell which accounts exist.
        """
        loop = asyncio.get_running_loop()
        if hashed is None:
            if self._dummy is None:
                self._dummy = await self.hash("not-a-real-password-" + os.urandom(8).hex())
            await loop.run_in_executor(self._pool, self._hash.verify, password, self._dummy)
            return False, None
        return await loop.run_in_executor(
            self._pool, self._hash.verify_and_update, password, hashed
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
