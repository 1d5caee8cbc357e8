"""``rdsssl ca passphrase``: change the CA key's passphrase or strengthen its encryption
(registered on the ``ca`` group in cli/ca.py), and how a key's protection is described."""

from __future__ import annotations

import hmac
from pathlib import Path

import click

from rdsssl.cli.common import (
    NEW_PASSPHRASE_ENV,
    ca_dir_option,
    current_passphrase,
    get_app,
    json_option,
    new_passphrase,
    open_store,
    passphrase_file_option,
    wait_lock_option,
)
from rdsssl.errors import ConfigError, UsageError
from rdsssl.pki.crypto import KeyProtection
from rdsssl.store.castore import CaStore
from rdsssl.store.records import KeyRewrap

__all__ = ["passphrase", "protection_text"]


def protection_text(protection: KeyProtection) -> str:
    """'pbkdf2-hmac-sha256, 600,000 rounds, aes-256-cbc', with advice when it is weak."""
    text = protection.describe()
    if protection.encrypted and protection.weak:
        text += " (strengthen it: rdsssl ca passphrase --same-passphrase)"
    return text


@click.command("passphrase")
@ca_dir_option
@passphrase_file_option
@click.option(
    "--new-passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"Read the new passphrase from FILE (first line); else ${NEW_PASSPHRASE_ENV}, else a "
    "confirmed prompt on a terminal.",
)
@click.option(
    "--same-passphrase",
    is_flag=True,
    help="Keep the current passphrase: only re-encrypt with today's stronger parameters.",
)
@click.option(
    "--no-passphrase",
    is_flag=True,
    help="Store the CA key unencrypted from now on (only for throwaway CAs and tests).",
)
@click.option(
    "--keep-old",
    is_flag=True,
    help="Keep the previous ca.key as ca.key.bak-TIME (0600; it opens with the old passphrase).",
)
@wait_lock_option
@json_option
def passphrase(
    ca_dir: Path,
    passphrase_file: Path | None,
    new_passphrase_file: Path | None,
    same_passphrase: bool,
    no_passphrase: bool,
    keep_old: bool,
    wait_lock: float,
) -> None:
    """Change the CA key's passphrase, or strengthen its encryption (--same-passphrase).

    The key is unlocked with the current passphrase (--passphrase-file, $RDSSSL_CA_PASSPHRASE
    or a prompt), then re-encrypted (PBKDF2-HMAC-SHA256, 600,000 rounds, AES-256-CBC) for the
    new one. ca.key is replaced only once the new file has been verified; a wrong current
    passphrase changes nothing (exit 3).

    \b
    Examples:
      rdsssl ca passphrase --ca-dir ./ca --same-passphrase
      RDSSSL_CA_PASSPHRASE=old RDSSSL_NEW_CA_PASSPHRASE=new rdsssl ca passphrase --ca-dir ./ca
    """
    app = get_app()
    given = {
        "--new-passphrase-file": new_passphrase_file is not None,
        "--same-passphrase": same_passphrase,
        "--no-passphrase": no_passphrase,
    }
    chosen = [option for option, on in given.items() if on]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} contradict each other")
    with open_store(ca_dir, wait_lock=wait_lock) as store:
        old = current_passphrase(app, store, passphrase_file)
        store.unlock(old)  # a wrong passphrase stops here, before asking for the new one
        new: bytes | None
        if same_passphrase:
            new = _same(store, old)
        else:
            new = new_passphrase(
                app,
                key_path=store.key_path,
                no_passphrase=no_passphrase,
                passphrase_file=new_passphrase_file,
                env=NEW_PASSPHRASE_ENV,
                file_option="--new-passphrase-file",
                prompt="New passphrase",
            )
        done = store.change_passphrase(new, now=app.now(), keep_old=keep_old)
    changed = (old is None) != (new is None) or (
        old is not None and new is not None and not hmac.compare_digest(old, new)
    )
    _report_rewrap(ca_dir, done, changed=changed)


def _same(store: CaStore, old: bytes | None) -> bytes:
    """--same-passphrase: the current one, which an unencrypted key does not have."""
    if old is None:
        raise ConfigError(
            f"{store.key_path} is not encrypted, so there is no passphrase to keep; "
            f"give a new one ({NEW_PASSPHRASE_ENV}, --new-passphrase-file or a prompt)"
        )
    return old


def _report_rewrap(ca_dir: Path, done: KeyRewrap, *, changed: bool) -> None:
    """What ``ca passphrase`` did, without any passphrase."""
    app = get_app()
    app.result(
        {
            "ca_dir": str(ca_dir),
            "key": str(done.path),
            "passphrase_changed": changed,
            "before": done.before.to_json(),
            "after": done.after.to_json(),
            "kept_old": None if done.kept_old is None else str(done.kept_old),
        }
    )
    app.info(f"re-encrypted {done.path}: {protection_text(done.after)}")
    app.info(f"  was: {done.before.describe()}")
    app.info("  passphrase changed" if changed else "  passphrase unchanged (strengthened only)")
    if not done.after.encrypted:
        app.warn(f"{done.path} is NOT encrypted now: anyone who can read it can sign certificates")
    if done.kept_old is not None:
        app.warn(
            f"the previous key is kept as {done.kept_old} (it opens with the old passphrase); "
            "delete it once the new passphrase is safely stored"
        )
