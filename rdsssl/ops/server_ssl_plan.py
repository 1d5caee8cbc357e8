"""The server part of a plan: whether SSL is on, which server certificate the instance serves
(the cloud one, `CAType=aliyun`, or the user's own, `CAType=custom`), compared with what it
should be (`DesiredServer`).

Pure, like `rdsssl.ops.plan`, which folds the result into the ONE request of a change (SSL,
the server certificate and the client CA / CRL / ACLs together: one restart). Decisions:

- `DesiredServer(ssl="cloud")` asks for SSL on with the cloud certificate; an instance that
  already serves it is left alone (re-sending `SSLEnabled=1` may renew the certificate clients
  pin, docs/aliyun-rds-ssl-api.md §1.3), unless `renew` asks for exactly that.
- A custom certificate is either fixed material (`ServerMaterial`) or a requirement
  (`ServerCertFromStore`), like a CRL: the one served is current when a CA of the server CA
  store issued it, it names every connection string, and it stays valid for `renew_before`.
  Only otherwise is one issued, at apply time (so a dry run never touches the store).
- Evidence: a renewal counts only when the certificate served afterwards is not the one
  served before (`retired`); a custom certificate must read back by fingerprint.
- `ssl="off"` turns SSL off; the client CA, CRL and ACLs go with it (the lockout guard,
  `rdsssl.ops.guard`, refuses that while they are configured, unless forced).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from rdsssl.errors import ConfigError, CryptoError
from rdsssl.models import SslModifyRequest, SslState
from rdsssl.pki import crypto
from rdsssl.pki.hostnames import names_host

__all__ = [
    "DEFAULT_SERVER_RENEW_BEFORE",
    "SSL_CLOUD",
    "SSL_CUSTOM",
    "SSL_OFF",
    "DesiredServer",
    "ServerCertFromStore",
    "ServerCertStatus",
    "ServerDiff",
    "ServerMaterial",
    "diff_server",
    "issuer_warning",
    "server_cert_fps",
    "server_cert_status",
    "server_fingerprints",
    "server_matches",
    "server_target",
]

SSL_OFF, SSL_CLOUD, SSL_CUSTOM = "off", "cloud", "custom"
SSL_MODES = (SSL_OFF, SSL_CLOUD, SSL_CUSTOM)
DEFAULT_SERVER_RENEW_BEFORE = timedelta(days=30)
_CA_TYPE = {SSL_CLOUD: "aliyun", SSL_CUSTOM: "custom"}


@dataclass(frozen=True)
class ServerMaterial:
    """A server certificate and its unencrypted key, as ModifyDBInstanceSSL takes them. The
    key is a secret: never shown (`repr=False`), sent once, kept only in the server CA store."""

    cert_pem: str
    key_pem: str = field(repr=False)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate (never of the key)."""
        certs = crypto.load_certificates(self.cert_pem.encode(), source="the server certificate")
        return crypto.fingerprint(certs[0])


@dataclass(frozen=True, eq=False)
class ServerCertFromStore:
    """A custom server certificate requirement: the served one is current when a CA of
    `ca_pem` issued it, it names every entry of `names`, and it stays valid for
    `renew_before`; otherwise `build()` issues a new one (recording it in the store, so it is
    called only when the change is applied)."""

    ca_pem: str
    names: tuple[str, ...]
    build: Callable[[], ServerMaterial]
    renew_before: timedelta = DEFAULT_SERVER_RENEW_BEFORE


@dataclass(frozen=True)
class DesiredServer:
    """What the server side should be. `ssl`: off / cloud / custom. `cert`: the custom
    certificate (material, or a requirement on the store). `connection_string`: the endpoint
    the call names (None: the one the instance reports; needed when SSL is off). `renew`:
    change the certificate even when the current one would do (renew-server-cert)."""

    ssl: str
    cert: ServerMaterial | ServerCertFromStore | None = None
    connection_string: str | None = None
    renew: bool = False

    def __post_init__(self) -> None:
        if self.ssl not in SSL_MODES:
            raise ConfigError(f"ssl must be one of {', '.join(SSL_MODES)}, not {self.ssl!r}")
        if (self.ssl == SSL_CUSTOM) != (self.cert is not None):
            raise ConfigError("a custom server certificate (and only it) needs its certificate")


@dataclass(frozen=True)
class ServerCertStatus:
    """Whether the served certificate satisfies a `ServerCertFromStore`, and why not: `current`,
    `ssl-off`, `cloud-certificate`, `no-certificate`, `other-issuer`, `names-missing`,
    `renewal-window`, `renew-requested`."""

    code: str
    reason: str

    @property
    def current(self) -> bool:
        return self.code == "current"


@dataclass(frozen=True)
class ServerDiff:
    """The server part of a plan: `changes` as (field, before, after, code, reason), the
    request fields, a certificate to issue at apply time, and the certificate(s) that must be
    gone afterwards (a renewal's evidence)."""

    changes: tuple[tuple[str, str, str, str, str], ...] = ()
    fields: dict[str, object] = field(default_factory=dict)
    source: ServerCertFromStore | None = None
    retired: frozenset[str] = frozenset()
    connection_string: str | None = None


def _fps(pem: str | None) -> frozenset[str]:
    if not pem or not pem.strip():
        return frozenset()
    try:
        return crypto.pem_fingerprints(pem.encode(), source="the server certificate")
    except CryptoError:
        return frozenset()


def _short(fps: frozenset[str]) -> str:
    return ", ".join(sorted(f[:16] for f in fps)) if fps else "(none)"


def _describe(ssl: SslState) -> str:
    if not ssl.ssl_enabled:
        return "off"
    kind = "cloud" if ssl.ca_type == "aliyun" else ssl.ca_type or "?"
    return f"on, {kind} certificate {_short(_fps(ssl.server_cert_pem))}"


def _issued_by(cert: x509.Certificate, cas: list[x509.Certificate]) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def server_cert_status(
    ssl: SslState, req: ServerCertFromStore, *, now: datetime, renew: bool = False
) -> ServerCertStatus:
    """The served certificate against `req` (see `ServerCertStatus`)."""
    if not ssl.ssl_enabled:
        return ServerCertStatus("ssl-off", "SSL is off")
    if ssl.ca_type != "custom":
        return ServerCertStatus("cloud-certificate", "the instance serves the cloud certificate")
    try:
        cert = crypto.load_certificates(ssl.server_cert_pem.encode(), source="ServerCert")[0]
        cas = crypto.load_certificates(req.ca_pem.encode(), source="the server CA")
    except CryptoError:
        return ServerCertStatus("no-certificate", "no readable server certificate")
    if not _issued_by(cert, cas):
        return ServerCertStatus("other-issuer", "the served certificate is not from this CA")
    missing = sorted(n for n in req.names if not names_host(cert, n))
    if missing:
        return ServerCertStatus("names-missing", f"it does not name {', '.join(missing)}")
    if renew:
        return ServerCertStatus("renew-requested", "a new certificate was asked for")
    not_after = cert.not_valid_after_utc
    if not_after - now < req.renew_before:
        when = not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
        days = req.renew_before.days
        return ServerCertStatus("renewal-window", f"it expires {when}, under {days} days away")
    return ServerCertStatus("current", "current")


def diff_server(desired: DesiredServer, ssl: SslState, *, now: datetime) -> ServerDiff:
    """What differs on the server side, and the request fields that change it."""
    before = _describe(ssl)
    served = _fps(ssl.server_cert_pem) if ssl.ssl_enabled else frozenset()
    cs = desired.connection_string
    if desired.ssl == SSL_OFF:
        if not ssl.ssl_enabled:
            return ServerDiff()
        return ServerDiff(
            (("ssl", before, "off", "ssl-off", "SSL is switched off"),),
            {"ssl_enabled": False},
            connection_string=cs,
        )
    on = {"ssl_enabled": True, "ca_type": _CA_TYPE[desired.ssl]}
    if desired.ssl == SSL_CLOUD:
        moved = cs is not None and ssl.ssl_enabled and cs != ssl.connection_string
        if ssl.ssl_enabled and ssl.ca_type == "aliyun" and not moved and not desired.renew:
            return ServerDiff()
        code, reason = "ssl-on", "SSL is switched on with the cloud certificate"
        if ssl.ssl_enabled and ssl.ca_type == "aliyun" and not moved:
            code, reason = "renew-requested", "the cloud certificate is renewed"
        elif ssl.ssl_enabled and ssl.ca_type == "aliyun":
            code, reason = "endpoint-moved", f"the cloud certificate moves to {cs}"
        elif ssl.ssl_enabled:
            code, reason = "to-cloud", "the cloud certificate replaces the custom one"
        after = "on, a cloud certificate" + (f" for {cs}" if cs else "")
        if code == "renew-requested":
            after = "on, a renewed cloud certificate"
        retired = served if code == "renew-requested" else frozenset()
        return ServerDiff(((("ssl", before, after, code, reason)),), on, None, retired, cs)
    cert = desired.cert
    if isinstance(cert, ServerMaterial):
        wanted = _fps(cert.cert_pem)
        if ssl.ssl_enabled and ssl.ca_type == "custom" and wanted == served:
            return ServerDiff()
        fields = {**on, "server_cert_pem": cert.cert_pem, "server_key_pem": cert.key_pem}
        change = ("ssl", before, f"on, custom certificate {_short(wanted)}", "custom-cert", "")
        return ServerDiff((change,), fields, None, served - wanted, cs)
    assert isinstance(cert, ServerCertFromStore)
    status = server_cert_status(ssl, cert, now=now, renew=desired.renew)
    if status.current:
        return ServerDiff()
    after = f"on, a new custom certificate ({status.reason})"
    change = ("ssl", before, after, status.code, status.reason)
    return ServerDiff((change,), {}, cert, served, cs)


# Change codes after which the server presents a certificate of ANOTHER CA than today.
_NEW_ISSUER = frozenset({"to-cloud", "cloud-certificate", "other-issuer"})


def issuer_warning(codes: list[str], ssl: SslState) -> str | None:
    """For people: the server will present a certificate of another CA than today (clients
    that verify the server must trust the new CA first), or None."""
    if not ssl.ssl_enabled or not _NEW_ISSUER.intersection(codes):
        return None
    return (
        "the server will present a certificate of another CA than today: clients with "
        "sslmode=verify-ca / verify-full must trust the new CA BEFORE this change (for a "
        "custom CA: rdsssl server-ca bundle --ca-dir OLD --ca-dir NEW; for the cloud CA: "
        "rdsssl instance server-ca ID after the change), or they are refused"
    )


# ---------------------------------------------------------------- evidence


def server_fingerprints(ssl: SslState) -> dict[str, object]:
    """The secret-free identity of the server side (audit lines, waits, re-runs)."""
    return {
        "enabled": ssl.ssl_enabled,
        "ca_type": ssl.ca_type if ssl.ssl_enabled else "",
        "cert": sorted(_fps(ssl.server_cert_pem)) if ssl.ssl_enabled else [],
        "connection_string": ssl.connection_string if ssl.ssl_enabled else "",
    }


def server_cert_fps(ssl: SslState) -> frozenset[str]:
    """The fingerprints of the server certificate the instance reads back as serving."""
    return _fps(ssl.server_cert_pem) if ssl.ssl_enabled else frozenset()


def server_target(request: SslModifyRequest, retired: frozenset[str]) -> dict[str, object]:
    """What the server side should read back as after `request` (keys that are unknown, like
    a cloud certificate the service issues, are left out; `cert_not`: what must be gone)."""
    if request.ssl_enabled is False:
        return {"enabled": False}
    target: dict[str, object] = {"enabled": True, "connection_string": request.connection_string}
    if request.ca_type is not None:
        target["ca_type"] = request.ca_type
    if request.server_cert_pem is not None:
        target["cert"] = sorted(_fps(request.server_cert_pem))
    if retired:
        target["cert_not"] = sorted(retired)
    return target


def server_matches(ssl: SslState, target: dict[str, object]) -> bool:
    """The read-back's server side fits `target` (`server_target`)."""
    now = server_fingerprints(ssl)
    for key, want in target.items():
        if key == "cert_not":
            gone = set(want) if isinstance(want, list) else set()
            if gone & set(_fps(ssl.server_cert_pem)):
                return False
        elif now.get(key) != want:
            return False
    return True


def request_connection_string(diff: ServerDiff, ssl: SslState, instance_id: str) -> str:
    """The ConnectionString the call names: the desired one, else the instance's."""
    cs = diff.connection_string or ssl.connection_string
    if not cs:
        raise ConfigError(
            f"SSL is off on {instance_id}, so it reports no connection string: name the "
            "endpoint to protect (--connection-string); nothing was sent"
        )
    return cs
