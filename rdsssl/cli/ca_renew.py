"""``rdsssl ca renew``: renew the client CA with the same key (registered on the ``ca`` group in
cli/ca.py). Refused while a rotation away from this CA is under way."""

from __future__ import annotations

from pathlib import Path

import click

from rdsssl.cli.common import (
    ca_dir_option,
    cert_json,
    check_days,
    get_app,
    iso,
    json_option,
    open_store,
    passphrase_file_option,
    unlock,
    wait_lock_option,
)
from rdsssl.errors import InputError
from rdsssl.ops.rotation_file import load, state_path
from rdsssl.ops.rotation_state import Phase
from rdsssl.pki import crypto
from rdsssl.store.records import CaRenewal

__all__ = ["renew"]


@click.command("renew")
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
