"""The client CA: making one, renewing it with the same key, telling whether two CA certificates
are the same CA, and whether a CA may sign right now.

Secure defaults in plain sight: CA:TRUE and keyUsage keyCertSign + cRLSign, both critical; a
subject and authority key identifier, so OpenSSL chains what it signs across a renewal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from rdsssl.errors import CryptoError
from rdsssl.pki.inspection import is_ca, name_of
from rdsssl.pki.keys import SIGNING_PUBLIC_KEYS, PrivateKey, hash_for
from rdsssl.pki.pem import check_key_matches
from rdsssl.pki.serials import new_serial
from rdsssl.pki.validity import CLOCK_SKEW, DEFAULT_CA_DAYS, check_days, utc

__all__ = [
    "CaIdentity",
    "akid_fits",
    "authority_key_id",
    "ca_identity",
    "check_signing_ca",
    "is_self_signed",
    "key_identifier_fits",
    "make_ca",
    "renew_ca",
]


def make_ca(
    key: PrivateKey, *, cn: str, now: datetime, days: int = DEFAULT_CA_DAYS
) -> x509.Certificate:
    """A self-signed client CA: what `openssl req -new -x509 -subj /CN=root-ca1` makes, tightened.

    notBefore is `now - CLOCK_SKEW`; notAfter is `now + days`.
    """
    now = utc(now)
    check_days(days, "CA", now=now)
    if not cn or len(cn) > 64:
        raise CryptoError(f"invalid CA common name {cn!r}: it must be 1 to 64 characters")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,  # signs client certificates
        crl_sign=True,  # signs the CRL PostgreSQL loads from ssl_crl_file
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(new_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    )
    return builder.sign(key, hash_for(key))


def renew_ca(
    old: x509.Certificate, key: PrivateKey, *, now: datetime, days: int = DEFAULT_CA_DAYS
) -> x509.Certificate:
    """The same CA again, with a new serial and a new validity: `ca renew`.

    Subject, issuer (= subject), public key and every extension are the old certificate's, so
    everything the old one signed chains to the new one as well: client certificates name the
    same issuer, their signatures verify with the same key, and their authority key identifier
    (the keyid) still matches the copied SubjectKeyIdentifier; CRLs likewise. Only the
    AuthorityKeyIdentifier of the CA itself is rebuilt, keyid only (as `make_ca` writes it): one
    that also named the old serial would no longer describe a self-signed certificate.
    notBefore is `now - CLOCK_SKEW`, notAfter `now + days`, like `make_ca`.

    Refused (CryptoError): a certificate that is not a CA, a key that is not its key, and a CA
    that is not self-signed (an intermediate is renewed by its issuer, not by itself).
    """
    now = utc(now)
    check_days(days, "CA", now=now)
    label = f"CA '{name_of(old)}'"
    check_key_matches(old, key, source=label)
    if not is_ca(old):
        raise CryptoError(f"{label}: not a CA certificate (no basicConstraints CA:TRUE)")
    if not is_self_signed(old):
        raise CryptoError(
            f"{label} is issued by {old.issuer.rfc4514_string() or 'an empty name'}, not by "
            "itself: only a self-signed CA can renew itself; ask its issuer for a new certificate"
        )
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.subject)
        .public_key(key.public_key())
        .serial_number(new_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
    )
    for ext in old.extensions:
        value = ext.value
        if isinstance(value, x509.AuthorityKeyIdentifier):
            value = authority_key_id(old)  # keyid only, from the (copied) SKI or the key
        builder = builder.add_extension(value, critical=ext.critical)
    return builder.sign(key, hash_for(key))


def is_self_signed(cert: x509.Certificate) -> bool:
    """True when `cert` names itself as issuer and its signature verifies with its own key."""
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


@dataclass(frozen=True)
class CaIdentity:
    """What makes two CA certificates the same CA for everything either one signed: the
    subject (the issuer name of what it signs), the public key (its signatures) and the
    SubjectKeyIdentifier (matched against their authority key identifier by OpenSSL's
    X509_check_akid). A CA and its same-key renewal (`renew_ca`) share it; fingerprints,
    serials and validity differ."""

    subject: bytes
    public_key: bytes
    key_id: bytes | None


def ca_identity(cert: x509.Certificate) -> CaIdentity:
    """The `CaIdentity` of a CA certificate (DER of the subject and of the public key)."""
    try:
        ski: bytes | None = cert.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.digest
    except x509.ExtensionNotFound:
        ski = None
    try:
        public = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (UnsupportedAlgorithm, ValueError):  # a key rdsssl cannot read: only this very
        public = b"certificate " + cert.fingerprint(hashes.SHA256())  # certificate is the same
    return CaIdentity(cert.subject.public_bytes(), public, ski)


def akid_fits(
    signed: x509.Certificate | x509.CertificateRevocationList, ca: x509.Certificate
) -> bool:
    """OpenSSL's X509_check_akid: every part of `signed`'s authority key identifier that is
    present must name `ca` (keyid = its SKI, serial = its serial, issuer = its issuer). A
    certificate whose identifier names the CA's old serial does not chain to a renewal; a CRL
    whose identifier names another same-named CA is not that CA's CRL."""
    try:
        aki = signed.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True
    return key_identifier_fits(aki, ca)


def key_identifier_fits(aki: x509.AuthorityKeyIdentifier, ca: x509.Certificate) -> bool:
    """`akid_fits` for an authority key identifier already read."""
    try:
        ski: bytes | None = ca.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.digest
    except x509.ExtensionNotFound:
        ski = None
    if aki.key_identifier is not None and ski is not None and aki.key_identifier != ski:
        return False
    serial = aki.authority_cert_serial_number
    if serial is not None and serial != ca.serial_number:
        return False
    names = [n.value for n in aki.authority_cert_issuer or () if isinstance(n, x509.DirectoryName)]
    return not names or names[0] == ca.issuer


def check_signing_ca(ca_cert: x509.Certificate, ca_key: PrivateKey, now: datetime) -> None:
    """Refuse to sign anything with a non-CA, a key that is not the CA's, or an expired CA."""
    label = f"CA '{name_of(ca_cert)}'"
    check_key_matches(ca_cert, ca_key, source=label)
    if not is_ca(ca_cert):
        raise CryptoError(f"{label}: not a CA certificate (no basicConstraints CA:TRUE)")
    if now >= ca_cert.not_valid_after_utc:
        raise CryptoError(
            f"{label}: expired on {ca_cert.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}; "
            "create or import a new CA (`rdsssl ca init`) before issuing"
        )


def authority_key_id(cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """AKI pointing at `cert`: its own SKI when present, else one derived from its public key."""
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        public = cert.public_key()
        if not isinstance(public, SIGNING_PUBLIC_KEYS):
            raise CryptoError(f"CA '{name_of(cert)}': its key type cannot sign") from None
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(public)
