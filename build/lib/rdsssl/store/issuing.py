"""Issuing client certificates and signing CSRs under the store's CA.

Every certificate is recorded in the inventory *before* anyone sees it (so every certificate
that can exist can be revoked): ``sign_and_record`` signs with a fresh random serial and INSERTs
the row in one transaction, trying another serial on the (~impossible) collision. The caller
(``CaStore.issue``/``CaStore.sign_csr``) holds the store lock; a new key is generated before
the lock is taken, since RSA key generation is slow.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from rdsssl.errors import CryptoError, StoreError
from rdsssl.models import KeyType
from rdsssl.pki import crypto
from rdsssl.store.db import Inventory
from rdsssl.store.records import CertRecord, IssuedCert, SignedCert

__all__ = ["Issuer", "issue", "new_client_key", "sign_csr"]

_SERIAL_ATTEMPTS = 5  # a 159-bit collision is ~impossible; the loop only keeps the code honest


@dataclass(frozen=True)
class Issuer:
    """The unlocked CA and the inventory its certificates are recorded in."""

    inv: Inventory
    ca_cert: x509.Certificate
    ca_key: crypto.PrivateKey

    @property
    def fingerprint(self) -> str:
        return crypto.fingerprint(self.ca_cert)


def new_client_key(user: str, key_type: KeyType, *, allow_tls13_only: bool) -> crypto.PrivateKey:
    """A new key for ``user``'s certificate. A key type that fails over TLS 1.2 is refused
    before any key is made, unless ``allow_tls13_only`` (`crypto.tls12_key_problem`)."""
    crypto.validate_role_name(user)
    problem = None if allow_tls13_only else crypto.tls12_key_problem(key_type)
    if problem:
        raise CryptoError(f"{user}: {problem}")
    return crypto.generate_key(key_type)


def issue(
    issuer: Issuer,
    key: crypto.PrivateKey,
    *,
    user: str,
    days: int,
    now: datetime,
    allow_tls13_only: bool,
) -> IssuedCert:
    """A client certificate for ``key`` and ``user``, recorded before it is returned."""

    def sign(serial: int) -> crypto.Issued:
        return crypto.issue_client_cert(
            issuer.ca_cert,
            issuer.ca_key,
            key.public_key(),
            user=user,
            now=now,
            days=days,
            serial=serial,
            allow_tls13_only=allow_tls13_only,
        )

    issued, record = sign_and_record(issuer, sign, origin="issued", now=now)
    return IssuedCert(record=record, cert=issued.cert, key=key, truncated=issued.truncated)


def sign_csr(
    issuer: Issuer,
    csr: x509.CertificateSigningRequest,
    *,
    source: str,
    user: str | None,
    days: int,
    now: datetime,
    allow_tls13_only: bool,
) -> SignedCert:
    """A certificate for an external CSR (its signature already verified), recorded first."""

    def sign(serial: int) -> crypto.Issued:
        return crypto.sign_csr(
            issuer.ca_cert,
            issuer.ca_key,
            csr,
            user=user,
            now=now,
            days=days,
            serial=serial,
            source=source,
            allow_tls13_only=allow_tls13_only,
        )

    issued, record = sign_and_record(issuer, sign, origin="signed", now=now)
    return SignedCert(record=record, cert=issued.cert, truncated=issued.truncated)


def sign_and_record(
    issuer: Issuer, sign: Callable[[int], crypto.Issued], *, origin: str, now: datetime
) -> tuple[crypto.Issued, CertRecord]:
    """Sign with a fresh serial and INSERT the row in one transaction (the caller holds the
    store lock)."""
    for _ in range(_SERIAL_ATTEMPTS):
        issued = sign(crypto.new_serial())
        record = CertRecord.for_cert(
            issued.cert, issuer_fingerprint=issuer.fingerprint, origin=origin, now=now
        )
        try:
            with issuer.inv.transaction():
                issuer.inv.insert(record)
        except sqlite3.IntegrityError:
            continue
        return issued, record
    raise StoreError(f"could not find a free serial in {issuer.inv.path}")  # pragma: no cover
