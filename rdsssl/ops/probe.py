"""Real connection checks: connect to PostgreSQL with a client certificate and say what happened.

A probe is the lockout guard's evidence and the demo's proof, so it must tell apart the failures
an operator fixes differently. libpq connection errors carry no SQLSTATE and their wording depends
on the OpenSSL version, so the classification matches the stable substrings measured in
`docs/postgres-client-cert-behaviour.md` §9, never whole messages. `probe_instance` finds the
instance's endpoint and server CA through the API, so a probe needs nothing but the instance id.
"""

from __future__ import annotations

import enum
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rdsssl.errors import ConfigError

if TYPE_CHECKING:  # the Protocol only: importing rdsssl.rds.api here would slow `import rdsssl`
    from rdsssl.rds.protocol import RdsApi

T = TypeVar("T")


class ProbeOutcome(str, enum.Enum):
    """What a connection attempt showed, phrased as the fix an operator would look for."""

    OK = "ok"
    REVOKED = "revoked"  # the certificate is on the instance's CRL
    UNKNOWN_CA = "unknown-ca"  # untrusted CA, or no CRL for this CA on the instance
    EXPIRED = "expired"  # the client certificate OR the instance's CRL has expired
    NOT_YET_VALID = "not-yet-valid"  # certificate or CRL not valid yet (clock skew?)
    CN_MISMATCH = "cn-mismatch"  # `cert` ACL: CN differs from the database user
    AUTH_FAILED = "auth-failed"  # wrong password, or verify-full with a CN mismatch
    NO_PASSWORD = "no-password"  # the ACL wants a password and none was given
    NO_CERTIFICATE = "no-certificate"  # the ACL wants a client certificate
    NO_ENCRYPTION = "no-encryption"  # a non-SSL connection was refused
    KEY_PERMISSIONS = "key-permissions"  # libpq refuses a key readable by others
    KEY_UNUSABLE = "key-unusable"  # TLS 1.2: an ECDSA client key off the server's curve
    SERVER_UNTRUSTED = "server-untrusted"  # the server certificate did not verify
    UNREACHABLE = "unreachable"  # nothing answered at host:port
    ERROR = "error"  # anything else; see detail


# Ordered: the first substring found wins. Lower-case, matched against the lower-cased message.
_SUBSTRINGS: tuple[tuple[str, ProbeOutcome], ...] = (
    ("certificate revoked", ProbeOutcome.REVOKED),
    ("alert certificate expired", ProbeOutcome.EXPIRED),
    ("alert unknown ca", ProbeOutcome.UNKNOWN_CA),
    ("alert bad certificate", ProbeOutcome.NOT_YET_VALID),
    ("has group or world access", ProbeOutcome.KEY_PERMISSIONS),
    ("alert illegal parameter", ProbeOutcome.KEY_UNUSABLE),
    ("connection requires a valid client certificate", ProbeOutcome.NO_CERTIFICATE),
    ("certificate authentication failed for user", ProbeOutcome.CN_MISMATCH),
    ("password authentication failed for user", ProbeOutcome.AUTH_FAILED),
    ("no password supplied", ProbeOutcome.NO_PASSWORD),
    ("no encryption", ProbeOutcome.NO_ENCRYPTION),
    ("server does not support ssl", ProbeOutcome.NO_ENCRYPTION),
    ("certificate verify failed", ProbeOutcome.SERVER_UNTRUSTED),
    ("does not match host name", ProbeOutcome.SERVER_UNTRUSTED),
    ("connection refused", ProbeOutcome.UNREACHABLE),
    ("could not translate host name", ProbeOutcome.UNREACHABLE),
    ("timeout expired", ProbeOutcome.UNREACHABLE),
)

_HINTS: dict[ProbeOutcome, str] = {
    ProbeOutcome.REVOKED: "the certificate is revoked; issue a new one (rdsssl cert issue)",
    ProbeOutcome.UNKNOWN_CA: (
        "the instance does not trust this certificate's CA, or its CRL does not cover that CA"
    ),
    ProbeOutcome.EXPIRED: (
        "the client certificate or the instance's CRL has expired (an expired CRL locks out "
        "every certificate of its CA): check `rdsssl instance show` and `rdsssl crl refresh`"
    ),
    ProbeOutcome.NOT_YET_VALID: "a certificate or CRL is not valid yet; check the clocks",
    ProbeOutcome.CN_MISMATCH: "the certificate's CN is not the database user name",
    ProbeOutcome.AUTH_FAILED: "wrong password, or (verify-full) the CN is not the user name",
    ProbeOutcome.NO_PASSWORD: "this ACL needs a password: pass --password-env VAR",
    ProbeOutcome.NO_CERTIFICATE: "this ACL needs a client certificate",
    ProbeOutcome.NO_ENCRYPTION: "non-SSL connections are refused (or SSL is off on the server)",
    ProbeOutcome.KEY_PERMISSIONS: "chmod 600 the client key file",
    ProbeOutcome.KEY_UNUSABLE: (
        "the server cannot use this client key: over TLS 1.2 an ECDSA key must be on the "
        "server's curve (P-256); re-issue it with --key-type ec-p256"
    ),
    ProbeOutcome.SERVER_UNTRUSTED: (
        "the server certificate did not verify against --root-cert (`rdsssl instance server-ca`)"
    ),
    ProbeOutcome.UNREACHABLE: "nothing answered: check the host, port and network access",
}


# libpq skips a client certificate whose file does not exist; /dev/null would be read and fail.
_NO_FILE = "/nonexistent/rdsssl-no-client-certificate"


@dataclass(frozen=True)
class ProbeTarget:
    """Where to connect. `hostaddr` skips DNS while `host` is still checked against the server
    certificate (verify-full), as when an endpoint name resolves only inside a VPC."""

    host: str
    port: int
    hostaddr: str | None = None
    dbname: str = "postgres"


@dataclass(frozen=True)
class ProbeResult:
    """One connection attempt. `detail` is the server's or libpq's message: never a secret."""

    outcome: ProbeOutcome
    target: ProbeTarget
    user: str
    detail: str
    elapsed: float
    sslmode: str

    @property
    def ok(self) -> bool:
        """True when the connection was established and a query ran."""
        return self.outcome is ProbeOutcome.OK

    @property
    def hint(self) -> str:
        """What to do about this outcome, for people."""
        return _HINTS.get(self.outcome, "")


def classify(message: str) -> ProbeOutcome:
    """Map a libpq connection error to an outcome by its stable substrings."""
    lowered = message.lower()
    for needle, outcome in _SUBSTRINGS:
        if needle in lowered:
            return outcome
    return ProbeOutcome.ERROR


def _key_permission_problem(key: Path) -> str | None:
    """libpq refuses group/world-readable keys; say so before connecting, with the fix."""
    try:
        st = key.stat()
    except OSError as exc:
        return f"cannot read client key {key}: {exc.strerror}"
    mode = stat.S_IMODE(st.st_mode)
    limit = 0o640 if st.st_uid == 0 else 0o600  # libpq's own rule
    if mode & ~limit:
        return (
            f'private key file "{key}" has group or world access (mode {mode:04o}); '
            "run chmod 600 on it"
        )
    return None


def probe(
    target: ProbeTarget,
    *,
    user: str,
    cert: Path | None = None,
    key: Path | None = None,
    root_cert: Path | None = None,
    password: str | None = None,
    sslmode: str = "verify-full",
    timeout: float = 10.0,
) -> ProbeResult:
    """Connect once as `user`, run `SELECT 1`, and classify the result.

    Certificate, key and root certificate are always passed explicitly (a missing one as the
    libpq value that disables it) so `~/.postgresql/` defaults never change the answer.
    `sslmode="disable"` probes what a client without SSL gets.
    """

    def select_one(conn: Any) -> None:
        conn.execute("SELECT 1")

    result, _ = _session(
        target, select_one, user=user, cert=cert, key=key, root_cert=root_cert,
        password=password, sslmode=sslmode, timeout=timeout,
    )  # fmt: skip
    return result


@dataclass(frozen=True)
class ServerFacts:
    """What one probe session learned about the server (`server_facts`)."""

    started: datetime  # pg_postmaster_start_time(): it moves only when PostgreSQL restarts
    tls_version: str | None  # the negotiated protocol, e.g. "TLSv1.2"; None without SSL


# pg_stat_ssl shows this very session's handshake; psycopg 3.3 has no PQsslAttribute wrapper.
_FACTS_SQL = (
    "SELECT pg_postmaster_start_time(), "
    "(SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid())"
)


def server_facts(
    target: ProbeTarget,
    *,
    user: str,
    cert: Path | None = None,
    key: Path | None = None,
    root_cert: Path | None = None,
    password: str | None = None,
    timeout: float = 10.0,
) -> tuple[ProbeResult, ServerFacts | None]:
    """A verify-full probe that also reads when PostgreSQL last started and the negotiated TLS
    version (`rdsssl service-profile record`: does an ACL change restart the server?). The
    facts are None when the connection failed; the result says why."""

    def read(conn: Any) -> ServerFacts:
        row = conn.execute(_FACTS_SQL).fetchone()
        protocol = getattr(conn.pgconn, "ssl_attribute", None)  # newer psycopg: the client's view
        version = protocol(b"protocol") if protocol is not None else None
        if isinstance(version, bytes):
            return ServerFacts(row[0], version.decode())
        return ServerFacts(row[0], None if row[1] is None else str(row[1]))

    return _session(
        target, read, user=user, cert=cert, key=key, root_cert=root_cert, password=password,
        sslmode="verify-full", timeout=timeout,
    )  # fmt: skip


def _session(
    target: ProbeTarget,
    work: Callable[[Any], T],
    *,
    user: str,
    cert: Path | None,
    key: Path | None,
    root_cert: Path | None,
    password: str | None,
    sslmode: str,
    timeout: float,
) -> tuple[ProbeResult, T | None]:
    """One connection running `work(conn)`, classified; `work`'s value when it connected."""
    import psycopg  # imported here: local PKI commands never pay for it

    started = time.monotonic()
    if key is not None:
        problem = _key_permission_problem(key)
        if problem is not None:
            outcome = classify(problem)
            if outcome is ProbeOutcome.ERROR:
                outcome = ProbeOutcome.KEY_PERMISSIONS
            return ProbeResult(outcome, target, user, problem, 0.0, sslmode), None
    params: dict[str, str | int] = {
        "host": target.host,
        "port": target.port,
        "dbname": target.dbname,
        "user": user,
        "sslmode": sslmode,
        "connect_timeout": max(1, int(timeout)),
        "application_name": "rdsssl-probe",
    }
    if target.hostaddr:
        params["hostaddr"] = target.hostaddr
    if sslmode != "disable":
        params["sslrootcert"] = str(root_cert) if root_cert else "system"
        params["sslcert"] = str(cert) if cert else _NO_FILE
        params["sslkey"] = str(key) if key else _NO_FILE
    if password is not None:
        params["password"] = password
    else:
        params["passfile"] = _NO_FILE  # never pick up ~/.pgpass silently
    value: T | None = None
    try:
        with psycopg.connect(**params) as conn:  # type: ignore[arg-type]
            value = work(conn)
            detail = f"connected as {user} (ssl={'on' if conn.info.pgconn.ssl_in_use else 'off'})"
        outcome = ProbeOutcome.OK
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())
        if password:
            detail = detail.replace(password, "***")
        outcome = classify(detail)
        value = None
    elapsed = time.monotonic() - started
    return ProbeResult(outcome, target, user, detail, elapsed, sslmode), value


# ---------------------------------------------------------------- probing an instance


def probe_target(api: RdsApi, instance_id: str) -> ProbeTarget:
    """The instance's main endpoint as a probe target.

    The endpoint name is kept as `host` (checked against the server certificate) and its IP
    address goes in `hostaddr`, so names that only resolve inside a VPC (or the emulator's)
    still verify.
    """
    info = api.describe_instance(instance_id)
    nets = api.describe_net_info(instance_id)
    net = next((n for n in nets if n.connection_string == info.connection_string), None)
    net = net or next((n for n in nets if n.connection_string_type == "Normal"), None)
    host = net.connection_string if net else info.connection_string
    port = (net.port if net else 0) or info.port
    hostaddr = net.ip_address if net and net.ip_address else None
    return ProbeTarget(host=host, port=port, hostaddr=hostaddr)


@contextmanager
def server_ca_file(api: RdsApi, instance_id: str, root_cert: Path | None = None) -> Iterator[Path]:
    """A server CA file for sslmode=verify-full: `root_cert`, else the CA downloaded from the
    instance's ServerCAUrl into a temporary file (removed on exit)."""
    if root_cert is not None:
        yield root_cert
        return
    ssl = api.describe_ssl(instance_id)
    if not ssl.server_ca_url:
        raise ConfigError(f"{instance_id} reports no ServerCAUrl; pass the server CA file")
    pem = api.server_ca_pem(ssl.server_ca_url)
    with tempfile.TemporaryDirectory(prefix="rdsssl-probe-") as tmp:
        path = Path(tmp) / "server-ca.pem"
        path.write_bytes(pem)
        yield path


def probe_instance(
    api: RdsApi,
    instance_id: str,
    *,
    user: str,
    cert: Path | None = None,
    key: Path | None = None,
    root_cert: Path | None = None,
    password: str | None = None,
    sslmode: str = "verify-full",
) -> ProbeResult:
    """Connect to the instance as `user` and classify the outcome (`probe`).

    Without `root_cert` the server CA comes from the instance's ServerCAUrl, so verify-full
    works with nothing but the instance id.
    """
    target = probe_target(api, instance_id)
    if sslmode == "disable":
        return probe(target, user=user, password=password, sslmode=sslmode)
    with server_ca_file(api, instance_id, root_cert) as root:
        return probe(
            target, user=user, cert=cert, key=key, root_cert=root, password=password,
            sslmode=sslmode,
        )  # fmt: skip
