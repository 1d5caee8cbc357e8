"""``rdsssl crl build | show``: certificate revocation lists (local); ``crl refresh`` (cloud)
lives in `rdsssl.cli.crl_refresh`, imported only when it runs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click

from rdsssl.cli.common import (
    ca_dir_option,
    check_days,
    get_app,
    iso,
    json_option,
    open_store,
    passphrase_file_option,
    read_input,
    restart_margin_option,
    unlock,
    wait_lock_option,
)
from rdsssl.cli.lazy import LazyGroup
from rdsssl.pki import crypto
from rdsssl.rds import service_profile

__all__ = ["crl"]


def _entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


@click.group(
    cls=LazyGroup,
    lazy={
        "refresh": (
            "rdsssl.cli.crl_refresh:refresh",
            "Upload a fresh CRL where one is due (cloud).",
        )
    },
)
def crl() -> None:
    """Build and show certificate revocation lists (local, no cloud access)."""


@crl.command("build")
@ca_dir_option
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the CRL (PEM) here, atomically.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=crypto.DEFAULT_CRL_DAYS,
    show_default=True,
    callback=check_days("CRL"),
    help="Days until nextUpdate (each upload restarts the instance).",
)
@click.option(
    "--size-budget",
    type=click.IntRange(min=1),
    default=service_profile.CRL_SIZE_BUDGET,
    show_default=True,
    metavar="BYTES",
    help="Warn when the CRL is larger than this.",
)
@restart_margin_option
@passphrase_file_option
@wait_lock_option
@json_option
def build(
    ca_dir: Path,
    out_file: Path,
    days: int,
    size_budget: int,
    restart_margin: timedelta,
    passphrase_file: Path | None,
    wait_lock: float,
) -> None:
    """Sign a CRL of every revoked certificate, with the next CRL number.

    \b
    Example:
      rdsssl crl build --ca-dir ./ca --out crl.pem --days 180
    """
    app = get_app()
    with open_store(ca_dir, wait_lock=wait_lock) as store:
        unlock(app, store, passphrase_file)
        built = store.build_crl(
            now=app.now(), days=days, out=out_file, restart_margin=restart_margin
        )
    size = len(built.pem)
    over = size > size_budget
    app.result(
        {
            "out": str(out_file),
            "number": built.number,
            "entries": built.entries,
            "last_update": iso(built.last_update),
            "next_update": iso(built.next_update),
            "size": size,
            "size_budget": size_budget,
            "over_budget": over,
            "fingerprint": built.fingerprint,
        }
    )
    app.info(
        f"wrote {out_file}: CRL number {built.number}, {_entries(built.entries)}, "
        f"next update {iso(built.next_update)}, {size} bytes"
    )
    if over:
        app.warn(
            f"the CRL is {size} bytes, above the {size_budget}-byte budget: the RDS API "
            "may refuse it; entries of long-expired certificates are dropped automatically"
        )


@crl.command("show")
@click.argument("crl_file", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False))
@json_option
def show(crl_file: Path) -> None:
    """Show a CRL file: issuer, number, last/next update, revoked serials.

    \b
    Example:
      rdsssl crl show crl.pem
    """
    app = get_app()
    crls = crypto.load_crls(read_input(crl_file, "a CRL file"), source=str(crl_file))
    infos = [crypto.inspect_crl(c) for c in crls]
    app.result(
        {
            "file": str(crl_file),
            "crls": [
                {
                    "issuer": i.issuer,
                    "number": i.number,
                    "last_update": iso(i.last_update),
                    "next_update": iso(i.next_update),
                    "entries": len(i.revoked_serials),
                    "revoked_serials": [crypto.serial_hex(s) for s in i.revoked_serials],
                    "fingerprint": i.fingerprint,
                    "signature_hash": i.signature_hash,
                }
                for i in infos
            ],
        }
    )
    for n, info in enumerate(infos, start=1):
        if len(infos) > 1:
            app.out(f"CRL {n} of {len(infos)}")
        app.out(f"Issuer:       {info.issuer}")
        app.out(f"CRL number:   {'none' if info.number is None else info.number}")
        app.out(f"Last update:  {iso(info.last_update)}")
        app.out(f"Next update:  {iso(info.next_update) or 'none'}")
        app.out(f"Fingerprint:  SHA-256 {info.fingerprint}")
        app.out(f"Entries:      {len(info.revoked_serials)}")
        for serial in info.revoked_serials:
            app.out(f"  {crypto.serial_hex(serial)}")
