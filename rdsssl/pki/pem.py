"""PEM bundles in and out: parse and classify, validate, inspect, fingerprint, export.

Part of `rdsssl.pki.crypto` (import from there); split out to keep each module small. Pure:
bytes in, objects or bytes out, `now` passed in. Every error is a `CryptoError` whose message
starts with the caller's `source` (a file name) and names the offending block, and never
contains key material: private key blocks are described by their index and label only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12 as _pkcs12
from cryptography.x509.oid import NameOID

from rdsssl.errors import CryptoError

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_PRIVATE_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
_EC_NAMES = {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}


def _utc(now: datetime) -> datetime:
    """`now` in UTC, whole seconds (X.509 times have no fractions; comparisons stay exact)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("datetimes passed to rdsssl.pki.crypto must be timezone-aware")
    return now.astimezone(timezone.utc).replace(microsecond=0)


# --- parsing and classification ---------------------------------------------------------------


class BlockKind(str, Enum):
    """What a PEM block holds, decided by its label."""

    CERTIFICATE = "certificate"
    CRL = "crl"
    PRIVATE_KEY = "private key"
    CSR = "csr"
    OTHER = "other"


_LABEL_KINDS = {
    "CERTIFICATE": BlockKind.CERTIFICATE,
    "X509 CERTIFICATE": BlockKind.CERTIFICATE,
    "TRUSTED CERTIFICATE": BlockKind.CERTIFICATE,  # OpenSSL's cert + trust settings (dropped)
    "X509 CRL": BlockKind.CRL,
    "CERTIFICATE REQUEST": BlockKind.CSR,
    "NEW CERTIFICATE REQUEST": BlockKind.CSR,
}
_DESCRIPTIONS = {
    BlockKind.CERTIFICATE: "a certificate",
    BlockKind.CRL: "a CRL",
    BlockKind.PRIVATE_KEY: "a private key",
    BlockKind.CSR: "a certificate request",
}


@dataclass(frozen=True)
class PemBlock:
    """One PEM block: 1-based position in the file, label, kind and decoded DER.

    For certificates the DER is the certificate alone (OpenSSL trust settings stripped), so
    fingerprints match however the certificate was wrapped. `der` stays out of `repr()`: it may
    be a private key.
    """

    index: int
    label: str
    kind: BlockKind
    der: bytes = field(repr=False)

    def describe(self) -> str:
        """'a private key', 'a CRL', ... or 'a PUBLIC KEY block' for unknown labels."""
        return _DESCRIPTIONS.get(self.kind, f"a {self.label} block")


def _kind_of(label: str) -> BlockKind:
    if label.endswith("PRIVATE KEY"):
        return BlockKind.PRIVATE_KEY
    return _LABEL_KINDS.get(label, BlockKind.OTHER)


_BEGIN = re.compile(rb"-----BEGIN ([^\r\n-]{1,64})-----")


def _raw_blocks(data: bytes, source: str) -> Iterator[tuple[int, str, bytes, bytes]]:
    """Yield (index, label, raw PEM text, DER) per block; text outside blocks is ignored."""
    pos, index = 0, 0
    while match := _BEGIN.search(data, pos):
        index += 1
        label = match.group(1).decode("ascii", "replace")
        end_marker = b"-----END " + match.group(1) + b"-----"
        end = data.find(end_marker, match.end())
        nested = _BEGIN.search(data, match.end(), end if end >= 0 else len(data))
        if end < 0 or nested:
            raise CryptoError(
                f"{source}: block {index} ({label}) has no '-----END {label}-----' line; "
                "the file is truncated or damaged"
            )
        body = data[match.end() : end]
        if b":" in body:  # RFC 1421 headers (legacy encrypted keys): skip up to the blank line
            parts = re.split(rb"\r?\n[ \t]*\r?\n", body.strip(), maxsplit=1)
            body = parts[1] if len(parts) == 2 else body
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError(f"{source}: block {index} ({label}): bad base64") from None
        if not der:
            raise CryptoError(f"{source}: block {index} ({label}) is empty")
        pos = end + len(end_marker)
        yield index, label, data[match.start() : pos], der


def _first_tlv(der: bytes) -> bytes:
    """The first DER element of `der` (a TRUSTED CERTIFICATE is a certificate + trust data)."""
    if len(der) < 2 or der[1] < 0x80:
        return der[: 2 + der[1]] if len(der) >= 2 else der
    size = der[1] & 0x7F
    return der[: 2 + size + int.from_bytes(der[2 : 2 + size], "big")]


def _check_der(kind: BlockKind, der: bytes) -> None:
    """Parse a certificate, CRL or CSR fully enough to reject garbage now, with its block named."""
    if kind is BlockKind.CERTIFICATE:
        _ = x509.load_der_x509_certificate(der).extensions
    elif kind is BlockKind.CRL:
        _ = x509.load_der_x509_crl(der).extensions
    elif kind is BlockKind.CSR:
        _ = x509.load_der_x509_csr(der).subject


def parse_pem_bundle(data: bytes, *, source: str) -> list[PemBlock]:
    """Split a PEM file into classified blocks, rejecting files that are not PEM or damaged.

    Text around the blocks (e.g. `openssl x509 -text` output), CRLF line ends and line wrapping
    do not matter. Certificates, CRLs and CSRs are parsed, so unparsable DER is reported here
    with its block number; private keys are not parsed (they may be encrypted).
    """
    blocks = []
    for index, label, _raw, der in _raw_blocks(data, source):
        kind = _kind_of(label)
        if label == "TRUSTED CERTIFICATE":
            der = _first_tlv(der)
        try:
            _check_der(kind, der)
        except ValueError as exc:
            raise CryptoError(
                f"{source}: block {index} ({label}) is not a valid {kind.value}: {exc}"
            ) from None
        blocks.append(PemBlock(index=index, label=label, kind=kind, der=der))
    if not blocks:
        raise CryptoError(f"{source}: not PEM: no '-----BEGIN' block found")
    return blocks


def _only(blocks: list[PemBlock], kind: BlockKind, rule: str, source: str) -> list[PemBlock]:
    for block in blocks:
        if block.kind is not kind:
            why = f"{source}: block {block.index} is {block.describe()}; {rule}"
            if kind is BlockKind.CRL and block.kind is BlockKind.CERTIFICATE:
                why += " (PostgreSQL would trust a certificate placed in the CRL file)"
            raise CryptoError(why)
    return blocks


def load_certificates(
    data: bytes, *, source: str, what: str = "a CA file"
) -> list[x509.Certificate]:
    """Certificates only (at least one): a private key, a CRL or garbage is refused by block."""
    blocks = parse_pem_bundle(data, source=source)
    rule = f"{what} must hold only certificates"
    return [
        x509.load_der_x509_certificate(b.der)
        for b in _only(blocks, BlockKind.CERTIFICATE, rule, source)
    ]


def load_ca_certificates(
    data: bytes, *, source: str, now: datetime, what: str = "a CA file"
) -> list[x509.Certificate]:
    """Like `load_certificates`, and each one must be a CA (CA:TRUE) not expired at `now`."""
    now = _utc(now)
    certs = load_certificates(data, source=source, what=what)
    for number, cert in enumerate(certs, start=1):
        label = f"{source}: certificate {number} ({name_of(cert)})"
        if not is_ca(cert):
            raise CryptoError(
                f"{label} is not a CA (no basicConstraints CA:TRUE); PostgreSQL would not "
                "accept client certificates issued by it"
            )
        if now >= cert.not_valid_after_utc:
            raise CryptoError(
                f"{label} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}; use a valid CA"
            )
    return certs


def load_crls(data: bytes, *, source: str) -> list[x509.CertificateRevocationList]:
    """CRLs only (at least one): a certificate in a CRL file would be trusted by PostgreSQL."""
    blocks = parse_pem_bundle(data, source=source)
    rule = "a CRL file must hold only CRLs"
    return [x509.load_der_x509_crl(b.der) for b in _only(blocks, BlockKind.CRL, rule, source)]


def load_csr(data: bytes, *, source: str) -> x509.CertificateSigningRequest:
    """One CSR, PEM or DER, whose signature verifies (proof the requester holds the key)."""
    if b"-----BEGIN" in data:
        blocks = parse_pem_bundle(data, source=source)
        rule = "a CSR file must hold only the certificate request"
        (block, *extra) = _only(blocks, BlockKind.CSR, rule, source)
        if extra:
            raise CryptoError(f"{source}: holds {len(blocks)} CSRs; expected exactly one")
        csr = x509.load_der_x509_csr(block.der)
    else:
        try:
            csr = x509.load_der_x509_csr(data)
            _ = csr.subject
        except ValueError:
            raise CryptoError(
                f"{source}: not PEM: no '-----BEGIN' block found (and not a DER CSR either)"
            ) from None
    check_csr_signature(csr, source=source)
    return csr


def check_csr_signature(csr: x509.CertificateSigningRequest, *, source: str) -> None:
    """CryptoError unless the CSR is signed by its own key (the requester holds the key)."""
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise CryptoError(f"{source}: the CSR signature does not verify; regenerate the CSR")


def load_private_key(data: bytes, *, source: str, passphrase: bytes | None) -> PrivateKey:
    """One private key (PKCS#8, traditional RSA/EC, encrypted or not; PEM or DER).

    Other blocks in the file (a certificate, `EC PARAMETERS`) are ignored. A passphrase given
    for an unencrypted key is ignored. Errors never quote the key or the passphrase.
    """
    loader: Callable[[bytes | None], PrivateKeyTypes]
    if b"-----BEGIN" in data:
        keys = [
            raw
            for _, label, raw, _ in _raw_blocks(data, source)
            if _kind_of(label) is BlockKind.PRIVATE_KEY
        ]
        if len(keys) != 1:
            found = "no private key block" if not keys else f"{len(keys)} private keys"
            raise CryptoError(f"{source}: {found} found; expected exactly one private key")
        raw = keys[0]

        def loader(password: bytes | None) -> PrivateKeyTypes:
            return serialization.load_pem_private_key(raw, password)
    else:

        def loader(password: bytes | None) -> PrivateKeyTypes:
            return serialization.load_der_private_key(data, password)

    key = _load_key(loader, source, passphrase)
    if not isinstance(key, _PRIVATE_KEY_TYPES):
        raise CryptoError(
            f"{source}: unsupported private key type {key_type_of(key)}; use EC, RSA or Ed25519"
        )
    return key


def _load_key(
    loader: Callable[[bytes | None], PrivateKeyTypes], source: str, passphrase: bytes | None
) -> PrivateKeyTypes:
    try:
        return loader(passphrase)
    except TypeError:  # encrypted but no passphrase, or a passphrase for a plain key
        if passphrase is None:
            raise CryptoError(
                f"{source}: the private key is encrypted; a passphrase is needed"
            ) from None
    except ValueError:
        if passphrase is not None:
            raise CryptoError(
                f"{source}: cannot decrypt the private key: wrong passphrase (or a damaged key)"
            ) from None
        raise CryptoError(f"{source}: cannot parse the private key") from None
    except UnsupportedAlgorithm:
        raise CryptoError(f"{source}: unsupported private key algorithm or encryption") from None
    try:
        return loader(None)
    except (TypeError, ValueError, UnsupportedAlgorithm):
        raise CryptoError(f"{source}: cannot parse the private key") from None


def check_key_matches(cert: x509.Certificate, key: PrivateKey, *, source: str) -> None:
    """CryptoError unless `key` is the private half of `cert`'s public key."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, fmt) != key.public_key().public_bytes(der, fmt):
        raise CryptoError(
            f"{source}: the private key does not match the certificate ({name_of(cert)})"
        )


def crl_signed_by(crl: x509.CertificateRevocationList, ca_cert: x509.Certificate) -> bool:
    """True when `ca_cert` issued `crl`: same issuer name and a valid signature by its key."""
    public = ca_cert.public_key()
    if crl.issuer != ca_cert.subject or not isinstance(
        public,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey
        | dsa.DSAPublicKey,
    ):
        return False
    try:
        return crl.is_signature_valid(public)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False


# --- inspection -------------------------------------------------------------------------------


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


def serial_hex(serial: int) -> str:
    """The one serial spelling used everywhere (CLI, store, JSON): lowercase hex, no colons."""
    return format(serial, "x")


def parse_serial(text: str) -> int:
    """Read a serial as users paste it: 'f00d', '0xF00D', 'F0:0D', 'serial=F00D' (openssl)."""
    cleaned = text.strip().lower().removeprefix("serial=").removeprefix("0x")
    cleaned = cleaned.replace(":", "").replace(" ", "")
    if not cleaned or not re.fullmatch(r"[0-9a-f]+", cleaned):
        raise CryptoError(f"invalid serial {text!r}: expected hexadecimal, e.g. '1f3a9c'")
    return int(cleaned, 16)


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


def pem_fingerprints(data: bytes, *, source: str) -> frozenset[str]:
    """SHA-256 of each block's DER, as a set: two bundles with the same certificates / CRLs
    compare equal whatever their order, line ends, wrapping or surrounding text. Private keys
    are refused (they must never be sent to, or compared with, what the API returns)."""
    blocks = parse_pem_bundle(data, source=source)
    for block in blocks:
        if block.kind is BlockKind.PRIVATE_KEY:
            raise CryptoError(f"{source}: block {block.index} is a private key; refusing it")
    return frozenset(hashlib.sha256(block.der).hexdigest() for block in blocks)


# --- exports ----------------------------------------------------------------------------------


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM of a certificate (root.crt, client.crt)."""
    return cert.public_bytes(serialization.Encoding.PEM)


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    """PEM of a CRL (what ssl_crl_file and the RDS API take)."""
    return crl.public_bytes(serialization.Encoding.PEM)


def _encryption(passphrase: bytes | None) -> serialization.KeySerializationEncryption:
    if passphrase is None:
        return serialization.NoEncryption()
    if not passphrase:
        raise CryptoError("an empty passphrase would not protect the key; give one or none")
    return serialization.BestAvailableEncryption(passphrase)


def key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM (libpq's sslkey); encrypted with the best available scheme when a passphrase
    is given (libpq then needs `sslpassword`)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, _encryption(passphrase)
    )


def key_pk8_der(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER: the `.pk8` file pgJDBC wants for `sslkey`."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pkcs12(
    cert: x509.Certificate,
    key: PrivateKey,
    ca_cert: x509.Certificate,
    *,
    name: str,
    passphrase: bytes | None,
) -> bytes:
    """PKCS#12 with the client certificate, its key and the CA certificate (for Java/.NET
    clients); unencrypted when `passphrase` is None."""
    return _pkcs12.serialize_key_and_certificates(
        name.encode("utf-8"), key, cert, [ca_cert], _encryption(passphrase)
    )
