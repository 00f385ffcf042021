"""``huddle license keygen|generate|show``: the vendor's tools, and checking a key.

``keygen`` and ``generate`` are for the vendor, who keeps the private key away from every
Huddle installation; ``show`` is for operators: it verifies ``HUDDLE_LICENSE_KEY`` with
the public key built into this copy of Huddle, as the server does at startup.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from huddle.config import Settings
from huddle.licensing import service


def _fail(message: str) -> int:
    print(f"huddle license: {message}", file=sys.stderr)
    return 2


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet, with ``mode`` from the start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def cmd_keygen(args: argparse.Namespace) -> int:
    """Make a vendor key pair: the private key (mode 600) and the public key."""
    private_path, public_path = Path(args.out_private), Path(args.out_public)
    for path in (private_path, public_path):
        if path.exists():
            return _fail(f"{path} exists; not overwriting a key")
    private_pem, public_pem = service.generate_key_pair()
    try:
        _write_new(private_path, private_pem, 0o600)
        _write_new(public_path, public_pem, 0o644)
    except OSError as exc:
        return _fail(str(exc))
    print(f"huddle license: private key written to {private_path} (keep it secret, off servers)")
    print(f"huddle license: public key written to {public_path}:")
    print(public_pem.decode().rstrip())
    print(
        "huddle license: servers trust only the public key in "
        "huddle/licensing/service.py (VENDOR_PUBLIC_KEY_PEM); put this one there to "
        "accept licenses signed with the new private key"
    )
    return 0


def _features(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def cmd_generate(args: argparse.Namespace) -> int:
    """Sign a license and print the token (the value of HUDDLE_LICENSE_KEY)."""
    try:
        private_key = service.load_private_key(Path(args.private_key).read_bytes())
        expires_at = service.moment_from(args.expires, end_of_day=True)
        not_before = service.moment_from(args.starts) if args.starts else None
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    if expires_at <= service.utcnow():
        return _fail(f"--expires {args.expires} is in the past")
    features = _features(args.features)
    unknown = sorted(set(features) - set(service.FEATURES))
    if unknown:
        print(
            f"huddle license: warning: unknown features {', '.join(unknown)} "
            f"(this version knows: {', '.join(sorted(service.FEATURES))})",
            file=sys.stderr,
        )
    try:
        token = service.issue_license(
            private_key,
            licensee=args.licensee,
            seats=args.seats,
            features=features,
            expires_at=expires_at,
            not_before=not_before,
            license_id=args.license_id,
        )
    except ValueError as exc:
        return _fail(str(exc))
    if service.verify(token).license is None:
        print(
            "huddle license: warning: this private key does not match the public key built "
            "into this copy of Huddle; its servers will refuse the license",
            file=sys.stderr,
        )
    print(token)
    return 0


def _describe(status: service.LicenseStatus) -> list[str]:
    lines = [f"mode: {status.mode.value}"]
    if status.reason:
        lines.append(f"reason: {status.reason}")
    found = status.license
    if found is not None:
        lines += [
            f"license id: {found.id}",
            f"licensee: {found.licensee}",
            f"seats: {found.seats}",
            f"features: {', '.join(status.features) or 'none in force'}",
            f"issued: {found.issued_at:%Y-%m-%d %H:%M} UTC",
        ]
        if found.not_before is not None:
            lines.append(f"valid from: {found.not_before:%Y-%m-%d %H:%M} UTC")
        lines.append(f"expires: {found.expires_at:%Y-%m-%d %H:%M} UTC")
    return lines


def cmd_show(_args: argparse.Namespace) -> int:
    """Verify HUDDLE_LICENSE_KEY as the server would; exit 1 when a key is set but refused."""
    try:
        key = Settings().license_key
    except ValidationError as exc:
        return _fail(f"invalid settings:\n{exc}")
    status = service.verify(key).status()
    for line in _describe(status):
        print(line)
    return 1 if key and status.mode is not service.Mode.licensed else 0


def add_license_commands(sub: Any) -> None:
    """Register ``huddle license ...`` on the main parser's subcommands."""
    parser = sub.add_parser("license", help="licenses: check HUDDLE_LICENSE_KEY; vendor tools")
    commands = parser.add_subparsers(dest="license_command", required=True)

    show = commands.add_parser("show", help="verify HUDDLE_LICENSE_KEY and print the status")
    show.set_defaults(func=cmd_show)

    keygen = commands.add_parser("keygen", help="vendor: make an Ed25519 signing key pair")
    keygen.add_argument("--out-private", required=True, metavar="PATH")
    keygen.add_argument("--out-public", required=True, metavar="PATH")
    keygen.set_defaults(func=cmd_keygen)

    generate = commands.add_parser("generate", help="vendor: sign a license, print the token")
    generate.add_argument("--private-key", required=True, metavar="PATH")
    generate.add_argument("--licensee", required=True, metavar="NAME")
    generate.add_argument("--seats", required=True, type=int, metavar="N")
    generate.add_argument(
        "--features", default="", metavar="A,B", help="comma-separated, e.g. usage_reports"
    )
    generate.add_argument(
        "--expires",
        required=True,
        metavar="DATE",
        help="last valid day (UTC), e.g. 2027-12-31, or a date-time with a zone",
    )
    generate.add_argument("--starts", metavar="DATE", help="first valid day (default: now)")
    generate.add_argument("--license-id", metavar="ID", help="default: a new unique id")
    generate.set_defaults(func=cmd_generate)
