"""Choosing the inventory row ``cert revoke`` marks revoked, and the one rule it never breaks:
a CA certificate is never revoked (a CRL listing the store's own CA, or any CA of the chain,
makes PostgreSQL refuse every certificate that CA issued).

A certificate is selected by serial, by the certificate file itself (adopted into the inventory
when it was issued outside rdsssl by this CA, e.g. with ``openssl ca``, so that it can be
revoked), or by a user name that matches exactly one valid certificate. ``revoke`` runs
``select`` and records the result inside one transaction (``CaStore.revoke`` holds the store
lock).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from rdsssl.errors import CryptoError, InputError, NotFoundError, StoreError, UsageError
from rdsssl.models import CertStatus, RevocationReason
from rdsssl.pki import crypto
from rdsssl.store.db import Inventory
from rdsssl.store.records import CertRecord, RevokeResult, format_time, utc_seconds

__all__ = ["refuse_ca", "revoke", "select"]


def revoke(
    inv: Inventory,
    ca_certs: list[x509.Certificate],
    *,
    serial: int | None,
    cert_pem: bytes | None,
    cert_source: str,
    user: str | None,
    reason: RevocationReason,
    now: datetime,
) -> RevokeResult:
    """Mark the selected certificate revoked in one transaction (the caller holds the store
    lock). Already revoked: no change."""
    with inv.transaction():
        record = select(
            inv,
            ca_certs,
            serial=serial,
            cert_pem=cert_pem,
            cert_source=cert_source,
            user=user,
            now=now,
        )
        if record.status is CertStatus.REVOKED:
            return RevokeResult(record=record, changed=False)
        revoked = dataclasses.replace(
            record, status=CertStatus.REVOKED, revoked_at=utc_seconds(now), reason=reason
        )
        inv.replace(revoked)
    return RevokeResult(record=revoked, changed=True)


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
