"""PEM bundles: classification of every block, and each rejection naming the block and file.

Private key material must never reach an error message, so every test that feeds a key into a
refusal also checks that none of the key's base64 lines appears in the message.
"""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448
from cryptography.x509.oid import NameOID

from rdsssl.errors import CryptoError
from rdsssl.models import KeyType
from rdsssl.pki import export, inspection, keys
from rdsssl.pki.crls import build_crl
from rdsssl.pki.pem import (
    BlockKind,
    crl_signed_by,
    load_ca_certificates,
    load_certificates,
    load_crls,
    load_csr,
    load_private_key,
    parse_pem_bundle,
    pem_fingerprints,
)

from .conftest import NOW, Pki, cached_key, make_pki

_EC_PARAMETERS = b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
_CLIENT_AUTH_TRUST = bytes.fromhex("300c300a06082b06010505070302")  # OpenSSL X509_CERT_AUX


def _pem(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        b"\n".join([f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode()])
        + b"\n"
    )


def _key_pem(fmt: serialization.PrivateFormat, passphrase: bytes | None = None) -> bytes:
    key = cached_key(KeyType.EC_P256, "leaf")
    encryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


def _csr_pem(label: str = "CERTIFICATE REQUEST") -> bytes:
    key = cached_key(KeyType.EC_P256, "leaf")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, keys.hash_for(key))
    return _pem(label, csr.public_bytes(serialization.Encoding.DER))


def _secret_lines(pem: bytes) -> list[str]:
    return [
        line.decode()
        for line in pem.splitlines()
        if line and not line.startswith(b"-----") and b":" not in line
    ]


def _assert_no_key_material(message: str, *pems: bytes) -> None:
    for pem in pems:
        for line in _secret_lines(pem):
            assert line not in message


@pytest.fixture
def parts(pki: Pki) -> dict[str, bytes]:
    leaf = pki.issue().cert
    crl = build_crl(pki.cert, pki.key, [], number=1, now=NOW)
    return {
        "ca": export.cert_pem(pki.cert),
        "leaf": export.cert_pem(leaf),
        "crl": export.crl_pem(crl),
        "key": _key_pem(serialization.PrivateFormat.PKCS8),
    }


# --- classification -----------------------------------------------------------------------------


def test_every_block_is_classified(pki: Pki, parts: dict[str, bytes]) -> None:
    public = cached_key(KeyType.EC_P256, "leaf").public_key()
    ca_der = pki.cert.public_bytes(serialization.Encoding.DER)
    bundle = b"\n".join(
        [
            b"subject=CN = root-ca1   (text before a block is fine)",
            parts["ca"],
            _pem("TRUSTED CERTIFICATE", ca_der + _CLIENT_AUTH_TRUST),
            _pem("X509 CERTIFICATE", ca_der),
            parts["crl"],
            parts["key"],
            _key_pem(serialization.PrivateFormat.TraditionalOpenSSL),  # EC PRIVATE KEY
            export.key_pem(cached_key(KeyType.RSA_2048, "leaf"), b"pw"),  # ENCRYPTED PRIVATE KEY
            cached_key(KeyType.RSA_2048, "leaf").private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ),  # RSA PRIVATE KEY
            _csr_pem(),
            _csr_pem("NEW CERTIFICATE REQUEST"),
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            _EC_PARAMETERS,
        ]
    )
    blocks = parse_pem_bundle(bundle, source="bundle.pem")
    assert [(b.index, b.label, b.kind) for b in blocks] == [
        (1, "CERTIFICATE", BlockKind.CERTIFICATE),
        (2, "TRUSTED CERTIFICATE", BlockKind.CERTIFICATE),
        (3, "X509 CERTIFICATE", BlockKind.CERTIFICATE),
        (4, "X509 CRL", BlockKind.CRL),
        (5, "PRIVATE KEY", BlockKind.PRIVATE_KEY),
        (6, "EC PRIVATE KEY", BlockKind.PRIVATE_KEY),
        (7, "ENCRYPTED PRIVATE KEY", BlockKind.PRIVATE_KEY),
        (8, "RSA PRIVATE KEY", BlockKind.PRIVATE_KEY),
        (9, "CERTIFICATE REQUEST", BlockKind.CSR),
        (10, "NEW CERTIFICATE REQUEST", BlockKind.CSR),
        (11, "PUBLIC KEY", BlockKind.OTHER),
        (12, "EC PARAMETERS", BlockKind.OTHER),
    ]
    # a TRUSTED CERTIFICATE's trust settings are stripped: same DER, same fingerprint
    assert blocks[0].der == blocks[1].der == blocks[2].der == ca_der
    assert "der" not in repr(blocks[4])  # key bytes stay out of reprs and logs


def test_crlf_and_blank_lines_do_not_matter(parts: dict[str, bytes]) -> None:
    text = (b"\n\n" + parts["ca"] + b"\n\n\n" + parts["crl"]).replace(b"\n", b"\r\n")
    blocks = parse_pem_bundle(text, source="x")
    assert [b.kind for b in blocks] == [BlockKind.CERTIFICATE, BlockKind.CRL]


# --- rejections by parse_pem_bundle -------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world\n", b"\x30\x82\x01\x00garbage DER", b"-----BEGIN-----\n-----END-----\n"],
)
def test_not_pem_at_all(data: bytes) -> None:
    with pytest.raises(CryptoError) as err:
        parse_pem_bundle(data, source="ca.pem")
    assert str(err.value) == "ca.pem: not PEM: no '-----BEGIN' block found"


def test_bad_base64_names_the_block(parts: dict[str, bytes]) -> None:
    broken = parts["leaf"].replace(b"\n", b"\n!!", 2)
    with pytest.raises(CryptoError) as err:
        parse_pem_bundle(parts["ca"] + broken, source="ca.pem")
    assert str(err.value) == "ca.pem: block 2 (CERTIFICATE): bad base64"


def test_bad_base64_in_a_key_block_does_not_echo_the_key(parts: dict[str, bytes]) -> None:
    broken = parts["key"].replace(b"\n", b"\n*", 2)
    with pytest.raises(CryptoError, match=r"^k.pem: block 1 \(PRIVATE KEY\): bad base64$") as err:
        parse_pem_bundle(broken, source="k.pem")
    _assert_no_key_material(str(err.value), parts["key"])


@pytest.mark.parametrize(
    ("label", "kind"),
    [("CERTIFICATE", "certificate"), ("X509 CRL", "crl"), ("CERTIFICATE REQUEST", "csr")],
)
def test_unparsable_der_names_the_block(label: str, kind: str, parts: dict[str, bytes]) -> None:
    garbage = _pem(label, b"\x30\x03\x02\x01\x05")  # a valid DER SEQUENCE, not an X.509 object
    with pytest.raises(CryptoError, match=rf"^b.pem: block 2 \({label}\) is not a valid {kind}"):
        parse_pem_bundle(parts["ca"] + garbage, source="b.pem")


def test_truncated_block_is_named(parts: dict[str, bytes]) -> None:
    truncated = parts["leaf"][: len(parts["leaf"]) // 2]
    with pytest.raises(CryptoError) as err:
        parse_pem_bundle(parts["ca"] + truncated, source="b.pem")
    assert str(err.value) == (
        "b.pem: block 2 (CERTIFICATE) has no '-----END CERTIFICATE-----' line; "
        "the file is truncated or damaged"
    )


def test_block_missing_its_end_before_the_next_block(parts: dict[str, bytes]) -> None:
    no_end = parts["ca"].replace(b"-----END CERTIFICATE-----", b"")
    with pytest.raises(CryptoError, match=r"block 1 \(CERTIFICATE\) has no '-----END"):
        parse_pem_bundle(no_end + parts["leaf"], source="b.pem")


def test_empty_block() -> None:
    with pytest.raises(CryptoError, match=r"^b.pem: block 1 \(CERTIFICATE\) is empty$"):
        parse_pem_bundle(
            b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", source="b.pem"
        )


# --- certificates only / CRLs only --------------------------------------------------------------


def test_load_certificates_returns_all_in_order(pki: Pki, parts: dict[str, bytes]) -> None:
    certs = load_certificates(parts["ca"] + parts["leaf"], source="c.pem")
    assert certs[0] == pki.cert
    assert inspection.cn_of(certs[1].subject) == "alice"


def test_ca_file_with_a_private_key(parts: dict[str, bytes]) -> None:
    with pytest.raises(CryptoError) as err:
        load_certificates(parts["ca"] + parts["key"], source="ca.pem")
    assert (
        str(err.value) == "ca.pem: block 2 is a private key; a CA file must hold only certificates"
    )
    _assert_no_key_material(str(err.value), parts["key"])


@pytest.mark.parametrize(
    ("extra", "described"),
    [
        ("crl", "a CRL"),
        ("csr", "a certificate request"),
        ("ec-params", "a EC PARAMETERS block"),
    ],
)
def test_ca_file_with_mixed_content(extra: str, described: str, parts: dict[str, bytes]) -> None:
    block = {"crl": parts["crl"], "csr": _csr_pem(), "ec-params": _EC_PARAMETERS}[extra]
    with pytest.raises(CryptoError) as err:
        load_certificates(parts["ca"] + parts["leaf"] + block, source="ca.pem")
    assert (
        str(err.value) == f"ca.pem: block 3 is {described}; a CA file must hold only certificates"
    )


def test_certificates_only_with_a_custom_role(parts: dict[str, bytes]) -> None:
    with pytest.raises(CryptoError, match="block 1 is a CRL; a client certificate file must"):
        load_certificates(parts["crl"], source="x", what="a client certificate file")


def test_crl_file_with_a_certificate_explains_the_danger(parts: dict[str, bytes]) -> None:
    with pytest.raises(CryptoError) as err:
        load_crls(parts["crl"] + parts["ca"], source="crl.pem")
    assert str(err.value) == (
        "crl.pem: block 2 is a certificate; a CRL file must hold only CRLs "
        "(PostgreSQL would trust a certificate placed in the CRL file)"
    )


def test_crl_file_with_a_private_key(parts: dict[str, bytes]) -> None:
    with pytest.raises(CryptoError) as err:
        load_crls(parts["key"] + parts["crl"], source="crl.pem")
    assert str(err.value) == "crl.pem: block 1 is a private key; a CRL file must hold only CRLs"
    _assert_no_key_material(str(err.value), parts["key"])


def test_crl_file_with_garbage() -> None:
    with pytest.raises(CryptoError, match=r"^crl.pem: not PEM"):
        load_crls(b"\x00\x01garbage", source="crl.pem")


def test_load_crls_accepts_several(pki: Pki, parts: dict[str, bytes]) -> None:
    other = make_pki(cn="root-ca2")
    crl2 = export.crl_pem(build_crl(other.cert, other.key, [], number=9, now=NOW))
    crls = load_crls(parts["crl"] + crl2, source="crl.pem")
    assert [inspection.inspect_crl(c).number for c in crls] == [1, 9]
    assert crl_signed_by(crls[0], pki.cert) and not crl_signed_by(crls[1], pki.cert)


# --- CA certificates ----------------------------------------------------------------------------


def test_ca_certificates_accepts_two_cas(pki: Pki) -> None:
    second = make_pki(KeyType.ED25519, cn="root-ca2")
    pem = export.cert_pem(pki.cert) + export.cert_pem(second.cert)
    assert load_ca_certificates(pem, source="b.pem", now=NOW) == [pki.cert, second.cert]


def test_ca_certificates_refuses_a_leaf(parts: dict[str, bytes]) -> None:
    with pytest.raises(CryptoError) as err:
        load_ca_certificates(parts["ca"] + parts["leaf"], source="ca.crt", now=NOW)
    assert str(err.value).startswith(
        "ca.crt: certificate 2 (CN=alice) is not a CA (no basicConstraints CA:TRUE)"
    )


def test_ca_certificates_refuses_an_expired_ca() -> None:
    short = make_pki(cn="short-ca", days=10)
    later = NOW + timedelta(days=11)
    with pytest.raises(CryptoError) as err:
        load_ca_certificates(export.cert_pem(short.cert), source="ca.crt", now=later)
    assert str(err.value) == (
        "ca.crt: certificate 1 (CN=short-ca) expired on 2025-01-25 12:00:00Z; use a valid CA"
    )


# --- private keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "passphrase"),
    [
        (serialization.PrivateFormat.PKCS8, None),
        (serialization.PrivateFormat.PKCS8, b"pw"),
        (serialization.PrivateFormat.TraditionalOpenSSL, None),
        (serialization.PrivateFormat.TraditionalOpenSSL, b"pw"),  # Proc-Type/DEK-Info headers
    ],
    ids=["pkcs8", "pkcs8-encrypted", "traditional", "traditional-encrypted"],
)
def test_load_private_key_formats(
    fmt: serialization.PrivateFormat, passphrase: bytes | None
) -> None:
    pem = _key_pem(fmt, passphrase)
    key = load_private_key(pem, source="k.pem", passphrase=passphrase)
    assert key.public_key() == cached_key(KeyType.EC_P256, "leaf").public_key()


def test_load_private_key_skips_ec_parameters_and_certificates(parts: dict[str, bytes]) -> None:
    pem = parts["leaf"] + _EC_PARAMETERS + _key_pem(serialization.PrivateFormat.TraditionalOpenSSL)
    key = load_private_key(pem, source="k.pem", passphrase=None)
    assert key.public_key() == cached_key(KeyType.EC_P256, "leaf").public_key()


def test_load_private_key_needs_exactly_one_key(parts: dict[str, bytes]) -> None:
    with pytest.raises(CryptoError, match=r"^k.pem: no private key block found"):
        load_private_key(parts["ca"], source="k.pem", passphrase=None)
    with pytest.raises(CryptoError, match=r"^k.pem: 2 private keys found") as err:
        load_private_key(parts["key"] * 2, source="k.pem", passphrase=None)
    _assert_no_key_material(str(err.value), parts["key"])


def test_damaged_key_is_refused_without_echoing_it(parts: dict[str, bytes]) -> None:
    lines = parts["key"].splitlines()
    damaged = b"\n".join([*lines[:-2], lines[-1]])  # one 48-byte line short: truncated DER
    with pytest.raises(CryptoError, match=r"^k.pem: cannot parse the private key$") as err:
        load_private_key(damaged, source="k.pem", passphrase=None)
    _assert_no_key_material(str(err.value), parts["key"], damaged)


def test_not_a_key_at_all() -> None:
    with pytest.raises(CryptoError, match=r"^k.der: cannot parse the private key$"):
        load_private_key(b"\x30\x03\x02\x01\x00", source="k.der", passphrase=None)


def test_unsupported_key_type_is_refused() -> None:
    pem = ed448.Ed448PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(CryptoError, match="unsupported private key type ed448"):
        load_private_key(pem, source="k.pem", passphrase=None)


# --- CSR files ----------------------------------------------------------------------------------


def test_csr_file_with_a_private_key_is_refused(parts: dict[str, bytes]) -> None:
    with pytest.raises(CryptoError) as err:
        load_csr(_csr_pem() + parts["key"], source="c.csr")
    assert str(err.value) == (
        "c.csr: block 2 is a private key; a CSR file must hold only the certificate request"
    )
    _assert_no_key_material(str(err.value), parts["key"])


def test_csr_file_with_two_requests_is_refused() -> None:
    with pytest.raises(CryptoError, match="expected exactly one"):
        load_csr(_csr_pem() + _csr_pem("NEW CERTIFICATE REQUEST"), source="c.csr")


def test_new_certificate_request_label_loads() -> None:
    csr = load_csr(_csr_pem("NEW CERTIFICATE REQUEST"), source="c.csr")
    assert inspection.cn_of(csr.subject) == "alice"


# --- fingerprints -------------------------------------------------------------------------------


def test_pem_fingerprints_are_the_der_fingerprints(pki: Pki, parts: dict[str, bytes]) -> None:
    crl = load_crls(parts["crl"], source="r")[0]
    got = pem_fingerprints(parts["crl"] + parts["ca"], source="b")
    assert got == {inspection.fingerprint(pki.cert), inspection.fingerprint(crl)}
    assert all(re.fullmatch("[0-9a-f]{64}", fp) for fp in got)


def test_pem_fingerprints_refuse_private_keys(parts: dict[str, bytes]) -> None:
    with pytest.raises(CryptoError, match=r"^b: block 2 is a private key; refusing it$"):
        pem_fingerprints(parts["ca"] + parts["key"], source="b")
