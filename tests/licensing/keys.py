"""Test license keys: tests sign with their own Ed25519 pair, never the vendor's.

The server trusts only ``VENDOR_PUBLIC_KEY_PEM`` in ``huddle.licensing.service`` (a
constant, not a setting, so that no operator can sign their own license). Tests put
:data:`TEST_PUBLIC_PEM` in its place (the ``vendor_key`` fixture), or verify with it
explicitly (:func:`install_license`, which puts a license in force in a running app
as startup would have).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from huddle.core.time import utcnow
from huddle.licensing import service

TEST_KEY = Ed25519PrivateKey.generate()
TEST_PUBLIC_PEM = (
    TEST_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
OTHER_KEY = Ed25519PrivateKey.generate()  # a stranger's key: its licenses must be refused


def make_token(
    *,
    key: Ed25519PrivateKey = TEST_KEY,
    licensee: str = "Acme Corp",
    seats: int = 25,
    features: Iterable[str] = ("usage_reports",),
    expires_at: datetime | None = None,
    not_before: datetime | None = None,
    issued_at: datetime | None = None,
) -> str:
    """A license signed by ``key`` (the test key), valid for 30 days by default."""
    now = utcnow()
    return service.issue_license(
        key,
        licensee=licensee,
        seats=seats,
        features=features,
        expires_at=expires_at or now + timedelta(days=30),
        not_before=not_before,
        issued_at=issued_at or now - timedelta(minutes=1),
    )


def claims(**changes: Any) -> dict[str, Any]:
    """Valid license claims with ``changes`` (a value of None removes the claim)."""
    now = int(utcnow().timestamp())
    values: dict[str, Any] = {
        "iss": service.ISSUER,
        "aud": service.AUDIENCE,
        "sub": "Acme Corp",
        "jti": "lic-1",
        "seats": 5,
        "features": ["usage_reports"],
        "iat": now - 60,
        "exp": now + 86400,
    }
    values.update(changes)
    return {name: value for name, value in values.items() if value is not None}


def sign(payload: dict[str, Any], key: Any = TEST_KEY, algorithm: str = "EdDSA") -> str:
    """Any payload, signed as given (for claims no honest vendor would issue)."""
    return jwt.encode(payload, key, algorithm=algorithm)


def install_license(app: FastAPI, token: str | None = None, **terms: Any) -> service.Verification:
    """Put a test-signed license in force in ``app`` (by default one with usage_reports),
    as if it had been HUDDLE_LICENSE_KEY at startup."""
    verification = service.verify(token or make_token(**terms), public_key_pem=TEST_PUBLIC_PEM)
    assert verification.license is not None, verification.refusal
    app.state.license = verification
    return verification
