"""License tokens: verifying the configured one, and issuing new ones (the vendor's side).

A license is a JWT signed with Ed25519 (``alg: EdDSA``) by the vendor's private key and
verified with :data:`VENDOR_PUBLIC_KEY_PEM`, which is part of the code on purpose: a key
read from settings would let whoever sets the environment sign their own licenses.

Claims: ``iss`` = :data:`ISSUER`, ``aud`` = :data:`AUDIENCE`, ``sub`` the licensee,
``jti`` the license id, ``seats`` (an integer, at least 1), ``features`` (names from
:data:`FEATURES`), ``iat``, ``exp`` and optionally ``nbf``.

``HUDDLE_LICENSE_KEY`` is verified once, when the app is built (:func:`load_license`);
its dates are checked again on every use (:meth:`Verification.status`), so a license
that expires while the server runs degrades to open-source mode then, without a restart.
A license never deletes or locks anything: open-source mode only switches the licensed
features off, and they come back, with their data, when a valid license is set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Annotated, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from huddle.core.ids import new_id
from huddle.core.time import utcnow

log = logging.getLogger("huddle.licensing")

# The vendor's public key. Only the vendor holds the private half (`huddle license keygen`
# made the pair); replacing this constant is the only way to trust another signer.
VENDOR_PUBLIC_KEY_PEM = """\
-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAcLPABeoR4bMREtL4noUWI7F4cYPi1+DkrrZ3YvjmyVg=
-----END PUBLIC KEY-----
"""
ISSUER = "huddle-vendor"
AUDIENCE = "huddle-license"
ALGORITHM = "EdDSA"
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "jti", "seats", "features", "iat", "exp"]

#: The features a license can switch on, and what each one is.
FEATURES: dict[str, str] = {
    "usage_reports": "AI token usage per user of a workspace (GET /api/workspaces/{wid}/ai/usage)",
}

NO_KEY = "no license key set"
TAMPERED = "the license signature does not match (tampered or signed by another key)"
MALFORMED = "not a license token"


class Mode(StrEnum):
    licensed = "licensed"
    open_source = "open_source"


_LAST_TIMESTAMP = 253_402_300_799  # 9999-12-31 23:59:59 UTC
FeatureName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class _Claims(BaseModel):
    """The shape a license's claims must have once the signature is verified."""

    model_config = ConfigDict(strict=True, extra="ignore")

    jti: str = Field(min_length=1, max_length=200)
    sub: str = Field(min_length=1, max_length=200)
    seats: int = Field(ge=1, le=10_000_000)
    features: list[FeatureName] = Field(max_length=100)
    # Unix times up to the year 9999: anything else cannot become a datetime.
    iat: float = Field(ge=0, le=_LAST_TIMESTAMP, allow_inf_nan=False)
    exp: float = Field(ge=0, le=_LAST_TIMESTAMP, allow_inf_nan=False)
    nbf: float | None = Field(default=None, ge=0, le=_LAST_TIMESTAMP, allow_inf_nan=False)


@dataclass(frozen=True)
class License:
    """An authentic license: its signature, issuer, audience and claims are valid."""

    id: str
    licensee: str
    seats: int
    features: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    not_before: datetime | None = None


@dataclass(frozen=True)
class LicenseStatus:
    """Whether a license is in force now, and why not."""

    mode: Mode
    reason: str | None
    license: License | None

    @property
    def features(self) -> tuple[str, ...]:
        """The features in force (none in open-source mode)."""
        if self.mode is Mode.licensed and self.license is not None:
            return self.license.features
        return ()

    def refusal(self, feature: str) -> str | None:
        """Why ``feature`` is not available now, or None when it is licensed."""
        if feature in self.features:
            return None
        return self.reason or f"the license does not include {feature}"


@dataclass(frozen=True)
class Verification:
    """The outcome of verifying a license key, before its dates are applied."""

    license: License | None
    refusal: str | None

    def status(self, now: datetime | None = None) -> LicenseStatus:
        """The status at ``now`` (default: the current time): dates are checked here."""
        if self.license is None:
            return LicenseStatus(Mode.open_source, self.refusal or NO_KEY, None)
        now = now or utcnow()
        found = self.license
        if found.not_before is not None and now < found.not_before:
            reason = f"the license is not valid before {_when(found.not_before)}"
        elif now >= found.expires_at:
            reason = f"the license expired on {_when(found.expires_at)}"
        else:
            return LicenseStatus(Mode.licensed, None, found)
        return LicenseStatus(Mode.open_source, reason, found)


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _timestamp(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (ValueError for anything else)."""
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key from PEM (ValueError for anything else)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a PEM private key without a password ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def generate_key_pair() -> tuple[bytes, bytes]:
    """A new vendor key pair: (private key PEM, PKCS#8; public key PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def _decode(token: str, key: Ed25519PublicKey) -> dict[str, Any] | str:
    """The verified claims, or why the token is refused."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            # Dates are checked by Verification.status, at every use.
            options={
                "require": _REQUIRED_CLAIMS,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidSignatureError:
        return TAMPERED
    except jwt.InvalidAlgorithmError:
        return f"the license is not signed with {ALGORITHM} (Ed25519)"
    except jwt.MissingRequiredClaimError as exc:
        return f"the license has no {exc.claim!r} claim"
    except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
        return "not a Huddle license (wrong issuer or audience)"
    except jwt.DecodeError:
        return MALFORMED
    except jwt.InvalidTokenError as exc:
        return f"the license is invalid: {exc}"
    return claims


def verify(token: str | None, *, public_key_pem: str | None = None) -> Verification:
    """Verify a license token with the vendor's public key (or the one given)."""
    token = (token or "").strip()
    if not token:
        return Verification(None, None)
    decoded = _decode(token, load_public_key(public_key_pem or VENDOR_PUBLIC_KEY_PEM))
    if isinstance(decoded, str):
        return Verification(None, decoded)
    try:
        claims = _Claims.model_validate(decoded)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return Verification(None, f"the license's claims are invalid ({where}: {first['msg']})")
    found = License(
        id=claims.jti,
        licensee=claims.sub,
        seats=claims.seats,
        features=tuple(sorted(set(claims.features))),
        issued_at=_timestamp(claims.iat),
        expires_at=_timestamp(claims.exp),
        not_before=_timestamp(claims.nbf) if claims.nbf is not None else None,
    )
    return Verification(found, None)


def load_license(license_key: str | None) -> Verification:
    """Verify ``HUDDLE_LICENSE_KEY`` at startup and say in the log what came of it.

    Never raises for a bad license: the server starts in open-source mode instead."""
    try:
        verification = verify(license_key)
    except Exception:  # a license must never keep the server from starting
        log.exception("HUDDLE_LICENSE_KEY could not be verified")
        verification = Verification(None, "the license could not be verified (see the log)")
    status = verification.status()
    if status.mode is Mode.licensed and status.license is not None:
        found = status.license
        log.info(
            "licensed to %s: %d seats, features: %s; valid until %s",
            found.licensee,
            found.seats,
            ", ".join(found.features) or "none",
            _when(found.expires_at),
        )
    elif license_key:
        log.warning(
            "HUDDLE_LICENSE_KEY refused: %s. Running in open-source mode (licensed features "
            "are off; no data is affected).",
            status.reason,
        )
    else:
        log.info("no license key set: running in open-source mode")
    return verification


def moment_from(text: str, *, end_of_day: bool = False) -> datetime:
    """A CLI date: ``2027-12-31`` is that day's start (or its last second with
    ``end_of_day``, for expiries), in UTC; a date-time needs a time zone."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a date (2027-12-31) or a date-time") from None
        if moment.tzinfo is None:
            raise ValueError(
                f"{text!r} needs a time zone, e.g. 2027-12-31T18:00:00+00:00"
            ) from None
        return moment.astimezone(UTC)
    return datetime.combine(day, time(23, 59, 59) if end_of_day else time(0), UTC)


def issue_license(
    private_key: Ed25519PrivateKey,
    *,
    licensee: str,
    seats: int,
    features: Iterable[str],
    expires_at: datetime,
    not_before: datetime | None = None,
    issued_at: datetime | None = None,
    license_id: str | None = None,
) -> str:
    """Sign a license (the vendor's side). ValueError for claims no server would accept."""
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": licensee,
        "jti": license_id or str(new_id()),
        "seats": seats,
        "features": sorted(set(features)),
        "iat": int((issued_at or utcnow()).timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    if not_before is not None:
        claims["nbf"] = int(not_before.timestamp())
    try:
        _Claims.model_validate(claims)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None
    if claims["exp"] <= claims.get("nbf", claims["iat"]):
        raise ValueError("the license would expire before it starts")
    return jwt.encode(claims, private_key, algorithm=ALGORITHM)
