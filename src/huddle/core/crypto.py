"""Encryption at rest: the process's keyring and the column types that use it.

``HUDDLE_ENCRYPTION_KEYS`` holds Fernet keys, newest first: the first encrypts, every one
decrypts (:class:`cryptography.fernet.MultiFernet`). With no key, values are stored as
they are. Values written before encryption was turned on stay readable: a stored value is
decrypted only when it has the shape of a Fernet token, and one that has the shape but
opens with none of the keys is returned as stored (it can only be text that a user wrote
while encryption was off). That a server never runs with the wrong keys is checked once,
at startup, against a value encrypted with the key that encrypted the data
(:mod:`huddle.encryption.keycheck`), so a wrong key is a clear startup error and not
garbage on every request.

The keyring is process-wide, like the settings it comes from: opening a
:class:`huddle.core.db.Database` installs it (:func:`configure`) before any query runs.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import JSON, LargeBinary, Text, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

log = logging.getLogger("huddle.encryption")

# version byte 0x80, then a 64-bit timestamp whose top bytes are zero until the year 36812
_TOKEN = re.compile(r"gAAAAA[A-Za-z0-9_-]{80,}={0,2}")
# Encrypted files and binary values: this header, then the token's raw bytes (not base64).
FILE_MAGIC = b"HUDDLE-ENC1\n"
# How an encrypted JSON value is stored in a JSON column.
JSON_KEY = "$enc"


def looks_encrypted(value: str) -> bool:
    """Whether ``value`` has the exact shape of a Fernet token (not whether it opens)."""
    if not _TOKEN.fullmatch(value):
        return False
    try:
        raw = base64.urlsafe_b64decode(value)
    except (binascii.Error, ValueError):
        return False
    # version | timestamp (8) | IV (16) | ciphertext (16·n, n ≥ 1) | HMAC (32)
    return len(raw) >= 73 and (len(raw) - 57) % 16 == 0


@dataclass
class Keyring:
    keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._fernets = [Fernet(key) for key in self.keys]
        self._multi = MultiFernet(self._fernets) if self._fernets else None

    @property
    def enabled(self) -> bool:
        return self._multi is not None

    def encrypt(self, data: bytes) -> bytes:
        assert self._multi is not None
        return self._multi.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        """Raises :class:`InvalidToken` when no key opens it."""
        if self._multi is None:
            raise InvalidToken
        return self._multi.decrypt(token)

    def key_index(self, token: bytes) -> int | None:
        """Which key (0 = current) opens ``token``; None when none does."""
        for index, fernet in enumerate(self._fernets):
            try:
                fernet.decrypt(token)
            except InvalidToken:
                continue
            return index
        return None

    def is_current(self, token: bytes) -> bool:
        return bool(self._fernets) and self.key_index(token) == 0

    def _rotate(self, token: bytes) -> bytes | None:
        """``token`` under the current key, or None when it already is. A token no key
        opens is text that only looks like one: it is encrypted as text."""
        assert self._multi is not None
        index = self.key_index(token)
        if index == 0:
            return None
        if index is None:
            raise InvalidToken
        return self._multi.rotate(token)

    def reseal(self, stored: Any) -> Any:
        """A stored column value (text, bytes or JSON) under the current key, or None when
        it already is (key rotation; plaintext written before encryption gets encrypted)."""
        if isinstance(stored, (bytes, memoryview)):
            data = bytes(stored)
            if data.startswith(FILE_MAGIC):
                token = base64.urlsafe_b64encode(data[len(FILE_MAGIC) :])
                try:
                    rotated = self._rotate(token)
                except InvalidToken:
                    return self.seal_bytes(data)
                if rotated is None:
                    return None
                return FILE_MAGIC + base64.urlsafe_b64decode(rotated)
            return self.seal_bytes(data)
        if isinstance(stored, str):
            if looks_encrypted(stored):
                try:
                    rotated = self._rotate(stored.encode("ascii"))
                except InvalidToken:
                    return self.seal_text(stored)
                return None if rotated is None else rotated.decode("ascii")
            return self.seal_text(stored)
        json_token = sealed_json_token(stored)
        if json_token is not None:
            try:
                rotated = self._rotate(json_token.encode("ascii"))
            except InvalidToken:
                return self.seal_json(stored)
            return None if rotated is None else {JSON_KEY: rotated.decode("ascii")}
        return self.seal_json(stored)

    # --- text -----------------------------------------------------------------------------

    def seal_text(self, value: str) -> str:
        return self.encrypt(value.encode("utf-8")).decode("ascii") if self.enabled else value

    def open_text(self, stored: str) -> str:
        if not self.enabled or not looks_encrypted(stored):
            return stored
        try:
            return self.decrypt(stored.encode("ascii")).decode("utf-8")
        except InvalidToken:
            _warn_unopened()
            return stored

    # --- bytes (files, stored responses) ----------------------------------------------------

    def seal_bytes(self, data: bytes) -> bytes:
        if not self.enabled:
            return data
        return FILE_MAGIC + base64.urlsafe_b64decode(self.encrypt(data))

    def open_bytes(self, stored: bytes) -> bytes:
        if not stored.startswith(FILE_MAGIC) or not self.enabled:
            return stored
        try:
            return self.decrypt(base64.urlsafe_b64encode(stored[len(FILE_MAGIC) :]))
        except InvalidToken:
            _warn_unopened()
            return stored

    # --- JSON -------------------------------------------------------------------------------

    def seal_json(self, value: Any) -> Any:
        if not self.enabled:
            return value
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return {JSON_KEY: self.seal_text(text)}

    def open_json(self, stored: Any) -> Any:
        token = sealed_json_token(stored)
        if token is None:
            return stored
        text = self.open_text(token)
        if text is token:  # not opened: leave the stored value as it is
            return stored
        return json.loads(text)


def sealed_json_token(stored: Any) -> str | None:
    if isinstance(stored, dict) and len(stored) == 1:
        token = stored.get(JSON_KEY)
        if isinstance(token, str) and looks_encrypted(token):
            return token
    return None


def is_sealed(stored: Any) -> bool:
    """Whether a stored column value is encrypted (text, bytes or JSON)."""
    if isinstance(stored, str):
        return looks_encrypted(stored)
    if isinstance(stored, (bytes, memoryview)):
        return bytes(stored[: len(FILE_MAGIC)]) == FILE_MAGIC
    return sealed_json_token(stored) is not None


_warned = False


def _warn_unopened() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.error(
            "a stored value has the shape of an encrypted one but none of "
            "HUDDLE_ENCRYPTION_KEYS opens it: it is returned as stored. Either it is text "
            "written before encryption was on, or another instance encrypts with a key this "
            "one does not have (give every instance the same keys, newest first)"
        )


_keyring = Keyring()


def configure(keys: list[str]) -> Keyring:
    """Install the process's keyring (app factory, CLI, tests)."""
    global _keyring
    _keyring = Keyring(list(keys))
    return _keyring


def keyring() -> Keyring:
    return _keyring


class EncryptedText(TypeDecorator[str]):
    """Text encrypted with the current key when encryption is on."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else _keyring.seal_text(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else _keyring.open_text(value)


class EncryptedBytes(TypeDecorator[bytes]):
    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        return None if value is None else _keyring.seal_bytes(value)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        return None if value is None else _keyring.open_bytes(bytes(value))


class EncryptedJSON(TypeDecorator[Any]):
    """JSON stored as ``{"$enc": token}`` when encryption is on (JSONB on PostgreSQL)."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else _keyring.seal_json(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else _keyring.open_json(value)
