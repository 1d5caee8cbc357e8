"""Just enough DER to write a CRL (RFC 5280 §5.1) by hand, fast.

Why by hand: `cryptography`'s CRL builder makes a Python object per revoked certificate and copies
builders around; at 10,000 entries that costs ~0.1 s, slower than `openssl ca -gencrl` (the target
in benchmarks/RESULTS.md: at least as fast). An entry is tiny (SEQUENCE { serial, revocationDate,
[reason] }), so encoding the bytes directly is both simple and fast. Everything that is not per-
entry (the issuer Name, the extension values, the signature) still comes from `cryptography`, and
`rdsssl.pki.crypto` loads the result back with `x509.load_der_x509_crl`, so callers see the usual
objects and cryptography's parser reads what we wrote. Nothing is cached between calls.

Part of `rdsssl.pki.crypto` (use `crypto.build_crl`); no validation here beyond what the encoding
itself needs: the caller has checked serials, dates, the key and the CA.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from rdsssl.errors import CryptoError
from rdsssl.pki.pem import PrivateKey

_SEQUENCE = 0x30
_VERSION_2 = b"\x02\x01\x01"  # INTEGER 1 (v2: required because we carry extensions)


def length(size: int) -> bytes:
    """DER length octets: short form below 128, else 0x80|n followed by n big-endian bytes."""
    if size < 0x80:
        return bytes((size,))
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def tlv(tag: int, body: bytes) -> bytes:
    """One DER element (tag, length, value)."""
    return bytes((tag,)) + length(len(body)) + body


def integer(value: int) -> bytes:
    """A non-negative INTEGER; the extra byte from `// 8 + 1` is the leading 0x00 DER needs
    when the top bit is set (otherwise the number would read as negative)."""
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER: first two arcs packed as 40*a+b, each arc base-128, high bit = more."""
    first, second, *rest = (int(arc) for arc in dotted.split("."))
    body = bytearray()
    for arc in (40 * first + second, *rest):
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        body += bytes(reversed(chunk))
    return tlv(0x06, bytes(body))


def time(when: datetime) -> bytes:
    """RFC 5280 §4.1.2.5: UTCTime (YYMMDDHHMMSSZ) for 1950-2049, GeneralizedTime otherwise.
    `when` must already be UTC; fractions of a second are dropped (X.509 has none)."""
    fields = (when.month, when.day, when.hour, when.minute, when.second)
    if 1950 <= when.year < 2050:
        return b"\x17\x0d%02d%02d%02d%02d%02d%02dZ" % (when.year % 100, *fields)
    return b"\x18\x0f%04d%02d%02d%02d%02d%02dZ" % (when.year, *fields)


def extension(value: x509.ExtensionType) -> bytes:
    """A non-critical Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue
    OCTET STRING }: DER omits a DEFAULT value, so there is no BOOLEAN at all. Every extension a
    CRL of ours carries (CRL number, AKI, reason code) is non-critical."""
    return tlv(_SEQUENCE, oid(value.oid.dotted_string) + tlv(0x04, value.public_bytes()))


def entry_extensions(values: Iterable[x509.ExtensionType]) -> bytes:
    """crlEntryExtensions (a SEQUENCE OF Extension), or nothing at all when there are none."""
    body = b"".join(extension(value) for value in values)
    return tlv(_SEQUENCE, body) if body else b""


_TWO_DIGITS = tuple(b"%02d" % n for n in range(100))  # b"00" .. b"99", for `revoked`


def revoked(serial: int, when: datetime, extensions: bytes) -> bytes:
    """One revokedCertificates entry: SEQUENCE { userCertificate, revocationDate, extensions }.

    `when` must be UTC. This is the hot loop of a big CRL. The usual entry (a UTCTime, at most
    21 bytes of serial, a reason code) is shorter than 128 bytes, so every length is one byte
    and the whole entry is one %-format with table-looked-up digits: ~4x faster than composing
    `tlv`s, which remains the general path (GeneralizedTime, long extensions).
    """
    serial_der = serial.to_bytes(serial.bit_length() // 8 + 1, "big")  # + leading 0x00 if needed
    size = 2 + len(serial_der) + 15 + len(extensions)  # INTEGER + UTCTime + extensions
    if size < 0x80 and 1950 <= when.year < 2050:
        digits = _TWO_DIGITS
        return b"\x30%c\x02%c%s\x17\x0d%s%s%s%s%s%sZ%s" % (
            size,
            len(serial_der),
            serial_der,
            digits[when.year % 100],
            digits[when.month],
            digits[when.day],
            digits[when.hour],
            digits[when.minute],
            digits[when.second],
            extensions,
        )
    return tlv(_SEQUENCE, integer(serial) + time(when) + extensions)


_SHA256_WITH_RSA = tlv(_SEQUENCE, oid("1.2.840.113549.1.1.11") + b"\x05\x00")  # params: NULL
_ECDSA_WITH_SHA256 = tlv(_SEQUENCE, oid("1.2.840.10045.4.3.2"))  # RFC 5758: no params
_ED25519 = tlv(_SEQUENCE, oid("1.3.101.112"))  # RFC 8410: no params


def _algorithm(key: PrivateKey) -> bytes:
    """The AlgorithmIdentifier `sign` uses, the same choice as `crypto.hash_for` + the builder."""
    if isinstance(key, rsa.RSAPrivateKey):
        return _SHA256_WITH_RSA
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _ECDSA_WITH_SHA256
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return _ED25519
    raise CryptoError(f"cannot sign a CRL with a {type(key).__name__}")


def _sign(key: PrivateKey, data: bytes) -> bytes:
    """RSA PKCS#1 v1.5 + SHA-256, ECDSA + SHA-256 (DER Ecdsa-Sig-Value, as X.509 wants it), or
    pure Ed25519."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    return key.sign(data)


def certificate_list(
    key: PrivateKey,
    *,
    issuer: x509.Name,
    last_update: datetime,
    next_update: datetime,
    entries: list[bytes],
    extensions: Iterable[x509.ExtensionType],
) -> bytes:
    """A signed v2 CertificateList: SEQUENCE { tbsCertList, signatureAlgorithm, signature }.

    `entries` are `revoked()` outputs in the order wanted (sorted by serial); with none, the
    revokedCertificates field is absent, as RFC 5280 §5.1.2.6 requires. `extensions` become
    the non-critical crlExtensions, [0] EXPLICIT, in the order given.
    """
    algorithm = _algorithm(key)
    revoked_certificates = tlv(_SEQUENCE, b"".join(entries)) if entries else b""
    crl_extensions = b"".join(extension(e) for e in extensions)
    if crl_extensions:
        crl_extensions = tlv(0xA0, tlv(_SEQUENCE, crl_extensions))
    tbs = tlv(
        _SEQUENCE,
        _VERSION_2
        + algorithm
        + issuer.public_bytes()
        + time(last_update)
        + time(next_update)
        + revoked_certificates
        + crl_extensions,
    )
    signature = tlv(0x03, b"\x00" + _sign(key, tbs))  # BIT STRING, no unused bits
    return tlv(_SEQUENCE, tbs + algorithm + signature)
