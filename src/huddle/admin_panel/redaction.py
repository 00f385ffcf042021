"""Which columns the admin panel never shows, edits or exports.

Two rules, both applied to every view whatever it lists: a column whose *name* says it
holds a credential (``hashed_password``, ``token_hash``, ``secret``, …), and a column whose
*type* is encrypted at rest or opaque binary (message and document content, event
payloads, embeddings). A short explicit list backs the rules up for the columns known
today, so renaming one cannot silently expose it.
"""

from __future__ import annotations

import re
from functools import cache

from sqlalchemy import Column, LargeBinary
from sqlalchemy.orm import Mapper

from huddle.core.crypto import EncryptedBytes, EncryptedJSON, EncryptedText

_SECRET_NAME = re.compile(
    r"(^|_)(password|passwd|hash|hashed|secret|secrets|token|salt|otp|totp|private_key)(_|$)"
)
_HIDDEN_TYPES = (EncryptedText, EncryptedJSON, EncryptedBytes, LargeBinary)

#: (table, column) pairs hidden whatever the rules say.
EXPLICIT: frozenset[tuple[str, str]] = frozenset(
    {
        ("users", "hashed_password"),
        ("api_tokens", "token_hash"),
        ("refresh_tokens", "token_hash"),
        ("invitations", "token_hash"),
        ("webhooks", "secret"),
        ("webhook_deliveries", "payload"),
        ("idempotency_keys", "request_hash"),
        ("idempotency_keys", "response_body"),
        ("events", "data"),
        # Holds the encryption key check (a ciphertext) and job progress: nothing to read.
        ("system_state", "value"),
    }
)


def is_secret(table: str, column: Column[object]) -> bool:
    """True for a column the panel must never show, edit or export."""
    return (
        (table, column.key) in EXPLICIT
        or bool(_SECRET_NAME.search(column.key.lower()))
        or isinstance(column.type, _HIDDEN_TYPES)
    )


@cache
def hidden_keys(mapper: Mapper[object]) -> frozenset[str]:
    """The attribute keys of ``mapper``'s secret columns."""
    table = mapper.local_table.name  # type: ignore[attr-defined]
    return frozenset(
        attr.key
        for attr in mapper.column_attrs
        if any(is_secret(table, column) for column in attr.columns)  # type: ignore[arg-type]
    )


def visible_keys(mapper: Mapper[object]) -> list[str]:
    """The attribute keys of ``mapper``'s columns that may be shown, in table order."""
    hidden = hidden_keys(mapper)
    return [attr.key for attr in mapper.column_attrs if attr.key not in hidden]
