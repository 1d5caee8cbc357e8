"""The whole manual procedure against one emulator with a real PostgreSQL, through the SDK.

PKI made with the openssl command line exactly as a runbook would (CA, CSR, signing,
`openssl ca -revoke` / `-gencrl`); the expired CRL is made with cryptography because openssl
cannot date one in the past. Each test sends the full configuration it needs, so the tests do
not depend on each other's order; error texts are the stable substrings of
docs/postgres-client-cert-behaviour.md §9.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alibabacloud_rds20140815 import models as rds
from alibabacloud_rds20140815.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rdsssl.emulator.server import Emulator
from tests.emulator.sdk import make_client, modify, ssl_of, wait_applied

PASSWORDS = {"alice": "Alice-pass-1", "bob": "Bob-pass-22"}
# The commands of the manual procedure, verbatim.
MAKE_CA = (
    'openssl req -new -x509 -days 3650 -nodes -out ca1.crt -keyout ca1.key -subj "/CN=root-ca1"'
)
MAKE_CSR = 'openssl req -new -nodes -keyout {name}.key -out {name}.csr -subj "/CN={cn}"'
SIGN_CSR = (
    "openssl x509 -req -days 365 -in {name}.csr -CA ca1.crt -CAkey ca1.key -CAcreateserial"
    " -out {name}.crt"
)
CA_CNF = """\
[ ca ]
default_ca = CA_default
[ CA_default ]
database = index.txt
crlnumber = crlnumber
certificate = ca1.crt
private_key = ca1.key
default_md = sha256
default_crl_days = 30
"""


def _sh(cwd: Path, command: str) -> None:
    subprocess.run(command, shell=True, cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Setup:
    """One running emulator, its instance, an SDK client and the openssl-made files."""

    emu: Emulator
    client: Client
    iid: str
    conn_str: str
    host: str
    port: int
    pki: Path

    def file(self, name: str) -> str:
        return str(self.pki / name)

    def pem(self, name: str) -> str:
        return (self.pki / name).read_text()

    def configure(self, **fields: Any) -> rds.DescribeDBInstanceSSLResponseBody:
        """One ModifyDBInstanceSSL, then wait until it is done; asserts success."""
        modify(self.client, self.iid, self.conn_str, **fields)
        body = wait_applied(self.client, self.iid)
        assert body.last_modify_status == "success", body.modify_status_reason
        return body

    def with_ca(self, **fields: Any) -> rds.DescribeDBInstanceSSLResponseBody:
        """configure() with client CA ca1 and, by default, no CRL and ACL prefer."""
        base: dict[str, Any] = {
            "client_caenabled": 1,
            "client_cacert": self.pem("ca1.crt"),
            "client_crl_enabled": 0,
            "acl": "prefer",
        }
        return self.configure(**{**base, **fields})

    def connect(
        self,
        user: str,
        cert: str | None,
        *,
        password: str | None = None,
        sslmode: str = "verify-full",
    ) -> psycopg.Connection[tuple[Any, ...]]:
        kwargs: dict[str, Any] = {
            "sslcert": self.file(f"{cert}.crt"),
            "sslkey": self.file(f"{cert}.key"),
        }
        if cert is None:
            kwargs = {"sslcertmode": "disable"}
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname="postgres",
            user=user,
            password=password,
            sslmode=sslmode,
            sslrootcert=self.file("server-ca.pem"),
            connect_timeout=10,
            **kwargs,
        )

    def client_dn(self, user: str, cert: str | None, **kw: Any) -> str | None:
        with self.connect(user, cert, **kw) as conn:
            row = conn.execute(
                "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone()
            return None if row is None else row[0]

    def refused(self, user: str, cert: str | None, **kw: Any) -> str:
        with pytest.raises(psycopg.OperationalError) as exc:
            self.connect(user, cert, **kw).close()
        return str(exc.value)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    pki = tmp_path_factory.mktemp("openssl-pki")
    _sh(pki, MAKE_CA)
    for name, cn in (("client", "alice"), ("bob", "bob"), ("alice2", "alice")):
        _sh(pki, MAKE_CSR.format(name=name, cn=cn))
        _sh(pki, SIGN_CSR.format(name=name))
        os.chmod(pki / f"{name}.key", 0o600)
    (pki / "ca.cnf").write_text(CA_CNF)
    (pki / "index.txt").touch()
    (pki / "crlnumber").write_text("01\n")
    _sh(pki, "openssl ca -config ca.cnf -gencrl -out crl-empty.pem")
    _sh(pki, "openssl ca -config ca.cnf -revoke alice2.crt")
    _sh(pki, "openssl ca -config ca.cnf -gencrl -out crl-revoked.pem")

    with Emulator(instances=1, backend="pg", restart_seconds=0.3, acl_lock_seconds=0.2) as emu:
        client = make_client(emu)
        iid = emu.instance_ids[0]
        inst = emu.instance(iid)
        url = ssl_of(client, iid).server_caurl
        with urllib.request.urlopen(url, timeout=10) as resp:
            (pki / "server-ca.pem").write_bytes(resp.read())
        for user, password in PASSWORDS.items():
            client.create_account(
                rds.CreateAccountRequest(
                    dbinstance_id=iid, account_name=user, account_password=password
                )
            )
        yield Setup(emu, client, iid, inst.connection_string, inst.host, inst.port, pki)


def test_accounts_are_real_roles(setup: Setup) -> None:
    body = setup.client.describe_accounts(rds.DescribeAccountsRequest(dbinstance_id=setup.iid)).body
    assert sorted(a.account_name for a in body.accounts.dbinstance_account) == ["alice", "bob"]
    setup.configure(client_caenabled=0)
    assert setup.client_dn("alice", None, password=PASSWORDS["alice"]) is None  # SSL, no cert
    assert "password authentication failed" in setup.refused("alice", None, password="wrong-Pass-1")


def test_enable_client_ca_then_connect_with_psycopg_and_psql(setup: Setup) -> None:
    restarts = setup.emu.restarts(setup.iid)
    setup.configure(client_caenabled=0)
    body = setup.configure(client_caenabled=1, client_cacert=setup.pem("ca1.crt"))
    assert (body.client_cacert, body.acl) == (setup.pem("ca1.crt"), "prefer")
    assert setup.emu.restarts(setup.iid) == restarts + 2
    assert setup.client_dn("alice", "client", password=PASSWORDS["alice"]) == "/CN=alice"
    env = {
        **os.environ,
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": setup.file("server-ca.pem"),
        "PGSSLCERT": setup.file("client.crt"),
        "PGSSLKEY": setup.file("client.key"),
        "PGPASSWORD": PASSWORDS["alice"],
        "PGCONNECT_TIMEOUT": "10",
    }
    out = subprocess.run(
        ["psql", "-h", "localhost", "-p", str(setup.port), "-U", "alice", "-d", "postgres", "-Atc",
         "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (out.returncode, out.stdout.strip()) == (0, "/CN=alice"), out.stderr


def test_an_uploaded_crl_refuses_the_revoked_certificate(setup: Setup) -> None:
    body = setup.with_ca(
        client_crl_enabled=1, client_cert_revocation_list=setup.pem("crl-revoked.pem")
    )
    assert body.client_cert_revocation_list == setup.pem("crl-revoked.pem")
    assert "certificate revoked" in setup.refused("alice", "alice2", password=PASSWORDS["alice"])
    assert setup.client_dn("alice", "client", password=PASSWORDS["alice"]) == "/CN=alice"


def test_acl_cert_needs_no_password_and_refuses_non_ssl(setup: Setup) -> None:
    setup.with_ca()
    restarts, reloads = setup.emu.restarts(setup.iid), setup.emu.reloads(setup.iid)
    assert setup.configure(acl="cert").acl == "cert"  # an ACL-only change: a reload
    assert (setup.emu.restarts(setup.iid), setup.emu.reloads(setup.iid)) == (restarts, reloads + 1)
    assert setup.client_dn("alice", "client") == "/CN=alice"
    message = setup.refused("alice", None, password=PASSWORDS["alice"], sslmode="disable")
    assert "no pg_hba.conf entry" in message and "no encryption" in message
    assert "certificate authentication failed" in setup.refused("alice", "bob")


def test_verify_full_refuses_a_cn_mismatch(setup: Setup) -> None:
    setup.with_ca(acl="verify-full")
    message = setup.refused("alice", "bob", password=PASSWORDS["alice"])
    assert "password authentication failed" in message
    assert setup.client_dn("bob", "bob", password=PASSWORDS["bob"]) == "/CN=bob"


def test_one_call_for_ca_crl_and_acl_is_one_restart(setup: Setup) -> None:
    setup.configure(client_caenabled=0)
    restarts, reloads = setup.emu.restarts(setup.iid), setup.emu.reloads(setup.iid)
    calls = len([r for r in setup.emu.requests if r.action == "ModifyDBInstanceSSL"])
    body = setup.with_ca(
        client_crl_enabled=1, client_cert_revocation_list=setup.pem("crl-empty.pem"), acl="cert"
    )
    assert (body.acl, body.client_cert_revocation_list) == ("cert", setup.pem("crl-empty.pem"))
    assert (setup.emu.restarts(setup.iid), setup.emu.reloads(setup.iid)) == (restarts + 1, reloads)
    modifies = [r for r in setup.emu.requests if r.action == "ModifyDBInstanceSSL"]
    assert len(modifies) == calls + 1
    assert setup.client_dn("alice", "alice2") == "/CN=alice"  # not revoked by the empty CRL


def _expired_crl(pki: Path) -> str:
    key = serialization.load_pem_private_key((pki / "ca1.key").read_bytes(), password=None)
    assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
    ca = x509.load_pem_x509_certificate((pki / "ca1.crt").read_bytes())
    now = datetime.now(timezone.utc)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - timedelta(days=31))
        .next_update(now - timedelta(days=1))
        .add_extension(x509.CRLNumber(99), critical=False)
        .sign(key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.PEM).decode()


def test_an_expired_crl_locks_out_certificate_users(setup: Setup) -> None:
    """The measured hazard (docs §4 R1): accepted by the service, then every cert fails."""
    expired = _expired_crl(setup.pki)
    setup.with_ca(client_crl_enabled=1, client_cert_revocation_list=expired)
    assert "certificate expired" in setup.refused("alice", "client", password=PASSWORDS["alice"])
    assert setup.client_dn("alice", None, password=PASSWORDS["alice"]) is None  # no cert: fine


def test_a_crl_containing_a_certificate_is_refused(setup: Setup) -> None:
    setup.with_ca()
    smuggled = setup.pem("crl-empty.pem") + setup.pem("bob.crt")
    with pytest.raises(ClientException) as exc:
        modify(setup.client, setup.iid, setup.conn_str, client_crl_enabled=1,
               client_cert_revocation_list=smuggled)  # fmt: skip
    assert (exc.value.code, exc.value.status_code) == ("InvalidClientCrl", 400)
    body = ssl_of(setup.client, setup.iid)
    assert (body.last_modify_status, body.client_cert_revocation_list) == ("success", "")


def test_a_restart_drops_an_open_session(setup: Setup) -> None:
    setup.with_ca()
    conn = setup.connect("alice", "client", password=PASSWORDS["alice"])
    try:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        setup.with_ca(client_crl_enabled=1, client_cert_revocation_list=setup.pem("crl-empty.pem"))
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()
    assert setup.client_dn("alice", "client", password=PASSWORDS["alice"]) == "/CN=alice"
