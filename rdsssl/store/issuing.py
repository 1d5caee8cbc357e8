"""Issuing client certificates and signing CSRs under the store's CA.

Every certificate is recorded in the inventory *before* anyone sees it (so every certificate
that can exist can be revoked): ``sign_and_record`` signs each certificate with a fresh random
serial and INSERTs all the rows in ONE transaction, trying another serial for a row on the
(~impossible) collision. A batch (``cert issue --users-file``) is therefore all or nothing: a
kill or an error before the COMMIT leaves no row, after it every row; one certificate is a batch
of one. The caller (``CaStore.issue_many``/``CaStore.sign_csr``) holds the store lock; new keys
are generated before the lock is taken, since RSA key generation is slow.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from rdsssl.errors import CryptoError, StoreError
from rdsssl.models import KeyType
from rdsssl.pki import crypto
from rdsssl.store.db import Inventory
from rdsssl.store.records import CertRecord, IssuedCert, SignedCert

__all__ = ["IssueRequest", "Issuer", "check_request", "issue_many", "sign_csr"]

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


@dataclass(frozen=True)
class IssueRequest:
    """One certificate of a batch: the user (the CN), its key type and validity in days."""

    user: str
    key_type: KeyType
    days: int


def check_request(request: IssueRequest, *, allow_tls13_only: bool) -> None:
    """CryptoError when ``request`` is refused before any key is made: a name that can be no
    role, a key type that fails over TLS 1.2 unless ``allow_tls13_only``
    (`crypto.tls12_key_problem`)."""
    crypto.validate_role_name(request.user)
    problem = None if allow_tls13_only else crypto.tls12_key_problem(request.key_type)
    if problem:
        raise CryptoError(f"{request.user}: {problem}")


def issue_many(
    issuer: Issuer,
    keyed: Sequence[tuple[IssueRequest, crypto.PrivateKey]],
    *,
    now: datetime,
    allow_tls13_only: bool,
) -> list[IssuedCert]:
    """A client certificate for each (request, key), all recorded in one transaction before
    any is returned (in the order given)."""

    def signer(request: IssueRequest, key: crypto.PrivateKey) -> Callable[[int], crypto.Issued]:
        def sign(serial: int) -> crypto.Issued:
            return crypto.issue_client_cert(
                issuer.ca_cert,
                issuer.ca_key,
                key.public_key(),
                user=request.user,
                now=now,
                days=request.days,
                serial=serial,
                allow_tls13_only=allow_tls13_only,
            )

        return sign

    signed = sign_and_record(
        issuer, [signer(request, key) for request, key in keyed], origin="issued", now=now
    )
    return [
        IssuedCert(record=record, cert=issued.cert, key=key, truncated=issued.truncated)
        for (issued, record), (_, key) in zip(signed, keyed, strict=True)
    ]


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

    ((issued, record),) = sign_and_record(issuer, [sign], origin="signed", now=now)
    return SignedCert(record=record, cert=issued.cert, truncated=issued.truncated)


def sign_and_record(
    issuer: Issuer, signers: Sequence[Callable[[int], crypto.Issued]], *, origin: str, now: datetime
) -> list[tuple[crypto.Issued, CertRecord]]:
    """Sign each certificate with a fresh serial and INSERT every row in one transaction (the
    caller holds the store lock). The certificates are signed before the transaction opens, so
    the write lock on the inventory is held only for the INSERTs (and, on a collision, one more
    signature for that row: a failed INSERT aborts the statement, not the transaction)."""
    signed = [_sign(issuer, sign, origin=origin, now=now) for sign in signers]
    with issuer.inv.transaction():
        return [
            _insert(issuer, sign, first, origin=origin, now=now)
            for sign, first in zip(signers, signed, strict=True)
        ]


def _sign(
    issuer: Issuer, sign: Callable[[int], crypto.Issued], *, origin: str, now: datetime
) -> tuple[crypto.Issued, CertRecord]:
    issued = sign(crypto.new_serial())
    record = CertRecord.for_cert(
        issued.cert, issuer_fingerprint=issuer.fingerprint, origin=origin, now=now
    )
    return issued, record


def _insert(
    issuer: Issuer,
    sign: Callable[[int], crypto.Issued],
    first: tuple[crypto.Issued, CertRecord],
    *,
    origin: str,
    now: datetime,
) -> tuple[crypto.Issued, CertRecord]:
    """INSERT the row of ``first``, re-signing with another serial on a collision."""
    signed = first
    for _ in range(_SERIAL_ATTEMPTS):
        try:
            issuer.inv.insert(signed[1])
        except sqlite3.IntegrityError:
            signed = _sign(issuer, sign, origin=origin, now=now)
            continue
        return signed
    raise StoreError(f"could not find a free serial in {issuer.inv.path}")  # pragma: no cover
