"""huddle license keygen → generate → show, in process (huddle.cli.main) and as a command."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from huddle.cli import main
from huddle.core.time import utcnow
from huddle.licensing import service
from huddle.licensing.service import NO_KEY, TAMPERED
from tests.e2e.server import huddle_env, run_cli
from tests.licensing.keys import OTHER_KEY, make_token


def huddle(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``huddle argv...`` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No HUDDLE_* variables or .env file but the ones a test sets."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("HUDDLE_"):
            monkeypatch.delenv(name)
    return monkeypatch


def keygen(capsys, tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "vendor.pem", tmp_path / "vendor.pub"
    code, out, _ = huddle(
        capsys, "license", "keygen", "--out-private", str(private), "--out-public", str(public)
    )
    assert code == 0
    assert public.read_text().strip() in out  # the public key is shown, the private one not
    assert "PRIVATE" not in out
    return private, public


def test_keygen_generate_show_round_trip(capsys, env, tmp_path):
    private, public = keygen(capsys, tmp_path)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    # This copy of Huddle now "ships" the new public key.
    env.setattr(service, "VENDOR_PUBLIC_KEY_PEM", public.read_text())
    code, token, err = huddle(
        capsys,
        "license",
        "generate",
        "--private-key",
        str(private),
        "--licensee",
        "Acme Corp",
        "--seats",
        "12",
        "--features",
        "usage_reports, ",
        "--expires",
        "2099-12-31",
    )
    assert code == 0 and err == ""
    token = token.strip()
    assert token.count(".") == 2

    env.setenv("HUDDLE_LICENSE_KEY", token)
    code, out, _ = huddle(capsys, "license", "show")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "mode: licensed"
    for line in (
        "licensee: Acme Corp",
        "seats: 12",
        "features: usage_reports",
        "expires: 2099-12-31 23:59 UTC",
    ):
        assert line in lines
    assert token not in out


def test_show_explains_refusals(capsys, env, tmp_path):
    code, out, _ = huddle(capsys, "license", "show")
    assert (code, out.splitlines()) == (0, ["mode: open_source", f"reason: {NO_KEY}"])

    env.setattr(service, "VENDOR_PUBLIC_KEY_PEM", service.generate_key_pair()[1].decode())
    env.setenv("HUDDLE_LICENSE_KEY", make_token(key=OTHER_KEY))
    code, out, _ = huddle(capsys, "license", "show")
    assert code == 1 and f"reason: {TAMPERED}" in out.splitlines()

    env.setenv("HUDDLE_LICENSE_KEY", "garbage")
    code, out, _ = huddle(capsys, "license", "show")
    assert code == 1 and "reason: not a license token" in out.splitlines()


def test_show_an_expired_license(capsys, env, vendor_key):
    past = utcnow() - timedelta(days=2)
    env.setenv(
        "HUDDLE_LICENSE_KEY", make_token(expires_at=past, issued_at=past - timedelta(days=365))
    )
    code, out, _ = huddle(capsys, "license", "show")
    assert code == 1
    assert "mode: open_source" in out and "reason: the license expired on " in out
    assert "licensee: Acme Corp" in out and "features: none in force" in out


def test_generate_refuses_what_no_server_would_accept(capsys, env, tmp_path):
    private, _ = keygen(capsys, tmp_path)
    base = ["license", "generate", "--private-key", str(private), "--licensee", "A"]
    code, out, err = huddle(capsys, *base, "--seats", "1", "--expires", "2001-01-01")
    assert (code, out) == (2, "") and "in the past" in err
    code, _, err = huddle(capsys, *base, "--seats", "0", "--expires", "2099-01-01")
    assert code == 2 and "seats" in err
    code, _, err = huddle(capsys, *base, "--seats", "1", "--expires", "soon")
    assert code == 2 and "not a date" in err
    code, _, err = huddle(
        capsys, *base, "--seats", "1", "--expires", "2099-01-01", "--starts", "2099-06-01"
    )
    assert code == 2 and "expire before it starts" in err

    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "rsa.pem").write_bytes(rsa_pem)
    code, _, err = huddle(
        capsys,
        *["license", "generate", "--private-key", str(tmp_path / "rsa.pem")],
        *["--licensee", "A", "--seats", "1", "--expires", "2099-01-01"],
    )
    assert code == 2 and "not an Ed25519 private key" in err


def test_generate_warns_about_unknown_features_and_a_foreign_key(capsys, env, tmp_path):
    private, _ = keygen(capsys, tmp_path)  # not the key built into this copy of Huddle
    code, out, err = huddle(
        capsys,
        *["license", "generate", "--private-key", str(private), "--licensee", "A"],
        *["--seats", "3", "--features", "usage_reports,teleport", "--expires", "2099-01-01"],
        *["--starts", "2098-01-01"],
    )
    assert code == 0 and out.count(".") == 2
    assert "unknown features teleport" in err
    assert "does not match the public key built into this copy of Huddle" in err
    found = service.verify(out.strip(), public_key_pem=(tmp_path / "vendor.pub").read_text())
    assert found.license is not None
    assert found.license.features == ("teleport", "usage_reports")
    assert f"{found.license.not_before:%Y-%m-%d %H:%M}" == "2098-01-01 00:00"


def test_keygen_never_overwrites_a_key(capsys, env, tmp_path):
    private, _ = keygen(capsys, tmp_path)
    before = private.read_bytes()
    code, _, err = huddle(
        capsys,
        *["license", "keygen", "--out-private", str(private)],
        *["--out-public", str(tmp_path / "new.pub")],
    )
    assert code == 2 and "exists" in err
    assert private.read_bytes() == before and not (tmp_path / "new.pub").exists()


def test_the_command_uses_the_key_built_into_huddle(tmp_path):
    """As a real process (no test key patched in): a test-signed license is refused."""
    result = run_cli(
        "license",
        "show",
        env=huddle_env(tmp_path, license_key=make_token()),
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "mode: open_source" in result.stdout and TAMPERED in result.stdout
