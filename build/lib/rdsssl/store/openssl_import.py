"""Reading the files of a hand-made `openssl ca` setup: ``index.txt`` and ``crlnumber``.

Adopting a CA made with the manual procedure must keep its history: a certificate revoked by hand
with ``openssl ca -revoke`` has to stay revoked in rdsssl's CRLs, and the CRL number has to keep
increasing from where ``openssl ca -gencrl`` left it, or PostgreSQL-side tooling that compares
numbers would see the CRL go backwards. A CN rdsssl could not use as a directory name or print
safely (``crypto.unsafe_name_problem``) is refused with its line: once in the inventory it would
only be skipped by every renewal and printed raw by ``cert list``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from rdsssl.errors import InputError
from rdsssl.models import CertStatus, RevocationReason
from rdsssl.pki import crypto
from rdsssl.store.records import CertRecord, utc_seconds

__all__ = ["IndexEntry", "index_records", "parse_crlnumber", "parse_index_txt"]

# openssl ca writes these words after the revocation time (crypto/x509/v3_crld / apps/ca.c):
# plain reasons, plus "keyTime,<t>" / "CAkeyTime,<t>" for key compromise with a time and
# "certificateHold,<oid>" for holds.
_REASON_WORDS = {r.value.lower(): r for r in RevocationReason} | {
    "keytime": RevocationReason.KEY_COMPROMISE,
    "cakeytime": RevocationReason.CA_COMPROMISE,
}
_CN = re.compile(r"/CN=((?:[^/\\]|\\.)*)")


@dataclass(frozen=True)
class IndexEntry:
    """One line of an openssl ``index.txt``."""

    line: int
    revoked: bool
    not_after: datetime
    revoked_at: datetime | None
    reason: RevocationReason | None
    serial: int
    cn: str


def _asn1_time(text: str) -> datetime:
    """UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), as openssl writes them."""
    fmt = "%y%m%d%H%M%SZ" if len(text) == 13 else "%Y%m%d%H%M%SZ"
    return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)


def _cn_of_subject(subject: str) -> str:
    """The last CN of an openssl one-line subject (``/C=CN/O=x/CN=alice``); the subject if none."""
    found = _CN.findall(subject)
    return found[-1].replace("\\/", "/") if found else subject


def parse_index_txt(data: bytes, *, source: str) -> list[IndexEntry]:
    """Parse an ``openssl ca`` database; InputError naming ``source`` and the line otherwise."""
    entries: list[IndexEntry] = []
    seen: set[int] = set()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{source}: not a text file (expected an openssl ca index.txt)") from None
    # split("\n"), not splitlines(): that also breaks at U+0085, U+2028 and other characters a
    # subject may hold, which would misnumber lines and cut a CN short.
    for number, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if not raw.strip():
            continue
        fields = raw.split("\t")
        where = f"{source}, line {number}"
        if len(fields) != 6 or fields[0] not in ("V", "R", "E"):
            raise InputError(
                f"{where}: not an openssl ca index line (expected 6 tab-separated fields "
                "starting with V, R or E)"
            )
        flag, expiry, revocation, serial_text, _filename, subject = fields
        try:
            not_after = _asn1_time(expiry)
            serial = int(serial_text, 16)
        except ValueError:
            raise InputError(f"{where}: bad expiry {expiry!r} or serial {serial_text!r}") from None
        if serial <= 0:
            raise InputError(f"{where}: serial {serial_text!r} must be positive")
        if serial in seen:
            raise InputError(f"{where}: serial {serial_text} appears twice")
        seen.add(serial)
        revoked_at = reason = None
        if flag == "R":
            parts = revocation.split(",")
            try:
                revoked_at = _asn1_time(parts[0])
            except ValueError:
                raise InputError(f"{where}: bad revocation time {parts[0]!r}") from None
            word = parts[1].lower() if len(parts) > 1 else "unspecified"
            if word == "removefromcrl":  # un-revoked with openssl: treat as valid
                revoked_at = None
            elif word in _REASON_WORDS:
                reason = _REASON_WORDS[word]
            else:
                raise InputError(f"{where}: unknown revocation reason {parts[1]!r}")
        cn = _cn_of_subject(subject)
        problem = crypto.unsafe_name_problem(cn)
        if problem:
            what = f"the CN {cn!r}" if _CN.search(subject) else f"the subject {subject!r} (no CN)"
            raise InputError(
                f"{where}: {what} of serial {serial_text} cannot be a user name "
                f"({problem}); fix or remove that line, then import again"
            )
        entries.append(
            IndexEntry(
                line=number,
                revoked=revoked_at is not None,
                not_after=not_after,
                revoked_at=revoked_at,
                reason=reason,
                serial=serial,
                cn=cn,
            )
        )
    return entries


def parse_crlnumber(data: bytes, *, source: str) -> int:
    """The next CRL number from an openssl ``crlnumber`` file (hex text, e.g. ``1000``)."""
    text = data.decode("ascii", errors="replace").strip()
    try:
        value = int(text, 16)
    except ValueError:
        raise InputError(
            f"{source}: not an openssl crlnumber file (expected one hex number, got {text[:20]!r})"
        ) from None
    if value < 0:
        raise InputError(f"{source}: the CRL number cannot be negative")
    return value


def index_records(
    entries: list[IndexEntry], *, issuer_fingerprint: str, now: datetime
) -> list[CertRecord]:
    """Inventory rows for index.txt entries. The certificates themselves are not known, so the
    fingerprint stays empty until ``cert revoke --cert FILE`` shows one of them."""
    return [
        CertRecord(
            serial=e.serial,
            cn=e.cn,
            not_before=None,
            not_after=e.not_after,
            status=CertStatus.REVOKED if e.revoked else CertStatus.VALID,
            revoked_at=e.revoked_at,
            reason=e.reason,
            fingerprint="",
            issuer_fingerprint=issuer_fingerprint,
            key_type="",
            origin="imported",
            created_at=utc_seconds(now),
        )
        for e in entries
    ]
