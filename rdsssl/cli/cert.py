"""``rdsssl cert issue | sign | list | revoke | renew``: client certificates (local).

`renew` (`rdsssl.cli.renew`) and `needs-renewal` (`rdsssl.cli.needs_renewal`) are lazy
sub-commands (`rdsssl.cli.lazy`): imported only when they run, so `cert issue` and `cert list`
never load the renewal, deploy-hook and rotation modules behind them."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import click

from rdsssl.cli.app import App
from rdsssl.cli.common import (
    ca_dir_option,
    days_option,
    get_app,
    iso,
    json_option,
    open_store,
    passphrase_file_option,
    read_input,
    read_input_or_stdin,
    unlock,
    wait_lock_option,
    warn_truncated,
)
from rdsssl.cli.lazy import LazyGroup
from rdsssl.errors import InputError
from rdsssl.models import RevocationReason
from rdsssl.ops import batch_input
from rdsssl.pki import crypto
from rdsssl.store.fsutil import atomic_write
from rdsssl.store.records import CertLine, ListingSize, RevokeResult
from rdsssl.store.revocation import Selection

__all__ = ["cert"]


@click.group(
    cls=LazyGroup,
    lazy={
        "issue": ("rdsssl.cli.cert_issue:issue", "Issue certificates: a key and a signed cert."),
        "renew": ("rdsssl.cli.renew:renew", "Re-issue certificates inside their renewal window."),
        "needs-renewal": (
            "rdsssl.cli.needs_renewal:needs_renewal_cmd",
            "Exit 0 when a certificate file needs renewal, 1 when not.",
        ),
    },
)
def cert() -> None:
    """Issue, sign, list, revoke and renew client certificates (local, no cloud access)."""


@cert.command("sign")
@ca_dir_option
@click.option(
    "--csr",
    "csr_file",
    required=True,
    type=click.Path(path_type=Path),
    help="The certificate signing request (PEM or DER).",
)
@click.option("--user", help="Database user; must equal the CSR's CN (default: the CN).")
@days_option
@click.option(
    "--out",
    "out_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the certificate here (default: stdout).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite --out if it exists; sign a CSR key that fails over TLS 1.2 (ECDSA off P-256).",
)
@passphrase_file_option
@wait_lock_option
@json_option
def sign(
    ca_dir: Path,
    csr_file: Path,
    user: str | None,
    days: int,
    out_file: Path | None,
    force: bool,
    passphrase_file: Path | None,
    wait_lock: float,
) -> None:
    """Sign a CSR: the user keeps the private key.

    \b
    Example:
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\
          -keyout bob.key -out bob.csr -subj /CN=bob
      rdsssl cert sign --ca-dir ./ca --csr bob.csr --out bob.crt
    """
    app = get_app()
    csr_pem = read_input(csr_file, "a certificate signing request")
    if out_file is not None and out_file.exists() and not force:
        raise InputError(f"{out_file} already exists; pass --force to overwrite it")
    with open_store(ca_dir, wait_lock=wait_lock) as store:
        unlock(app, store, passphrase_file)
        signed = store.sign_csr(
            csr_pem,
            source=str(csr_file),
            user=user,
            days=days,
            now=app.now(),
            allow_tls13_only=force,
        )
    pem = crypto.cert_pem(signed.cert)
    record = signed.record
    if out_file is not None:
        try:
            atomic_write(out_file, pem, mode=0o644, overwrite=force)
        except FileExistsError:
            raise InputError(f"{out_file} already exists; pass --force to overwrite it") from None
    data: dict[str, object] = {
        "certificate": record.to_json(app.now()),
        "out": None if out_file is None else str(out_file),
    }
    if out_file is None:
        data["certificate_pem"] = pem.decode("ascii")
        if not app.json:
            sys.stdout.write(pem.decode("ascii"))
            sys.stdout.flush()
    app.result(data)
    warn_truncated(app, record, signed.truncated)
    where = f", wrote {out_file}" if out_file is not None else ""
    app.info(
        f"signed certificate {record.serial_hex} for {record.cn}, valid until "
        f"{iso(record.not_after)}{where}"
    )


@cert.command("list")
@ca_dir_option
@click.option("--user", help="Only this user's certificates.")
@click.option(
    "--status",
    type=click.Choice(["all", "valid", "revoked", "expired"]),
    default="all",
    show_default=True,
    help="Only certificates in this state.",
)
@json_option
def list_(ca_dir: Path, user: str | None, status: str) -> None:
    """List certificates: serial, CN, status (valid/revoked/expired), notAfter, fingerprint.

    \b
    Example:
      rdsssl cert list --ca-dir ./ca --status valid
      rdsssl cert list --ca-dir ./ca --json | jq -r '.certificates[].serial'
    """
    app = get_app()
    now = app.now()
    state = None if status == "all" else status
    with open_store(ca_dir) as store:
        if app.json:
            rows = (r.to_json() for r in store.listing(now=now, user=user, state=state))
            if not app.stream_result({}, "certificates", rows):
                app.info("no certificates")
            return
        size = store.listing_size(now=now, user=user, state=state)
        if not size.rows:
            app.info("no certificates")
            return
        _write_table(app, store.listing_lines(now=now, user=user, state=state), size)


_TABLE_BATCH = 1000  # rows per write: one stdout write per batch, not per row


def _write_table(app: App, rows: Iterable[CertLine], size: ListingSize) -> None:
    """The ``cert list`` table, aligned by ``size`` before the first row is read, written in
    batches as the rows stream in."""
    width, cn_width = size.serial_width, max(4, size.cn_width)
    line = f"{{:<{width}}}  {{:<{cn_width}}}  {{:<7}}  {{:<20}}  {{}}".format
    app.out(
        f"{'SERIAL':<{width}}  {'CN':<{cn_width}}  {'STATUS':<7}  {'NOT AFTER':<20}  "
        "FINGERPRINT (SHA-256)"
    )
    batch: list[str] = []
    for serial, cn, state, not_after, fingerprint in rows:
        batch.append(line(serial, cn, state, not_after, fingerprint or "(unknown)"))
        if len(batch) == _TABLE_BATCH:
            app.out("\n".join(batch))
            batch.clear()
    if batch:
        app.out("\n".join(batch))


@cert.command("revoke")
@ca_dir_option
@click.option("--serial", help="Serial in hex (as shown by cert list).")
@click.option(
    "--cert",
    "cert_file",
    type=click.Path(path_type=Path),
    help="The certificate file; also one issued outside rdsssl by this CA.",
)
@click.option("--user", help="The user's only valid certificate (refused when ambiguous).")
@click.option(
    "--serials-file",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="Every serial in FILE ('-': stdin), one per line in hex; # comments ignored. All or "
    "nothing.",
)
@click.option(
    "--reason",
    type=click.Choice([r.value for r in RevocationReason], case_sensitive=False),
    default=RevocationReason.UNSPECIFIED.value,
    show_default=True,
    help="CRL reason code.",
)
@wait_lock_option
@json_option
def revoke(
    ca_dir: Path,
    serial: str | None,
    cert_file: Path | None,
    user: str | None,
    serials_file: Path | None,
    reason: str,
    wait_lock: float,
) -> None:
    """Revoke certificates (takes effect once a CRL is built and deployed).

    --serials-file revokes every serial in one transaction, or none: an unknown serial, a CA
    certificate or a serial listed twice refuses the whole file, naming each line. A serial
    already revoked is no error and no change (its first revocation is kept), as with --serial.
    One line per serial on stdout: SERIAL, CN, revoked | already-revoked (tabs).

    \b
    Examples:
      rdsssl cert revoke --ca-dir ./ca --serial 1f3a9c --reason keyCompromise
      rdsssl cert revoke --ca-dir ./ca --cert alice/client.crt
      rdsssl cert revoke --ca-dir ./ca --user alice
      rdsssl cert revoke --ca-dir ./ca --serials-file leavers.txt
    """
    app = get_app()
    chosen = sum(x is not None for x in (serial, cert_file, user, serials_file))
    if chosen != 1:
        raise click.UsageError(
            "select the certificate with exactly one of --serial, --cert, --user, --serials-file"
        )
    canonical = next(r for r in RevocationReason if r.value.lower() == reason.lower())
    if serials_file is not None:
        source = "stdin" if str(serials_file) == "-" else str(serials_file)
        text = batch_input.decode(read_input_or_stdin(serials_file, "a serials file"), source)
        selections = [
            Selection(serial=line.serial, label=line.label)
            for line in batch_input.read_serials(text, source=source)
        ]
    else:
        selections = [
            Selection(
                serial=crypto.parse_serial(serial) if serial is not None else None,
                cert_pem=read_input(cert_file, "a certificate") if cert_file is not None else None,
                cert_source=str(cert_file),
                user=user,
            )
        ]
    with open_store(ca_dir, wait_lock=wait_lock) as store:
        results = store.revoke_many(selections, reason=canonical, now=app.now())
    if serials_file is None:
        _report_revoked(app, results[0], canonical)
        return
    now = app.now()
    app.result(
        {"revoked": [{"changed": r.changed, "certificate": r.record.to_json(now)} for r in results]}
    )
    for r in results:
        state = "revoked" if r.changed else "already-revoked"
        app.out(f"{r.record.serial_hex}\t{r.record.cn}\t{state}")
    changed = sum(r.changed for r in results)
    if not changed:
        app.info(f"all {len(results)} certificates were already revoked; nothing changed")
        return
    app.info(
        f"revoked {changed} certificates ({len(results) - changed} already revoked), reason "
        f"{canonical.value}; build and deploy a CRL for them to take effect"
    )


def _report_revoked(app: App, result: RevokeResult, reason: RevocationReason) -> None:
    """The output of one revocation, as it has always been."""
    record = result.record
    app.result({"changed": result.changed, "certificate": record.to_json(app.now())})
    if result.changed:
        app.info(
            f"revoked certificate {record.serial_hex} ({record.cn}), reason "
            f"{reason.value}; build and deploy a CRL for it to take effect"
        )
    else:
        app.info(
            f"certificate {record.serial_hex} ({record.cn}) was already revoked on "
            f"{iso(record.revoked_at)}; nothing changed"
        )
