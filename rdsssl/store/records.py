"""The value types of a CA store: the inventory's rows (``CertRecord``, ``CrlRecord``), what
each store operation returns (``IssuedCert``, ``SignedCert``, ``RevokeResult``, ``BuiltCrl``,
``CaSummary``, ``CaVersion``, ``CaRenewal``, ``KeyRewrap``) and the one timestamp format they
are stored and printed in (``format_time``/``parse_time``: ISO 8601 UTC, seconds, a Z).

Kept apart from the sqlite access (``rdsssl.store.db``) so that readers of results (the ops
and CLI layers) depend on plain frozen dataclasses, not on the inventory.

Listings (``cert list``) read ``CertRow``: a row as the text it is stored and printed in, with
its state at the listing's time computed by sqlite. A store of 100,000 certificates is listed
as a stream of these without parsing a timestamp or building a ``CertRecord`` for any of them;
``CertRecord.to_json`` goes through ``CertRow.to_json``, so both give one JSON shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from rdsssl.models import CertStatus, RevocationReason
from rdsssl.pki import crypto

__all__ = [
    "BuiltCrl",
    "CaRenewal",
    "CaSummary",
    "CaVersion",
    "CertLine",
    "CertRecord",
    "CertRow",
    "CrlRecord",
    "IssuedCert",
    "KeyRewrap",
    "ListingSize",
    "RevokeResult",
    "SignedCert",
    "format_time",
    "parse_time",
    "utc_seconds",
]


def format_time(value: datetime) -> str:
    """UTC ISO 8601 with a Z, seconds precision: how every timestamp is stored and printed."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_seconds(value: datetime) -> datetime:
    """``value`` in UTC without microseconds: what a stored timestamp reads back as."""
    return value.astimezone(timezone.utc).replace(microsecond=0)


def parse_time(text: str) -> datetime:
    """Inverse of ``format_time``. fromisoformat is ~10x faster than strptime, which matters
    when a CRL of 10,000 revocations reads 30,000 timestamps."""
    if not text.endswith("Z"):
        raise ValueError(f"not a stored timestamp: {text!r}")
    return datetime.fromisoformat(text[:-1] + "+00:00")


_STATUSES = {s.value: s for s in CertStatus}  # a dict lookup: ~10x faster than CertStatus(v)
_REASONS = {r.value: r for r in RevocationReason}


def _opt_time(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)


class CertRow(NamedTuple):
    """One inventory row for a listing: the stored text (timestamps in ``format_time``'s form,
    the serial in lowercase hex) and its state at the listing's time."""

    serial_hex: str
    cn: str
    state: str  # valid | revoked | expired
    not_before: str | None
    not_after: str
    revoked_at: str | None
    reason: str | None
    fingerprint: str
    issuer_fingerprint: str
    key_type: str
    origin: str

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of a certificate in every ``--json`` document."""
        return {
            "serial": self.serial_hex,
            "cn": self.cn,
            "status": self.state,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "revoked_at": self.revoked_at,
            "reason": self.reason,
            "fingerprint": self.fingerprint,
            "issuer_fingerprint": self.issuer_fingerprint,
            "key_type": self.key_type,
            "origin": self.origin,
        }


# The five columns of a row the ``cert list`` table prints, with ``CertRow``'s meaning:
# (serial_hex, cn, state, not_after, fingerprint). A plain tuple: building a NamedTuple per row
# costs a listing of 100,000 rows ~60 ms, a quarter of its time.
CertLine = tuple[str, str, str, str, str]


class ListingSize(NamedTuple):
    """How many rows a listing has and the widths of its two variable columns (a table is
    aligned before its first row is read)."""

    rows: int
    serial_width: int
    cn_width: int


@dataclass(frozen=True, slots=True)
class CertRecord:
    """One inventory row. ``status`` is what was recorded; ``state(now)`` adds "expired".
    Slotted: renewal runs hold every row of the store at once."""

    serial: int
    cn: str
    not_before: datetime | None
    not_after: datetime
    status: CertStatus
    revoked_at: datetime | None
    reason: RevocationReason | None
    fingerprint: str
    issuer_fingerprint: str
    key_type: str
    origin: str
    created_at: datetime
    cert_der: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def serial_hex(self) -> str:
        """The serial as printed everywhere: lowercase hex, no colons."""
        return format(self.serial, "x")

    def state(self, now: datetime) -> str:
        """valid, revoked or expired: revocation wins, expiry is derived from not_after."""
        if self.status is CertStatus.REVOKED:
            return "revoked"
        return "expired" if self.not_after <= now else "valid"

    def to_json(self, now: datetime) -> dict[str, Any]:
        """The JSON shape of a certificate in every ``--json`` document (``CertRow.to_json``)."""
        return self.listed(now).to_json()

    def listed(self, now: datetime) -> CertRow:
        """This row as a listing at ``now`` shows it."""
        return CertRow(
            serial_hex=self.serial_hex,
            cn=self.cn,
            state=self.state(now),
            not_before=None if self.not_before is None else format_time(self.not_before),
            not_after=format_time(self.not_after),
            revoked_at=None if self.revoked_at is None else format_time(self.revoked_at),
            reason=None if self.reason is None else self.reason.value,
            fingerprint=self.fingerprint,
            issuer_fingerprint=self.issuer_fingerprint,
            key_type=self.key_type,
            origin=self.origin,
        )

    @classmethod
    def for_cert(
        cls, cert: x509.Certificate, *, issuer_fingerprint: str, origin: str, now: datetime
    ) -> CertRecord:
        """The valid row recording ``cert``, signed by the CA of ``issuer_fingerprint``."""
        info = crypto.inspect_cert(cert)
        return cls(
            serial=info.serial,
            cn=info.cn or "",
            not_before=info.not_before,
            not_after=info.not_after,
            status=CertStatus.VALID,
            revoked_at=None,
            reason=None,
            fingerprint=info.fingerprint,
            issuer_fingerprint=issuer_fingerprint,
            key_type=info.key_type,
            origin=origin,
            created_at=utc_seconds(now),
            cert_der=cert.public_bytes(Encoding.DER),
        )

    @classmethod
    def _from_row(cls, row: tuple[Any, ...], shared: dict[str, str] | None = None) -> CertRecord:
        """A record from a row of ``_COLUMNS``; values repeated across rows (issuer, key type,
        origin) are kept once in ``shared`` when given (a whole store is loaded at once)."""
        shared = {} if shared is None else shared
        return cls(
            serial=int(row[0], 16),
            cn=row[1],
            not_before=_opt_time(row[2]),
            not_after=parse_time(row[3]),
            status=_STATUSES.get(row[4]) or CertStatus(row[4]),  # unknown: ValueError as before
            revoked_at=_opt_time(row[5]),
            reason=None if row[6] is None else _REASONS.get(row[6]) or RevocationReason(row[6]),
            fingerprint=row[7],
            issuer_fingerprint=shared.setdefault(row[8], row[8]),
            key_type=shared.setdefault(row[9], row[9]),
            origin=shared.setdefault(row[10], row[10]),
            created_at=parse_time(row[11]),
            cert_der=row[12],
        )

    def _to_row(self) -> tuple[Any, ...]:
        return (
            self.serial_hex,
            self.cn,
            None if self.not_before is None else format_time(self.not_before),
            format_time(self.not_after),
            self.status.value,
            None if self.revoked_at is None else format_time(self.revoked_at),
            None if self.reason is None else self.reason.value,
            self.fingerprint,
            self.issuer_fingerprint,
            self.key_type,
            self.origin,
            format_time(self.created_at),
            self.cert_der,
        )


@dataclass(frozen=True)
class CrlRecord:
    """A CRL the store has built (the CRL itself is not kept, only what identifies it)."""

    number: int
    last_update: datetime
    next_update: datetime | None
    entries: int
    fingerprint: str
    size: int


@dataclass(frozen=True)
class IssuedCert:
    """A certificate issued with a fresh key (``cert issue``, ``cert renew``)."""

    record: CertRecord
    cert: x509.Certificate
    key: crypto.PrivateKey = field(repr=False)
    truncated: bool


@dataclass(frozen=True)
class SignedCert:
    """A certificate signed for an external CSR (``cert sign``); the key stays with the user."""

    record: CertRecord
    cert: x509.Certificate
    truncated: bool


@dataclass(frozen=True)
class RevokeResult:
    """``changed`` is False when the certificate was already revoked (re-running is safe)."""

    record: CertRecord
    changed: bool


@dataclass(frozen=True)
class BuiltCrl:
    """A CRL built (and recorded) by the store, with what ``crl build`` reports."""

    crl: x509.CertificateRevocationList
    pem: bytes = field(repr=False)
    number: int
    entries: int
    last_update: datetime
    next_update: datetime | None
    fingerprint: str  # SHA-256 of the DER, as recorded (computed once, when signed)


@dataclass(frozen=True)
class CaSummary:
    """What ``ca show`` reports."""

    path: Path
    info: crypto.CertInfo
    key_protection: crypto.KeyProtection
    valid: int
    revoked: int
    expired: int
    next_crl_number: int
    last_crl: CrlRecord | None
    history: tuple[CaVersion, ...] = ()  # every CA certificate, oldest first

    @property
    def key_encrypted(self) -> bool:
        """True when ca.key needs a passphrase."""
        return self.key_protection.encrypted


@dataclass(frozen=True)
class CaVersion:
    """One certificate of the store's CA (``ca renew`` keeps every earlier one): ``current``
    is the one in ca.crt, which signs from now on. All of them share subject and key, so
    certificates and CRLs signed under any of them chain to each."""

    info: crypto.CertInfo
    current: bool
    recorded_at: datetime | None  # None: ca.crt before the store's first renewal

    def to_json(self) -> dict[str, Any]:
        """The JSON shape in ``ca show`` and ``ca renew``."""
        return {
            "serial": self.info.serial_hex,
            "not_before": format_time(self.info.not_before),
            "not_after": format_time(self.info.not_after),
            "fingerprint": self.info.fingerprint,
            "current": self.current,
            "recorded_at": None if self.recorded_at is None else format_time(self.recorded_at),
        }


@dataclass(frozen=True)
class CaRenewal:
    """What ``ca renew`` did: the CA certificate before and after (same subject and key), and
    the valid certificates that will not chain to the new one (``stranded``: their authority
    key identifier names the previous CA's serial; only made with ``force``)."""

    previous: crypto.CertInfo
    current: crypto.CertInfo
    stranded: tuple[CertRecord, ...]
    history: tuple[CaVersion, ...]


@dataclass(frozen=True)
class KeyRewrap:
    """What ``ca passphrase`` did to ca.key: its protection before and after, and the old file
    when it was kept (``--keep-old``)."""

    path: Path
    before: crypto.KeyProtection
    after: crypto.KeyProtection
    kept_old: Path | None
