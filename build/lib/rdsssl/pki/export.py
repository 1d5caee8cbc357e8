"""Writing keys, certificates and CRLs out: PEM, the `.pk8` DER pgJDBC wants, and PKCS#12.

The CA key's own encryption at rest (a chosen PBKDF2 cost) is `rdsssl.pki.pkcs8`; these are the
client files and the CA certificate / CRL that go to the instance.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12 as _pkcs12

from rdsssl.errors import CryptoError
from rdsssl.pki.keys import PrivateKey

__all__ = ["cert_pem", "crl_pem", "key_pem", "key_pk8_der", "pkcs12"]


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
