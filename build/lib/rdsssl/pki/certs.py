"""Client certificates: signing one for a database user, from our key or an external CSR.

Secure defaults in plain sight: CA:FALSE and keyUsage digitalSignature (+ keyEncipherment for
RSA), both critical; clientAuth only; the CN is the database user, checked as a role name; the
validity never outlives the CA.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rdsssl.errors import CryptoError
from rdsssl.pki.ca import authority_key_id, check_signing_ca
from rdsssl.pki.inspection import cn_of
from rdsssl.pki.keys import PrivateKey, check_client_key, hash_for
from rdsssl.pki.names import validate_role_name
from rdsssl.pki.pem import check_csr_signature
from rdsssl.pki.serials import MAX_SERIAL, new_serial, serial_hex
from rdsssl.pki.validity import CLOCK_SKEW, DEFAULT_LEAF_DAYS, check_days, utc

__all__ = ["Issued", "issue_client_cert", "sign_csr"]


@dataclass(frozen=True)
class Issued:
    """A freshly signed client certificate. `truncated`: notAfter was cut to the CA's notAfter,
    so the caller should warn that the certificate lives shorter than asked."""

    cert: x509.Certificate
    truncated: bool


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
    `allow_tls13_only` (see `keys.TLS12_CURVE`).

    The validity never outlives the CA: a longer request is truncated to the CA's notAfter and
    reported with `truncated=True` rather than refused, so renewals keep working as the CA ages.
    """
    now = utc(now)
    validate_role_name(user)
    check_days(days, "certificate", now=now)
    check_signing_ca(ca_cert, ca_key, now)
    check_client_key(public_key, source, tls12=not allow_tls13_only)
    if serial is None:
        serial = new_serial()
    elif not 0 < serial < MAX_SERIAL:
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
        .add_extension(authority_key_id(ca_cert), critical=False)
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
