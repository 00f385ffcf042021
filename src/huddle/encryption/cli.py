"""``huddle encryption keygen | rotate | status``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from huddle.config import Settings


def cmd_keygen(_args: argparse.Namespace) -> int:
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode("ascii"))
    return 0


async def _with_database(settings: Settings, work: Any) -> Any:
    from huddle.core.db import Database
    from huddle.documents.storage import FileStore
    from huddle.encryption.keycheck import check_keys

    db = Database(settings)
    try:
        await check_keys(db, db.keyring)
        return await work(db, db.keyring, FileStore(settings.upload_path))
    finally:
        await db.dispose()


def key_problem(settings: Settings) -> str | None:
    """Why the server must not start with these keys (None: it may), for serve/worker."""
    from huddle.encryption.keycheck import EncryptionKeyError

    async def work(db: Any, keys: Any, store: Any) -> None:
        return None

    try:
        asyncio.run(_with_database(settings, work))
    except EncryptionKeyError as exc:
        return str(exc)
    return None


def _progress_bar(quiet: bool) -> Any:
    if quiet:
        return None
    from tqdm import tqdm

    def start(label: str, total: int) -> Any:
        bar = tqdm(total=total, desc=f"{label:<22}", unit="row", file=sys.stderr, leave=True)

        def advance(done: int) -> None:
            bar.update(done)
            if bar.n >= bar.total:
                bar.close()

        if total == 0:
            bar.close()
        return advance

    return start


def cmd_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from huddle.encryption.keycheck import EncryptionKeyError
    from huddle.encryption.rotation import Rotation

    if not settings.encryption_keys:
        print("huddle: set HUDDLE_ENCRYPTION_KEYS (new key first) to rotate", file=sys.stderr)
        return 2

    async def work(db: Any, keys: Any, store: Any) -> Any:
        rotation = Rotation(
            db,
            keys,
            store,
            batch=args.batch or settings.encryption_batch,
            progress=_progress_bar(args.quiet),
        )
        return await rotation.run()

    try:
        report = asyncio.run(_with_database(settings, work))
    except EncryptionKeyError as exc:
        print(f"huddle: {exc}", file=sys.stderr)
        return 2
    changed = ", ".join(f"{name} {t.changed}" for name, t in report.tables.items() if t.changed)
    print(
        f"huddle: {report.changed} values re-encrypted in {report.passes} pass(es)"
        + (f" ({changed})" if changed else "")
    )
    if report.files_missing:
        print(f"huddle: {report.files_missing} files were missing from the upload folder")
    if not report.finished:
        print(
            "huddle: rotation not finished: values kept changing (an instance still writes "
            "with an older key?). Run it again once every instance has the new key first.",
            file=sys.stderr,
        )
        return 1
    print("huddle: every value is under the current key; older keys may now be removed")
    return 0


def cmd_status(_args: argparse.Namespace, settings: Settings) -> int:
    from huddle.encryption.keycheck import EncryptionKeyError
    from huddle.encryption.rotation import status

    async def work(db: Any, keys: Any, store: Any) -> Any:
        return await status(db, keys, store)

    try:
        report = asyncio.run(_with_database(settings, work))
    except EncryptionKeyError as exc:
        print(f"huddle: {exc}", file=sys.stderr)
        return 2
    names = sorted(set(report.clear) | set(report.current) | set(report.older))
    print(f"{'table':<22} {'in clear':>10} {'current key':>12} {'older key':>10}")
    for name in names:
        print(
            f"{name:<22} {report.clear.get(name, 0):>10} {report.current.get(name, 0):>12} "
            f"{report.older.get(name, 0):>10}"
        )
    return 0


def add_encryption_commands(sub: Any, load_settings: Any) -> None:
    enc = sub.add_parser("encryption", help="encryption at rest: keys and key rotation")
    esub = enc.add_subparsers(dest="encryption_command", required=True)
    keygen = esub.add_parser("keygen", help="print a new Fernet key")
    keygen.set_defaults(func=cmd_keygen)
    rotate = esub.add_parser(
        "rotate",
        help="re-encrypt every stored value and file with the current key (resumable, "
        "safe while serving)",
    )
    rotate.add_argument("--batch", type=int, default=None, help="rows per transaction")
    rotate.add_argument("--quiet", action="store_true", help="no progress bars")
    rotate.set_defaults(func=lambda args: cmd_rotate(args, load_settings()))
    stat = esub.add_parser("status", help="count stored values: in clear, current or older key")
    stat.set_defaults(func=lambda args: cmd_status(args, load_settings()))
