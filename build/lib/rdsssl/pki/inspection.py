"""What a certificate, a CRL or a key is, for messages and listings: names, key types,
fingerprints, and the summaries `cert list`, `ca show` and `crl show` print.

Pure reading: nothing here parses PEM, signs or refuses anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import NameOID

from rdsssl.pki.serials import serial_hex

__all__ = [
    "CertInfo",
    "CrlInfo",
    "cn_of",
    "fingerprint",
    "inspect_cert",
    "inspect_crl",
    "is_ca",
    "key_type_of",
    "name_of",
]

_EC_NAMES = {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}


def key_type_of(key: PublicKeyTypes | PrivateKeyTypes) -> str:
    """'ec-p256', 'rsa-2048', 'ed25519', ... also for keys rdsssl would not make ('rsa-1024')."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return _EC_NAMES.get(key.curve.name, f"ec-{key.curve.name}")
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return "ed448"
    if isinstance(key, dsa.DSAPrivateKey | dsa.DSAPublicKey):
        return f"dsa-{key.key_size}"
    return type(key).__name__.lower()


def cn_of(name: x509.Name) -> str | None:
    """The first CN of a name, or None."""
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        return None
    value = cns[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def name_of(cert: x509.Certificate) -> str:
    """A short human label for messages: 'CN=root-ca1', or the full subject when it has no CN."""
    cn = cn_of(cert.subject)
    return f"CN={cn}" if cn is not None else cert.subject.rfc4514_string() or "empty subject"


def is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints CA:TRUE (critical or not, as OpenSSL accepts both)."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def fingerprint(obj: x509.Certificate | x509.CertificateRevocationList) -> str:
    """SHA-256 of the DER, lowercase hex without colons."""
    return obj.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class CertInfo:
    """What `cert list`, `ca show` and JSON output say about a certificate."""

    subject: str
    issuer: str
    cn: str | None
    serial: int
    serial_hex: str
    not_before: datetime
    not_after: datetime
    fingerprint: str
    key_type: str
    is_ca: bool


def _cert_key_type(cert: x509.Certificate) -> str:
    try:
        return key_type_of(cert.public_key())
    except (UnsupportedAlgorithm, ValueError):  # e.g. GOST: still inspectable, never signed
        return f"unsupported ({cert.public_key_algorithm_oid.dotted_string})"


def inspect_cert(cert: x509.Certificate) -> CertInfo:
    """Summarise a certificate (datetimes timezone-aware UTC)."""
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        cn=cn_of(cert.subject),
        serial=cert.serial_number,
        serial_hex=serial_hex(cert.serial_number),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint=fingerprint(cert),
        key_type=_cert_key_type(cert),
        is_ca=is_ca(cert),
    )


@dataclass(frozen=True)
class CrlInfo:
    """What `crl show` says about a CRL. `revoked_serials` are sorted."""

    issuer: str
    number: int | None
    last_update: datetime
    next_update: datetime | None
    revoked_serials: tuple[int, ...]
    fingerprint: str
    signature_hash: str  # 'sha256', or 'none' for Ed25519


def inspect_crl(crl: x509.CertificateRevocationList) -> CrlInfo:
    """Summarise a CRL (datetimes timezone-aware UTC)."""
    try:
        number: int | None = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = None
    algorithm = crl.signature_hash_algorithm
    return CrlInfo(
        issuer=crl.issuer.rfc4514_string(),
        number=number,
        last_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        revoked_serials=tuple(sorted(r.serial_number for r in crl)),
        fingerprint=fingerprint(crl),
        signature_hash=algorithm.name if algorithm is not None else "none",
    )
