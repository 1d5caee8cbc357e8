"""Signing the CRL: which revocations it lists, with which reason codes, valid for how long.

Built with cryptography's `CertificateRevocationListBuilder`, every entry handed to its
constructor at once: the fastest correct use of the builder (adding entries one by one copies
the builder per entry, ~5x slower). 10,000 entries take 24-76 ms (benchmarks/RESULTS.md), while
a CRL small enough to upload holds a few hundred. No DER is written by hand in the signing path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.x509.oid import CRLEntryExtensionOID

from rdsssl.errors import CryptoError
from rdsssl.models import RevocationReason
from rdsssl.pki.ca import authority_key_id, check_signing_ca
from rdsssl.pki.keys import PRIVATE_KEY_TYPES, PrivateKey, hash_for
from rdsssl.pki.serials import MAX_SERIAL, serial_hex
from rdsssl.pki.validity import (
    CLOCK_SKEW,
    DEFAULT_CRL_DAYS,
    DEFAULT_CRL_EXPIRED_GRACE,
    EARLIEST_TIME,
    check_days,
    utc,
)

__all__ = ["Revocation", "build_crl", "reason_to_x509"]

_REASONS = {
    RevocationReason.UNSPECIFIED: x509.ReasonFlags.unspecified,
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.CA_COMPROMISE: x509.ReasonFlags.ca_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.CERTIFICATE_HOLD: x509.ReasonFlags.certificate_hold,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
}

# The crlEntryExtensions per reason, made once and shared by every entry (the builder only reads
# them). RFC 5280 says omit the extension rather than write "unspecified", which is also what
# `openssl ca -revoke` without -crl_reason produces.
_REASON_EXTENSIONS: dict[RevocationReason, list[x509.Extension[x509.ExtensionType]]] = {
    reason: [x509.Extension(CRLEntryExtensionOID.CRL_REASON, False, x509.CRLReason(flag))]
    for reason, flag in _REASONS.items()
    if reason is not RevocationReason.UNSPECIFIED
}
_NO_EXTENSIONS: list[x509.Extension[x509.ExtensionType]] = []


def reason_to_x509(reason: RevocationReason) -> x509.ReasonFlags:
    """Map an openssl-spelled reason (as in `openssl ca -revoke -crl_reason`) to cryptography's."""
    return _REASONS[RevocationReason(reason)]


@dataclass(frozen=True)
class Revocation:
    """One revoked certificate as the store knows it. `not_after` (the certificate's expiry) lets
    `build_crl` drop entries that no longer matter; None keeps the entry forever."""

    serial: int
    revoked_at: datetime
    reason: RevocationReason
    not_after: datetime | None = None

    def listed(self, now: datetime, grace: timedelta = DEFAULT_CRL_EXPIRED_GRACE) -> bool:
        """Whether a CRL built at `now` lists it: not when its certificate expired more than
        `grace` ago (an expired certificate is refused anyway; the CRL stays small)."""
        return self.not_after is None or self.not_after >= now - grace


def build_crl(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    revocations: Iterable[Revocation],
    *,
    number: int,
    now: datetime,
    days: int = DEFAULT_CRL_DAYS,
    expired_grace: timedelta = DEFAULT_CRL_EXPIRED_GRACE,
) -> x509.CertificateRevocationList:
    """A v2 CRL (CRL number, AKI, reason codes), lastUpdate=now-CLOCK_SKEW, nextUpdate=now+days.

    lastUpdate is back-dated like notBefore: PostgreSQL rejects every certificate of the CA
    while the CRL is "not yet valid", so a server clock a little behind ours must not lock
    users out (docs/postgres-client-cert-behaviour.md §4, R2).

    Entries whose certificate expired more than `expired_grace` ago are dropped: an expired
    certificate is refused anyway, and the CRL must stay small enough to upload. The rest are
    sorted by serial, revocation dates in whole UTC seconds, the reason omitted when unspecified
    (UTCTime before 2050, GeneralizedTime from 2050 on: the builder's encoding).

    Refused (CryptoError): the CA's own serial (it would lock out every user of the CA), a
    serial listed twice or out of range, a date before 1950, a key that cannot sign a CRL, and
    everything `check_signing_ca` and `check_days` refuse.
    """
    if not isinstance(ca_key, PRIVATE_KEY_TYPES):
        raise CryptoError(f"cannot sign a CRL with a {type(ca_key).__name__}")
    now = utc(now)
    check_days(days, "CRL", now=now)
    check_signing_ca(ca_cert, ca_key, now)
    if not 0 <= number < MAX_SERIAL:
        raise CryptoError(f"CRL number {number} is out of range (0 .. 2**159-1)")
    last_update = now - CLOCK_SKEW
    if last_update < EARLIEST_TIME:
        raise CryptoError(f"cannot sign a CRL dated {last_update:%Y-%m-%d}: before 1950")
    entries = _entries(revocations, cutoff=now - expired_grace, own=ca_cert.serial_number)
    extensions = [
        x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(number)),
        x509.Extension(x509.AuthorityKeyIdentifier.oid, False, authority_key_id(ca_cert)),
    ]
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=ca_cert.subject,
        last_update=last_update,
        next_update=now + timedelta(days=days),
        extensions=extensions,
        revoked_certificates=[entries[serial] for serial in sorted(entries)],
    )
    return builder.sign(ca_key, hash_for(ca_key))


def _entries(
    revocations: Iterable[Revocation], *, cutoff: datetime, own: int
) -> dict[int, x509.RevokedCertificate]:
    """One pass over the revocations: filter, check and build each entry, keyed by serial."""
    built: dict[int, x509.RevokedCertificate] = {}
    for rev in revocations:
        serial = rev.serial
        if rev.not_after is not None and rev.not_after < cutoff:  # = not rev.listed(), inlined
            continue
        if serial == own:
            raise CryptoError(
                f"refusing to sign a CRL listing serial {serial_hex(serial)}: it is the CA's own "
                "serial, and PostgreSQL would then refuse every certificate of this CA. The "
                "store records the CA as revoked (an old store); mark that row valid again: "
                f"sqlite3 inventory.sqlite \"UPDATE certs SET status='valid', revoked_at=NULL, "
                f"reason=NULL WHERE serial='{serial_hex(serial)}'\""
            )
        if serial in built:
            raise CryptoError(f"serial {serial_hex(serial)} is listed twice for the CRL")
        if not 0 < serial < MAX_SERIAL:
            raise CryptoError(f"serial {serial_hex(serial)} is out of range for a CRL entry")
        date = rev.revoked_at
        if date.tzinfo is not timezone.utc:  # the common case skips a conversion per entry
            date = utc(date)
        if date < EARLIEST_TIME:
            raise CryptoError(
                f"serial {serial_hex(serial)}: revocation date {date:%Y-%m-%d} is before 1950, "
                "which a CRL cannot carry; fix the date in the store"
            )
        extensions = _REASON_EXTENSIONS.get(rev.reason, _NO_EXTENSIONS)
        built[serial] = x509.RevokedCertificateBuilder(serial, date, extensions).build()
    return built
