"""License verification: valid, tampered, expired, wrong-key, malformed and odd tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from huddle.core.time import utcnow
from huddle.licensing import service
from huddle.licensing.service import MALFORMED, NO_KEY, TAMPERED, Mode
from tests.licensing.keys import OTHER_KEY, TEST_KEY, TEST_PUBLIC_PEM, claims, make_token, sign


def check(token: str | None, now: datetime | None = None) -> service.LicenseStatus:
    return service.verify(token, public_key_pem=TEST_PUBLIC_PEM).status(now)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _payload(token: str) -> dict:
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


class TestValid:
    def test_claims_become_the_license(self):
        expires = datetime(2030, 6, 30, 23, 59, 59, tzinfo=UTC)
        token = make_token(
            licensee="Globex", seats=42, features=["usage_reports", "x_beta"], expires_at=expires
        )
        status = check(token, now=datetime(2029, 1, 1, tzinfo=UTC))
        assert status.mode is Mode.licensed and status.reason is None
        found = status.license
        assert found is not None
        assert (found.licensee, found.seats, found.expires_at) == ("Globex", 42, expires)
        assert status.features == ("usage_reports", "x_beta")
        assert found.id and found.not_before is None
        assert status.refusal("usage_reports") is None

    def test_the_embedded_vendor_key_is_used_by_default(self, vendor_key):
        assert service.verify(make_token()).status().mode is Mode.licensed

    def test_a_test_signed_license_is_refused_by_the_real_vendor_key(self):
        # Without the fixture, the key built into the code decides: the test key is a stranger.
        service.load_public_key(service.VENDOR_PUBLIC_KEY_PEM)  # a valid Ed25519 key
        status = service.verify(make_token()).status()
        assert (status.mode, status.reason) == (Mode.open_source, TAMPERED)

    def test_surrounding_whitespace_is_ignored(self):
        assert check(f"  {make_token()}\n").mode is Mode.licensed


class TestNoKey:
    @pytest.mark.parametrize("token", [None, "", "   "])
    def test_open_source_mode(self, token):
        status = check(token)
        assert (status.mode, status.reason, status.license) == (Mode.open_source, NO_KEY, None)
        assert status.features == ()
        assert status.refusal("usage_reports") == NO_KEY


class TestTampered:
    def test_changed_payload(self):
        header, _, signature = make_token(seats=5).split(".")
        forged = _b64(json.dumps(claims(seats=5000)).encode())
        status = check(f"{header}.{forged}.{signature}")
        assert (status.mode, status.reason, status.license) == (Mode.open_source, TAMPERED, None)

    def test_more_features_spliced_in(self):
        token = make_token(features=[])
        header, _, signature = token.split(".")
        data = _payload(token) | {"features": ["usage_reports"]}
        spliced = f"{header}.{_b64(json.dumps(data).encode())}.{signature}"
        assert check(spliced).reason == TAMPERED

    def test_changed_signature(self):
        header, payload, signature = make_token().split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
        raw[10] ^= 0x01
        status = check(f"{header}.{payload}.{_b64(bytes(raw))}")
        assert (status.mode, status.reason) == (Mode.open_source, TAMPERED)

    def test_signature_removed(self):
        header, payload, _ = make_token().split(".")
        assert check(f"{header}.{payload}.").reason == TAMPERED


class TestWrongKey:
    def test_signed_by_another_ed25519_key(self):
        status = check(make_token(key=OTHER_KEY))
        assert (status.mode, status.reason, status.license) == (Mode.open_source, TAMPERED, None)

    def test_signed_with_another_algorithm(self):
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        status = check(sign(claims(), rsa_key, "RS256"))
        assert status.mode is Mode.open_source
        assert status.reason == "the license is not signed with EdDSA (Ed25519)"

    def test_hmac_with_the_public_key_as_secret(self):
        # The classic confusion attack: "sign" with HS256 using the public key's text
        # (built by hand: PyJWT itself refuses a PEM as an HMAC secret).
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        signing_input = f"{header}.{_b64(json.dumps(claims()).encode())}"
        mac = hmac.new(TEST_PUBLIC_PEM.encode(), signing_input.encode(), hashlib.sha256)
        token = f"{signing_input}.{_b64(mac.digest())}"
        assert check(token).reason == "the license is not signed with EdDSA (Ed25519)"

    def test_unsigned(self):
        header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        token = f"{header}.{_b64(json.dumps(claims()).encode())}."
        assert check(token).mode is Mode.open_source


class TestDates:
    def test_expired_degrades_to_open_source_keeping_the_terms(self):
        expires = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
        token = make_token(
            expires_at=expires, issued_at=datetime(2025, 3, 1, tzinfo=UTC), licensee="Initech"
        )
        status = check(token, now=datetime(2026, 3, 2, tzinfo=UTC))
        assert status.mode is Mode.open_source
        assert status.reason == "the license expired on 2026-03-01 23:59 UTC"
        assert status.license is not None and status.license.licensee == "Initech"
        assert status.features == ()
        assert status.refusal("usage_reports") == status.reason

    def test_expiry_is_checked_at_each_use(self):
        expires = utcnow() + timedelta(hours=1)
        verification = service.verify(
            make_token(expires_at=expires), public_key_pem=TEST_PUBLIC_PEM
        )
        assert verification.status(expires - timedelta(seconds=1)).mode is Mode.licensed
        assert verification.status(expires).mode is Mode.open_source
        assert verification.status(expires + timedelta(days=1)).mode is Mode.open_source

    def test_expired_at_issue_time(self):
        now = utcnow()
        token = sign(claims(iat=int(now.timestamp()) - 7200, exp=int(now.timestamp()) - 3600))
        status = check(token)
        assert status.mode is Mode.open_source and status.reason.startswith("the license expired")

    def test_not_yet_valid(self):
        starts = datetime(2027, 1, 1, tzinfo=UTC)
        token = make_token(not_before=starts, expires_at=datetime(2028, 1, 1, tzinfo=UTC))
        before = check(token, now=starts - timedelta(seconds=1))
        assert before.mode is Mode.open_source
        assert before.reason == "the license is not valid before 2027-01-01 00:00 UTC"
        assert check(token, now=starts).mode is Mode.licensed


class TestMalformed:
    @pytest.mark.parametrize(
        "token",
        ["garbage", "a.b.c", "a.b", "x" * 5000, '{"sub": "Acme"}', "eyJhbGciOiJFZERTQSJ9.!!.!!"],
    )
    def test_not_a_license_token(self, token):
        status = check(token)
        assert (status.mode, status.reason, status.license) == (Mode.open_source, MALFORMED, None)

    def test_another_products_token(self):
        status = check(sign(claims(aud="some-api")))
        assert status.reason == "not a Huddle license (wrong issuer or audience)"
        assert check(sign(claims(iss="someone-else"))).reason == status.reason

    @pytest.mark.parametrize("claim", ["features", "seats", "exp", "sub", "jti", "iat"])
    def test_missing_claim(self, claim):
        status = check(sign(claims(**{claim: None})))
        assert status.mode is Mode.open_source
        assert status.reason == f"the license has no {claim!r} claim"

    @pytest.mark.parametrize(
        ("changes", "where"),
        [
            ({"seats": 0}, "seats"),
            ({"seats": "5"}, "seats"),
            ({"seats": True}, "seats"),
            ({"features": "usage_reports"}, "features"),
            ({"features": [1]}, "features.0"),
            ({"features": ["Usage Reports"]}, "features.0"),
            ({"sub": ""}, "sub"),
            ({"exp": 10**20}, "exp"),  # beyond any datetime
            ({"exp": float("nan")}, "exp"),
            ({"iat": -1}, "iat"),
            ({"nbf": "tomorrow"}, "nbf"),
        ],
    )
    def test_invalid_claim_values(self, changes, where):
        status = check(sign(claims(**changes)))
        assert status.mode is Mode.open_source
        assert status.reason.startswith(f"the license's claims are invalid ({where}:")


class TestFeatures:
    def test_a_license_without_the_feature(self):
        status = check(make_token(features=[]))
        assert status.mode is Mode.licensed and status.features == ()
        assert status.refusal("usage_reports") == "the license does not include usage_reports"

    def test_duplicates_collapse(self):
        assert check(make_token(features=["usage_reports"] * 3)).features == ("usage_reports",)


class TestIssuing:
    def test_refuses_claims_no_server_accepts(self):
        expires = utcnow() + timedelta(days=1)
        with pytest.raises(ValueError, match="seats"):
            service.issue_license(TEST_KEY, licensee="A", seats=0, features=[], expires_at=expires)
        with pytest.raises(ValueError, match="features"):
            service.issue_license(
                TEST_KEY, licensee="A", seats=1, features=["no spaces"], expires_at=expires
            )
        with pytest.raises(ValueError, match="expire before it starts"):
            service.issue_license(
                TEST_KEY,
                licensee="A",
                seats=1,
                features=[],
                expires_at=expires,
                not_before=expires + timedelta(days=1),
            )

    def test_dates_from_the_command_line(self):
        assert service.moment_from("2027-12-31", end_of_day=True) == datetime(
            2027, 12, 31, 23, 59, 59, tzinfo=UTC
        )
        assert service.moment_from("2027-01-01") == datetime(2027, 1, 1, tzinfo=UTC)
        assert service.moment_from("2027-06-01T12:00:00+02:00") == datetime(
            2027, 6, 1, 10, tzinfo=UTC
        )
        with pytest.raises(ValueError, match="time zone"):
            service.moment_from("2027-06-01T12:00:00")
        with pytest.raises(ValueError, match="not a date"):
            service.moment_from("next year")

    def test_keys_round_trip(self):
        private_pem, public_pem = service.generate_key_pair()
        key = service.load_private_key(private_pem)
        token = make_token(key=key)
        verified = service.verify(token, public_key_pem=public_pem.decode())
        assert verified.status().mode is Mode.licensed
        with pytest.raises(ValueError, match="Ed25519"):
            service.load_public_key(
                rsa.generate_private_key(public_exponent=65537, key_size=2048)
                .public_key()
                .public_bytes(
                    service.serialization.Encoding.PEM,
                    service.serialization.PublicFormat.SubjectPublicKeyInfo,
                )
            )
        with pytest.raises(ValueError, match="private key"):
            service.load_private_key(public_pem)


class TestStartup:
    def test_a_refused_key_is_logged_and_does_not_raise(self, caplog, vendor_key):
        with caplog.at_level(logging.INFO, logger="huddle.licensing"):
            verification = service.load_license(make_token(key=OTHER_KEY))
        assert verification.status().mode is Mode.open_source
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "HUDDLE_LICENSE_KEY refused" in warnings[0].getMessage()
        assert TAMPERED in warnings[0].getMessage()

    def test_even_an_unexpected_failure_only_means_open_source(self, caplog, monkeypatch):
        def broken(*args, **kwargs):
            raise RuntimeError("boom")

        monkeypatch.setattr(service, "verify", broken)
        with caplog.at_level(logging.INFO, logger="huddle.licensing"):
            status = service.load_license("anything").status()
        assert status.mode is Mode.open_source
        assert status.reason == "the license could not be verified (see the log)"
        assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)

    def test_an_expired_key_is_logged(self, caplog, vendor_key):
        past = utcnow() - timedelta(days=1)
        token = make_token(expires_at=past, issued_at=past - timedelta(days=30))
        with caplog.at_level(logging.INFO, logger="huddle.licensing"):
            service.load_license(token)
        assert any(
            r.levelno == logging.WARNING and "expired" in r.getMessage() for r in caplog.records
        )

    def test_a_valid_key_and_no_key_are_told_apart(self, caplog, vendor_key):
        with caplog.at_level(logging.INFO, logger="huddle.licensing"):
            assert service.load_license(make_token()).status().mode is Mode.licensed
            assert service.load_license(None).status().mode is Mode.open_source
        messages = [r.getMessage() for r in caplog.records]
        assert any(m.startswith("licensed to Acme Corp: 25 seats") for m in messages)
        assert any("no license key set" in m for m in messages)
        assert not any(r.levelno >= logging.WARNING for r in caplog.records)
