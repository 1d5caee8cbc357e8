"""``rdsssl ca init | import | show``: the client CA store's lifecycle. The commands that
maintain an existing CA, ``ca renew`` (cli/ca_renew.py) and ``ca passphrase``
(cli/ca_passphrase.py), live in their own modules and are registered on the same group;
``ca renew`` lazily (``rdsssl.cli.lazy``), so ``ca show`` does not import the rotation state it
checks."""

from __future__ import annotations

from pathlib import Path

import click

from rdsssl.cli.ca_passphrase import passphrase, protection_text
from rdsssl.cli.common import (
    cert_json,
    check_days,
    get_app,
    iso,
    json_option,
    key_type_option,
    new_passphrase,
    open_store,
    passphrase_file_option,
    read_input,
)
from rdsssl.cli.lazy import LazyGroup
from rdsssl.errors import ConfigError
from rdsssl.models import KeyType
from rdsssl.pki import crypto
from rdsssl.store.ca_import import ImportSources
from rdsssl.store.castore import CaStore
from rdsssl.store.files import CA_KEY
from rdsssl.store.records import CaSummary, CaVersion

__all__ = ["ca"]

_DEFAULT_CN = "rdsssl-client-ca"


@click.group(
    cls=LazyGroup,
    lazy={
        "renew": (
            "rdsssl.cli.ca_renew:renew",
            "Renew the CA certificate: same subject and key, a new validity.",
        )
    },
)
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


def _summary_json(summary: CaSummary) -> dict[str, object]:
    last = summary.last_crl
    return {
        "ca_dir": str(summary.path),
        "ca": cert_json(summary.info),
        "key_encrypted": summary.key_encrypted,
        "key_protection": summary.key_protection.to_json(),
        "certificate_counts": {
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
        ("Key protection", protection_text(summary.key_protection)),
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


ca.add_command(passphrase)
