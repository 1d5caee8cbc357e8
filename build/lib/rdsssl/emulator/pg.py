"""Real PostgreSQL clusters behind the RDS emulator: initdb, pg_ctl, TLS files and pg_hba.

Every emulated instance is a real server so that tests and runbook rehearsals meet real TLS,
real `pg_hba` rules and real failure modes (docs/postgres-client-cert-behaviour.md). This is the
only emulator module that runs PostgreSQL servers or imports psycopg (`pg_install` finds the
binaries and makes the initdb template, `pg_log` reads a server's log); it imports nothing from
the client side of rdsssl.

Layout of one cluster (`PgCluster.dir`): `data/` (0700; postgresql.conf includes
`rdsssl-emulator.conf`, our whole configuration), `tls/` (server cert/key, client CA, CRL),
`s/` (the Unix socket the emulator administers through) and `postgresql.log`. As root, all of it
belongs to an unprivileged OS user, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from rdsssl.emulator.pg_backend import (
    NullBackend,
    PgApplyError,
    PgBackend,
    PgError,
    PgNotFound,
    PgSslConfig,
)
from rdsssl.emulator.pg_hba import render_hba
from rdsssl.emulator.pg_install import INCLUDE_FILE, find_pg_bin, initdb_template, major_version
from rdsssl.emulator.pg_log import RELOAD_FAILURES, failure_reason, log_since, log_size
from rdsssl.emulator.pg_os import (
    OsUser,
    free_port,
    mkdir_owned,
    pg_env,
    pg_user,
    process_base,
    remove_process_base,
    run_as,
    tail,
    traversable,
    write_atomic,
)

__all__ = [
    "NullBackend",
    "PgApplyError",
    "PgBackend",
    "PgCluster",
    "PgError",
    "PgNotFound",
    "PgSslConfig",
    "running_clusters",
    "stop_all",
]

RELOAD_TIMEOUT = 10.0
_PG_CTL_WAIT = "60"  # seconds pg_ctl waits for start/stop
# Reported by pg_hba_file_rules for hostssl rows while ssl=off; the rows still load.
_HBA_SSL_OFF = "hostssl record cannot match because SSL is disabled"


_LOCK = threading.RLock()  # guards _REGISTRY (re-entrant: stop_all may run in a signal handler)
_REGISTRY: set[PgCluster] = set()
_OWNER_PID = os.getpid()


def running_clusters() -> list[PgCluster]:
    """Every cluster this process started and has not stopped yet."""
    with _LOCK:
        return list(_REGISTRY)


def stop_all() -> None:
    """Stop every cluster this process started (for signal handlers; also run at exit)."""
    for cluster in running_clusters():
        cluster.stop()


def _at_exit() -> None:
    if os.getpid() != _OWNER_PID:  # a forked child must not stop its parent's clusters
        return
    stop_all()
    remove_process_base()


atexit.register(_at_exit)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _tls_cap(version: str | None, major_version: int) -> str | None:
    """The ssl_max_protocol_version line's value, or None for PostgreSQL's default.

    The setting exists from PostgreSQL 12; older servers keep OpenSSL's maximum, so a cap
    asked of them is a PgError rather than silently not applied.
    """
    if version is None:
        return None
    if major_version < 12:
        raise PgError(
            f"capping TLS at {version} needs PostgreSQL 12 or later (ssl_max_protocol_version); "
            f"this server is {major_version}: use a newer server or no TLS cap"
        )
    return _quote(version)


# --------------------------------------------------------------------------- the cluster


class PgCluster:
    """One real PostgreSQL server on 127.0.0.1, configured from a `PgSslConfig`.

    `root` may be any directory: when the PostgreSQL OS user cannot traverse it (pytest's
    tmp_path as root) or it is too deep for a Unix socket path, the cluster lives in a
    per-process directory (`pg_os.process_base`, /dev/shm or /tmp) instead; `dir` says where.
    `port=None` picks a free port (and another one if it is taken by the time the server
    binds). Thread-safe; every started cluster is stopped at exit.
    """

    def __init__(
        self, root: Path, *, name: str = "pg", port: int | None = None, pg_bin: Path | None = None
    ) -> None:
        self.host = "127.0.0.1"
        self.name = name
        self.pg_bin = pg_bin if pg_bin is not None else find_pg_bin()
        self.major_version = major_version(self.pg_bin)
        self._auto_port = port is None
        self.port = free_port() if port is None else port
        self._root = Path(os.path.abspath(root))
        self._user: OsUser | None = None
        self.dir: Path | None = None
        self._files: dict[Path, bytes | None] = {}
        self._running = False
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"PgCluster({self.name!r}, {self.host}:{self.port}, {state}, dir={self.dir})"

    # -- paths (valid once start() has prepared the directory)
    @property
    def data_dir(self) -> Path:
        return self._dir / "data"

    @property
    def tls_dir(self) -> Path:
        return self._dir / "tls"

    @property
    def socket_dir(self) -> Path:
        return self._dir / "s"

    @property
    def log_file(self) -> Path:
        return self._dir / "postgresql.log"

    @property
    def running(self) -> bool:
        return self._running

    @property
    def _dir(self) -> Path:
        if self.dir is None:
            raise PgError(f"cluster {self.name!r} has not been started")
        return self.dir

    # -- the PgBackend protocol
    def start(self, ssl: PgSslConfig) -> None:
        """initdb (from the per-process template), write the config, start the server.

        A config PostgreSQL refuses raises PgApplyError with the server's FATAL line.
        """
        with self._lock:
            if self._running:
                raise PgError(f"cluster {self.name!r} is already running")
            try:
                self._prepare_dirs()
            except (OSError, subprocess.SubprocessError) as exc:
                msg = f"cannot prepare cluster {self.name!r} under {self._root}: {exc}"
                raise PgError(msg) from exc
            if self._postmaster_alive():  # an orphan from a crashed run of ours: same data dir
                self._pg_ctl("stop", "-m", "immediate")
            if not (self.data_dir / "PG_VERSION").is_file():
                self._copy_template()
            for attempt in range(5):
                files = self._render(ssl)
                self._write_files(files)
                try:
                    self._start_server()
                except PgApplyError as exc:
                    if self._auto_port and "could not bind" in exc.reason and attempt < 4:
                        self.port = free_port()
                        continue
                    raise
                break
            self._files = files
            self._running = True
            with _LOCK:
                _REGISTRY.add(self)

    def apply(self, ssl: PgSslConfig, *, restart: bool) -> None:
        """Write the new files, pre-validate, then reload or restart (dropping sessions).

        On failure the previous files are restored and put back into force, and
        PgApplyError carries PostgreSQL's reason. If even that fails, PgError: server down.
        """
        with self._lock:
            if not self._running:
                raise PgError(f"cluster {self.name!r} is not running; start() it first")
            old, new = self._files, self._render(ssl)
            self._write_files(new)
            try:
                self._prevalidate()
            except PgApplyError:
                self._write_files(old)  # nothing was loaded yet
                raise
            try:
                if restart:
                    self._restart()
                else:
                    self._reload()
            except PgApplyError as exc:
                self._write_files(old)
                try:
                    if restart:
                        self._start_server()
                    else:
                        self._reload()
                except PgError as again:
                    self._running = self._postmaster_alive()
                    raise PgError(
                        f"{exc.reason}; restoring the previous configuration failed too: {again}"
                    ) from exc
                raise
            self._files = new

    def create_role(self, name: str, password: str) -> None:
        """CREATE ROLE (or ALTER ROLE when it exists) name LOGIN PASSWORD.

        The password is hashed to a SCRAM verifier by libpq on our side, so the plaintext never
        reaches the server, its log or pg_stat_activity.
        """
        with self._lock:
            try:
                with self._admin() as conn:
                    verifier = conn.pgconn.encrypt_password(
                        password.encode(), name.encode(), b"scram-sha-256"
                    ).decode()
                    exists = conn.execute(
                        "SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)
                    ).fetchone()
                    verb = "ALTER" if exists else "CREATE"
                    conn.execute(
                        sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD {}").format(
                            sql.Identifier(name), sql.Literal(verifier)
                        )
                    )
            except psycopg.Error as exc:
                raise PgError(f"could not create role {name!r}: {exc}") from exc

    def stop(self) -> None:
        """Stop the server (fast, then immediate); idempotent and never raises."""
        with self._lock:
            try:
                if self.dir is not None and self._postmaster_alive():
                    self._pg_ctl("stop", "-m", "fast", "-t", "20")
                    if self._postmaster_alive():
                        self._pg_ctl("stop", "-m", "immediate", "-t", "20")
            except (OSError, subprocess.SubprocessError):
                pass
            finally:
                self._running = False
                with _LOCK:
                    _REGISTRY.discard(self)

    # -- internals
    def _prepare_dirs(self) -> None:
        self._user = user = pg_user()
        if self.dir is None:
            self._root.mkdir(parents=True, exist_ok=True)
            if traversable(self._root, user):
                self.dir = self._root / self.name
            else:
                self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=process_base(user)))
            if len(str(self.dir / "s" / ".s.PGSQL.65535.lock")) > 100:  # sun_path is ~107 bytes
                self.dir = Path(tempfile.mkdtemp(prefix="c-", dir=process_base(user)))
        mkdir_owned(self._dir, 0o711, user)
        mkdir_owned(self.tls_dir, 0o700, user)
        mkdir_owned(self.socket_dir, 0o755, user)

    def _copy_template(self) -> None:
        """A fresh data directory: `cp -a` keeps the PostgreSQL user's ownership and modes."""
        shutil.rmtree(self.data_dir, ignore_errors=True)
        template = initdb_template(self.pg_bin, self._user)
        r = subprocess.run(
            ["cp", "-a", str(template), str(self.data_dir)],
            env=pg_env(None),
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise PgError(f"could not copy {template} to {self.data_dir}: {tail(r)}")

    def _render(self, ssl: PgSslConfig) -> dict[Path, bytes | None]:
        """Every file we manage -> its content (None: must not exist)."""
        tls = self.tls_dir
        conf = {
            "listen_addresses": _quote(self.host),
            "port": str(self.port),
            "unix_socket_directories": _quote(str(self.socket_dir)),
            "ssl": "on" if ssl.ssl_enabled else "off",
            "ssl_cert_file": _quote(str(tls / "server.crt")),
            "ssl_key_file": _quote(str(tls / "server.key")),
            "ssl_ca_file": _quote(str(tls / "client-ca.pem")) if ssl.client_ca_pem else None,
            "ssl_crl_file": _quote(str(tls / "client-crl.pem")) if ssl.crl_pem else None,
            "ssl_max_protocol_version": _tls_cap(ssl.tls_max_version, self.major_version),
            "password_encryption": "'scram-sha-256'",
            "log_connections": "on",
            "log_line_prefix": "'%m [%p] '",
            "logging_collector": "off",
            "fsync": "off",
            "shared_buffers": "'16MB'",
            "max_connections": "20",
            "max_wal_senders": "4",
        }
        text = "# Written by the rdsssl emulator; rewritten on every change.\n" + "".join(
            f"{k} = {v}\n" for k, v in conf.items() if v is not None
        )
        return {
            tls / "server.crt": ssl.server_cert_pem,
            tls / "server.key": ssl.server_key_pem,
            tls / "client-ca.pem": ssl.client_ca_pem or None,
            tls / "client-crl.pem": ssl.crl_pem or None,
            self.data_dir / INCLUDE_FILE: text.encode(),
            self.data_dir / "pg_hba.conf": render_hba(ssl.acl, ssl.replication_acl).encode(),
        }

    def _write_files(self, files: dict[Path, bytes | None]) -> None:
        for path, data in files.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                mode = 0o600 if path.name.endswith((".key", ".conf")) else 0o644
                write_atomic(path, data, mode=mode, user=self._user)

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.pg_bin / "pg_ctl"), "-D", str(self.data_dir), "-w", *args]
        return run_as(cmd, user=self._user, cwd=self._dir)

    def _postmaster_alive(self) -> bool:
        return self._pg_ctl("status").returncode == 0

    def _start_server(self) -> None:
        offset = log_size(self.log_file)
        r = self._pg_ctl("-l", str(self.log_file), "-t", _PG_CTL_WAIT, "start")
        if r.returncode != 0:
            if self._postmaster_alive():  # timed out rather than failed: do not leave it
                self._pg_ctl("stop", "-m", "immediate")
            raise PgApplyError(failure_reason(self.log_file, offset, r))

    def _restart(self) -> None:
        offset = log_size(self.log_file)
        r = self._pg_ctl("-l", str(self.log_file), "-t", _PG_CTL_WAIT, "-m", "fast", "restart")
        if r.returncode != 0:
            if self._postmaster_alive():
                self._pg_ctl("stop", "-m", "immediate")
            raise PgApplyError(failure_reason(self.log_file, offset, r))

    def _admin(self) -> psycopg.Connection[tuple[Any, ...]]:
        """Superuser connection over the private Unix socket (`local all all trust`)."""
        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres",
            sslmode="disable", autocommit=True, connect_timeout=10,
            application_name="rdsssl-emulator",
        )  # fmt: skip

    def _prevalidate(self) -> None:
        """Parse the files on disk the way a reload would, before anything is reloaded.

        pg_hba_file_rules gives `type` NULL and no error for `invalid value for clientcert`,
        hence the NULL test (docs §3.1). SSL files can only be judged by the reload itself.
        """
        try:
            with self._admin() as conn:
                hba = conn.execute(
                    "SELECT line_number, error FROM pg_hba_file_rules"
                    " WHERE type IS NULL OR error IS NOT NULL ORDER BY line_number"
                ).fetchall()
                settings = conn.execute(
                    "SELECT sourcefile, sourceline, name, error FROM pg_file_settings"
                    " WHERE error IS NOT NULL"
                ).fetchall()
        except psycopg.Error as exc:
            raise PgApplyError(f"could not pre-validate the configuration: {exc}") from exc
        problems = [
            f"pg_hba.conf line {line}: {error or 'invalid line'}"
            for line, error in hba
            if error != _HBA_SSL_OFF
        ] + [f"{Path(src).name} line {n} ({name}): {err}" for src, n, name, err in settings]
        if problems:
            raise PgApplyError("; ".join(problems))

    def _conf_load_time(self) -> Any:
        with self._admin() as conn:
            row = conn.execute("SELECT pg_conf_load_time()").fetchone()
        return row[0] if row else None

    def _reload(self) -> None:
        """SIGHUP, wait until it was processed, then read what the server said about it.

        A reload is asynchronous and a failed one is invisible to clients (docs §3.1). A new
        backend inherits the postmaster's pg_conf_load_time, which the postmaster sets while
        handling the SIGHUP, before it can fork that backend, so once a new connection sees a
        newer time the whole reload, failure messages included, is in the log.
        """
        try:
            before = self._conf_load_time()
            offset = log_size(self.log_file)
            with self._admin() as conn:
                conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + RELOAD_TIMEOUT
            while self._conf_load_time() == before:
                if time.monotonic() > deadline:
                    raise PgApplyError(f"the reload was not confirmed within {RELOAD_TIMEOUT} s")
                time.sleep(0.01)
        except psycopg.Error as exc:
            raise PgApplyError(f"reload failed: {exc}") from exc
        lines = log_since(self.log_file, offset)
        if any(marker in ln for ln in lines for marker in RELOAD_FAILURES):
            raise PgApplyError("; ".join(lines))


if TYPE_CHECKING:  # mypy proves both backends satisfy the protocol the emulator state uses
    _BACKENDS: tuple[type[PgBackend], ...] = (PgCluster, NullBackend)
