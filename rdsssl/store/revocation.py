"""Choosing the inventory rows ``cert revoke`` marks revoked, and the one rule it never breaks:
a CA certificate is never revoked (a CRL listing the store's own CA, or any CA of the chain,
makes PostgreSQL refuse every certificate that CA issued).

A certificate is selected by serial, by the certificate file itself (adopted into the inventory
when it was issued outside rdsssl by this CA, e.g. with ``openssl ca``, so that it can be
revoked), or by a user name that matches exactly one valid certificate. ``revoke_many`` runs
``select`` for every ``Selection`` and records the result inside ONE transaction
(``CaStore.revoke_many`` holds the store lock): all or nothing. A batch (``cert revoke
--serials-file``) is refused whole when any selection is (each problem named by its label,
e.g. the file and line), or when two select the same certificate; a certificate already revoked
is no error but no change (``changed`` False, its first revocation kept), as for one. One
certificate is a batch of one, and its errors are exactly those of ``select``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from rdsssl.errors import CryptoError, InputError, NotFoundError, StoreError, UsageError
from rdsssl.models import CertStatus, RevocationReason
from rdsssl.pki import crypto
from rdsssl.store.db import Inventory
from rdsssl.store.records import CertRecord, RevokeResult, format_time, utc_seconds

__all__ = ["Selection", "refusal", "refuse_ca", "revoke_many", "select"]


_LISTED = 10  # problems named in one refusal; the rest are counted


@dataclass(frozen=True)
class Selection:
    """One certificate to revoke: exactly one of ``serial``, ``cert_pem`` (read from
    ``cert_source``) and ``user``. ``label`` names it in a batch's refusal (e.g. ``FILE line
    3``)."""

    serial: int | None = None
    cert_pem: bytes | None = None
    cert_source: str = "certificate"
    user: str | None = None
    label: str = ""


def refusal(problems: Sequence[str], *, total: int, what: str) -> InputError:
    """One error for a refused batch: ``nothing <what>``, how many of ``total`` entries were
    refused, and the first problems (one line: errors leave on one line)."""
    shown = "; ".join(problems[:_LISTED])
    more = f"; and {len(problems) - _LISTED} more" if len(problems) > _LISTED else ""
    return InputError(f"nothing {what}: {len(problems)} of {total} entries refused: {shown}{more}")


def revoke_many(
    inv: Inventory,
    ca_certs: list[x509.Certificate],
    selections: Sequence[Selection],
    *,
    reason: RevocationReason,
    now: datetime,
) -> list[RevokeResult]:
    """Mark every selected certificate revoked in one transaction (the caller holds the store
    lock), in the order given. Already revoked: no change for that one."""
    with inv.transaction():
        records = _select_all(inv, ca_certs, selections, now)
        results: list[RevokeResult] = []
        for record in records:
            if record.status is CertStatus.REVOKED:
                results.append(RevokeResult(record=record, changed=False))
                continue
            revoked = dataclasses.replace(
                record, status=CertStatus.REVOKED, revoked_at=utc_seconds(now), reason=reason
            )
            inv.replace(revoked)
            results.append(RevokeResult(record=revoked, changed=True))
    return results


def _select_all(
    inv: Inventory,
    ca_certs: list[x509.Certificate],
    selections: Sequence[Selection],
    now: datetime,
) -> list[CertRecord]:
    """The row of every selection (inside the caller's transaction), or one InputError naming
    every selection refused and every certificate selected twice."""
    if len(selections) == 1:
        return [_select_one(inv, ca_certs, selections[0], now)]
    records: list[CertRecord] = []
    problems: list[str] = []
    first: dict[int, str] = {}
    for sel in selections:
        label = sel.label or _describe(sel)
        try:
            record = _select_one(inv, ca_certs, sel, now)
        except InputError as exc:
            problems.append(f"{label}: {exc}")
            continue
        if record.serial in first:
            problems.append(
                f"{label}: serial {record.serial_hex} is also on {first[record.serial]}"
            )
            continue
        first[record.serial] = label
        records.append(record)
    if problems:
        raise refusal(problems, total=len(selections), what="revoked")
    return records


def _describe(sel: Selection) -> str:
    """A selection without a label, for messages."""
    if sel.serial is not None:
        return f"serial {crypto.serial_hex(sel.serial)}"
    if sel.user is not None:
        return f"user {sel.user!r}"
    return sel.cert_source


def _select_one(
    inv: Inventory, ca_certs: list[x509.Certificate], sel: Selection, now: datetime
) -> CertRecord:
    return select(
        inv,
        ca_certs,
        serial=sel.serial,
        cert_pem=sel.cert_pem,
        cert_source=sel.cert_source,
        user=sel.user,
        now=now,
    )


def select(
    inv: Inventory,
    ca_certs: list[x509.Certificate],
    *,
    serial: int | None,
    cert_pem: bytes | None,
    cert_source: str,
    user: str | None,
    now: datetime,
) -> CertRecord:
    """The row selected by exactly one of ``serial``, ``cert_pem`` and ``user``; ``ca_certs``
    is the current CA certificate first, then every earlier one. The caller holds a transaction
    (adopting a certificate inserts or completes its row)."""
    if sum(x is not None for x in (serial, cert_pem, user)) != 1:
        raise UsageError("select the certificate with exactly one of --serial, --cert, --user")
    if cert_pem is not None:
        record = _adopt(inv, ca_certs[0], cert_pem, cert_source, now)
    elif user is not None:
        record = _only_valid_for(inv, user, now)
    else:
        assert serial is not None
        record = _by_serial(inv, ca_certs, serial, now)
    refuse_ca(record, ca_certs)
    return record


def refuse_ca(record: CertRecord, ca_certs: list[x509.Certificate]) -> None:
    """InputError when ``record`` is a CA certificate (one of ``ca_certs`` or any CA)."""
    is_ca_row = record.cert_der is not None and crypto.is_ca(
        x509.load_der_x509_certificate(record.cert_der)
    )
    own = {c.serial_number for c in ca_certs}
    if record.serial in own or is_ca_row:
        raise InputError(
            f"serial {record.serial_hex} is a CA certificate ({record.cn or 'no CN'}); "
            "revoking it would make PostgreSQL refuse every certificate it issued. Revoke "
            "the client certificates themselves, or rotate the CA (rdsssl rotate ca)"
        )


def _by_serial(
    inv: Inventory, ca_certs: list[x509.Certificate], serial: int, now: datetime
) -> CertRecord:
    current_fp = crypto.fingerprint(ca_certs[0])
    for ca_cert in ca_certs:
        if serial == ca_cert.serial_number:
            row = CertRecord.for_cert(ca_cert, issuer_fingerprint=current_fp, origin="ca", now=now)
            refuse_ca(row, ca_certs)
    found = inv.get(serial)
    if found is None:
        raise NotFoundError(
            f"no certificate with serial {crypto.serial_hex(serial)} in "
            f"{inv.path}; see rdsssl cert list"
        )
    return found


def _only_valid_for(inv: Inventory, user: str, now: datetime) -> CertRecord:
    rows = [r for r in inv.all(cn=user) if r.state(now) == "valid"]
    if not rows:
        raise NotFoundError(f"no valid certificate for user {user!r} in {inv.path}")
    if len(rows) > 1:
        listed = "; ".join(f"{r.serial_hex} (not after {format_time(r.not_after)})" for r in rows)
        raise InputError(
            f"user {user!r} has {len(rows)} valid certificates: {listed}; "
            "choose one with --serial HEX"
        )
    return rows[0]


def _verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate, source: str) -> None:
    """CryptoError unless ``ca_cert`` signed ``cert`` (name chaining + signature)."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise CryptoError(
            f"{source}: not issued by this CA ({crypto.name_of(ca_cert)}); the certificate's "
            f"issuer is {cert.issuer.rfc4514_string() or 'empty'}"
        ) from None


def _adopt(
    inv: Inventory, ca_cert: x509.Certificate, cert_pem: bytes, source: str, now: datetime
) -> CertRecord:
    """The inventory row for a certificate file, adding it when it was issued outside
    rdsssl (by this CA, e.g. with ``openssl ca``) so that it can be revoked."""
    certs = crypto.load_certificates(cert_pem, source=source, what="a certificate file")
    if len(certs) != 1:
        raise CryptoError(f"{source}: holds {len(certs)} certificates; give exactly one")
    cert = certs[0]
    if crypto.is_ca(cert):
        raise InputError(
            f"{source} is a CA certificate ({crypto.name_of(cert)}), not a client "
            "certificate; revoking a CA would make PostgreSQL refuse every certificate it "
            "issued. Revoke the client certificates, or rotate the CA (rdsssl rotate ca)"
        )
    _verify_issued_by(cert, ca_cert, source)
    found = inv.get(cert.serial_number)
    fresh = CertRecord.for_cert(
        cert, issuer_fingerprint=crypto.fingerprint(ca_cert), origin="external", now=now
    )
    if found is None:
        inv.insert(fresh)
        return fresh
    if found.fingerprint and found.fingerprint != fresh.fingerprint:
        raise StoreError(
            f"{source}: serial {found.serial_hex} is already in {inv.path} for a "
            "different certificate; refusing to guess which one to revoke"
        )
    if not found.fingerprint:  # a row from index.txt: now we know the certificate
        found = dataclasses.replace(
            fresh,
            status=found.status,
            revoked_at=found.revoked_at,
            reason=found.reason,
            origin=found.origin,
            created_at=found.created_at,
        )
        inv.replace(found)
    return found
