"""Keys: the types rdsssl signs with, making one, the signature hash, and which client keys work.

Secure defaults sit in plain sight (trustme's habit): EC P-256 keys and SHA-256 signatures. A
key the server would refuse is refused here, before anything is signed with or for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from rdsssl.errors import CryptoError
from rdsssl.models import KeyType
from rdsssl.pki.inspection import key_type_of, name_of

__all__ = [
    "PRIVATE_KEY_TYPES",
    "SIGNING_PUBLIC_KEYS",
    "TLS12_CURVE",
    "PrivateKey",
    "PublicKey",
    "check_ca_key",
    "check_client_key",
    "client_key_problem",
    "generate_key",
    "hash_for",
    "tls12_key_problem",
]

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

PRIVATE_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
# The public keys a certificate may carry and still sign (a CA) or log in (a client).
SIGNING_PUBLIC_KEYS = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)

_RSA_EXPONENT = 65537
_RSA_MIN_BITS = 2048  # OpenSSL security level 2 (the PostgreSQL default) refuses smaller keys
_EC_MIN_BITS = 224  # the same level (112-bit strength) for curves: P-192 is refused
_KEY_FACTORIES: dict[KeyType, Callable[[], PrivateKey]] = {
    KeyType.EC_P256: lambda: ec.generate_private_key(ec.SECP256R1()),
    KeyType.EC_P384: lambda: ec.generate_private_key(ec.SECP384R1()),
    KeyType.RSA_2048: lambda: rsa.generate_private_key(_RSA_EXPONENT, 2048),
    KeyType.RSA_3072: lambda: rsa.generate_private_key(_RSA_EXPONENT, 3072),
    KeyType.RSA_4096: lambda: rsa.generate_private_key(_RSA_EXPONENT, 4096),
    KeyType.ED25519: ed25519.Ed25519PrivateKey.generate,
}


def generate_key(key_type: KeyType = KeyType.EC_P256) -> PrivateKey:
    """A fresh private key. EC P-256 by default: 100x faster to make than RSA, and small."""
    return _KEY_FACTORIES[KeyType(key_type)]()


def hash_for(key: PrivateKey) -> hashes.SHA256 | None:
    """The signature hash for `key`: SHA-256, or None for Ed25519 (it hashes internally)."""
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


# RDS for PostgreSQL offers TLS 1.0-1.2 (its SSL page lists no 1.3). Under TLS 1.2 PostgreSQL
# accepts an ECDSA client key only on its one `ssl_ecdh_curve` (prime256v1 by default): a P-384
# key fails the handshake ("wrong curve"). RSA and Ed25519 are not affected.
TLS12_CURVE = "secp256r1"
_TLS12_HINT = (
    "RDS for PostgreSQL offers TLS 1.0-1.2, and under TLS 1.2 the server takes ECDSA client keys "
    "only on its own curve (P-256), so this certificate could never log in; use ec-p256, "
    "rsa-2048 or ed25519, or --force if every server you use speaks TLS 1.3"
)


def tls12_key_problem(key_type: KeyType) -> str | None:
    """Why a client key of `key_type` fails over TLS 1.2, or None (checked before a key is
    made, so a refusal costs nothing)."""
    if KeyType(key_type) is KeyType.EC_P384:
        return f"an {key_type.value} client key fails over TLS 1.2: {_TLS12_HINT}"
    return None


def client_key_problem(public_key: CertificatePublicKeyTypes, *, tls12: bool = True) -> str | None:
    """Why a client certificate with this key cannot log in to the server, or None. `tls12`:
    also refuse keys that work over TLS 1.3 only (ECDSA off P-256; see `TLS12_CURVE`)."""
    if not isinstance(public_key, SIGNING_PUBLIC_KEYS):
        kind = key_type_of(public_key)
        return f"unsupported key type {kind}; use EC, RSA (>= 2048 bits) or Ed25519"
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < _RSA_MIN_BITS:
        return (
            f"RSA key of {public_key.key_size} bits is too weak (OpenSSL on the server refuses "
            f"it); use at least {_RSA_MIN_BITS} bits"
        )
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.key_size < _EC_MIN_BITS:
        return (
            f"EC key on {public_key.curve.name} is too weak (OpenSSL on the server refuses it); "
            "use P-256 or P-384"
        )
    if (
        tls12
        and isinstance(public_key, ec.EllipticCurvePublicKey)
        and public_key.curve.name != TLS12_CURVE
    ):
        return f"an ECDSA key on {public_key.curve.name} fails over TLS 1.2: {_TLS12_HINT}"
    return None


def check_client_key(
    public_key: CertificatePublicKeyTypes, source: str, *, tls12: bool = True
) -> None:
    """CryptoError naming `source` when `client_key_problem` finds one."""
    problem = client_key_problem(public_key, tls12=tls12)
    if problem:
        raise CryptoError(f"{source}: {problem}")


def check_ca_key(cert: x509.Certificate, *, source: str) -> None:
    """CryptoError unless the key of CA `cert` is one a client certificate could have: a CA
    whose key the server refuses would make every certificate it signs useless (`ca import`)."""
    try:
        public_key = cert.public_key()
    except UnsupportedAlgorithm:
        raise CryptoError(
            f"{source} ({name_of(cert)}): unsupported key algorithm "
            f"{cert.public_key_algorithm_oid.dotted_string}; use EC, RSA (>= 2048 bits) or Ed25519"
        ) from None
    check_client_key(public_key, f"{source} ({name_of(cert)})", tls12=False)  # a CA may be P-384
