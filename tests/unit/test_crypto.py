"""rdsssl.pki: keys, CA, client certificates, CSRs, CRLs and exports (pure, no files).

trustme-style: parametrised over every key type, each extension checked with its criticality,
and every refusal proven as well as every success.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from rdsssl.errors import CryptoError, InputError
from rdsssl.models import KeyType, RevocationReason
from rdsssl.pki import certs, crls, export, inspection, keys, names, validity
from rdsssl.pki.ca import akid_fits, ca_identity, make_ca, renew_ca
from rdsssl.pki.pem import (
    check_key_matches,
    crl_signed_by,
    load_certificates,
    load_crls,
    load_csr,
    load_private_key,
    pem_fingerprints,
)
from rdsssl.pki.serials import new_serial, parse_serial, serial_hex

from .conftest import NOW, Pki, cached_key, make_pki

E = TypeVar("E", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


def _signature_hash(key_type: KeyType) -> str | None:
    return None if key_type is KeyType.ED25519 else "sha256"


def _csr(
    key: keys.PrivateKey,
    cn: str | None = "alice",
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> x509.CertificateSigningRequest:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    return builder.sign(key, keys.hash_for(key))


def _pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


# --- keys ---------------------------------------------------------------------------------------


def test_generate_key_makes_the_requested_type(key_type: KeyType) -> None:
    key = cached_key(key_type)
    assert inspection.key_type_of(key) == key_type.value
    assert inspection.key_type_of(key.public_key()) == key_type.value


def test_default_key_is_ec_p256() -> None:
    key = keys.generate_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


def test_key_type_of_names_keys_rdsssl_would_not_make() -> None:
    assert inspection.key_type_of(ec.generate_private_key(ec.SECP521R1())) == "ec-p521"
    assert inspection.key_type_of(rsa.generate_private_key(65537, 1024)) == "rsa-1024"


def test_hash_is_sha256_except_ed25519(key_type: KeyType) -> None:
    algorithm = keys.hash_for(cached_key(key_type))
    assert (algorithm.name if algorithm else None) == _signature_hash(key_type)


# --- serials ------------------------------------------------------------------------------------


def test_new_serial_has_at_least_64_bits_and_fits_20_octets() -> None:
    serials = [new_serial() for _ in range(2000)]
    assert all(64 <= s.bit_length() <= 159 for s in serials)
    assert len(set(serials)) == len(serials)


def test_issued_serials_are_random_and_unique(pki: Pki) -> None:
    serials = {pki.issue().cert.serial_number for _ in range(50)}
    assert len(serials) == 50
    assert all(s.bit_length() >= 64 for s in serials)


def test_explicit_serial_is_used_and_range_checked(pki: Pki) -> None:
    assert pki.issue(serial=0xF00D).cert.serial_number == 0xF00D
    for bad in (0, -1, 2**159):
        with pytest.raises(CryptoError, match="out of range"):
            pki.issue(serial=bad)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("f00d", 0xF00D),
        ("0xF00D", 0xF00D),
        ("F0:0D", 0xF00D),
        ("serial=F00D", 0xF00D),
        (" 1a2b3c \n", 0x1A2B3C),
    ],
)
def test_parse_serial_accepts_common_spellings(text: str, value: int) -> None:
    assert parse_serial(text) == value
    assert serial_hex(value) == format(value, "x")


@pytest.mark.parametrize("text", ["", "0x", "xyz", "12-34", "١٢"])
def test_parse_serial_rejects_non_hex(text: str) -> None:
    with pytest.raises(CryptoError, match="invalid serial"):
        parse_serial(text)


# --- the CA -------------------------------------------------------------------------------------


def test_ca_extensions_and_validity(key_type: KeyType) -> None:
    key = cached_key(key_type)
    ca = make_ca(key, cn="root-ca1", now=NOW, days=3650)

    assert ca.subject == ca.issuer
    assert inspection.cn_of(ca.subject) == "root-ca1"
    assert ca.not_valid_before_utc == NOW - validity.CLOCK_SKEW
    assert ca.not_valid_after_utc == NOW + timedelta(days=3650)
    assert ca.serial_number.bit_length() >= 64
    assert ca.version is x509.Version.v3

    bc = _ext(ca, x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca is True
    assert bc.value.path_length is None

    ku = _ext(ca, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign
    assert not (ku.value.key_encipherment or ku.value.content_commitment)

    ski = _ext(ca, x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = _ext(ca, x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert aki.value.key_identifier == ski.value.digest

    assert {e.oid for e in ca.extensions} == {e.oid for e in (bc, ku, ski, aki)}
    ca.verify_directly_issued_by(ca)
    hash_ = ca.signature_hash_algorithm
    assert (hash_.name if hash_ else None) == _signature_hash(key_type)
    assert inspection.inspect_cert(ca).is_ca


@pytest.mark.parametrize("cn", ["", "x" * 65])
def test_ca_common_name_must_be_1_to_64_characters(cn: str) -> None:
    with pytest.raises(CryptoError, match="invalid CA common name"):
        make_ca(cached_key(KeyType.EC_P256), cn=cn, now=NOW)


def test_ca_days_must_be_positive() -> None:
    with pytest.raises(CryptoError, match="at least 1 day"):
        make_ca(cached_key(KeyType.EC_P256), cn="ca", now=NOW, days=0)


def test_validity_may_reach_the_last_x509_date_and_not_beyond() -> None:
    most = validity.max_days(NOW)
    assert timedelta(0) <= validity.LATEST_TIME - (NOW + timedelta(days=most)) < timedelta(days=1)
    ca = make_ca(cached_key(KeyType.EC_P256), cn="ca", now=NOW, days=most)
    assert ca.not_valid_after_utc.year == 9999
    pki = Pki(key=cached_key(KeyType.EC_P256), cert=ca)
    assert pki.issue(days=most).cert.not_valid_after_utc == ca.not_valid_after_utc
    crl = crls.build_crl(ca, pki.key, [], number=1, now=NOW, days=most)
    assert crl.next_update_utc is not None and crl.next_update_utc.year == 9999
    refused = f"would end after 9999-12-31, the last date X.509 can express; use at most {most} "
    with pytest.raises(CryptoError, match=f"^CA validity of {most + 1} days {refused}"):
        make_ca(pki.key, cn="ca", now=NOW, days=most + 1)
    with pytest.raises(CryptoError, match=f"^certificate validity of {most + 1} days {refused}"):
        pki.issue(days=most + 1)
    with pytest.raises(CryptoError, match=f"^CRL validity of {most + 1} days {refused}"):
        crls.build_crl(ca, pki.key, [], number=1, now=NOW, days=most + 1)


@pytest.mark.parametrize("days", [10**7, 10**9, 10**30])
def test_absurd_validity_is_a_crypto_error_not_an_overflow(days: int, pki: Pki) -> None:
    with pytest.raises(CryptoError, match="use at most"):
        make_ca(pki.key, cn="ca", now=NOW, days=days)
    with pytest.raises(CryptoError, match="use at most"):
        pki.issue(days=days)
    with pytest.raises(CryptoError, match="use at most"):
        crls.build_crl(pki.cert, pki.key, [], number=1, now=NOW, days=days)


def test_naive_datetimes_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_ca(cached_key(KeyType.EC_P256), cn="ca", now=datetime(2025, 1, 1))


def test_fractional_seconds_are_dropped_so_times_compare_exactly() -> None:
    ca = make_ca(cached_key(KeyType.EC_P256), cn="ca", now=NOW.replace(microsecond=999))
    assert ca.not_valid_after_utc == NOW + timedelta(days=validity.DEFAULT_CA_DAYS)


# --- client certificates ------------------------------------------------------------------------


def test_client_cert_extensions(key_type: KeyType) -> None:
    ca = make_pki(key_type)
    leaf_key = cached_key(key_type, "leaf")
    issued = certs.issue_client_cert(
        ca.cert,
        ca.key,
        leaf_key.public_key(),
        user="alice",
        now=NOW,
        days=90,
        allow_tls13_only=True,  # the extensions of every key type (P-384: TLS 1.3 only)
    )
    cert = issued.cert

    assert not issued.truncated
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])
    assert cert.issuer == ca.cert.subject
    assert cert.not_valid_before_utc == NOW - validity.CLOCK_SKEW
    assert cert.not_valid_after_utc == NOW + timedelta(days=90)

    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca is False

    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert ku.value.key_encipherment is isinstance(leaf_key, rsa.RSAPrivateKey)
    assert not (ku.value.key_cert_sign or ku.value.crl_sign)

    eku = _ext(cert, x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]

    ski = _ext(cert, x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key())

    aki = _ext(cert, x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert aki.value.key_identifier == _ext(ca.cert, x509.SubjectKeyIdentifier).value.digest

    assert len(cert.extensions) == 5
    cert.verify_directly_issued_by(ca.cert)
    hash_ = cert.signature_hash_algorithm
    assert (hash_.name if hash_ else None) == _signature_hash(key_type)


@pytest.mark.parametrize("leaf_type", [KeyType.RSA_2048, KeyType.ED25519], ids=str)
def test_leaf_key_type_may_differ_from_the_ca(leaf_type: KeyType, pki: Pki) -> None:
    cert = pki.issue(key_type=leaf_type).cert
    assert inspection.key_type_of(cert.public_key()) == leaf_type.value
    assert _ext(cert, x509.KeyUsage).value.key_encipherment is (leaf_type is KeyType.RSA_2048)
    cert.verify_directly_issued_by(pki.cert)


def test_validity_is_truncated_to_the_ca_not_after() -> None:
    ca = make_pki(days=30)
    issued = ca.issue(days=365)
    assert issued.truncated
    assert issued.cert.not_valid_after_utc == ca.cert.not_valid_after_utc
    same = ca.issue(days=30)
    assert not same.truncated  # exactly the CA's end is allowed
    assert not ca.issue(days=29).truncated


def test_leaf_not_before_never_precedes_the_ca() -> None:
    ca = make_pki()
    cert = ca.issue(now=NOW - timedelta(minutes=1)).cert  # a CA made 'in the future'
    assert cert.not_valid_before_utc == ca.cert.not_valid_before_utc


@pytest.mark.parametrize("after", [timedelta(0), timedelta(seconds=1), timedelta(days=400)])
def test_expired_ca_refuses_to_issue(after: timedelta) -> None:
    ca = make_pki(days=30)
    later = ca.cert.not_valid_after_utc + after
    with pytest.raises(CryptoError, match=r"CA 'CN=root-ca1': expired on .*rdsssl ca init") as err:
        ca.issue(now=later)
    assert isinstance(err.value, InputError)  # exit code 3
    last_second = ca.cert.not_valid_after_utc - timedelta(seconds=1)
    assert ca.issue(now=last_second, days=1).truncated  # the last second still works


def test_non_ca_certificate_cannot_issue(pki: Pki) -> None:
    leaf = pki.issue().cert
    leaf_key = cached_key(KeyType.EC_P256, "leaf")
    with pytest.raises(CryptoError, match="not a CA certificate"):
        certs.issue_client_cert(leaf, leaf_key, leaf_key.public_key(), user="bob", now=NOW)


def test_ca_key_must_match_the_ca(pki: Pki) -> None:
    other = cached_key(KeyType.EC_P384)
    with pytest.raises(CryptoError, match="private key does not match the certificate"):
        certs.issue_client_cert(pki.cert, other, other.public_key(), user="bob", now=NOW)


def test_weak_rsa_leaf_key_is_refused(pki: Pki) -> None:
    weak = rsa.generate_private_key(65537, 1024)
    with pytest.raises(CryptoError, match="1024 bits is too weak"):
        certs.issue_client_cert(pki.cert, pki.key, weak.public_key(), user="bob", now=NOW)


def test_weak_curve_leaf_key_is_refused(pki: Pki) -> None:
    weak = ec.generate_private_key(ec.SECP192R1())
    with pytest.raises(CryptoError, match="EC key on secp192r1 is too weak"):
        certs.issue_client_cert(pki.cert, pki.key, weak.public_key(), user="bob", now=NOW)
    p224 = ec.generate_private_key(ec.SECP224R1())  # 112-bit strength: security level 2 is met
    certs.issue_client_cert(
        pki.cert, pki.key, p224.public_key(), user="bob", now=NOW, allow_tls13_only=True
    )


@pytest.mark.parametrize(
    ("curve", "refused"),
    [(ec.SECP256R1(), False), (ec.SECP384R1(), True), (ec.SECP521R1(), True)],
    ids=["p256", "p384", "p521"],
)
def test_ecdsa_client_keys_off_p256_are_refused_for_tls_1_2(
    pki: Pki, curve: ec.EllipticCurve, refused: bool
) -> None:
    key = ec.generate_private_key(curve)
    if refused:
        with pytest.raises(CryptoError, match=r"fails over TLS 1\.2"):
            certs.issue_client_cert(pki.cert, pki.key, key.public_key(), user="bob", now=NOW)
        certs.issue_client_cert(  # works over TLS 1.3: allowed when asked for
            pki.cert, pki.key, key.public_key(), user="bob", now=NOW, allow_tls13_only=True
        )
    else:
        certs.issue_client_cert(pki.cert, pki.key, key.public_key(), user="bob", now=NOW)


@pytest.mark.parametrize("key_type", list(KeyType), ids=lambda k: k.value)
def test_tls12_key_problem_names_only_p384(key_type: KeyType) -> None:
    problem = keys.tls12_key_problem(key_type)
    assert (problem is not None) is (key_type is KeyType.EC_P384)
    if problem:
        assert "TLS 1.2" in problem and "ec-p256" in problem


def test_a_p384_ca_still_signs_usable_client_certificates() -> None:
    ca = make_pki(KeyType.EC_P384, cn="p384-ca", role="p384-ca")
    keys.check_ca_key(ca.cert, source="ca.crt")  # a P-384 CA is fine (measured: every pair)
    leaf = cached_key(KeyType.EC_P256, "leaf")
    certs.issue_client_cert(ca.cert, ca.key, leaf.public_key(), user="bob", now=NOW)


def test_check_ca_key_applies_the_leaf_rule_to_the_ca(pki: Pki) -> None:
    keys.check_ca_key(pki.cert, source="ca.crt")
    weak = rsa.generate_private_key(65537, 1024)
    cert = make_ca(weak, cn="weak", now=NOW)
    with pytest.raises(CryptoError, match=r"^ca.crt \(CN=weak\): RSA key of 1024 bits"):
        keys.check_ca_key(cert, source="ca.crt")


def test_leaf_days_must_be_positive(pki: Pki) -> None:
    with pytest.raises(CryptoError, match="at least 1 day"):
        pki.issue(days=0)


# --- role names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "alice",
        "a",
        "a" * 63,
        "é" * 31 + "a",
        "Alice",
        "app.user-1",
        "ユーザー",
        "pg",
        "xpg_a",
        "PG_upper",
        "with space",
        "public2",
        "app.user",
        "...",
        ".hidden",
        "a\\b",
        "é\u00a0nbsp",  # U+00A0 is printable, just above the C1 block
    ],
)
def test_valid_role_names(name: str) -> None:
    assert names.validate_role_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "cannot be empty"),
        ("a" * 64, "64 bytes in UTF-8; PostgreSQL role names are at most 63 bytes"),
        ("é" * 32, "64 bytes in UTF-8"),
        ("ab\x00c", "NUL"),
        ("pg_monitor", "starting with 'pg_' are reserved"),
        ("pg_", "starting with 'pg_' are reserved"),
        ("public", "reserved role name"),
        ("none", "reserved role name"),
        ("bad\ud800", "not valid Unicode"),
        ("../evil", "contains '/'"),
        ("a/b", "contains '/'"),
        (".", "cannot be used as a directory name"),
        ("..", "cannot be used as a directory name"),
        ("new\nline", "control character U+000A"),
        ("tab\there", "control character U+0009"),
        ("ev\x1b[2Jil", "control character U+001B"),
        ("del\x7f", "control character U+007F"),
        ("c1\x85next", "control character U+0085"),
        ("csi\x9b31m", "control character U+009B"),
    ],
)
def test_invalid_role_names_say_why(name: str, why: str, pki: Pki) -> None:
    with pytest.raises(CryptoError, match="invalid database user name") as err:
        names.validate_role_name(name)
    assert why in str(err.value)
    assert str(err.value).isprintable()  # the name is shown escaped (repr), never raw
    with pytest.raises(CryptoError, match="invalid database user name"):
        pki.issue(user=name)


# --- CSRs ---------------------------------------------------------------------------------------


def test_sign_csr_takes_the_cn_as_user(key_type: KeyType, pki: Pki) -> None:
    leaf_key = cached_key(key_type, "leaf")
    csr = load_csr(_pem(_csr(leaf_key, "alice")), source="client.csr")
    issued = certs.sign_csr(pki.cert, pki.key, csr, user=None, now=NOW, allow_tls13_only=True)
    assert inspection.cn_of(issued.cert.subject) == "alice"
    assert issued.cert.public_key() == leaf_key.public_key()
    issued.cert.verify_directly_issued_by(pki.cert)


def test_sign_csr_accepts_a_matching_user(pki: Pki) -> None:
    csr = _csr(cached_key(KeyType.EC_P256, "leaf"), "alice")
    issued = certs.sign_csr(pki.cert, pki.key, csr, user="alice", now=NOW, days=7, serial=77)
    assert issued.cert.serial_number == 77
    assert issued.cert.not_valid_after_utc == NOW + timedelta(days=7)


def test_sign_csr_refuses_a_cn_that_is_not_the_user(pki: Pki) -> None:
    csr = _csr(cached_key(KeyType.EC_P256, "leaf"), "mallory")
    with pytest.raises(CryptoError, match="CSR is for CN 'mallory' but the user is 'alice'"):
        certs.sign_csr(pki.cert, pki.key, csr, user="alice", now=NOW, source="m.csr")


def test_sign_csr_without_cn_needs_a_user(pki: Pki) -> None:
    csr = _csr(cached_key(KeyType.EC_P256, "leaf"), cn=None)
    with pytest.raises(CryptoError, match="no CN; pass the user"):
        certs.sign_csr(pki.cert, pki.key, csr, user=None, now=NOW)
    issued = certs.sign_csr(pki.cert, pki.key, csr, user="carol", now=NOW)
    assert inspection.cn_of(issued.cert.subject) == "carol"


def test_sign_csr_validates_the_cn_as_a_role(pki: Pki) -> None:
    csr = _csr(cached_key(KeyType.EC_P256, "leaf"), "pg_read_all_data")
    with pytest.raises(CryptoError, match="reserved"):
        certs.sign_csr(pki.cert, pki.key, csr, user=None, now=NOW)


def test_sign_csr_refuses_a_csr_asking_for_ca_true(pki: Pki) -> None:
    ask = [(x509.BasicConstraints(ca=True, path_length=None), True)]
    csr = _csr(cached_key(KeyType.EC_P256, "leaf"), "alice", ask)
    with pytest.raises(CryptoError, match="requests basicConstraints CA:TRUE; refusing"):
        certs.sign_csr(pki.cert, pki.key, csr, user=None, now=NOW)


def test_sign_csr_never_copies_csr_extensions(pki: Pki) -> None:
    ask = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.SubjectAlternativeName([x509.DNSName("evil.example")]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
    ]
    csr = _csr(cached_key(KeyType.EC_P256, "leaf"), "alice", ask)
    cert = certs.sign_csr(pki.cert, pki.key, csr, user=None, now=NOW).cert
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, x509.SubjectAlternativeName)
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def _tampered(csr: x509.CertificateSigningRequest) -> bytes:
    """The CSR's DER with the last byte (inside the signature) flipped."""
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return bytes(der)


def test_csr_with_a_tampered_signature_is_refused(key_type: KeyType, pki: Pki) -> None:
    der = _tampered(_csr(cached_key(key_type, "leaf")))
    with pytest.raises(CryptoError, match=r"^bad.csr: the CSR signature does not verify"):
        load_csr(der, source="bad.csr")
    tampered = x509.load_der_x509_csr(der)
    with pytest.raises(CryptoError, match="signature does not verify"):
        certs.sign_csr(pki.cert, pki.key, tampered, user=None, now=NOW)


def test_load_csr_accepts_der_and_refuses_garbage() -> None:
    csr = _csr(cached_key(KeyType.EC_P256, "leaf"))
    assert load_csr(csr.public_bytes(serialization.Encoding.DER), source="c.der") == csr
    with pytest.raises(CryptoError, match=r"^c.csr: not PEM: no '-----BEGIN' block found"):
        load_csr(b"hello", source="c.csr")


# --- CRLs ---------------------------------------------------------------------------------------


def _revocation(
    serial: int,
    reason: RevocationReason = RevocationReason.KEY_COMPROMISE,
    not_after: datetime | None = None,
) -> crls.Revocation:
    return crls.Revocation(
        serial=serial, revoked_at=NOW - timedelta(days=1), reason=reason, not_after=not_after
    )


def test_crl_is_v2_with_number_aki_and_dates(key_type: KeyType) -> None:
    ca = make_pki(key_type)
    crl = crls.build_crl(ca.cert, ca.key, [_revocation(5)], number=42, now=NOW, days=7)

    assert crl.issuer == ca.cert.subject
    assert crl.last_update_utc == NOW - validity.CLOCK_SKEW  # tolerate a server clock behind ours
    assert crl.next_update_utc == NOW + timedelta(days=7)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber)
    assert not number.critical
    assert number.value.crl_number == 42
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert aki.value.key_identifier == _ext(ca.cert, x509.SubjectKeyIdentifier).value.digest
    assert len(crl.extensions) == 2
    assert crl.is_signature_valid(ca.key.public_key())
    assert crl_signed_by(crl, ca.cert)
    info = inspection.inspect_crl(crl)
    assert info.number == 42
    assert info.revoked_serials == (5,)
    assert info.signature_hash == (_signature_hash(key_type) or "none")
    assert info.fingerprint == inspection.fingerprint(crl)
    # the DER says v2 (INTEGER 1) right after the TBSCertList header
    assert b"\x02\x01\x01" in crl.public_bytes(serialization.Encoding.DER)[:16]


@pytest.mark.parametrize("reason", list(RevocationReason), ids=str)
def test_crl_reason_codes(reason: RevocationReason, pki: Pki) -> None:
    crl = crls.build_crl(pki.cert, pki.key, [_revocation(9, reason)], number=1, now=NOW)
    entry = crl.get_revoked_certificate_by_serial_number(9)
    assert entry is not None
    assert entry.revocation_date_utc == NOW - timedelta(days=1)
    if reason is RevocationReason.UNSPECIFIED:
        assert len(entry.extensions) == 0  # RFC 5280: omit rather than say "unspecified"
    else:
        ext = entry.extensions.get_extension_for_class(x509.CRLReason)
        assert not ext.critical
        assert ext.value.reason is crls.reason_to_x509(reason)
        assert ext.value.reason.name.replace("_", "") == reason.value.lower()


def test_crl_dates_in_other_time_zones_are_converted(pki: Pki) -> None:
    beijing = timezone(timedelta(hours=8))
    revoked_at = datetime(2025, 1, 15, 8, 30, 15, 999, tzinfo=beijing)
    rev = crls.Revocation(serial=3, revoked_at=revoked_at, reason=RevocationReason.SUPERSEDED)
    crl = crls.build_crl(pki.cert, pki.key, [rev], number=1, now=NOW.astimezone(beijing))
    entry = crl.get_revoked_certificate_by_serial_number(3)
    assert entry is not None
    assert entry.revocation_date_utc == datetime(2025, 1, 15, 0, 30, 15, tzinfo=timezone.utc)
    assert crl.last_update_utc == NOW - validity.CLOCK_SKEW  # tolerate a server clock behind ours
    naive = crls.Revocation(serial=4, revoked_at=datetime(2025, 1, 1), reason=rev.reason)
    with pytest.raises(ValueError, match="timezone-aware"):
        crls.build_crl(pki.cert, pki.key, [naive], number=1, now=NOW)


def test_crl_drops_entries_expired_longer_than_the_grace(pki: Pki) -> None:
    grace = timedelta(days=30)
    revocations = [
        _revocation(1, not_after=NOW - grace - timedelta(seconds=1)),  # dropped
        _revocation(2, not_after=NOW - grace),  # exactly at the edge: kept
        _revocation(3, not_after=NOW - timedelta(days=1)),  # expired recently: kept
        _revocation(4, not_after=NOW + timedelta(days=100)),  # still valid: kept
        _revocation(5, not_after=None),  # unknown expiry: kept
    ]
    crl = crls.build_crl(pki.cert, pki.key, revocations, number=3, now=NOW, expired_grace=grace)
    assert inspection.inspect_crl(crl).revoked_serials == (2, 3, 4, 5)


def test_crl_lists_many_entries_sorted(pki: Pki) -> None:
    serials = [new_serial() for _ in range(500)]
    crl = crls.build_crl(pki.cert, pki.key, map(_revocation, serials), number=1, now=NOW)
    assert [r.serial_number for r in crl] == sorted(serials)


def test_empty_crl_is_valid(pki: Pki) -> None:
    crl = crls.build_crl(pki.cert, pki.key, [], number=0, now=NOW)
    assert len(crl) == 0
    assert crl_signed_by(crl, pki.cert)


def test_crl_refuses_duplicates_bad_numbers_and_expired_ca(pki: Pki) -> None:
    with pytest.raises(CryptoError, match="listed twice"):
        crls.build_crl(pki.cert, pki.key, [_revocation(1), _revocation(1)], number=1, now=NOW)
    with pytest.raises(CryptoError, match="CRL number -1 is out of range"):
        crls.build_crl(pki.cert, pki.key, [], number=-1, now=NOW)
    with pytest.raises(CryptoError, match="expired on"):
        crls.build_crl(pki.cert, pki.key, [], number=1, now=NOW + timedelta(days=3651))


def test_crl_signed_by_another_ca_is_detected(pki: Pki) -> None:
    crl = crls.build_crl(pki.cert, pki.key, [], number=1, now=NOW)
    same_name_other_key = make_pki(KeyType.EC_P384)
    other_name = make_pki(cn="root-ca2")
    assert not crl_signed_by(crl, same_name_other_key.cert)
    assert not crl_signed_by(crl, other_name.cert)


# --- same-key CA renewal ------------------------------------------------------------------------


def test_renew_ca_keeps_name_key_and_extensions_with_a_new_serial_and_validity(
    key_type: KeyType,
) -> None:
    old = make_pki(key_type, days=30)
    later = NOW + timedelta(days=25)
    new = renew_ca(old.cert, old.key, now=later, days=3650)

    assert (new.subject, new.issuer) == (old.cert.subject, old.cert.subject)
    assert new.public_key() == old.cert.public_key()
    assert new.serial_number != old.cert.serial_number
    assert new.serial_number.bit_length() >= 64
    assert new.not_valid_before_utc == later - validity.CLOCK_SKEW
    assert new.not_valid_after_utc == later + timedelta(days=3650)
    assert [(e.oid, e.critical, e.value) for e in new.extensions] == [
        (e.oid, e.critical, e.value) for e in old.cert.extensions
    ]  # make_ca's AKI is keyid only already: rebuilt equal
    new.verify_directly_issued_by(new)
    assert ca_identity(new) == ca_identity(old.cert)
    assert inspection.fingerprint(new) != inspection.fingerprint(old.cert)


def test_what_the_old_ca_signed_chains_to_the_renewed_one(pki: Pki) -> None:
    leaf = pki.issue("alice").cert
    crl = crls.build_crl(pki.cert, pki.key, [], number=1, now=NOW)
    new = renew_ca(pki.cert, pki.key, now=NOW + timedelta(days=1), days=7300)
    leaf.verify_directly_issued_by(new)  # issuer name and signature
    assert akid_fits(leaf, new) and akid_fits(leaf, pki.cert)
    assert crl_signed_by(crl, new)
    after = certs.issue_client_cert(
        new, pki.key, cached_key(KeyType.EC_P256, "leaf").public_key(), user="bob", now=NOW
    ).cert
    after.verify_directly_issued_by(pki.cert)  # and the other way round
    assert akid_fits(after, pki.cert)


def test_renew_ca_rebuilds_an_authority_key_identifier_naming_the_old_serial(pki: Pki) -> None:
    """A CA made by `openssl req` with authorityKeyIdentifier=keyid,issuer:always names its own
    serial; the renewal's AKI is keyid only, and a client certificate whose AKI names the old
    serial is seen not to chain to the renewal (`ca renew` refuses to strand it)."""
    key, cert = pki.key, pki.cert
    ski = _ext(cert, x509.SubjectKeyIdentifier).value
    pinned = x509.AuthorityKeyIdentifier(
        ski.digest, [x509.DirectoryName(cert.subject)], cert.serial_number
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.subject)
        .public_key(key.public_key())
        .serial_number(new_serial())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
    )
    for ext in cert.extensions:
        value = pinned if isinstance(ext.value, x509.AuthorityKeyIdentifier) else ext.value
        builder = builder.add_extension(value, critical=ext.critical)
    hand_made = builder.sign(key, hashes.SHA256())
    renewed = renew_ca(hand_made, key, now=NOW, days=365)
    aki = _ext(renewed, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert (aki.authority_cert_issuer, aki.authority_cert_serial_number) == (None, None)

    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "carol")]))
        .issuer_name(cert.subject)
        .public_key(cached_key(KeyType.EC_P256, "leaf").public_key())
        .serial_number(new_serial())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=10))
        .add_extension(pinned_to(hand_made), critical=False)
        .sign(key, hashes.SHA256())
    )
    assert akid_fits(leaf, hand_made)
    assert not akid_fits(leaf, renewed)


def pinned_to(ca: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """keyid + issuer + serial: what `authorityKeyIdentifier=keyid,issuer:always` writes."""
    ski = _ext(ca, x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier(
        ski.digest, [x509.DirectoryName(ca.issuer)], ca.serial_number
    )


def test_renew_ca_refuses_another_key_a_non_ca_and_an_intermediate(pki: Pki) -> None:
    other = cached_key(KeyType.EC_P256, "other")
    with pytest.raises(CryptoError, match="does not match"):
        renew_ca(pki.cert, other, now=NOW, days=365)
    leaf = pki.issue("alice").cert
    with pytest.raises(CryptoError, match="not a CA certificate"):
        renew_ca(leaf, cached_key(KeyType.EC_P256, "leaf"), now=NOW, days=365)
    inter_key = cached_key(KeyType.EC_P256, "intermediate")
    intermediate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuing-ca")]))
        .issuer_name(pki.cert.subject)
        .public_key(inter_key.public_key())
        .serial_number(new_serial())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(pki.key, hashes.SHA256())
    )
    with pytest.raises(CryptoError, match="not by itself: only a self-signed CA"):
        renew_ca(intermediate, inter_key, now=NOW, days=365)
    with pytest.raises(CryptoError, match="at least 1 day"):
        renew_ca(pki.cert, pki.key, now=NOW, days=0)


def test_ca_identity_tells_a_renewal_from_a_same_name_ca_with_another_key(pki: Pki) -> None:
    renewed = renew_ca(pki.cert, pki.key, now=NOW, days=365)
    same_name = make_pki(KeyType.EC_P256, role="same-name")
    assert inspection.cn_of(same_name.cert.subject) == inspection.cn_of(pki.cert.subject)
    assert ca_identity(renewed) == ca_identity(pki.cert)
    assert ca_identity(same_name.cert) != ca_identity(pki.cert)
    assert ca_identity(make_pki(cn="root-ca2").cert) != ca_identity(pki.cert)


# --- exports ------------------------------------------------------------------------------------


def test_pk8_der_round_trip(key_type: KeyType) -> None:
    key = cached_key(key_type, "leaf")
    der = export.key_pk8_der(key)
    loaded = serialization.load_der_private_key(der, None)
    assert loaded.public_key() == key.public_key()
    assert load_private_key(der, source="client.pk8", passphrase=None).public_key() == (
        key.public_key()
    )


@pytest.mark.parametrize("passphrase", [None, b"s3cret"], ids=["plain", "encrypted"])
def test_pkcs12_round_trip(key_type: KeyType, passphrase: bytes | None) -> None:
    ca = make_pki(KeyType.EC_P256)
    leaf_key = cached_key(key_type, "leaf")
    cert = certs.issue_client_cert(
        ca.cert, ca.key, leaf_key.public_key(), user="alice", now=NOW, allow_tls13_only=True
    ).cert
    blob = export.pkcs12(cert, leaf_key, ca.cert, name="alice", passphrase=passphrase)
    loaded = pkcs12.load_pkcs12(blob, passphrase)
    assert loaded.key is not None and loaded.cert is not None
    assert loaded.key.public_key() == leaf_key.public_key()
    assert loaded.cert.certificate == cert
    assert loaded.cert.friendly_name == b"alice"
    assert [c.certificate for c in loaded.additional_certs] == [ca.cert]
    if passphrase is not None:
        with pytest.raises(ValueError):
            pkcs12.load_pkcs12(blob, b"wrong")


def test_encrypted_key_round_trip(key_type: KeyType) -> None:
    key = cached_key(key_type, "leaf")
    pem = export.key_pem(key, b"correct horse")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    loaded = load_private_key(pem, source="ca.key", passphrase=b"correct horse")
    assert loaded.public_key() == key.public_key()


def test_plain_key_pem_is_pkcs8_and_ignores_a_passphrase() -> None:
    key = cached_key(KeyType.EC_P256, "leaf")
    pem = export.key_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_private_key(pem, source="k", passphrase=b"unneeded")
    assert loaded.public_key() == key.public_key()


def _secret_lines(pem: bytes) -> list[bytes]:
    return [line for line in pem.splitlines() if line and not line.startswith(b"-----")]


def test_wrong_or_missing_passphrase_is_a_clean_crypto_error() -> None:
    key = cached_key(KeyType.RSA_2048, "leaf")
    pem = export.key_pem(key, b"right-passphrase")
    with pytest.raises(CryptoError, match=r"^ca.key: cannot decrypt the private key: wrong") as err:
        load_private_key(pem, source="ca.key", passphrase=b"wrong-passphrase")
    message = str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    with pytest.raises(CryptoError, match=r"^ca.key: the private key is encrypted; a passphrase"):
        load_private_key(pem, source="ca.key", passphrase=None)
    for secret in [*_secret_lines(pem), *_secret_lines(export.key_pem(key))]:
        assert secret.decode() not in message
    assert "passphrase" in message and "right-passphrase" not in message


def test_empty_export_passphrase_is_refused() -> None:
    key = cached_key(KeyType.EC_P256, "leaf")
    with pytest.raises(CryptoError, match="empty passphrase"):
        export.key_pem(key, b"")


def test_check_key_matches(pki: Pki) -> None:
    check_key_matches(pki.cert, pki.key, source="ca.key")
    with pytest.raises(CryptoError, match=r"^ca.key: the private key does not match .*CN=root-ca1"):
        check_key_matches(pki.cert, cached_key(KeyType.EC_P256, "leaf"), source="ca.key")


def test_inspect_cert(pki: Pki) -> None:
    cert = pki.issue(serial=0xABCDEF, days=10).cert
    info = inspection.inspect_cert(cert)
    assert info == inspection.CertInfo(
        subject="CN=alice",
        issuer="CN=root-ca1",
        cn="alice",
        serial=0xABCDEF,
        serial_hex="abcdef",
        not_before=NOW - validity.CLOCK_SKEW,
        not_after=NOW + timedelta(days=10),
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        key_type="ec-p256",
        is_ca=False,
    )
    assert len(info.fingerprint) == 64 and info.fingerprint == info.fingerprint.lower()


def test_pem_exports_parse_back(pki: Pki) -> None:
    crl = crls.build_crl(pki.cert, pki.key, [], number=1, now=NOW)
    assert load_certificates(export.cert_pem(pki.cert), source="c") == [pki.cert]
    assert load_crls(export.crl_pem(crl), source="r") == [crl]


# --- fingerprints ignore formatting (property) --------------------------------------------------


def _bundle_parts() -> list[bytes]:
    ca = make_pki(KeyType.EC_P256, cn="fp-ca")
    leaf = ca.issue().cert
    crl = crls.build_crl(ca.cert, ca.key, [_revocation(7)], number=1, now=NOW)
    return [export.cert_pem(ca.cert), export.cert_pem(leaf), export.crl_pem(crl)]


_PARTS = _bundle_parts()
_EXPECTED = pem_fingerprints(b"".join(_PARTS), source="bundle")


def _rewrap(pem: bytes, width: int) -> bytes:
    lines = pem.strip().splitlines()
    body = b"".join(lines[1:-1])
    chunks = [body[i : i + width] for i in range(0, len(body), width)]
    return b"\n".join([lines[0], *chunks, lines[-1]]) + b"\n"


@settings(max_examples=60, deadline=None)
@given(
    order=st.permutations(range(len(_PARTS))),
    width=st.integers(min_value=4, max_value=200),
    crlf=st.booleans(),
    blank_lines=st.integers(min_value=0, max_value=3),
    preamble=st.text(alphabet="abcdefghij :=\n\t", max_size=40),
    repeat_first=st.booleans(),
)
def test_pem_fingerprints_ignore_formatting(
    order: list[int], width: int, crlf: bool, blank_lines: int, preamble: str, repeat_first: bool
) -> None:
    parts = [_rewrap(_PARTS[i], width) for i in order]
    if repeat_first:
        parts.append(parts[0])  # a duplicate does not change the set
    text = preamble.encode() + b"\n" + (b"\n" * blank_lines).join(parts)
    if crlf:
        text = text.replace(b"\n", b"\r\n")
    assert pem_fingerprints(text, source="bundle") == _EXPECTED


def test_pem_fingerprints_see_a_different_certificate() -> None:
    other = make_pki(KeyType.EC_P256, cn="other-ca").cert
    changed = pem_fingerprints(_PARTS[0] + export.cert_pem(other), source="b")
    assert changed != pem_fingerprints(_PARTS[0], source="b")
    assert inspection.fingerprint(other) in changed
