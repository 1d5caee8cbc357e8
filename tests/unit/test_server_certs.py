"""Server certificates from a server CA: SANs, EKU, validity, refusals."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from rdsssl.errors import CryptoError
from rdsssl.pki.ca import make_ca
from rdsssl.pki.server_certs import issue_server_cert, server_names

pytestmark = pytest.mark.unit

CaPair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def server_ca() -> CaPair:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make_ca(key, cn="db server CA", days=400, now=NOW)
    return cert, key


def test_names_every_connection_string_with_server_auth(server_ca: CaPair) -> None:
    ca_cert, ca_key = server_ca
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    names = ["pgm-a.pg.rds.aliyuncs.com", "PGM-A.pg.rds.aliyuncs.com.", "pgm-a-pub.example.com"]
    issued = issue_server_cert(ca_cert, ca_key, leaf_key.public_key(), names=names, now=NOW)
    san = issued.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "pgm-a.pg.rds.aliyuncs.com",
        "pgm-a-pub.example.com",
    ]
    eku = issued.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert issued.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert issued.cert.issuer == ca_cert.subject and not issued.truncated


def test_validity_truncated_to_the_ca(server_ca: CaPair) -> None:
    ca_cert, ca_key = server_ca
    leaf = ec.generate_private_key(ec.SECP256R1()).public_key()
    issued = issue_server_cert(ca_cert, ca_key, leaf, names=["db.example"], now=NOW, days=3000)
    assert issued.truncated and issued.cert.not_valid_after_utc == ca_cert.not_valid_after_utc
    short = issue_server_cert(ca_cert, ca_key, leaf, names=["db.example"], now=NOW, days=30)
    assert short.cert.not_valid_after_utc == NOW + timedelta(days=30)


@pytest.mark.parametrize("bad", [[], [""], ["a b.example"], ["x" * 64 + ".example"], ["é.example"]])
def test_refuses_names_a_certificate_cannot_carry(bad: list[str]) -> None:
    with pytest.raises(CryptoError):
        server_names(bad)
