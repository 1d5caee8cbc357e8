"""``rdsssl cert issue | sign | list | revoke | renew``: client certificates (local).

`renew` (`rdsssl.cli.renew`) and `needs-renewal` (`rdsssl.cli.needs_renewal`) are lazy
sub-commands (`rdsssl.cli.lazy`): imported only when they run, so `cert issue` and `cert list`
never load the renewal, deploy-hook and rotation modules behind them."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import click

from rdsssl.cli.app import App
from rdsssl.cli.common import (
    ca_dir_option,
    days_option,
    format_options,
    get_app,
    iso,
    json_option,
    key_type_option,
    open_store,
    p12_passphrase,
    passphrase_file_option,
    read_input,
    unlock,
    wait_lock_option,
    warn_truncated,
)
from rdsssl.cli.lazy import LazyGroup
from rdsssl.errors import InputError
from rdsssl.models import KeyType, RevocationReason
from rdsssl.ops import batch_input
from rdsssl.ops.client_issue import BatchOptions, ClientSpec, IssueResult, issue_many
from rdsssl.pki import crypto
from rdsssl.store.fsutil import atomic_write
from rdsssl.store.records import CertLine, ListingSize, RevokeResult
from rdsssl.store.revocation import Selection

__all__ = ["cert"]


@click.group(
    cls=LazyGroup,
    lazy={
        "renew": ("rdsssl.cli.renew:renew", "Re-issue certificates inside their renewal window."),
        "needs-renewal": (
            "rdsssl.cli.needs_renewal:needs_renewal_cmd",
            "Exit 0 when a certificate file needs renewal, 1 when not.",
        ),
    },
)
def cert() -> None:
    """Issue, sign, list, revoke and renew client certificates (local, no cloud access)."""


@cert.command("issue")
@ca_dir_option
@click.option(
    "--user",
    "users",
    multiple=True,
    help="Database user name: the certificate CN. Repeatable.",
)
@click.option(
    "--users-file",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="Issue for every user in FILE ('-': stdin): one name per line, or CSV with the "
    "header user,days,key-type (days, key-type optional). # comments and blank lines ignored.",
)
@days_option
@key_type_option(KeyType.EC_P256)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output directory of the one user (default: ./USER), created 0700.",
)
@click.option(
    "--out-root",
    type=click.Path(path_type=Path, file_okay=False),
    help="Files of each user go to OUT_ROOT/USER/ (default: ./USER).",
)
@format_options
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite existing files in the output directories; allow a key type that fails over "
    "TLS 1.2 (ec-p384).",
)
@passphrase_file_option
@wait_lock_option
@json_option
def issue(
    ca_dir: Path,
    users: tuple[str, ...],
    users_file: Path | None,
    days: int,
    key_type: str,
    out_dir: Path | None,
    out_root: Path | None,
    fmt: str,
    p12_passphrase_env: str | None,
    force: bool,
    passphrase_file: Path | None,
    wait_lock: float,
) -> None:
    """Issue a key and client certificate for one or many database users.

    Writes client.crt, client.key (0600) and root.crt (the client CA) into --out. For
    sslmode=verify-full the client also needs the instance's server CA as sslrootcert.

    Several users (--user repeated, --users-file): every name is checked first (a refusal
    issues nothing), the CA key is unlocked once, every certificate is recorded in one
    transaction; one line per user on stdout: USER, SERIAL, NOT AFTER, DIRECTORY (tabs).

    \b
    Examples:
      rdsssl cert issue --ca-dir ./ca --user alice --out ./alice
      rdsssl cert issue --ca-dir ./ca --users-file users.txt --out-root ./clients
    """
    app = get_app()
    now = app.now()
    if out_dir is not None and out_root is not None:
        raise click.UsageError("--out and --out-root contradict each other; pass one")
    clients = _clients(users, users_file, days=days, key_type=KeyType(key_type), now=now)
    if out_dir is not None and len(clients) != 1:
        raise click.UsageError(
            f"--out is the directory of one user, and {len(clients)} are named; pass "
            "--out-root ROOT (files go to ROOT/USER/)"
        )
    options = BatchOptions(
        ca_dir=ca_dir,
        clients=tuple(dataclasses.replace(c, out_dir=out_dir) for c in clients),
        now=now,
        out_root=out_root,
        fmt=fmt,
        p12_passphrase=p12_passphrase(fmt, p12_passphrase_env),
        force=force,
        wait_lock=wait_lock,
    )
    done = issue_many(
        options, unlock=lambda store: unlock(app, store, passphrase_file), warn=app.warn
    )
    if users_file is None and len(users) == 1:
        _report_one(app, done[0])
    else:
        _report_many(app, done)


def _clients(
    users: tuple[str, ...], users_file: Path | None, *, days: int, key_type: KeyType, now: datetime
) -> list[ClientSpec]:
    """The users of ``cert issue``: every --user, then the users file's, with their options."""
    if not users and users_file is None:
        raise click.UsageError("name the users: --user NAME (repeatable) or --users-file FILE")
    clients = [ClientSpec(user, days, key_type, label=f"--user {user!r}") for user in users]
    if users_file is not None:
        source = "stdin" if str(users_file) == "-" else str(users_file)
        text = batch_input.decode(_read_file(users_file, "a users file"), source)
        clients.extend(
            ClientSpec(
                line.user,
                days if line.days is None else line.days,
                key_type if line.key_type is None else line.key_type,
                label=line.label,
            )
            for line in batch_input.read_users(text, source=source, now=now)
        )
    return clients


def _read_file(path: Path, what: str) -> bytes:
    """The bytes of FILE, or of stdin for '-'."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    return read_input(path, what)


def _report_one(app: App, done: IssueResult) -> None:
    """The single form's output, as it has always been: the document and two messages."""
    record, files = done.issued.record, done.files
    app.result(
        {
            "certificate": record.to_json(app.now()),
            "files": [str(p) for p in files],
            "truncated": done.issued.truncated,
        }
    )
    warn_truncated(app, record, done.issued.truncated)
    app.info(
        f"issued certificate {record.serial_hex} for {record.cn} ({record.key_type}), "
        f"valid until {iso(record.not_after)}"
    )
    app.info("wrote " + ", ".join(str(p) for p in files))


def _report_many(app: App, done: list[IssueResult]) -> None:
    """A batch: ``issued``, one single-form document per certificate, and a line per user."""
    now = app.now()
    app.result(
        {
            "issued": [
                {
                    "certificate": d.issued.record.to_json(now),
                    "files": [str(p) for p in d.files],
                    "truncated": d.issued.truncated,
                }
                for d in done
            ]
        }
    )
    for d in done:
        record = d.issued.record
        folder = d.files[0].parent if d.files else ""
        app.out(f"{record.cn}\t{record.serial_hex}\t{iso(record.not_after)}\t{folder}")
        warn_truncated(app, record, d.issued.truncated)
    app.info(f"issued {len(done)} certificates")


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
            found = [r.to_json() for r in store.listing(now=now, user=user, state=state)]
            app.result({"certificates": found})
            if not found:
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
        text = batch_input.decode(_read_file(serials_file, "a serials file"), source)
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
