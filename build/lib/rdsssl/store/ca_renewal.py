"""What ``ca renew`` checks and keeps: a renewal is refused when it would shorten the CA's
life or strand valid certificates (their authority key identifier names the current CA's
serial), ca.crt is read back to notice another run's renewal, and the history of the CA's
certificates comes from the inventory. ``CaStore.renew_ca`` runs ``renew`` under the store
lock.

``ca renew`` (``renew``) replaces ca.crt by the same CA with a new serial and validity
(``crypto.renew_ca``: same subject, key and SubjectKeyIdentifier, so everything signed under the
previous certificate still chains). The history lives in the inventory, not in files, so that
one transaction decides it: (1) the current certificate is recorded (a no-op when it is
already), committed; (2) the new ca.crt is staged (a fsynced temp file); (3) in one transaction
the new certificate is recorded and the temp file renamed over ca.crt, then the COMMIT. A kill
before the rename leaves the old ca.crt, recorded; one between the rename and the COMMIT leaves
the new ca.crt unrecorded, which ``CaStore.open`` accepts because it is self-signed by the
recorded CA's key under the recorded subject and SubjectKeyIdentifier (the next renewal records
it in step 1). Either way the store opens, with the old or the new CA current, and every
certificate ever recorded as the CA's is the same CA.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from rdsssl.errors import InputError, StoreError
from rdsssl.pki import crypto
from rdsssl.store.db import Inventory
from rdsssl.store.fsutil import StagedFile
from rdsssl.store.records import CaVersion, CertRecord, format_time

__all__ = [
    "history",
    "read_ca_cert",
    "refuse_shorter",
    "refuse_stranded",
    "renew",
    "stage_ca_file",
    "stranded",
]


def read_ca_cert(path: Path) -> x509.Certificate:
    """The one certificate of the CA certificate file ``path``; StoreError otherwise."""
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {source}: {exc.strerror}") from None
    certs = crypto.load_certificates(data, source=source, what="the CA certificate file")
    if len(certs) != 1:
        raise StoreError(f"{source}: holds {len(certs)} certificates; expected one")
    return certs[0]


def stage_ca_file(path: Path) -> StagedFile:
    """``path`` (ca.crt) staged for writing; StoreError when that cannot be done."""
    try:
        return StagedFile(path, mode=0o644)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from None


def refuse_shorter(old: x509.Certificate, new: x509.Certificate, now: datetime) -> None:
    """InputError when the renewal would end before the current CA."""
    old_end, new_end = old.not_valid_after_utc, new.not_valid_after_utc
    if new_end >= old_end:
        return
    needed = -(-(old_end - now) // timedelta(days=1))  # whole days, rounded up
    raise InputError(
        f"the renewed CA would end {format_time(new_end)}, before the current one "
        f"({format_time(old_end)}): a renewal does not shorten the CA's life; give at least "
        f"{needed} days (--days), or --force to shorten it on purpose"
    )


def stranded(
    inv: Inventory, old: x509.Certificate, new: x509.Certificate, now: datetime
) -> list[CertRecord]:
    """Valid certificates that chain to ``old`` but would not to ``new``."""
    found = []
    for row in inv.all():
        if row.cert_der is None or row.state(now) != "valid":
            continue
        cert = x509.load_der_x509_certificate(row.cert_der)
        if crypto.akid_fits(cert, old) and not crypto.akid_fits(cert, new):
            found.append(row)
    return found


def refuse_stranded(rows: list[CertRecord]) -> None:
    """InputError naming the valid certificates that would not chain to the renewed CA."""
    if not rows:
        return
    shown = ", ".join(f"{r.serial_hex} ({r.cn})" for r in rows[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    raise InputError(
        f"{len(rows)} valid certificate(s) name the current CA certificate by its serial "
        f"(authority key identifier) and would be refused once the renewed CA is on an "
        f"instance: {shown}{more}. Revoke or re-issue them after the renewal; pass --force to "
        "renew anyway"
    )


def history(inv: Inventory, current: x509.Certificate) -> list[CaVersion]:
    """Every certificate of the CA, oldest first, ``current`` (ca.crt) marked; a store never
    renewed has only its current one."""
    current_fp = crypto.fingerprint(current)
    versions = [
        CaVersion(crypto.inspect_cert(c), crypto.fingerprint(c) == current_fp, at)
        for c, at in inv.ca_certs()
    ]
    if not any(v.current for v in versions):  # never renewed, or a renewal's record lost
        versions.append(CaVersion(crypto.inspect_cert(current), True, None))
    return versions


def renew(
    inv: Inventory,
    ca_file: Path,
    old: x509.Certificate,
    key: crypto.PrivateKey,
    *,
    days: int,
    now: datetime,
    force: bool,
) -> tuple[x509.Certificate, list[CertRecord]]:
    """Renew ``old`` for ``days`` and write it to ``ca_file`` in the three steps the module
    docstring describes; the new certificate and the valid certificates it strands (refused,
    InputError and nothing changed, unless ``force``). The caller holds the store lock."""
    new = crypto.renew_ca(old, key, now=now, days=days)
    found = stranded(inv, old, new, now)
    if not force:
        refuse_shorter(old, new, now)
        refuse_stranded(found)
    with inv.transaction():
        inv.record_ca(old, now=now)
    with stage_ca_file(ca_file) as staged:
        staged.write(crypto.cert_pem(new))
        with inv.transaction():
            inv.record_ca(new, now=now)
            staged.commit()
    return new, found
