"""The CA key at rest: PKCS#8 encrypted with PBES2 at a strong iteration count, and what protects
a key file, read from it without the passphrase.

Pure: bytes in, bytes or values out.

Why the encryption is assembled here: `cryptography`'s `BestAvailableEncryption` writes PKCS#8
with PBKDF2-HMAC-SHA256 at 2,048 iterations, cheap to guess at for whoever copies ca.key, and its
`encryption_builder().kdf_rounds(n)` is refused for PKCS#8 (only OpenSSH and PKCS#12 take it,
as of cryptography 50). The key derivation, the cipher and the padding still come from
`cryptography`; only the few fixed DER elements around them (RFC 8018 section 6.2 and appendix
A.2/A.4, RFC 5958 EncryptedPrivateKeyInfo) are written here, by the four encoders below
(cryptography has no PKCS#8 writer with a chosen PBKDF2 iteration count, and its declarative
`cryptography.hazmat.asn1` is documented as unstable). The result is what
`openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256 -iter 600000` writes;
`cryptography` and the openssl CLI both read it back (the tests check).

Why the reader is hand-written: cryptography has no public parser for the parameters of an
EncryptedPrivateKeyInfo, and `ca show` reports them without asking for the passphrase.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from rdsssl.errors import CryptoError
from rdsssl.pki.export import key_pem
from rdsssl.pki.keys import PrivateKey
from rdsssl.pki.pem import BlockKind, kind_of, raw_blocks

__all__ = ["KDF_ROUNDS", "KeyProtection", "ca_key_pem", "key_protection"]

# PBKDF2-HMAC-SHA256 iterations protecting the CA key: OWASP's current recommendation for this
# PRF. Each guess at the passphrase costs an attacker who copied ca.key as much as an unlock
# costs us (~0.15-0.6 s, paid once per process), instead of the ~1 ms of the 2,048 default.
KDF_ROUNDS = 600_000
KDF = "pbkdf2-hmac-sha256"
CIPHER = "aes-256-cbc"

_SALT_BYTES = 16  # RFC 8018 wants at least 8; NIST SP 800-132 at least 16
_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_SCRYPT = "1.3.6.1.4.1.11591.4.11"
_HMAC_SHA1 = "1.2.840.113549.2.7"  # PBKDF2's default PRF when the parameters name none
_HMAC_SHA256 = "1.2.840.113549.2.9"
_AES_256_CBC = "2.16.840.1.101.3.4.1.42"

_PRFS = {
    _HMAC_SHA1: "pbkdf2-hmac-sha1",
    "1.2.840.113549.2.8": "pbkdf2-hmac-sha224",
    _HMAC_SHA256: KDF,
    "1.2.840.113549.2.10": "pbkdf2-hmac-sha384",
    "1.2.840.113549.2.11": "pbkdf2-hmac-sha512",
}
_CIPHERS = {
    "2.16.840.1.101.3.4.1.2": "aes-128-cbc",
    "2.16.840.1.101.3.4.1.22": "aes-192-cbc",
    _AES_256_CBC: CIPHER,
    "1.2.840.113549.3.7": "des-ede3-cbc",
    "1.3.14.3.2.7": "des-cbc",
    "1.2.840.113549.3.2": "rc2-cbc",
}
# PBES1 (RFC 8018 appendix A.3) and the PKCS#12 PBE schemes (RFC 7292 appendix C): one OID
# names the key derivation and the cipher together; all of them are weak.
_PBES1 = {
    "1.2.840.113549.1.5.1": ("pbes1", "pbkdf1-md2", "des-cbc"),
    "1.2.840.113549.1.5.3": ("pbes1", "pbkdf1-md5", "des-cbc"),
    "1.2.840.113549.1.5.4": ("pbes1", "pbkdf1-md2", "rc2-cbc"),
    "1.2.840.113549.1.5.6": ("pbes1", "pbkdf1-md5", "rc2-cbc"),
    "1.2.840.113549.1.5.10": ("pbes1", "pbkdf1-sha1", "des-cbc"),
    "1.2.840.113549.1.5.11": ("pbes1", "pbkdf1-sha1", "rc2-cbc"),
    "1.2.840.113549.1.12.1.1": ("pkcs12-pbe", "pkcs12-kdf-sha1", "rc4-128"),
    "1.2.840.113549.1.12.1.2": ("pkcs12-pbe", "pkcs12-kdf-sha1", "rc4-40"),
    "1.2.840.113549.1.12.1.3": ("pkcs12-pbe", "pkcs12-kdf-sha1", "des-ede3-cbc"),
    "1.2.840.113549.1.12.1.4": ("pkcs12-pbe", "pkcs12-kdf-sha1", "des-ede-cbc"),
    "1.2.840.113549.1.12.1.5": ("pkcs12-pbe", "pkcs12-kdf-sha1", "rc2-128-cbc"),
    "1.2.840.113549.1.12.1.6": ("pkcs12-pbe", "pkcs12-kdf-sha1", "rc2-40-cbc"),
}

_SEQUENCE, _INTEGER, _OCTET_STRING, _OID = 0x30, 0x02, 0x04, 0x06
_NULL = b"\x05\x00"
_ENCRYPTED_LABEL = "ENCRYPTED PRIVATE KEY"
_DEK_INFO = re.compile(rb"^DEK-Info:\s*([A-Za-z0-9-]+)", re.MULTILINE)


# --- DER, just enough to write EncryptedPrivateKeyInfo ----------------------------------------


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
    return tlv(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


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
    return tlv(_OID, bytes(body))


# --- writing ----------------------------------------------------------------------------------


def ca_key_pem(key: PrivateKey, passphrase: bytes | None, *, rounds: int = KDF_ROUNDS) -> bytes:
    """The CA key as written to ca.key: PKCS#8 PEM, encrypted with PBES2 (PBKDF2-HMAC-SHA256 at
    `rounds`, AES-256-CBC, fresh random salt and IV) when a passphrase is given, else plain."""
    if passphrase is None:
        return key_pem(key)
    if not passphrase:
        raise CryptoError("an empty passphrase would not protect the key; give one or none")
    plain = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt, iv = secrets.token_bytes(_SALT_BYTES), secrets.token_bytes(16)
    derived = PBKDF2HMAC(hashes.SHA256(), length=32, salt=salt, iterations=rounds)
    padder = padding.PKCS7(algorithms.AES.block_size).padder()
    encryptor = Cipher(algorithms.AES(derived.derive(passphrase)), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()

    def seq(*parts: bytes) -> bytes:
        return tlv(_SEQUENCE, b"".join(parts))

    pbkdf2_params = seq(
        tlv(_OCTET_STRING, salt),
        integer(rounds),
        seq(oid(_HMAC_SHA256), _NULL),  # keyLength omitted: AES-256 fixes it
    )
    pbes2_params = seq(
        seq(oid(_PBKDF2), pbkdf2_params),
        seq(oid(_AES_256_CBC), tlv(_OCTET_STRING, iv)),
    )
    der = seq(seq(oid(_PBES2), pbes2_params), tlv(_OCTET_STRING, encrypted))
    text = base64.b64encode(der)
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (
        b"\n".join([f"-----BEGIN {_ENCRYPTED_LABEL}-----".encode(), *lines, b""])
        + f"-----END {_ENCRYPTED_LABEL}-----\n".encode()
    )


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyProtection:
    """How a private key file is protected, read without its passphrase.

    `scheme`: 'pbes2', 'pbes1', 'pkcs12-pbe', 'traditional' (OpenSSL's "Proc-Type: 4,ENCRYPTED"
    PEM), 'none', or the dotted OID of a scheme rdsssl does not know. `kdf`: e.g.
    'pbkdf2-hmac-sha256', 'scrypt', 'pbkdf1-md5', 'openssl-md5' (one MD5 round, traditional
    PEM). `rounds`: the iteration count (scrypt: its cost N). `cipher`: e.g. 'aes-256-cbc'.
    """

    scheme: str
    kdf: str | None = None
    rounds: int | None = None
    cipher: str | None = None

    @property
    def encrypted(self) -> bool:
        """True when the key needs a passphrase."""
        return self.scheme != "none"

    @property
    def weak(self) -> bool:
        """Not encrypted, or encrypted with less than what `ca_key_pem` writes: PBKDF2-HMAC-SHA256
        at `KDF_ROUNDS` or more, and AES-256-CBC."""
        return not (
            self.scheme == "pbes2"
            and self.kdf == KDF
            and self.rounds is not None
            and self.rounds >= KDF_ROUNDS
            and self.cipher == CIPHER
        )

    def describe(self) -> str:
        """One line for people: 'pbkdf2-hmac-sha256, 600,000 rounds, aes-256-cbc' or
        'not encrypted'; weak protection says so."""
        if not self.encrypted:
            return "not encrypted"
        parts = [self.kdf or f"unknown scheme {self.scheme}"]
        if self.kdf == "scrypt":
            parts.append(f"N={self.rounds}")
        elif self.rounds is not None:
            parts.append(f"{self.rounds:,} round{'s' if self.rounds != 1 else ''}")
        if self.cipher is not None:
            parts.append(self.cipher)
        text = ", ".join(parts)
        if self.scheme in ("pbes1", "pkcs12-pbe", "traditional"):
            text = f"{text} ({self.scheme})"
        return f"{text}; weak" if self.weak else text

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of key protection (``ca show``, ``ca passphrase``)."""
        return {
            "encrypted": self.encrypted,
            "scheme": self.scheme,
            "kdf": self.kdf,
            "rounds": self.rounds,
            "cipher": self.cipher,
            "weak": self.weak,
        }


NOT_ENCRYPTED = KeyProtection("none")


def key_protection(data: bytes, *, source: str) -> KeyProtection:
    """How the one private key in `data` (PEM, or DER) is protected, without decrypting it.

    CryptoError naming `source` for a file holding no single private key, or whose encryption
    parameters are not well-formed DER (a damaged file).
    """
    if b"-----BEGIN" not in data:
        try:
            return _encrypted_private_key_info(data)
        except ValueError:  # not an EncryptedPrivateKeyInfo: a plain DER key (or garbage)
            return NOT_ENCRYPTED
    keys = [
        (label, raw, der)
        for _, label, raw, der in raw_blocks(data, source)
        if kind_of(label) is BlockKind.PRIVATE_KEY
    ]
    if len(keys) != 1:
        found = "no private key block" if not keys else f"{len(keys)} private keys"
        raise CryptoError(f"{source}: {found} found; expected exactly one private key")
    label, raw, der = keys[0]
    if label == _ENCRYPTED_LABEL:
        try:
            return _encrypted_private_key_info(der)
        except ValueError as exc:
            raise CryptoError(
                f"{source}: the encrypted private key is damaged ({exc}); restore it from a backup"
            ) from None
    if b"Proc-Type: 4,ENCRYPTED" in raw:
        match = _DEK_INFO.search(raw)
        cipher = match.group(1).decode("ascii").lower() if match else None
        return KeyProtection("traditional", "openssl-md5", 1, cipher)
    return NOT_ENCRYPTED


# Just enough DER reading for the structures above: definite lengths, no indefinite forms.


def _element(der: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, contents, end) of the DER element starting at `pos`; ValueError past the end."""
    if pos + 2 > len(der):
        raise ValueError("truncated DER")
    tag, first = der[pos], der[pos + 1]
    pos += 2
    size = first
    if first & 0x80:
        count = first & 0x7F
        if not 1 <= count <= 4 or pos + count > len(der):
            raise ValueError("bad DER length")
        size = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + size > len(der):
        raise ValueError("truncated DER")
    return tag, der[pos : pos + size], pos + size


def _children(der: bytes, tag: int = _SEQUENCE) -> list[tuple[int, bytes]]:
    """The elements inside `der`, which must be exactly one element with `tag`."""
    found, contents, end = _element(der, 0)
    if found != tag or end != len(der):
        raise ValueError(f"expected one element with tag {tag:#04x}")
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(contents):
        item_tag, _, item_end = _element(contents, pos)
        items.append((item_tag, contents[pos:item_end]))
        pos = item_end
    return items


def _contents(item: tuple[int, bytes], tag: int) -> bytes:
    if item[0] != tag:
        raise ValueError(f"expected tag {tag:#04x}, found {item[0]:#04x}")
    return _element(item[1], 0)[1]


def _oid(item: tuple[int, bytes]) -> str:
    """Dotted text of an OBJECT IDENTIFIER (base-128 arcs, the first two packed as 40*a+b)."""
    arcs, value = [], 0
    for byte in _contents(item, _OID):
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise ValueError("empty OBJECT IDENTIFIER")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def _count(item: tuple[int, bytes]) -> int:
    value = int.from_bytes(_contents(item, _INTEGER), "big", signed=True)
    if value < 1:
        raise ValueError("a non-positive iteration count")
    return value


def _algorithm(item: tuple[int, bytes]) -> tuple[str, list[tuple[int, bytes]]]:
    """An AlgorithmIdentifier: its OID and the elements of SEQUENCE parameters (or [])."""
    parts = _children(item[1]) if item[0] == _SEQUENCE else []
    if not parts:
        raise ValueError("expected an AlgorithmIdentifier")
    params = parts[1] if len(parts) > 1 else None
    inner = _children(params[1]) if params is not None and params[0] == _SEQUENCE else []
    return _oid(parts[0]), inner


def _encrypted_private_key_info(der: bytes) -> KeyProtection:
    """EncryptedPrivateKeyInfo ::= SEQUENCE { encryptionAlgorithm, encryptedData OCTET STRING }."""
    top = _children(der)
    if len(top) != 2 or top[1][0] != _OCTET_STRING:
        raise ValueError("not an EncryptedPrivateKeyInfo")
    scheme, params = _algorithm(top[0])
    if scheme == _PBES2:
        if len(params) != 2:
            raise ValueError("PBES2 parameters need a key derivation and a cipher")
        kdf, rounds = _key_derivation(params[0])
        cipher_oid, _ = _algorithm(params[1])
        return KeyProtection("pbes2", kdf, rounds, _CIPHERS.get(cipher_oid, cipher_oid))
    if scheme in _PBES1:
        name, kdf_name, cipher = _PBES1[scheme]
        if len(params) != 2:
            raise ValueError(f"{name} parameters need a salt and an iteration count")
        return KeyProtection(name, kdf_name, _count(params[1]), cipher)
    return KeyProtection(scheme)


def _key_derivation(item: tuple[int, bytes]) -> tuple[str, int | None]:
    """(kdf name, rounds) of a PBES2 keyDerivationFunc: PBKDF2 (with its PRF) or scrypt."""
    oid, params = _algorithm(item)
    if oid == _PBKDF2:
        # PBKDF2-params ::= SEQUENCE { salt, iterationCount, keyLength OPTIONAL, prf DEFAULT }
        if len(params) < 2:
            raise ValueError("PBKDF2 parameters need a salt and an iteration count")
        prf = _HMAC_SHA1
        for extra in params[2:]:
            if extra[0] == _SEQUENCE:
                prf = _algorithm(extra)[0]
        return _PRFS.get(prf, f"pbkdf2-{prf}"), _count(params[1])
    if oid == _SCRYPT:
        # scrypt-params ::= SEQUENCE { salt, costParameter, blockSize, parallelization, ... }
        if len(params) < 4:
            raise ValueError("scrypt parameters are incomplete")
        return "scrypt", _count(params[1])
    return oid, None
