"""The CA key at rest: PBES2 encryption with strong parameters, and the protection of a key file
read without its passphrase (rdsssl.pki.pkcs8).

Most tests pass a small `rounds` to stay fast; the default is checked once, in full. The
openssl CLI's view of the same files is in tests/integration/test_openssl_interop.py.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from rdsssl.errors import CryptoError
from rdsssl.models import KeyType
from rdsssl.pki import keys, pkcs8
from rdsssl.pki.pem import load_private_key, parse_pem_bundle

from .conftest import ALL_KEY_TYPES, cached_key

FAST = 1000  # rounds for tests that are not about the iteration count


def _plain_der(key: keys.PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem(der: bytes, label: str = "ENCRYPTED PRIVATE KEY") -> bytes:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode()


def _der(pem: bytes) -> bytes:
    return parse_pem_bundle(pem, source="key")[0].der


def test_the_default_is_pbkdf2_sha256_at_600000_rounds_and_aes_256() -> None:
    assert pkcs8.KDF_ROUNDS >= 600_000  # OWASP's figure for PBKDF2-HMAC-SHA256
    key = cached_key(KeyType.EC_P256)
    pem = pkcs8.ca_key_pem(key, b"correct horse")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    protection = pkcs8.key_protection(pem, source="ca.key")
    assert protection == pkcs8.KeyProtection(
        "pbes2", "pbkdf2-hmac-sha256", pkcs8.KDF_ROUNDS, "aes-256-cbc"
    )
    assert protection.encrypted and not protection.weak
    assert protection.describe() == "pbkdf2-hmac-sha256, 600,000 rounds, aes-256-cbc"
    loaded = serialization.load_pem_private_key(pem, b"correct horse")  # cryptography reads it
    assert loaded.private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(pem, b"wrong horse")


@pytest.mark.parametrize("key_type", ALL_KEY_TYPES, ids=str)
def test_every_key_type_round_trips(key_type: KeyType) -> None:
    key = cached_key(key_type)
    pem = pkcs8.ca_key_pem(key, b"pw", rounds=FAST)
    loaded = load_private_key(pem, source="ca.key", passphrase=b"pw")
    assert _plain_der(loaded) == _plain_der(key)
    with pytest.raises(CryptoError, match="wrong passphrase"):
        load_private_key(pem, source="ca.key", passphrase=b"nope")


def test_salt_and_iv_are_fresh_each_time() -> None:
    key = cached_key(KeyType.EC_P256)
    first, second = (_der(pkcs8.ca_key_pem(key, b"pw", rounds=FAST)) for _ in range(2))
    assert first != second
    assert len(first) == len(second)  # same structure, different random bytes


def test_no_passphrase_writes_a_plain_key_and_an_empty_one_is_refused() -> None:
    key = cached_key(KeyType.EC_P256)
    plain = pkcs8.ca_key_pem(key, None)
    assert plain.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pkcs8.key_protection(plain, source="ca.key") == pkcs8.KeyProtection("none")
    assert not pkcs8.key_protection(plain, source="ca.key").encrypted
    assert pkcs8.key_protection(plain, source="ca.key").weak
    assert pkcs8.key_protection(_plain_der(key), source="ca.der").describe() == "not encrypted"
    with pytest.raises(CryptoError, match="empty passphrase"):
        pkcs8.ca_key_pem(key, b"")


def test_fewer_rounds_than_the_constant_are_weak() -> None:
    pem = pkcs8.ca_key_pem(cached_key(KeyType.EC_P256), b"pw", rounds=pkcs8.KDF_ROUNDS - 1)
    protection = pkcs8.key_protection(pem, source="ca.key")
    assert protection.rounds == pkcs8.KDF_ROUNDS - 1 and protection.weak
    assert protection.describe().endswith("; weak")


def test_cryptography_best_available_encryption_is_weak() -> None:
    key = cached_key(KeyType.EC_P256)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    protection = pkcs8.key_protection(pem, source="ca.key")
    assert (protection.kdf, protection.cipher) == ("pbkdf2-hmac-sha256", "aes-256-cbc")
    assert protection.rounds is not None and protection.rounds < pkcs8.KDF_ROUNDS
    assert protection.encrypted and protection.weak


def test_traditional_openssl_encryption_is_weak() -> None:
    key = cached_key(KeyType.RSA_2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"pw"),
    )
    assert b"Proc-Type: 4,ENCRYPTED" in pem
    protection = pkcs8.key_protection(pem, source="ca.key")
    assert protection == pkcs8.KeyProtection("traditional", "openssl-md5", 1, "aes-256-cbc")
    assert protection.encrypted and protection.weak
    assert protection.describe() == "openssl-md5, 1 round, aes-256-cbc (traditional); weak"


def _seq(*parts: bytes) -> bytes:
    return pkcs8.tlv(0x30, b"".join(parts))


def _octets(data: bytes) -> bytes:
    return pkcs8.tlv(0x04, data)


def test_pbes1_and_unknown_schemes_are_read_and_weak() -> None:
    pbe_sha1_des = "1.2.840.113549.1.5.10"  # pbeWithSHA1AndDES-CBC: PBEParameter {salt, count}
    der = _seq(
        _seq(pkcs8.oid(pbe_sha1_des), _seq(_octets(b"8 bytes!"), pkcs8.integer(2048))),
        _octets(b"\x00" * 16),
    )
    pbes1 = pkcs8.key_protection(_pem(der), source="old.key")
    assert pbes1 == pkcs8.KeyProtection("pbes1", "pbkdf1-sha1", 2048, "des-cbc")
    assert pbes1.weak
    unknown = _seq(_seq(pkcs8.oid("1.2.3.4"), b"\x05\x00"), _octets(b"\x00" * 16))
    other = pkcs8.key_protection(_pem(unknown), source="odd.key")
    assert other == pkcs8.KeyProtection("1.2.3.4") and other.encrypted and other.weak


def test_pbkdf2_without_a_prf_means_hmac_sha1() -> None:
    # PBKDF2-params whose prf is absent (DEFAULT hmacWithSHA1) but with a keyLength
    pbkdf2 = _seq(
        pkcs8.oid("1.2.840.113549.1.5.12"),
        _seq(_octets(b"s" * 16), pkcs8.integer(10_000), pkcs8.integer(32)),
    )
    cipher = _seq(pkcs8.oid("2.16.840.1.101.3.4.1.2"), _octets(b"i" * 16))
    der = _seq(_seq(pkcs8.oid("1.2.840.113549.1.5.13"), _seq(pbkdf2, cipher)), _octets(b"x"))
    protection = pkcs8.key_protection(_pem(der), source="k")
    assert protection == pkcs8.KeyProtection("pbes2", "pbkdf2-hmac-sha1", 10_000, "aes-128-cbc")


def test_a_damaged_encrypted_key_names_the_file() -> None:
    der = _der(pkcs8.ca_key_pem(cached_key(KeyType.EC_P256), b"pw", rounds=FAST))
    with pytest.raises(CryptoError, match=r"^ca.key: the encrypted private key is damaged"):
        pkcs8.key_protection(_pem(der[:40]), source="ca.key")
    with pytest.raises(CryptoError, match="no private key block"):
        pkcs8.key_protection(_pem(b"\x30\x00", "PUBLIC KEY"), source="x")


def test_exactly_one_private_key_is_expected() -> None:
    pem = pkcs8.ca_key_pem(cached_key(KeyType.EC_P256), None)
    with pytest.raises(CryptoError, match="2 private keys found"):
        pkcs8.key_protection(pem + pem, source="two.key")


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_any_bytes_in_an_encrypted_block_give_an_answer_or_a_crypto_error(data: bytes) -> None:
    try:
        protection = pkcs8.key_protection(_pem(data), source="fuzz.key")
    except CryptoError as exc:
        assert str(exc).startswith("fuzz.key: ")
    else:
        assert protection.encrypted and protection.weak  # nothing random is strong


def test_der_encoders() -> None:
    """The four encoders `ca_key_pem` writes EncryptedPrivateKeyInfo with."""
    assert [pkcs8.length(n).hex() for n in (0, 127, 128, 255, 256, 70_000)] == [
        "00", "7f", "8180", "81ff", "820100", "83011170",
    ]  # fmt: skip
    assert pkcs8.integer(0).hex() == "020100"
    assert pkcs8.integer(0x80).hex() == "02020080"
    assert pkcs8.integer(0x7FFF).hex() == "02027fff"
    assert pkcs8.integer(600_000).hex() == "02030927c0"  # 9 * 65536 + 0x27c0
    assert pkcs8.oid("2.5.29.21").hex() == "0603551d15"
    assert pkcs8.oid("1.2.840.113549.1.1.11").hex() == "06092a864886f70d01010b"
    assert pkcs8.oid("1.2.840.10045.4.3.2").hex() == "06082a8648ce3d040302"
    assert pkcs8.oid("1.2.840.113549.1.5.13").hex() == "06092a864886f70d01050d"  # PBES2
    assert pkcs8.tlv(0x04, b"\x00" * 200)[:3].hex() == "0481c8"
