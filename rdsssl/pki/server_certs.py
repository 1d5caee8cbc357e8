"""Server certificates for an instance: signed by the user's own server CA (`CAType=custom`).

A cloud certificate covers one connection string; a custom one covers every connection string
the instance has (internal and public), which is the documented reason to use it
(docs/aliyun-rds-ssl-api.md). Defaults in plain sight: CA:FALSE and keyUsage
digitalSignature (+ keyEncipherment for RSA), both critical; serverAuth only; every name is a
DNS subjectAltName (what `sslmode=verify-full` checks) and the first one is also the CN (for old
clients that still read it); the validity never outlives the CA.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rdsssl.errors import CryptoError
from rdsssl.pki.ca import authority_key_id, check_signing_ca
from rdsssl.pki.certs import Issued
from rdsssl.pki.keys import PrivateKey, hash_for
from rdsssl.pki.serials import new_serial
from rdsssl.pki.validity import CLOCK_SKEW, check_days, utc

__all__ = ["DEFAULT_SERVER_DAYS", "issue_server_cert", "server_names"]

DEFAULT_SERVER_DAYS = 365
_MAX_DNS_NAME = 253


def _check_name(name: str) -> str:
    """A host name a certificate may carry as a DNS SAN, lower-cased; CryptoError otherwise."""
    text = name.strip().rstrip(".").lower()
    labels = text.split(".")
    ok = (
        0 < len(text) <= _MAX_DNS_NAME
        and all(0 < len(label) <= 63 for label in labels)
        and all(c.isascii() and (c.isalnum() or c in "-*") for label in labels for c in label)
    )
    if not ok:
        raise CryptoError(f"{name!r} is not a host name a server certificate can name")
    return text


def server_names(names: list[str]) -> list[str]:
    """The connection strings to name, checked, de-duplicated, in the order given."""
    seen: list[str] = []
    for name in names:
        checked = _check_name(name)
        if checked not in seen:
            seen.append(checked)
    if not seen:
        raise CryptoError("a server certificate needs at least one connection string to name")
    return seen


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue_server_cert(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: CertificatePublicKeyTypes,
    *,
    names: list[str],
    now: datetime,
    days: int = DEFAULT_SERVER_DAYS,
) -> Issued:
    """Sign a server certificate naming every entry of `names` (one instance's connection
    strings). A longer validity than the CA's is truncated and reported (`Issued.truncated`)."""
    now = utc(now)
    checked = server_names(names)
    check_days(days, "server certificate", now=now)
    check_signing_ca(ca_cert, ca_key, now)
    not_after = now + timedelta(days=days)
    truncated = not_after > ca_cert.not_valid_after_utc
    if truncated:
        not_after = ca_cert.not_valid_after_utc
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, checked[0][:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(new_serial())
        .not_valid_before(max(now - CLOCK_SKEW, ca_cert.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in checked]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority_key_id(ca_cert), critical=False)
    )
    return Issued(cert=builder.sign(ca_key, hash_for(ca_key)), truncated=truncated)
