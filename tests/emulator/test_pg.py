"""rdsssl.emulator.pg against real PostgreSQL: TLS, pg_hba per ACL, reload/restart, failures.

One module-scoped cluster is reconfigured test by test (each test applies the config it needs);
one more is started and stopped by the stop test. Error texts are matched on the stable
substrings listed in docs/postgres-client-cert-behaviour.md §9.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rdsssl.emulator import pg, pg_install, pg_os
from rdsssl.emulator.pg import (
    NullBackend,
    PgApplyError,
    PgCluster,
    PgNotFound,
    PgSslConfig,
    running_clusters,
)
from rdsssl.emulator.pg_hba import ACL_MODES, acl_line, render_hba
from rdsssl.emulator.pg_install import find_pg_bin
from rdsssl.emulator.pg_os import OWNER_FILE, free_port, pg_user
from tests.pgtls import (
    ClusterFactory,
    KeyPair,
    ServerPki,
    make_ca,
    make_crl,
    make_leaf,
    write_client_files,
)

NO_CERT = "/nonexistent/rdsssl-no-client.crt"  # libpq then sends no client certificate


# --------------------------------------------------------------------------- pure mapping


@pytest.mark.parametrize(
    ("acl", "line"),
    [
        (None, "host all all 0.0.0.0/0 scram-sha-256"),
        ("prefer", "host all all 0.0.0.0/0 scram-sha-256"),
        ("cert", "hostssl all all 0.0.0.0/0 cert"),
        ("verify-ca", "hostssl all all 0.0.0.0/0 scram-sha-256 clientcert=verify-ca"),
        ("verify-full", "hostssl all all 0.0.0.0/0 scram-sha-256 clientcert=verify-full"),
    ],
)
def test_acl_line_follows_the_measured_matrix(acl: str | None, line: str) -> None:
    assert acl_line(acl) == line
    assert acl_line(acl, database="replication") == line.replace(" all all ", " replication all ")


def test_render_hba_puts_admin_then_acl_then_replication() -> None:
    lines = render_hba("cert", None).splitlines()
    assert lines[:3] == [
        "local all all trust",
        "hostssl all all 0.0.0.0/0 cert",
        "host replication all 0.0.0.0/0 scram-sha-256",
    ]
    assert all(ln.startswith("#") for ln in lines[3:])
    assert render_hba(None, "verify-full").splitlines()[2] == (
        "hostssl replication all 0.0.0.0/0 scram-sha-256 clientcert=verify-full"
    )


@pytest.mark.parametrize("bad", ["perfer", "CERT", "", "cert clientcert=verify-ca"])
def test_unknown_acl_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown ACL mode") as info:
        acl_line(bad)
    assert all(mode in str(info.value) for mode in ACL_MODES)


def test_find_pg_bin_missing_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(pg_install, "PG_LIB_ROOT", tmp_path / "none")
    with pytest.raises(PgNotFound, match="apt-get install postgresql"):
        find_pg_bin()


def test_null_backend_records_and_never_fails(server_pki: ServerPki) -> None:
    backend = NullBackend(major_version=11)
    first, second = server_pki.config(), server_pki.config(acl="cert")
    backend.start(first)
    backend.apply(second, restart=False)
    backend.create_role("alice", "pw")
    backend.stop()
    assert backend.applied == [(first, True), (second, False)]
    assert backend.roles == {"alice": "pw"}
    assert (backend.major_version, backend.running) == (11, False)


# --------------------------------------------------------------------------- a real cluster


@pytest.fixture(scope="module")
def cluster(pg_cluster_factory: ClusterFactory, server_pki: ServerPki) -> PgCluster:
    c = pg_cluster_factory("test-pg", ssl=server_pki.config())
    c.create_role("alice", "alice-pw")
    return c


@pytest.fixture(scope="module")
def client_ca() -> KeyPair:
    return make_ca("test-client-ca")


@pytest.fixture(scope="module")
def certs(client_ca: KeyPair, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """alice's and a second alice certificate (to revoke), as libpq files."""
    d = tmp_path_factory.mktemp("client-certs")
    alice, alice_rev = make_leaf(client_ca, "alice"), make_leaf(client_ca, "alice")
    return {
        "alice": write_client_files(d, "alice", alice),
        "alice_rev": write_client_files(d, "alice_rev", alice_rev),
        "alice_rev_cert": alice_rev.cert,
    }


def connect(
    cluster: PgCluster,
    pki: ServerPki,
    user: str = "alice",
    *,
    files: tuple[Path, Path] | None = None,
    **kwargs: Any,
) -> psycopg.Connection[Any]:
    """A TCP connection with everything explicit, so ~/.postgresql never leaks in."""
    crt, key = files if files is not None else (Path(NO_CERT), Path(NO_CERT))
    params: dict[str, Any] = {
        "host": cluster.host, "port": cluster.port, "dbname": "postgres", "user": user,
        "sslmode": "verify-full", "sslrootcert": str(pki.sslrootcert),
        "sslcert": str(crt), "sslkey": str(key), "connect_timeout": 10,
    }  # fmt: skip
    params.update(kwargs)
    return psycopg.connect(**params)


def whoami(conn: psycopg.Connection[Any]) -> tuple[Any, ...] | None:
    return conn.execute(
        "SELECT current_user, ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    ).fetchone()


def test_server_cert_verifies_and_password_works(cluster: PgCluster, server_pki: ServerPki) -> None:
    cluster.apply(server_pki.config(), restart=False)
    with connect(cluster, server_pki, password="alice-pw") as conn:
        assert whoami(conn) == ("alice", True, None)
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000  # type: ignore[index]
    assert major == cluster.major_version
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(cluster, server_pki, password="wrong")


def test_server_cert_is_really_checked(
    cluster: PgCluster, server_pki: ServerPki, tmp_path: Path
) -> None:
    other_root = tmp_path / "other-root.crt"
    other_root.write_bytes(make_ca("not-the-server-ca").cert_pem)
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        connect(cluster, server_pki, password="alice-pw", sslrootcert=str(other_root))


def test_cert_acl_needs_no_password_and_refuses_non_ssl(
    cluster: PgCluster, server_pki: ServerPki, client_ca: KeyPair, certs: dict[str, Any]
) -> None:
    cluster.apply(server_pki.config(client_ca_pem=client_ca.cert_pem, acl="cert"), restart=False)
    with connect(cluster, server_pki, files=certs["alice"]) as conn:
        assert whoami(conn) == ("alice", True, "/CN=alice")
    with pytest.raises(psycopg.OperationalError) as info:
        connect(cluster, server_pki, password="alice-pw", sslmode="disable")
    assert "no pg_hba.conf entry" in str(info.value)
    assert "no encryption" in str(info.value)
    with pytest.raises(psycopg.OperationalError, match="requires a valid client certificate"):
        connect(cluster, server_pki, password="alice-pw")


def test_crl_on_reload_refuses_the_revoked_certificate(
    cluster: PgCluster, server_pki: ServerPki, client_ca: KeyPair, certs: dict[str, Any]
) -> None:
    crl = make_crl(client_ca, [certs["alice_rev_cert"]])
    config = server_pki.config(client_ca_pem=client_ca.cert_pem, crl_pem=crl, acl="cert")
    cluster.apply(config, restart=False)
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        connect(cluster, server_pki, files=certs["alice_rev"])
    with connect(cluster, server_pki, files=certs["alice"]) as conn:
        assert whoami(conn) == ("alice", True, "/CN=alice")


def test_restart_drops_open_sessions(
    cluster: PgCluster, server_pki: ServerPki, client_ca: KeyPair, certs: dict[str, Any]
) -> None:
    config = server_pki.config(client_ca_pem=client_ca.cert_pem, acl="cert")
    cluster.apply(config, restart=False)
    old = connect(cluster, server_pki, files=certs["alice"])
    try:
        cluster.apply(config, restart=True)
        with pytest.raises(psycopg.OperationalError):
            old.execute("SELECT 1")
    finally:
        old.close()
    with connect(cluster, server_pki, files=certs["alice"]) as conn:
        assert whoami(conn) == ("alice", True, "/CN=alice")


@pytest.mark.parametrize("restart", [False, True], ids=["reload", "restart"])
def test_garbage_crl_is_refused_and_the_old_config_keeps_running(
    cluster: PgCluster,
    server_pki: ServerPki,
    client_ca: KeyPair,
    certs: dict[str, Any],
    restart: bool,
) -> None:
    good = server_pki.config(client_ca_pem=client_ca.cert_pem, acl="cert")
    cluster.apply(good, restart=False)
    bad = server_pki.config(client_ca_pem=client_ca.cert_pem, acl="cert", crl_pem=b"garbage\n")
    with pytest.raises(PgApplyError) as info:
        cluster.apply(bad, restart=restart)
    assert "could not load SSL certificate revocation list" in info.value.reason
    if not restart:
        assert "SSL configuration was not reloaded" in info.value.reason
    assert cluster.running
    assert not (cluster.tls_dir / "client-crl.pem").exists()  # the previous files are back
    with connect(cluster, server_pki, files=certs["alice"]) as conn:
        assert whoami(conn) == ("alice", True, "/CN=alice")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("hostssl all all 0.0.0.0/0 cert clientcert=verify-ca", "clientcert"),
        ("hostssl all all 0.0.0.0/0 scram-sha-256 clientcert=no-verify", "invalid line"),
    ],
)
def test_invalid_hba_is_refused_before_any_reload(
    cluster: PgCluster,
    server_pki: ServerPki,
    client_ca: KeyPair,
    certs: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    line: str,
    expected: str,
) -> None:
    good = server_pki.config(client_ca_pem=client_ca.cert_pem, acl="cert")
    cluster.apply(good, restart=False)
    before = (cluster.data_dir / "pg_hba.conf").read_text()
    monkeypatch.setattr(pg, "render_hba", lambda acl, rep: f"local all all trust\n{line}\n")
    with pytest.raises(PgApplyError, match=r"pg_hba\.conf line 2") as info:
        cluster.apply(server_pki.config(), restart=False)
    assert expected in info.value.reason
    assert (cluster.data_dir / "pg_hba.conf").read_text() == before
    with connect(cluster, server_pki, files=certs["alice"]) as conn:  # `cert` still in force
        assert whoami(conn) == ("alice", True, "/CN=alice")


def test_create_role_quotes_names_updates_passwords_and_logs_no_secret(
    cluster: PgCluster, server_pki: ServerPki
) -> None:
    cluster.apply(server_pki.config(), restart=False)
    name = 'o\'brien "Q"'
    cluster.create_role(name, "First-Secret-1")
    cluster.create_role(name, "Second-Secret-2'")  # exists: ALTER ROLE
    with connect(cluster, server_pki, name, password="Second-Secret-2'") as conn:
        assert whoami(conn) == (name, True, None)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(cluster, server_pki, name, password="First-Secret-1")
    log = cluster.log_file.read_text()
    assert "First-Secret-1" not in log
    assert "Second-Secret-2" not in log


def test_files_belong_to_the_postgres_os_user(cluster: PgCluster) -> None:
    user = pg_user()
    uid = user.uid if user is not None else os.geteuid()
    key = cluster.tls_dir / "server.key"
    assert (key.stat().st_uid, key.stat().st_mode & 0o777) == (uid, 0o600)
    assert (cluster.data_dir.stat().st_uid, cluster.data_dir.stat().st_mode & 0o777) == (
        uid,
        0o700,
    )
    include = cluster.data_dir / "rdsssl-emulator.conf"
    assert include.stat().st_uid == uid
    assert "include 'rdsssl-emulator.conf'" in (cluster.data_dir / "postgresql.conf").read_text()


def _alive(pid: int) -> bool:
    """A zombie counts as gone: whether PID 1 reaps it promptly is not PostgreSQL's doing."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _gone(pid: int, wait: float = 10.0) -> bool:
    deadline = time.monotonic() + wait
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_ssl_off_then_stop_leaves_no_postmaster(
    pg_bin: Path,
    server_pki: ServerPki,
    client_ca: KeyPair,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Also: rooted in pytest's tmp_path (which the postgres user cannot traverse), and given
    a port that is taken by the time it starts, so start() moves to another one."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    monkeypatch.setattr(pg, "free_port", lambda: next(ports, None) or free_port())
    c = PgCluster(tmp_path, name="stop-me", pg_bin=pg_bin)
    try:
        assert c.port == taken.getsockname()[1]
        c.start(server_pki.config(ssl_enabled=False))
        assert c.port != taken.getsockname()[1]
        assert c in running_clusters()
        c.create_role("alice", "alice-pw")
        with pytest.raises(psycopg.OperationalError, match="server does not support SSL"):
            connect(c, server_pki, password="alice-pw")
        with connect(c, server_pki, password="alice-pw", sslmode="disable") as conn:
            assert whoami(conn) == ("alice", False, None)
        # hostssl rows while ssl=off load with a warning, which must not count as invalid
        ca_only = server_pki.config(ssl_enabled=False, client_ca_pem=client_ca.cert_pem)
        c.apply(dataclasses.replace(ca_only, acl="cert"), restart=False)
        c.apply(dataclasses.replace(ca_only, acl="verify-full"), restart=False)
        pid = int((c.data_dir / "postmaster.pid").read_text().split()[0])
        assert _alive(pid)
        if pg_user() is not None:  # root: tmp_path is 0700, so the cluster was relocated
            assert c.dir is not None and tmp_path not in c.dir.parents
    finally:
        c.stop()
        taken.close()
    assert not (c.data_dir / "postmaster.pid").exists()
    assert _gone(pid)
    assert c not in running_clusters()
    assert not c.running
    c.stop()  # idempotent, no error


def test_sweep_removes_only_dirs_of_dead_owners(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    for name, owner in (("rdsssl-pg-dead", dead.stdout.strip()), ("rdsssl-pg-me", os.getpid())):
        (tmp_path / name / "x" / "data").mkdir(parents=True)
        (tmp_path / name / OWNER_FILE).write_text(f"{owner}\n")
        (tmp_path / name / "x" / "data" / "postmaster.pid").write_text("999999999\n")
    (tmp_path / "rdsssl-pg-unmarked").mkdir()
    monkeypatch.setattr(pg_os, "scratch_parent", lambda: tmp_path)
    monkeypatch.setattr(pg_os, "_SWEPT", False)
    pg_os.sweep_stale()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rdsssl-pg-me", "rdsssl-pg-unmarked"]


def test_postgresql_runs_without_the_callers_environment(
    pg_cluster_factory: ClusterFactory, server_pki: ServerPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator runs inside shells and tests holding cloud keys and CA passphrases; the
    postmaster (and every backend it forks) must not carry them in /proc/PID/environ."""
    secrets = {
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "pg-env-test-ak-secret",
        "RDSSSL_CA_PASSPHRASE": "pg-env-test-passphrase",
        "PGPASSWORD": "pg-env-test-pgpassword",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PGDATA", "/nonexistent/pg-env-test-pgdata")  # must not point it away
    c = pg_cluster_factory("env", ssl=server_pki.config())
    try:
        assert c.data_dir is not None
        pid = int((c.data_dir / "postmaster.pid").read_text().split()[0])
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        env = dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        for name, value in secrets.items():
            assert name.encode() not in env and value.encode() not in raw, name
        assert env[b"LC_ALL"] == b"C" and env[b"PATH"] == os.environ["PATH"].encode()
        user = pg_user()
        home = pwd.getpwuid(os.geteuid() if user is None else user.uid).pw_dir
        assert env[b"HOME"] == home.encode()
        assert env[b"PGDATA"] == str(c.data_dir).encode()  # pg_ctl's own, from -D
        # pg_ctl adds PGDATA and PG_GRANDPARENT_PID, the sh it starts the server with PWD,
        # Debian's build PGLOCALEDIR and PGSYSCONFDIR
        assert set(env) <= {b"PATH", b"LANG", b"LC_ALL", b"HOME", b"TZ", b"PGDATA", b"PWD",
                            b"PG_GRANDPARENT_PID", b"PGLOCALEDIR", b"PGSYSCONFDIR"}  # fmt: skip
    finally:
        c.stop()


def test_apply_on_a_stopped_cluster_is_an_error(pg_bin: Path, server_pki: ServerPki) -> None:
    c = PgCluster(Path("/nonexistent-never-created"), pg_bin=pg_bin)
    with pytest.raises(pg.PgError, match="not running"):
        c.apply(server_pki.config(), restart=False)
    c.stop()  # never started: still fine
    assert isinstance(c.major_version, int)
    assert c.port > 0


def test_ssl_config_is_frozen_and_hides_the_key(server_pki: ServerPki) -> None:
    config: PgSslConfig = server_pki.config()
    with pytest.raises(AttributeError):
        config.acl = "cert"  # type: ignore[misc]
    assert "server_key_pem" not in repr(config)
