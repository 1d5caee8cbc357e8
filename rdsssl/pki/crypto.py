"""Pure X.509 functions over `cryptography`: keys, the client CA, client certificates, CSRs, CRLs.

Nothing here touches files, the network or the clock: `now` is always a parameter, so the store,
the CLI and the tests decide what time it is, and every function is trivially testable. PEM
parsing, validation, fingerprints and exports live in `rdsssl.pki.pem`, the CA key's
encryption at rest in `rdsssl.pki.pkcs8`; both are re-exported here, so callers only ever
import `rdsssl.pki.crypto`.

Secure defaults sit in plain sight below (trustme's habit): EC P-256 keys, SHA-256 signatures,
CA:TRUE / CA:FALSE marked critical, clientAuth only, serials of 159 random bits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rdsssl.errors import CryptoError
from rdsssl.models import KeyType, RevocationReason
from rdsssl.pki import crl_der
from rdsssl.pki.pem import (
    BlockKind,
    CertInfo,
    CrlInfo,
    PemBlock,
    PrivateKey,
    PublicKey,
    _utc,
    cert_pem,
    check_csr_signature,
    check_key_matches,
    cn_of,
    crl_pem,
    crl_signed_by,
    fingerprint,
    inspect_cert,
    inspect_crl,
    is_ca,
    key_pem,
    key_pk8_der,
    key_type_of,
    load_ca_certificates,
    load_certificates,
    load_crls,
    load_csr,
    load_private_key,
    name_of,
    parse_pem_bundle,
    parse_serial,
    pem_fingerprints,
    pkcs12,
    serial_hex,
)
from rdsssl.pki.pkcs8 import KDF_ROUNDS, KeyProtection, ca_key_pem, key_protection

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_CA_DAYS",
    "DEFAULT_CRL_DAYS",
    "DEFAULT_CRL_EXPIRED_GRACE",
    "DEFAULT_LEAF_DAYS",
    "KDF_ROUNDS",
    "LATEST_TIME",
    "BlockKind",
    "CaIdentity",
    "CertInfo",
    "CrlInfo",
    "Issued",
    "KeyProtection",
    "PemBlock",
    "PrivateKey",
    "PublicKey",
    "Revocation",
    "akid_fits",
    "build_crl",
    "ca_identity",
    "ca_key_pem",
    "cert_pem",
    "check_ca_key",
    "check_csr_signature",
    "check_days",
    "check_key_matches",
    "client_key_problem",
    "cn_of",
    "crl_pem",
    "crl_signed_by",
    "fingerprint",
    "generate_key",
    "hash_for",
    "inspect_cert",
    "inspect_crl",
    "is_ca",
    "is_self_signed",
    "issue_client_cert",
    "key_pem",
    "key_pk8_der",
    "key_protection",
    "key_type_of",
    "load_ca_certificates",
    "load_certificates",
    "load_crls",
    "load_csr",
    "load_private_key",
    "make_ca",
    "max_days",
    "name_of",
    "new_serial",
    "parse_pem_bundle",
    "parse_serial",
    "pem_fingerprints",
    "pkcs12",
    "reason_to_x509",
    "renew_ca",
    "serial_hex",
    "sign_csr",
    "tls12_key_problem",
    "unsafe_name_problem",
    "validate_role_name",
]

DEFAULT_CA_DAYS = 3650  # the manual procedure's `openssl req -x509 -days 3650`
DEFAULT_LEAF_DAYS = 365
DEFAULT_CRL_DAYS = 180  # nextUpdate: PostgreSQL rejects every client once the CRL is stale
# Revoked certificates that expired longer ago than this leave the CRL (keeps it small).
DEFAULT_CRL_EXPIRED_GRACE = timedelta(days=30)

# X.509 times end here: GeneralizedTime has four year digits (RFC 5280 section 4.1.2.5), and
# Python's datetime cannot go further either (a larger --days would raise OverflowError).
LATEST_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)

# notBefore is back-dated by this much, so a server whose clock is a few minutes behind ours does
# not reject a certificate (or a whole CA) we have just made as "not yet valid".
CLOCK_SKEW = timedelta(minutes=5)

_MAX_SERIAL = 2**159  # RFC 5280: at most 20 octets, positive
_MIN_SERIAL_BITS = 64  # CA/B Forum baseline: at least 64 bits of CSPRNG output
_ROLE_NAME_MAX_BYTES = 63  # NAMEDATALEN - 1: longer names are silently truncated by PostgreSQL
_RESERVED_ROLE_NAMES = ("public", "none")  # CREATE ROLE refuses these outright

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

_REASONS = {
    RevocationReason.UNSPECIFIED: x509.ReasonFlags.unspecified,
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.CA_COMPROMISE: x509.ReasonFlags.ca_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.CERTIFICATE_HOLD: x509.ReasonFlags.certificate_hold,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
}


# --- keys, serials, names ---------------------------------------------------------------------


def generate_key(key_type: KeyType = KeyType.EC_P256) -> PrivateKey:
    """A fresh private key. EC P-256 by default: 100x faster to make than RSA, and small."""
    return _KEY_FACTORIES[KeyType(key_type)]()


def hash_for(key: PrivateKey) -> hashes.SHA256 | None:
    """The signature hash for `key`: SHA-256, or None for Ed25519 (it hashes internally)."""
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def new_serial() -> int:
    """A positive random serial below 2**159 with at least 64 significant bits.

    Same draw as `x509.random_serial_number()` (159 CSPRNG bits); the loop only rejects the
    ~2**-95 chance of a serial so small that it would carry fewer than 64 bits.
    """
    while True:
        serial = x509.random_serial_number()
        if serial.bit_length() >= _MIN_SERIAL_BITS:
            return serial


def validate_role_name(name: str) -> str:
    """Return `name` if PostgreSQL could have a role of that name, else raise CryptoError.

    The certificate CN must equal the role name byte for byte (`cert` auth maps CN to user), so a
    CN that can never be a role only produces a certificate that can never log in. rdsssl also
    uses the name as a directory (`OUT_ROOT/USER`) and prints it in messages and logs, so it
    refuses what PostgreSQL would allow in a quoted identifier but no file name or terminal
    should get (`unsafe_name_problem`).
    """
    problem = _role_name_problem(name)
    if problem:
        raise CryptoError(f"invalid database user name {name!r}: {problem}")
    return name


def unsafe_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one directory component or be printed raw, or None.

    Refused: ``/``, ``.`` and ``..`` (a path, not a name) and control characters (C0, DEL, C1:
    a CN printed to a terminal or a log line could move the cursor, fake a line or run a
    terminal escape). Shared by user names, `OUT_ROOT/USER` and `ca import`.
    """
    if name in (".", ".."):
        return f"{name!r} cannot be used as a directory name"
    if "/" in name:
        return "it contains '/', so it cannot be a directory name"
    bad = next((c for c in name if _is_control(c)), None)
    if bad is not None:
        return f"it contains the control character U+{ord(bad):04X}"
    return None


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def _role_name_problem(name: str) -> str | None:
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid Unicode text"
    if not name:
        return "a PostgreSQL role name cannot be empty"
    if "\x00" in name:
        return "a PostgreSQL role name cannot contain a NUL character"
    unsafe = unsafe_name_problem(name)
    if unsafe:
        return unsafe
    if size > _ROLE_NAME_MAX_BYTES:
        return (
            f"it is {size} bytes in UTF-8; PostgreSQL role names are at most "
            f"{_ROLE_NAME_MAX_BYTES} bytes (the server truncates longer ones, so the CN would "
            "never match)"
        )
    if name.startswith("pg_"):
        return "role names starting with 'pg_' are reserved for PostgreSQL's predefined roles"
    if name in _RESERVED_ROLE_NAMES:
        return f"'{name}' is a reserved role name in PostgreSQL"
    return None


def reason_to_x509(reason: RevocationReason) -> x509.ReasonFlags:
    """Map an openssl-spelled reason (as in `openssl ca -revoke -crl_reason`) to cryptography's."""
    return _REASONS[RevocationReason(reason)]


def max_days(now: datetime) -> int:
    """The longest validity, in whole days from `now`, that still ends by `LATEST_TIME`."""
    return (LATEST_TIME - _utc(now)).days


def check_days(days: int, what: str, *, now: datetime) -> None:
    """CryptoError unless a validity of `days` from `now` is at least a day and ends by
    `LATEST_TIME`. The signing functions apply it; commands call it on their --days options
    before any work, so an absurd value costs nothing (not even half a rotation)."""
    if days < 1:
        raise CryptoError(f"{what} validity must be at least 1 day (got {days})")
    most = max_days(now)
    if days > most:
        raise CryptoError(
            f"{what} validity of {days} days would end after {LATEST_TIME:%Y-%m-%d}, the last "
            f"date X.509 can express; use at most {most} days"
        )


def _key_id(cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """AKI pointing at `cert`: its own SKI when present, else one derived from its public key."""
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        public = cert.public_key()
        if not isinstance(public, _SIGNING_PUBLIC_KEYS):
            raise CryptoError(f"CA '{name_of(cert)}': its key type cannot sign") from None
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(public)


_SIGNING_PUBLIC_KEYS = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)


# --- the CA -----------------------------------------------------------------------------------


def make_ca(
    key: PrivateKey, *, cn: str, now: datetime, days: int = DEFAULT_CA_DAYS
) -> x509.Certificate:
    """A self-signed client CA: what `openssl req -new -x509 -subj /CN=root-ca1` makes, tightened.

    notBefore is `now - CLOCK_SKEW`; notAfter is `now + days`.
    """
    now = _utc(now)
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
    now = _utc(now)
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
            value = _key_id(old)  # keyid only, from the (copied) SKI or the key
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


def akid_fits(signed: x509.Certificate, ca: x509.Certificate) -> bool:
    """OpenSSL's X509_check_akid: every part of `signed`'s authority key identifier that is
    present must name `ca` (keyid = its SKI, serial = its serial, issuer = its issuer). A
    certificate whose identifier names the CA's old serial does not chain to a renewal."""
    try:
        aki = signed.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True
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


def _check_ca(ca_cert: x509.Certificate, ca_key: PrivateKey, now: datetime) -> None:
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


# --- client certificates ----------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """A freshly signed client certificate. `truncated`: notAfter was cut to the CA's notAfter,
    so the caller should warn that the certificate lives shorter than asked."""

    cert: x509.Certificate
    truncated: bool


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
    if not isinstance(public_key, _SIGNING_PUBLIC_KEYS):
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


def _check_leaf_key(
    public_key: CertificatePublicKeyTypes, source: str, *, tls12: bool = True
) -> None:
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
    _check_leaf_key(public_key, f"{source} ({name_of(cert)})", tls12=False)  # a CA may be P-384


def issue_client_cert(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: CertificatePublicKeyTypes,
    *,
    user: str,
    now: datetime,
    days: int = DEFAULT_LEAF_DAYS,
    serial: int | None = None,
    source: str = "client key",
    allow_tls13_only: bool = False,
) -> Issued:
    """Sign a client certificate whose CN is the database user (PostgreSQL `cert` auth).

    A key that could not log in is refused, a key that works over TLS 1.3 only as well unless
    `allow_tls13_only` (see `TLS12_CURVE`).

    The validity never outlives the CA: a longer request is truncated to the CA's notAfter and
    reported with `truncated=True` rather than refused, so renewals keep working as the CA ages.
    """
    now = _utc(now)
    validate_role_name(user)
    check_days(days, "certificate", now=now)
    _check_ca(ca_cert, ca_key, now)
    _check_leaf_key(public_key, source, tls12=not allow_tls13_only)
    if serial is None:
        serial = new_serial()
    elif not 0 < serial < _MAX_SERIAL:
        raise CryptoError(f"serial {serial_hex(serial)} is out of range (1 .. 2**159-1)")
    not_after = now + timedelta(days=days)
    truncated = not_after > ca_cert.not_valid_after_utc
    if truncated:
        not_after = ca_cert.not_valid_after_utc
    not_before = max(now - CLOCK_SKEW, ca_cert.not_valid_before_utc)
    usage = x509.KeyUsage(
        digital_signature=True,  # the TLS handshake signature
        content_commitment=False,
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey),  # RSA key exchange
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_key_id(ca_cert), critical=False)
    )
    return Issued(cert=builder.sign(ca_key, hash_for(ca_key)), truncated=truncated)


def sign_csr(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    csr: x509.CertificateSigningRequest,
    *,
    user: str | None,
    now: datetime,
    days: int = DEFAULT_LEAF_DAYS,
    serial: int | None = None,
    source: str = "CSR",
    allow_tls13_only: bool = False,
) -> Issued:
    """Sign an external CSR (`openssl req -new -subj /CN=alice`) as a client certificate.

    Only the CSR's public key and CN are used: the certificate gets our extensions, never the
    CSR's, so a CSR cannot smuggle in CA:TRUE or a serverAuth EKU. A CSR *asking* for CA:TRUE
    is refused outright, since that request is a mistake or an attack worth surfacing.
    """
    check_csr_signature(csr, source=source)
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) > 1:
        raise CryptoError(f"{source}: the CSR subject has {len(cns)} CNs; exactly one is needed")
    cn = cn_of(csr.subject)
    if user is None:
        if cn is None:
            raise CryptoError(f"{source}: the CSR subject has no CN; pass the user explicitly")
        user = cn
    elif cn is not None and cn != user:
        raise CryptoError(
            f"{source}: the CSR is for CN {cn!r} but the user is {user!r}; "
            "they must match (PostgreSQL maps the CN to the role)"
        )
    try:
        constraints = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except ValueError as exc:  # a malformed extension request
        raise CryptoError(f"{source}: the CSR has unparsable extensions ({exc})") from None
    if constraints is not None and constraints.ca:
        raise CryptoError(
            f"{source}: the CSR requests basicConstraints CA:TRUE; refusing to sign a CA "
            "(client certificates must be CA:FALSE)"
        )
    try:
        public_key = csr.public_key()
    except UnsupportedAlgorithm:
        raise CryptoError(f"{source}: the CSR's key algorithm is not supported") from None
    return issue_client_cert(
        ca_cert,
        ca_key,
        public_key,
        user=user,
        now=now,
        days=days,
        serial=serial,
        source=source,
        allow_tls13_only=allow_tls13_only,
    )


# --- CRLs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Revocation:
    """One revoked certificate as the store knows it. `not_after` (the certificate's expiry) lets
    `build_crl` drop entries that no longer matter; None keeps the entry forever."""

    serial: int
    revoked_at: datetime
    reason: RevocationReason
    not_after: datetime | None = None

    def listed(self, now: datetime, grace: timedelta = DEFAULT_CRL_EXPIRED_GRACE) -> bool:
        """Whether a CRL built at `now` lists it: not when its certificate expired more than
        `grace` ago (an expired certificate is refused anyway; the CRL stays small)."""
        return self.not_after is None or self.not_after >= now - grace


# The crlEntryExtensions DER per reason, derived once from cryptography's own encoding (constant
# data, nothing that can go stale). RFC 5280 says omit the extension rather than write
# "unspecified", which is also what `openssl ca -revoke` without -crl_reason produces.
_REASON_EXTENSIONS: dict[RevocationReason, bytes] = {
    reason: crl_der.entry_extensions([x509.CRLReason(flag)])
    for reason, flag in _REASONS.items()
    if reason is not RevocationReason.UNSPECIFIED
}


def build_crl(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    revocations: Iterable[Revocation],
    *,
    number: int,
    now: datetime,
    days: int = DEFAULT_CRL_DAYS,
    expired_grace: timedelta = DEFAULT_CRL_EXPIRED_GRACE,
) -> x509.CertificateRevocationList:
    """A v2 CRL (CRL number, AKI, reason codes), lastUpdate=now-CLOCK_SKEW, nextUpdate=now+days.

    lastUpdate is back-dated like notBefore: PostgreSQL rejects every certificate of the CA
    while the CRL is "not yet valid", so a server clock a little behind ours must not lock
    users out (docs/postgres-client-cert-behaviour.md §4, R2).

    Entries whose certificate expired more than `expired_grace` ago are dropped: an expired
    certificate is refused anyway, and the CRL must stay small enough to upload.

    The DER is written by `rdsssl.pki.crl_der` and loaded back, not made by cryptography's builder:
    the builder costs ~0.1 s at 10,000 entries, more than `openssl ca -gencrl`.
    The output is the builder's, field for field (tests/unit/test_crl_fast.py keeps the builder
    as the oracle): entries sorted by serial, reason omitted when unspecified, UTCTime before
    2050 and GeneralizedTime from 2050 on.
    """
    now = _utc(now)
    check_days(days, "CRL", now=now)
    _check_ca(ca_cert, ca_key, now)
    if not 0 <= number < _MAX_SERIAL:
        raise CryptoError(f"CRL number {number} is out of range (0 .. 2**159-1)")
    cutoff = now - expired_grace
    own = ca_cert.serial_number  # the CA's own serial: listing it locks out every user of it
    # One pass: filter, check and encode each entry (keyed by serial), then order by serial.
    encoded: dict[int, bytes] = {}
    for rev in revocations:
        serial = rev.serial
        if rev.not_after is not None and rev.not_after < cutoff:  # = not rev.listed(), inlined
            continue
        if serial == own:
            raise CryptoError(
                f"refusing to sign a CRL listing serial {serial_hex(serial)}: it is the CA's own "
                "serial, and PostgreSQL would then refuse every certificate of this CA. The "
                "store records the CA as revoked (an old store); mark that row valid again: "
                f"sqlite3 inventory.sqlite \"UPDATE certs SET status='valid', revoked_at=NULL, "
                f"reason=NULL WHERE serial='{serial_hex(serial)}'\""
            )
        if serial in encoded:
            raise CryptoError(f"serial {serial_hex(serial)} is listed twice for the CRL")
        if not 0 < serial < _MAX_SERIAL:
            raise CryptoError(f"serial {serial_hex(serial)} is out of range for a CRL entry")
        date = rev.revoked_at
        if date.tzinfo is not timezone.utc:  # the common case skips a conversion per entry
            date = _utc(date)
        encoded[serial] = crl_der.revoked(serial, date, _REASON_EXTENSIONS.get(rev.reason, b""))
    der = crl_der.certificate_list(
        ca_key,
        issuer=ca_cert.subject,
        last_update=now - CLOCK_SKEW,
        next_update=now + timedelta(days=days),
        entries=[encoded[serial] for serial in sorted(encoded)],
        extensions=[x509.CRLNumber(number), _key_id(ca_cert)],
    )
    return x509.load_der_x509_crl(der)
