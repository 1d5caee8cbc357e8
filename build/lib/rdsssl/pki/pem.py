"""PEM bundles in: parse and classify blocks, load certificates, CRLs, CSRs and private keys,
and check what belongs together (a key and its certificate, a CRL and its CA).

Pure: bytes in, objects out, `now` passed in. Every error is a `CryptoError` whose message
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
from datetime import datetime
from enum import Enum

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from rdsssl.errors import CryptoError
from rdsssl.pki.inspection import is_ca, key_type_of, name_of
from rdsssl.pki.keys import PRIVATE_KEY_TYPES, PrivateKey
from rdsssl.pki.validity import utc

__all__ = [
    "BlockKind",
    "PemBlock",
    "check_csr_signature",
    "check_key_matches",
    "crl_signed_by",
    "kind_of",
    "load_ca_certificates",
    "load_certificates",
    "load_crls",
    "load_csr",
    "load_private_key",
    "parse_pem_bundle",
    "pem_fingerprints",
    "raw_blocks",
]

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


def kind_of(label: str) -> BlockKind:
    if label.endswith("PRIVATE KEY"):
        return BlockKind.PRIVATE_KEY
    return _LABEL_KINDS.get(label, BlockKind.OTHER)


_BEGIN = re.compile(rb"-----BEGIN ([^\r\n-]{1,64})-----")


def raw_blocks(data: bytes, source: str) -> Iterator[tuple[int, str, bytes, bytes]]:
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
    for index, label, _raw, der in raw_blocks(data, source):
        kind = kind_of(label)
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
    now = utc(now)
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
            for _, label, raw, _ in raw_blocks(data, source)
            if kind_of(label) is BlockKind.PRIVATE_KEY
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
    if not isinstance(key, PRIVATE_KEY_TYPES):
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


def pem_fingerprints(data: bytes, *, source: str) -> frozenset[str]:
    """SHA-256 of each block's DER, as a set: two bundles with the same certificates / CRLs
    compare equal whatever their order, line ends, wrapping or surrounding text. Private keys
    are refused (they must never be sent to, or compared with, what the API returns)."""
    blocks = parse_pem_bundle(data, source=source)
    for block in blocks:
        if block.kind is BlockKind.PRIVATE_KEY:
            raise CryptoError(f"{source}: block {block.index} is a private key; refusing it")
    return frozenset(hashlib.sha256(block.der).hexdigest() for block in blocks)
