"""The CA key at rest: PBES2 encryption with strong parameters, and the protection of a key file
read without its passphrase (rdsssl.pki.pkcs8, re-exported by rdsssl.pki.crypto).

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
from rdsssl.pki import crl_der, crypto

from .conftest import ALL_KEY_TYPES, cached_key

FAST = 1000  # rounds for tests that are not about the iteration count


def _plain_der(key: crypto.PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem(der: bytes, label: str = "ENCRYPTED PRIVATE KEY") -> bytes:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode()


def _der(pem: bytes) -> bytes:
    return crypto.parse_pem_bundle(pem, source="key")[0].der


def test_the_default_is_pbkdf2_sha256_at_600000_rounds_and_aes_256() -> None:
    assert crypto.KDF_ROUNDS >= 600_000  # OWASP's figure for PBKDF2-HMAC-SHA256
    key = cached_key(KeyType.EC_P256)
    pem = crypto.ca_key_pem(key, b"correct horse")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    protection = crypto.key_protection(pem, source="ca.key")
    assert protection == crypto.KeyProtection(
        "pbes2", "pbkdf2-hmac-sha256", crypto.KDF_ROUNDS, "aes-256-cbc"
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
    pem = crypto.ca_key_pem(key, b"pw", rounds=FAST)
    loaded = crypto.load_private_key(pem, source="ca.key", passphrase=b"pw")
    assert _plain_der(loaded) == _plain_der(key)
    with pytest.raises(CryptoError, match="wrong passphrase"):
        crypto.load_private_key(pem, source="ca.key", passphrase=b"nope")


def test_salt_and_iv_are_fresh_each_time() -> None:
    key = cached_key(KeyType.EC_P256)
    first, second = (_der(crypto.ca_key_pem(key, b"pw", rounds=FAST)) for _ in range(2))
    assert first != second
    assert len(first) == len(second)  # same structure, different random bytes


def test_no_passphrase_writes_a_plain_key_and_an_empty_one_is_refused() -> None:
    key = cached_key(KeyType.EC_P256)
    plain = crypto.ca_key_pem(key, None)
    assert plain.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert crypto.key_protection(plain, source="ca.key") == crypto.KeyProtection("none")
    assert not crypto.key_protection(plain, source="ca.key").encrypted
    assert crypto.key_protection(plain, source="ca.key").weak
    assert crypto.key_protection(_plain_der(key), source="ca.der").describe() == "not encrypted"
    with pytest.raises(CryptoError, match="empty passphrase"):
        crypto.ca_key_pem(key, b"")


def test_fewer_rounds_than_the_constant_are_weak() -> None:
    pem = crypto.ca_key_pem(cached_key(KeyType.EC_P256), b"pw", rounds=crypto.KDF_ROUNDS - 1)
    protection = crypto.key_protection(pem, source="ca.key")
    assert protection.rounds == crypto.KDF_ROUNDS - 1 and protection.weak
    assert protection.describe().endswith("; weak")


def test_cryptography_best_available_encryption_is_weak() -> None:
    key = cached_key(KeyType.EC_P256)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    protection = crypto.key_protection(pem, source="ca.key")
    assert (protection.kdf, protection.cipher) == ("pbkdf2-hmac-sha256", "aes-256-cbc")
    assert protection.rounds is not None and protection.rounds < crypto.KDF_ROUNDS
    assert protection.encrypted and protection.weak


def test_traditional_openssl_encryption_is_weak() -> None:
    key = cached_key(KeyType.RSA_2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"pw"),
    )
    assert b"Proc-Type: 4,ENCRYPTED" in pem
    protection = crypto.key_protection(pem, source="ca.key")
    assert protection == crypto.KeyProtection("traditional", "openssl-md5", 1, "aes-256-cbc")
    assert protection.encrypted and protection.weak
    assert protection.describe() == "openssl-md5, 1 round, aes-256-cbc (traditional); weak"


def _seq(*parts: bytes) -> bytes:
    return crl_der.tlv(0x30, b"".join(parts))


def _octets(data: bytes) -> bytes:
    return crl_der.tlv(0x04, data)


def test_pbes1_and_unknown_schemes_are_read_and_weak() -> None:
    pbe_sha1_des = "1.2.840.113549.1.5.10"  # pbeWithSHA1AndDES-CBC: PBEParameter {salt, count}
    der = _seq(
        _seq(crl_der.oid(pbe_sha1_des), _seq(_octets(b"8 bytes!"), crl_der.integer(2048))),
        _octets(b"\x00" * 16),
    )
    pbes1 = crypto.key_protection(_pem(der), source="old.key")
    assert pbes1 == crypto.KeyProtection("pbes1", "pbkdf1-sha1", 2048, "des-cbc")
    assert pbes1.weak
    unknown = _seq(_seq(crl_der.oid("1.2.3.4"), b"\x05\x00"), _octets(b"\x00" * 16))
    other = crypto.key_protection(_pem(unknown), source="odd.key")
    assert other == crypto.KeyProtection("1.2.3.4") and other.encrypted and other.weak


def test_pbkdf2_without_a_prf_means_hmac_sha1() -> None:
    # PBKDF2-params whose prf is absent (DEFAULT hmacWithSHA1) but with a keyLength
    pbkdf2 = _seq(
        crl_der.oid("1.2.840.113549.1.5.12"),
        _seq(_octets(b"s" * 16), crl_der.integer(10_000), crl_der.integer(32)),
    )
    cipher = _seq(crl_der.oid("2.16.840.1.101.3.4.1.2"), _octets(b"i" * 16))
    der = _seq(_seq(crl_der.oid("1.2.840.113549.1.5.13"), _seq(pbkdf2, cipher)), _octets(b"x"))
    protection = crypto.key_protection(_pem(der), source="k")
    assert protection == crypto.KeyProtection("pbes2", "pbkdf2-hmac-sha1", 10_000, "aes-128-cbc")


def test_a_damaged_encrypted_key_names_the_file() -> None:
    der = _der(crypto.ca_key_pem(cached_key(KeyType.EC_P256), b"pw", rounds=FAST))
    with pytest.raises(CryptoError, match=r"^ca.key: the encrypted private key is damaged"):
        crypto.key_protection(_pem(der[:40]), source="ca.key")
    with pytest.raises(CryptoError, match="no private key block"):
        crypto.key_protection(_pem(b"\x30\x00", "PUBLIC KEY"), source="x")


def test_exactly_one_private_key_is_expected() -> None:
    pem = crypto.ca_key_pem(cached_key(KeyType.EC_P256), None)
    with pytest.raises(CryptoError, match="2 private keys found"):
        crypto.key_protection(pem + pem, source="two.key")


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_any_bytes_in_an_encrypted_block_give_an_answer_or_a_crypto_error(data: bytes) -> None:
    try:
        protection = crypto.key_protection(_pem(data), source="fuzz.key")
    except CryptoError as exc:
        assert str(exc).startswith("fuzz.key: ")
    else:
        assert protection.encrypted and protection.weak  # nothing random is strong
