"""``rdsssl ca init | import | show | renew | passphrase``: the client CA store."""

from __future__ import annotations

import hmac
from pathlib import Path

import click

from rdsssl.cli.common import (
    NEW_PASSPHRASE_ENV,
    ca_dir_option,
    cert_json,
    check_days,
    current_passphrase,
    get_app,
    iso,
    json_option,
    key_type_option,
    new_passphrase,
    open_store,
    passphrase_file_option,
    read_input,
    unlock,
    wait_lock_option,
)
from rdsssl.errors import ConfigError, InputError, UsageError
from rdsssl.models import KeyType
from rdsssl.ops.rotation_state import Phase, load, state_path
from rdsssl.pki import crypto
from rdsssl.pki.crypto import KeyProtection
from rdsssl.store.ca_import import ImportSources
from rdsssl.store.castore import CaStore
from rdsssl.store.files import CA_KEY
from rdsssl.store.records import CaRenewal, CaSummary, CaVersion, KeyRewrap

__all__ = ["ca"]

_DEFAULT_CN = "rdsssl-client-ca"


@click.group()
def ca() -> None:
    """Create, import and show the client CA store (local, no cloud access)."""


def _new_store_options(f: click.decorators.FC) -> click.decorators.FC:
    f = passphrase_file_option(f)
    f = click.option(
        "--no-passphrase",
        is_flag=True,
        help="Store the CA key unencrypted (only for throwaway CAs and tests).",
    )(f)
    return json_option(f)


def _report(summary: CaSummary, *, action: str, imported: int | None = None) -> None:
    app = get_app()
    info = summary.info
    data = _summary_json(summary)
    if imported is not None:
        data["imported_certificates"] = imported
    app.result(data)
    app.info(f"{action} CA {info.subject} in {summary.path}")
    app.info(f"  serial {info.serial_hex}, valid until {iso(info.not_after)}")
    app.info(f"  fingerprint {info.fingerprint}")
    protection = summary.key_protection
    key_state = protection.describe() if protection.encrypted else "NOT encrypted (--no-passphrase)"
    app.info(f"  key {info.key_type}, {key_state}")
    if imported:
        app.info(f"  adopted {imported} certificates from index.txt")


def _protection_text(protection: KeyProtection) -> str:
    """'pbkdf2-hmac-sha256, 600,000 rounds, aes-256-cbc', with advice when it is weak."""
    text = protection.describe()
    if protection.encrypted and protection.weak:
        text += " (strengthen it: rdsssl ca passphrase --same-passphrase)"
    return text


def _summary_json(summary: CaSummary) -> dict[str, object]:
    last = summary.last_crl
    return {
        "ca_dir": str(summary.path),
        "ca": cert_json(summary.info),
        "key_encrypted": summary.key_encrypted,
        "key_protection": summary.key_protection.to_json(),
        "certificates": {
            "valid": summary.valid,
            "revoked": summary.revoked,
            "expired": summary.expired,
        },
        "history": [v.to_json() for v in summary.history],
        "next_crl_number": summary.next_crl_number,
        "last_crl": None
        if last is None
        else {
            "number": last.number,
            "last_update": iso(last.last_update),
            "next_update": iso(last.next_update),
            "entries": last.entries,
            "fingerprint": last.fingerprint,
        },
    }


@ca.command("init")
@click.option(
    "--ca-dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory to create (must not exist, or be empty).",
)
@click.option("--cn", default=_DEFAULT_CN, show_default=True, help="CA common name.")
@key_type_option(KeyType.EC_P256)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=crypto.DEFAULT_CA_DAYS,
    show_default=True,
    callback=check_days("CA"),
    help="CA validity in days.",
)
@_new_store_options
def init(
    ca_dir: Path,
    cn: str,
    key_type: str,
    days: int,
    no_passphrase: bool,
    passphrase_file: Path | None,
) -> None:
    """Create a new CA store with a self-signed client CA.

    \b
    Example:
      RDSSSL_CA_PASSPHRASE=... rdsssl ca init --ca-dir ./ca --cn root-ca1
    """
    app = get_app()
    passphrase = new_passphrase(
        app, key_path=ca_dir / CA_KEY, no_passphrase=no_passphrase, passphrase_file=passphrase_file
    )
    now = app.now()
    with CaStore.init(
        ca_dir, cn=cn, key_type=KeyType(key_type), days=days, passphrase=passphrase, now=now
    ) as store:
        _report(store.summary(now=now), action="created")


@ca.command("import")
@click.option(
    "--ca-dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory to create (must not exist, or be empty).",
)
@click.option(
    "--cert",
    "cert_file",
    required=True,
    type=click.Path(path_type=Path),
    help="The CA certificate (PEM), e.g. ca1.crt.",
)
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Its private key (PEM or DER), e.g. ca1.key.",
)
@click.option(
    "--key-passphrase-file",
    type=click.Path(path_type=Path),
    help="Passphrase of --key when it is encrypted (first line of FILE).",
)
@click.option(
    "--index",
    "index_file",
    type=click.Path(path_type=Path),
    help="An openssl ca index.txt: its certificates and revocations are kept.",
)
@click.option(
    "--crlnumber",
    "crlnumber_file",
    type=click.Path(path_type=Path),
    help="An openssl crlnumber file: the next CRL number.",
)
@_new_store_options
def import_(
    ca_dir: Path,
    cert_file: Path,
    key_file: Path,
    key_passphrase_file: Path | None,
    index_file: Path | None,
    crlnumber_file: Path | None,
    no_passphrase: bool,
    passphrase_file: Path | None,
) -> None:
    """Adopt a CA made by hand with openssl (and optionally its openssl ca history).

    \b
    Example:
      openssl req -new -x509 -days 3650 -nodes -out ca1.crt -keyout ca1.key -subj /CN=root-ca1
      rdsssl ca import --ca-dir ./ca --cert ca1.crt --key ca1.key \\
          --index demoCA/index.txt --crlnumber demoCA/crlnumber
    """
    app = get_app()
    cert_pem = read_input(cert_file, "a CA certificate")
    key_pem = read_input(key_file, "a private key")
    key_passphrase = None
    if key_passphrase_file is not None:
        lines = read_input(key_passphrase_file, "a passphrase file").splitlines()
        if not lines or not lines[0]:
            raise ConfigError(f"{key_passphrase_file}: the passphrase file is empty")
        key_passphrase = lines[0]
    index = read_input(index_file, "an openssl index.txt") if index_file else None
    crlnumber = read_input(crlnumber_file, "an openssl crlnumber file") if crlnumber_file else None
    passphrase = new_passphrase(
        app, key_path=ca_dir / CA_KEY, no_passphrase=no_passphrase, passphrase_file=passphrase_file
    )
    now = app.now()
    with CaStore.import_ca(
        ca_dir,
        cert_pem=cert_pem,
        key_pem=key_pem,
        key_passphrase=key_passphrase,
        passphrase=passphrase,
        index_txt=index,
        crlnumber=crlnumber,
        now=now,
        sources=ImportSources(
            cert=str(cert_file),
            key=str(key_file),
            index=str(index_file),
            crlnumber=str(crlnumber_file),
        ),
    ) as store:
        _report(store.summary(now=now), action="imported", imported=len(store.certificates()))


@ca.command("show")
@click.option(
    "--ca-dir",
    envvar="RDSSSL_CA_DIR",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The CA store directory (env RDSSSL_CA_DIR).",
)
@json_option
def show(ca_dir: Path) -> None:
    """Show the CA: subject, serial, validity, fingerprint, key, certificate counts, CRL number.

    \b
    Example:
      rdsssl ca show --ca-dir ./ca
    """
    app = get_app()
    with open_store(ca_dir) as store:
        summary = store.summary(now=app.now())
    app.result(_summary_json(summary))
    info = summary.info
    last = summary.last_crl
    rows = [
        ("CA directory", str(summary.path)),
        ("Subject", info.subject),
        ("Serial", info.serial_hex),
        ("Not before", iso(info.not_before)),
        ("Not after", iso(info.not_after)),
        ("Fingerprint", f"SHA-256 {info.fingerprint}"),
        ("Key type", info.key_type),
        ("Key protection", _protection_text(summary.key_protection)),
        (
            "Certificates",
            f"{summary.valid} valid, {summary.revoked} revoked, {summary.expired} expired",
        ),
        ("Next CRL number", str(summary.next_crl_number)),
        (
            "Last CRL",
            "none built yet"
            if last is None
            else f"number {last.number}, {last.entries} entries, next update "
            f"{iso(last.next_update)}",
        ),
    ]
    for label, value in rows:
        app.out(f"{label + ':':<17}{value}")
    app.out("CA history:      (every certificate of this CA, oldest first; same key and subject)")
    for version in summary.history:
        app.out(f"  {_version_line(version)}")


def _version_line(version: CaVersion) -> str:
    info = version.info
    state = "current" if version.current else "previous"
    return (
        f"{state:<9}serial {info.serial_hex}  {iso(info.not_before)} .. {iso(info.not_after)}"
        f"  SHA-256 {info.fingerprint}"
    )


@ca.command("renew")
@ca_dir_option
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=crypto.DEFAULT_CA_DAYS,
    show_default=True,
    callback=check_days("CA"),
    help="Validity of the renewed CA in days, from now.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Renew even when the renewed CA would end before the current one, or when valid "
    "certificates name the current CA by its serial (they would be refused).",
)
@passphrase_file_option
@wait_lock_option
@json_option
def renew(
    ca_dir: Path, days: int, force: bool, passphrase_file: Path | None, wait_lock: float
) -> None:
    """Renew the CA with the same key: a new serial and validity; subject, key and key
    identifier unchanged.

    Every certificate and CRL signed so far stays valid under the renewed CA, so putting it on
    the instances (rdsssl apply) costs one ModifyDBInstanceSSL call and one restart each, and
    no client re-issue. The previous CA certificates are kept in the store (ca show lists
    them). To change the key, rotate the CA instead (rdsssl rotate ca).

    \b
    Example:
      rdsssl ca renew --ca-dir ./ca --days 3650
      rdsssl apply -f rdsssl.toml
    """
    app = get_app()
    with open_store(ca_dir, wait_lock=wait_lock) as store:
        _refuse_during_rotation(ca_dir)
        unlock(app, store, passphrase_file)
        done = store.renew_ca(days=days, now=app.now(), force=force)
    _report_renewal(ca_dir, done)


def _refuse_during_rotation(ca_dir: Path) -> None:
    """A rotation away from this CA that has (or may have) changed instances records the CA by
    fingerprint; renewing under it would leave the rotation unable to go on or back."""
    state = load(state_path(ca_dir))
    if state is None or state.phase in (Phase.RETIRED, Phase.ROLLED_BACK):
        return
    touched = state.phase is not Phase.NEW or any(state.instances.values())
    if touched:
        raise InputError(
            f"a rotation of {ca_dir} to {state.new.dir} is in progress (phase "
            f"{state.phase.value}): finish it (rdsssl rotate ca --ca-dir {ca_dir} --retire) or "
            "roll it back (--rollback) before renewing this CA"
        )


def _report_renewal(ca_dir: Path, done: CaRenewal) -> None:
    """What ``ca renew`` did, and what to do next."""
    app = get_app()
    now = app.now()
    old, new = done.previous, done.current
    app.result(
        {
            "ca_dir": str(ca_dir),
            "ca": cert_json(new),
            "previous": cert_json(old),
            "history": [v.to_json() for v in done.history],
            "stranded": [r.to_json(now) for r in done.stranded],
        }
    )
    app.info(f"renewed CA {new.subject} in {ca_dir} with the same key")
    app.info(f"  serial {old.serial_hex} -> {new.serial_hex}")
    app.info(f"  valid until {iso(new.not_after)} (was {iso(old.not_after)})")
    app.info(f"  fingerprint {new.fingerprint}")
    if new.not_after < old.not_after:
        app.warn(f"the renewed CA ends earlier than the previous one ({iso(old.not_after)})")
    for row in done.stranded:
        app.warn(
            f"certificate {row.serial_hex} ({row.cn}) names the previous CA by its serial and "
            "will be refused once the renewed CA is on an instance: re-issue or revoke it"
        )
    app.info(
        "certificates and CRLs signed so far stay valid under it; put it on the instances "
        "with rdsssl apply (one restart each, no client re-issue)"
    )


@ca.command("passphrase")
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
    app.info(f"re-encrypted {done.path}: {_protection_text(done.after)}")
    app.info(f"  was: {done.before.describe()}")
    app.info("  passphrase changed" if changed else "  passphrase unchanged (strengthened only)")
    if not done.after.encrypted:
        app.warn(f"{done.path} is NOT encrypted now: anyone who can read it can sign certificates")
    if done.kept_old is not None:
        app.warn(
            f"the previous key is kept as {done.kept_old} (it opens with the old passphrase); "
            "delete it once the new passphrase is safely stored"
        )
