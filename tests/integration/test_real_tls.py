"""Real TLS: rdsssl's CA, certificates and CRL against a real PostgreSQL.

The server trusts an rdsssl CA (`ssl_ca_file`) behind a `hostssl ... cert` rule; libpq connects
with the files rdsssl writes for a client. After `cert revoke` + `crl build` and a reload with
that CRL as `ssl_crl_file`, the revoked certificate is refused while the others still work.
PostgreSQL comes from the shared fixtures in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rdsssl.emulator.pg import PgCluster, PgSslConfig
from rdsssl.models import KeyType, RevocationReason
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from rdsssl.store.files import write_client_files
from tests.pgtls import ClusterFactory, ServerPki


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaStore]:
    path = tmp_path_factory.mktemp("real-tls") / "ca"
    s = CaStore.init(
        path, cn="root-ca1", key_type=KeyType.EC_P256, days=3650, passphrase=None, now=utcnow()
    )
    s.unlock(None)
    yield s
    s.close()


def ssl_config(pki: ServerPki, store: CaStore, crl_pem: bytes | None = None) -> PgSslConfig:
    return pki.config(client_ca_pem=crypto.cert_pem(store.ca_cert), crl_pem=crl_pem, acl="cert")


@pytest.fixture(scope="module")
def cluster(pg_cluster_factory: ClusterFactory, server_pki: ServerPki, store: CaStore) -> PgCluster:
    c = pg_cluster_factory("real-tls", ssl=ssl_config(server_pki, store))
    for role in ("alice", "bob"):
        c.create_role(role, f"{role}-unused-password")
    return c


def issue(store: CaStore, user: str, out: Path) -> tuple[int, Path, Path]:
    """`rdsssl cert issue` in-process: the serial and the client.crt / client.key written."""
    issued = store.issue(user=user, key_type=KeyType.EC_P256, days=30, now=utcnow())
    write_client_files(out, issued, store.ca_cert)
    return issued.record.serial, out / "client.crt", out / "client.key"


def connect(cluster: PgCluster, pki: ServerPki, user: str, crt: Path, key: Path) -> Any:
    """Everything explicit (no password: `cert` never asks), so ~/.postgresql cannot leak in."""
    return psycopg.connect(
        host=cluster.host, port=cluster.port, dbname="postgres", user=user,
        sslmode="verify-full", sslrootcert=str(pki.sslrootcert),
        sslcert=str(crt), sslkey=str(key), connect_timeout=10,
    )  # fmt: skip


def identity(conn: Any) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT current_user, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_rdsssl_certificate_works_until_revoked_and_crl_reloaded(
    cluster: PgCluster, server_pki: ServerPki, store: CaStore, tmp_path: Path
) -> None:
    alice_serial, alice_crt, alice_key = issue(store, "alice", tmp_path / "alice")
    _, bob_crt, bob_key = issue(store, "bob", tmp_path / "bob")
    assert alice_key.stat().st_mode & 0o777 == 0o600

    with connect(cluster, server_pki, "alice", alice_crt, alice_key) as conn:
        assert identity(conn) == ("alice", "/CN=alice")
    early = connect(cluster, server_pki, "alice", alice_crt, alice_key)

    try:
        store.revoke(serial=alice_serial, reason=RevocationReason.KEY_COMPROMISE, now=utcnow())
        crl = store.build_crl(now=utcnow())
        cluster.apply(ssl_config(server_pki, store, crl.pem), restart=False)

        with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
            connect(cluster, server_pki, "alice", alice_crt, alice_key)
        with connect(cluster, server_pki, "bob", bob_crt, bob_key) as conn:
            assert identity(conn) == ("bob", "/CN=bob")
        # A reload never re-checks open sessions (docs §3): only new connections are refused.
        assert identity(early) == ("alice", "/CN=alice")
    finally:
        early.close()


def test_certificate_for_another_user_is_refused_by_cert_rule(
    cluster: PgCluster, server_pki: ServerPki, store: CaStore, tmp_path: Path
) -> None:
    cluster.apply(ssl_config(server_pki, store), restart=False)
    _, crt, key = issue(store, "bob", tmp_path / "bob")
    with pytest.raises(psycopg.OperationalError, match="certificate authentication failed"):
        connect(cluster, server_pki, "alice", crt, key)
    with connect(cluster, server_pki, "bob", crt, key) as conn:
        assert identity(conn) == ("bob", "/CN=bob")
