"""The PEM checks ModifyDBInstanceSSL makes before anything reaches PostgreSQL.

Written from docs/postgres-client-cert-behaviour.md §4 and §9: PostgreSQL loads the CRL
file with a call that also loads certificates, so a certificate smuggled into a CRL upload
becomes a trust anchor (R9). Hence: the CA field holds only CA certificates, the CRL field
only `X509 CRL` blocks, and every block must parse. Text between blocks is tolerated, as
PostgreSQL tolerates it (B4). An expired CRL is accepted on purpose: the real service has
no reason to refuse it, and the lock-out it causes is the hazard rdsssl must guard against.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from rdsssl.emulator.errors import api_error

__all__ = [
    "PemBlock",
    "check_client_ca",
    "check_crl",
    "check_server_cert",
    "fingerprints",
    "parse_blocks",
]

_ISSUER_KEYS = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
    dsa.DSAPublicKey,
)
_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class PemBlock:
    """One PEM block: its label and DER bytes; `index` counts from 1 for messages."""

    index: int
    label: str
    der: bytes


def parse_blocks(text: str) -> list[PemBlock]:
    """Every PEM block in `text`; ValueError when there is none or one is not base64."""
    blocks = []
    for i, m in enumerate(_BLOCK.finditer(text), start=1):
        body = "".join(m.group(2).split())
        try:
            der = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"PEM block {i} ({m.group(1)}) is not valid base64") from None
        blocks.append(PemBlock(i, m.group(1), der))
    if not blocks:
        raise ValueError("no PEM block found")
    return blocks


def fingerprints(text: str) -> tuple[str, ...]:
    """SHA-256 of each block's DER (lowercase hex), to compare PEMs regardless of layout."""
    if not text:
        return ()
    try:
        return tuple(hashlib.sha256(b.der).hexdigest() for b in parse_blocks(text))
    except ValueError:
        return (hashlib.sha256(text.encode()).hexdigest(),)


def check_client_ca(text: str, *, allow_multiple: bool) -> list[x509.Certificate]:
    """The CA certificates of a ClientCACert value, or InvalidClientCACert saying why."""
    try:
        blocks = parse_blocks(text)
    except ValueError as e:
        raise api_error("InvalidClientCACert", str(e)) from None
    certs = []
    for b in blocks:
        if b.label != "CERTIFICATE":
            raise api_error("InvalidClientCACert", f"block {b.index} is {b.label}, not CERTIFICATE")
        try:
            cert = x509.load_der_x509_certificate(b.der)
        except ValueError:
            raise api_error("InvalidClientCACert", f"block {b.index} does not parse") from None
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        if not ca:
            raise api_error(
                "InvalidClientCACert", f"block {b.index} is not a CA certificate (no CA:TRUE)"
            )
        certs.append(cert)
    if len(certs) > 1 and not allow_multiple:
        raise api_error("InvalidClientCACert", f"{len(certs)} certificates; only one is accepted")
    return certs


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    key = ca.public_key()
    if crl.issuer != ca.subject or not isinstance(key, _ISSUER_KEYS):
        return False
    return crl.is_signature_valid(key)


def check_crl(
    text: str, cas: list[x509.Certificate], *, check_issuer: bool
) -> list[x509.CertificateRevocationList]:
    """The CRLs of a ClientCertRevocationList value, or InvalidClientCrl saying why."""
    try:
        blocks = parse_blocks(text)
    except ValueError as e:
        raise api_error("InvalidClientCrl", str(e)) from None
    crls = []
    for b in blocks:
        if b.label != "X509 CRL":
            raise api_error("InvalidClientCrl", f"block {b.index} is {b.label}, not X509 CRL")
        try:
            crl = x509.load_der_x509_crl(b.der)
        except ValueError:
            raise api_error("InvalidClientCrl", f"block {b.index} does not parse") from None
        if check_issuer and not any(_signed_by(crl, ca) for ca in cas):
            raise api_error(
                "InvalidClientCrl",
                f"block {b.index} is not signed by a CA of the client CA certificate",
            )
        crls.append(crl)
    return crls


def check_server_cert(cert_text: str, key_text: str, *, now: datetime) -> x509.Certificate:
    """A custom ServerCert/ServerKey pair, or InvalidServerCertOrPrivateKey saying why.

    ServerCert holds the server certificate, optionally followed by its chain: only
    CERTIFICATE blocks, all parsing (DescribeDBInstanceSSL reads ServerCert back, so a key
    pasted into it would be handed to every reader). The first certificate must not have
    expired at `now` (the emulator's clock) and must match ServerKey, one unencrypted key
    (PostgreSQL cannot prompt for a passphrase on restart). Returns the first certificate.
    """
    try:
        blocks = parse_blocks(cert_text)
    except ValueError as e:
        raise api_error("InvalidServerCertOrPrivateKey", f"ServerCert: {e}") from None
    certs = []
    for b in blocks:
        if b.label != "CERTIFICATE":
            raise api_error(
                "InvalidServerCertOrPrivateKey",
                f"ServerCert block {b.index} is {b.label}, not CERTIFICATE",
            )
        try:
            certs.append(x509.load_der_x509_certificate(b.der))
        except ValueError:
            raise api_error(
                "InvalidServerCertOrPrivateKey", f"ServerCert block {b.index} does not parse"
            ) from None
    cert = certs[0]
    if cert.not_valid_after_utc <= now:
        raise api_error(
            "InvalidServerCertOrPrivateKey",
            f"the server certificate expired on {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
        )
    if "ENCRYPTED" in key_text:
        raise api_error(
            "InvalidServerCertOrPrivateKey",
            "ServerKey is encrypted; send the key without a passphrase",
        )
    try:
        key = serialization.load_pem_private_key(key_text.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # never the parser's text: it could quote part of the key
        raise api_error(
            "InvalidServerCertOrPrivateKey", "ServerKey is not an unencrypted PEM private key"
        ) from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise api_error("InvalidServerCertOrPrivateKey", "the key does not match the certificate")
    return cert
