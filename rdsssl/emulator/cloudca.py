"""The emulator's own "cloud" CA: it issues every instance's cloud server certificate.

On RDS the cloud CA is Alibaba's and clients download it from `ServerCAUrl`; here it is a
local CA served at `/_emulator/server-ca.pem`, so `sslmode=verify-full` works end to end.
A cloud certificate names the ONE connection string SSL protects (the ModifyDBInstanceSSL
`ConnectionString`), as on RDS: a verify-full client of the instance's other endpoint fails,
which is why custom certificates exist. It also names `localhost` and `127.0.0.1`, which no
real endpoint has, so a client connecting to 127.0.0.1 can still verify a host name.
A cloud certificate is valid for one year (`SERVER_DAYS`, the console's documentation of the
cloud certificate); `DescribeDBInstanceSSL` answers `RequireUpdate=1` from
`REQUIRE_UPDATE_DAYS` before its end, by the emulator's clock.
With a state directory the CA persists, so a pinned server CA survives a `serve` restart.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["REQUIRE_UPDATE_DAYS", "SERVER_DAYS", "CloudCa", "ServerCert"]

CA_DAYS = 3650
SERVER_DAYS = 365  # RDS cloud certificates are valid for one year
REQUIRE_UPDATE_DAYS = 30  # RequireUpdate=1 this close to the end (the service gives no number)
_BACKDATE = timedelta(minutes=5)  # tolerate small clock differences between client and server


@dataclass(frozen=True)
class ServerCert:
    """A server certificate with its unencrypted key (PostgreSQL cannot prompt for one)."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    not_before: datetime
    not_after: datetime


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class CloudCa:
    """A CA certificate and key; `create` or `load_or_create` build one."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self._key = key

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, as clients use it for `sslrootcert`."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def create(cls, *, now: datetime, cn: str = "rdsssl emulator cloud CA") -> CloudCa:
        """A fresh CA (EC P-256: fast to make, accepted by every libpq)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rdsssl emulator"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load_or_create(cls, directory: Path | None, *, now: datetime) -> CloudCa:
        """Reuse `directory/cloud-ca.{crt,key}` when present; else create (and save if asked)."""
        if directory is None:
            return cls.create(now=now)
        crt, key_file = directory / "cloud-ca.crt", directory / "cloud-ca.key"
        if crt.exists() and key_file.exists():
            cert = x509.load_pem_x509_certificate(crt.read_bytes())
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            if isinstance(key, ec.EllipticCurvePrivateKey) and cert.not_valid_after_utc > now:
                return cls(cert, key)
        ca = cls.create(now=now)
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(_key_pem(ca._key))
        crt.write_bytes(ca.cert_pem)
        return ca

    def issue_server_cert(
        self,
        *,
        hostnames: Sequence[str],
        now: datetime,
        days: int = SERVER_DAYS,
        valid_from: datetime | None = None,
    ) -> ServerCert:
        """A server certificate for `hostnames` + localhost + 127.0.0.1 (CN = first name),
        valid `days` from `now`.

        `valid_from` (default `now`) starts the validity: the emulator passes the wall clock,
        so a certificate issued after its clock was moved forward still verifies for real
        clients, whose clock was not.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(h) for h in (*hostnames, "localhost")]
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        cn = hostnames[0] if hostnames else "localhost"
        not_before = (min(now, valid_from or now) - _BACKDATE).replace(microsecond=0)
        not_after = min(now + timedelta(days=days), self.cert.not_valid_after_utc).replace(
            microsecond=0
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        return ServerCert(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=_key_pem(key),
            not_before=not_before,
            not_after=not_after,
        )
