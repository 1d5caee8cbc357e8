"""What the CRL policy reads from each CRL, once (`CrlFacts`), and the signature checks it
remembers (`Signatures`): the inputs of the rules in `rdsssl.pki.crl_policy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from rdsssl.pki.inspection import fingerprint
from rdsssl.pki.pem import crl_signed_by

__all__ = ["CrlFacts", "Signatures", "extension", "read"]

_HANDLED_CRITICAL = frozenset(
    {
        ExtensionOID.ISSUING_DISTRIBUTION_POINT,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.DELTA_CRL_INDICATOR,
    }
)
_OID_NAMES = {
    value: name
    for table in (ExtensionOID, CRLEntryExtensionOID)
    for name, value in vars(table).items()
    if isinstance(value, x509.ObjectIdentifier)
}
_E = TypeVar("_E", bound=x509.ExtensionType)


@dataclass(frozen=True)
class CrlFacts:
    """One CRL as the policy sees it: its place in the file, its times, the extensions that
    decide whether OpenSSL uses it, and the serials it lists."""

    crl: x509.CertificateRevocationList
    index: int  # position in the file: the last tie-break
    fingerprint: str
    issuer: x509.Name
    last_update: datetime
    next_update: datetime | None
    critical: tuple[str, ...]  # unhandled critical extensions (names), empty when none
    aki: x509.AuthorityKeyIdentifier | None
    idp: x509.IssuingDistributionPoint | None
    serials: frozenset[int]

    def valid_at(self, t: datetime) -> bool:
        """OpenSSL's check_crl_time: lastUpdate <= t and (no nextUpdate or t < nextUpdate)."""
        return self.last_update <= t and (self.next_update is None or t < self.next_update)

    def ignored(self) -> bool:
        """get_crl_score gives 0 to indirect and reason-limited CRLs (no extended support)."""
        return self.idp is not None and (
            self.idp.indirect_crl or self.idp.only_some_reasons is not None
        )

    def covers(self, ca_certificate: bool) -> bool:
        """crl_crldp_check for a certificate without CRL distribution points."""
        idp = self.idp
        if idp is None:
            return True
        if idp.only_contains_attribute_certs or idp.full_name or idp.relative_name:
            return False
        return not (idp.only_contains_user_certs if ca_certificate else idp.only_contains_ca_certs)

    def revokes(self, serial: int) -> bool:
        """cert_crl: listed, and not with reason removeFromCRL (which only un-lists it)."""
        if serial not in self.serials:
            return False
        entry = self.crl.get_revoked_certificate_by_serial_number(serial)
        if entry is None:
            return False
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            return True
        return reason is not x509.ReasonFlags.remove_from_crl


def read(crl: x509.CertificateRevocationList, index: int) -> CrlFacts:
    """The facts of `crl`, the `index`-th of its file; ValueError when an extension or an entry
    cannot be decoded."""
    critical = [e.oid for e in crl.extensions if e.critical and e.oid not in _HANDLED_CRITICAL]
    serials = set()
    for entry in crl:
        serials.add(entry.serial_number)
        critical += [
            e.oid
            for e in entry.extensions
            if e.critical and e.oid != CRLEntryExtensionOID.CERTIFICATE_ISSUER
        ]
    return CrlFacts(
        crl=crl,
        index=index,
        fingerprint=fingerprint(crl),
        issuer=crl.issuer,
        last_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        critical=tuple(dict.fromkeys(_oid_name(oid) for oid in critical)),
        aki=extension(crl, x509.AuthorityKeyIdentifier),
        idp=extension(crl, x509.IssuingDistributionPoint),
        serials=frozenset(serials),
    )


def extension(of: x509.Certificate | x509.CertificateRevocationList, kind: type[_E]) -> _E | None:
    """The value of `of`'s extension of class `kind`, or None."""
    try:
        return of.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _oid_name(oid: x509.ObjectIdentifier) -> str:
    name = _OID_NAMES.get(oid)
    return f"{name} ({oid.dotted_string})" if name else oid.dotted_string


class Signatures:
    """`pem.crl_signed_by`, remembered per (CRL, CA): a signature check costs milliseconds on
    a large CRL and the policy asks the same question at every instant."""

    def __init__(self) -> None:
        self._known: dict[tuple[int, x509.Certificate], bool] = {}

    def __call__(self, facts: CrlFacts, ca: x509.Certificate) -> bool:
        key = (facts.index, ca)
        if key not in self._known:
            self._known[key] = crl_signed_by(facts.crl, ca)
        return self._known[key]
