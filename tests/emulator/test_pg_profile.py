"""The documented profile on a real PostgreSQL: the TLS 1.2 cap and what it does to client keys,
PostgreSQL keeping the old configuration during an early read-back, and SSL off.

One emulator with a real PostgreSQL for the module, reset before each test; the account alice
stays. Error texts are the stable substrings of docs/postgres-client-cert-behaviour.md §6/§9.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alibabacloud_rds20140815 import models as rds
from alibabacloud_rds20140815.client import Client
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from rdsssl.emulator.pg import PgCluster
from rdsssl.emulator.server import Emulator
from tests.emulator.sdk import control, make_client, modify, ssl_of, status_of, wait_applied
from tests.pgtls import KeyPair, PrivateKey, make_ca, make_leaf, write_client_files

PASSWORD = "Alice-tls-pass-1"
KEYS: dict[str, Any] = {
    "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ec-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "rsa-2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
}


@dataclass(frozen=True)
class Pg:
    """The module's emulator, its one instance, an SDK client, and client files on disk."""

    emu: Emulator
    client: Client
    iid: str
    conn_str: str
    files: Path
    client_ca: KeyPair

    @property
    def cluster(self) -> PgCluster:
        backend = self.emu.instance(self.iid).backend
        assert isinstance(backend, PgCluster)
        return backend

    def cert(self, kind: str) -> tuple[Path, Path]:
        """alice's certificate with a key of `kind`, signed by the (EC P-256) client CA."""
        key: PrivateKey = KEYS[kind]()
        return write_client_files(self.files, kind, make_leaf(self.client_ca, "alice", key=key))

    def connect(self, cert: tuple[Path, Path] | None, **kw: Any) -> psycopg.Connection[Any]:
        inst = self.emu.instance(self.iid)
        files = {"sslcert": str(cert[0]), "sslkey": str(cert[1])} if cert else {}
        options: dict[str, Any] = {
            "sslmode": "verify-ca",
            "sslrootcert": str(self.files / "server-ca.pem"),
            "password": PASSWORD,
            **files,
            **kw,
        }
        if not cert:
            options.setdefault("sslcertmode", "disable")
        return psycopg.connect(
            host=inst.host, port=inst.port, user="alice", dbname="postgres", connect_timeout=10,
            **options,
        )  # fmt: skip

    def protocol(self, cert: tuple[Path, Path] | None, **kw: Any) -> str | None:
        """The negotiated TLS version, as the server recorded it for this very session
        (psycopg 3.3 has no `ssl_attribute`; pg_stat_ssl reports the same handshake)."""
        with self.connect(cert, **kw) as conn:
            assert conn.pgconn.ssl_in_use
            row = conn.execute(
                "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone()
            return None if row is None else str(row[0])

    def refused(self, cert: tuple[Path, Path] | None, **kw: Any) -> str:
        with pytest.raises(psycopg.OperationalError) as exc:
            self.connect(cert, **kw).close()
        return str(exc.value)

    def log_since(self, offset: int, *, until: str, timeout: float = 10.0) -> str:
        """The server log after `offset`, once it holds `until` (the server writes its side
        of a refused handshake a moment after the client sees the alert) or at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            with self.cluster.log_file.open("rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
            if until in text or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def configure(self, **fields: Any) -> None:
        modify(self.client, self.iid, self.conn_str, **fields)
        body = wait_applied(self.client, self.iid)
        assert body.last_modify_status == "success", body.modify_status_reason


@pytest.fixture(scope="module")
def module_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pg]:
    files = tmp_path_factory.mktemp("pg-profile")
    with Emulator(instances=1, backend="pg", restart_seconds=0.3, acl_lock_seconds=0.2) as emu:
        client = make_client(emu)
        iid = emu.instance_ids[0]
        (files / "server-ca.pem").write_bytes(emu.server_ca_pem)
        client.create_account(
            rds.CreateAccountRequest(
                dbinstance_id=iid, account_name="alice", account_password=PASSWORD
            )
        )
        yield Pg(emu, client, iid, emu.instance(iid).connection_string, files, make_ca("tls-ca"))


@pytest.fixture
def pg(module_pg: Pg) -> Pg:
    module_pg.emu.reset()
    return module_pg


def test_tls_is_capped_at_1_2_and_a_p384_client_key_fails_on_the_curve(pg: Pg) -> None:
    pg.configure(client_caenabled=1, client_cacert=pg.client_ca.cert_pem.decode(), acl="cert")
    works = {kind: pg.protocol(pg.cert(kind)) for kind in ("ec-p256", "rsa-2048", "ed25519")}
    assert works == {"ec-p256": "TLSv1.2", "rsa-2048": "TLSv1.2", "ed25519": "TLSv1.2"}
    log_start = pg.cluster.log_file.stat().st_size
    error = pg.refused(pg.cert("ec-p384"))
    assert "illegal parameter" in error
    assert "wrong curve" in pg.log_since(log_start, until="wrong curve")


def test_without_the_cap_tls_1_3_takes_every_key(pg: Pg) -> None:
    """PostgreSQL's default (the tls_max_version switch at null): all four keys work."""
    control(pg.emu, "faults", {"switches": {"tls_max_version": None}})
    pg.configure(client_caenabled=1, client_cacert=pg.client_ca.cert_pem.decode(), acl="cert")
    seen = {kind: pg.protocol(pg.cert(kind)) for kind in KEYS}
    assert seen == dict.fromkeys(KEYS, "TLSv1.3")
    pg.emu.reset()  # the documented cap again, put back into force by the reset
    assert pg.protocol(None) == "TLSv1.2"


def test_postgresql_keeps_the_old_configuration_during_the_early_readback(pg: Pg) -> None:
    """Describe says ACL cert, Running / success; a password login without a certificate still
    works until the change is really applied, then it is refused."""
    pg.configure(client_caenabled=1, client_cacert=pg.client_ca.cert_pem.decode(), acl="prefer")
    pg.emu.faults.switches.early_readback_seconds = 30.0
    lock = pg.emu.state.acl_lock_seconds
    pg.emu.state.acl_lock_seconds = 20.0  # a phase long enough to look at on a moving clock
    try:
        modify(pg.client, pg.iid, pg.conn_str, acl="cert")
    finally:
        pg.emu.state.acl_lock_seconds = lock
    body = ssl_of(pg.client, pg.iid)
    assert (status_of(pg.client, pg.iid), body.last_modify_status, body.acl) == (
        "Running",
        "success",
        "cert",
    )
    assert pg.protocol(None) == "TLSv1.2"  # the old pg_hba line: password, no certificate
    pg.emu.clock.advance(31.0)
    assert status_of(pg.client, pg.iid) == "SSL_MODIFYING"
    assert pg.protocol(None) == "TLSv1.2"  # still the old configuration while setting
    pg.emu.clock.advance(20.0)
    assert (status_of(pg.client, pg.iid), pg.emu.reloads(pg.iid)) == ("Running", 1)
    assert "certificate" in pg.refused(None)
    assert pg.protocol(pg.cert("ec-p256")) == "TLSv1.2"


def test_ssl_off_runs_postgresql_without_ssl(pg: Pg) -> None:
    pg.emu.set_ssl_enabled(pg.iid, False)
    assert ssl_of(pg.client, pg.iid).sslenabled == "off"
    with pg.connect(None, sslmode="disable") as conn:
        assert conn.execute("SHOW ssl").fetchone() == ("off",)
    assert "server does not support SSL" in pg.refused(None, sslmode="require")
    pg.emu.set_ssl_enabled(pg.iid, True)
    assert pg.protocol(None, sslmode="require") == "TLSv1.2"
