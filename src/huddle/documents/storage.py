"""Where uploaded bytes live: ``HUDDLE_UPLOAD_DIR/<ab>/<name>``.

Names are generated (32 random hex digits, sharded by their first two), never taken from
the client, so no upload can choose or escape its path. Writes go to a temporary file in
the same directory and are renamed into place once complete and synced: a crash leaves
no half-written file under a real name.

With encryption at rest on, the bytes on disk are sealed with the current key
(:meth:`huddle.core.crypto.Keyring.seal_bytes`); :meth:`FileStore.read` opens them, and
files written before encryption was on are read as they are. Size and checksum describe
the file as uploaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from huddle.core.crypto import keyring


@dataclass(frozen=True)
class Stored:
    name: str
    size: int
    sha256: str


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        if len(name) != 32 or any(c not in "0123456789abcdef" for c in name):
            raise ValueError(f"not a storage name: {name!r}")
        return self.root / name[:2] / name

    def _put(self, name: str, stored: bytes) -> None:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{name}.{secrets.token_hex(4)}.part")
        with open(temp, "xb") as handle:
            handle.write(stored)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)

    def _write(self, data: bytes) -> Stored:
        name = secrets.token_hex(16)
        self._put(name, keyring().seal_bytes(data))
        return Stored(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    def _read(self, name: str) -> bytes:
        return keyring().open_bytes(self.path(name).read_bytes())

    async def read(self, name: str) -> bytes:
        """The file as uploaded. Raises FileNotFoundError when it is missing."""
        return await asyncio.to_thread(self._read, name)

    def read_stored(self, name: str) -> bytes:
        """The bytes as they are on disk (sealed or not): for key rotation."""
        return self.path(name).read_bytes()

    def replace_stored(self, name: str, stored: bytes) -> None:
        """Atomically put new on-disk bytes for an existing file (key rotation): a reader
        sees the old file or the new one, never a mix."""
        self._put(name, stored)

    async def save(self, data: bytes) -> Stored:
        return await asyncio.to_thread(self._write, data)

    def _remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(name).unlink()

    async def delete(self, name: str) -> None:
        await asyncio.to_thread(self._remove, name)
