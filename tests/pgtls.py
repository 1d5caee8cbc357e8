"""Throwaway X.509 material for PostgreSQL tests, made with `cryptography` directly.

Deliberately independent of `rdsssl.pki.crypto`: the emulator's tests must not pass or fail with the
code under test elsewhere. Everything is EC P-256 and valid from one hour ago for 30 days, unless
asked otherwise. Used by tests/conftest.py (`server_pki`) and any test that needs a CA, a leaf
or a CRL; `write_client_files` writes libpq-ready files (key 0600, as libpq insists).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Protocol, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rdsssl.emulator.pg import PgCluster, PgSslConfig

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class KeyPair:
    """A certificate with its key, plus the PEM forms PostgreSQL and libpq read."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def make_ca(cn: str, *, days: int = 30) -> KeyPair:
    """A self-signed CA (CA:TRUE, keyCertSign + cRLSign) usable as ssl_ca_file / sslrootcert."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def make_leaf(
    ca: KeyPair,
    cn: str,
    *,
    server: bool = False,
    days: int = 30,
    key: PrivateKey | None = None,
) -> KeyPair:
    """A leaf signed by `ca`: a client cert (CN = role) or, with server=True, a server cert
    with SAN DNS:localhost + IP:127.0.0.1 so `sslmode=verify-full` to 127.0.0.1 works.
    `key`: the leaf's own key (default a fresh EC P-256 one)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = utcnow()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


def make_crl(ca: KeyPair, revoked: list[x509.Certificate], *, days: int = 30) -> bytes:
    """A PEM CRL signed by `ca` listing `revoked` (PostgreSQL's ssl_crl_file)."""
    now = utcnow()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - timedelta(minutes=1))
            .build()
        )
    crl = builder.sign(ca.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM)


def write_client_files(directory: Path, name: str, pair: KeyPair) -> tuple[Path, Path]:
    """`<name>.crt` and `<name>.key` (0600 from creation: libpq refuses wider modes)."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    crt.write_bytes(pair.cert_pem)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pair.key_pem)
    return crt, key


@dataclass(frozen=True)
class ServerPki:
    """The server side of a test cluster: a server CA, its server cert, the CA file on disk.

    `sslrootcert` is the path clients pass to verify the server; `config(...)` builds a
    PgSslConfig around the server cert/key.
    """

    ca: KeyPair
    server: KeyPair
    sslrootcert: Path

    def config(self, **fields: Any) -> PgSslConfig:
        """PgSslConfig with this server cert/key; `fields` sets the rest (acl=..., ...)."""
        return PgSslConfig(
            server_cert_pem=self.server.cert_pem, server_key_pem=self.server.key_pem, **fields
        )


def make_server_pki(directory: Path) -> ServerPki:
    """A server CA + server cert (CN=localhost, SAN localhost/127.0.0.1), CA written to disk."""
    ca = make_ca("rdsssl-test-server-ca")
    server = make_leaf(ca, "localhost", server=True)
    directory.mkdir(parents=True, exist_ok=True)
    root = directory / "server-ca.crt"
    root.write_bytes(ca.cert_pem)
    return ServerPki(ca=ca, server=server, sslrootcert=root)


class ClusterFactory(Protocol):
    """Type of the `pg_cluster_factory` fixture (see tests/conftest.py)."""

    def __call__(
        self, name: str = "pg", *, ssl: PgSslConfig | None = None, port: int | None = None
    ) -> PgCluster: ...
