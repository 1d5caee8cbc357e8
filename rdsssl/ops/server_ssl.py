"""The server side of an instance's SSL as use cases: switch SSL on (the cloud certificate) or
off, serve a custom certificate from a server CA store, renew either.

Every command is a `DesiredSsl` with a `server` part (`rdsssl.ops.server_ssl_plan`) handed to
the one-instance change every other command makes (`rdsssl.ops.instance_change`): the
instance lock, the audit lines, an earlier unconfirmed change confirmed first, the lockout
guard, ONE ModifyDBInstanceSSL call and a wait with evidence. What is particular here:

- refusals before anything is read twice: `enable-ssl` on an instance that has SSL on (renew
  instead: re-sending SSLEnabled=1 is the documented renewal, not a no-op), `renew-server-cert`
  with a server CA on an instance that serves the cloud certificate (and the reverse);
- a custom certificate names every connection string of the instance (internal and public,
  DescribeDBInstanceNetInfo; read/write-splitting endpoints cannot carry SSL and are left out),
  its key is made here, recorded with the certificate in the server CA store and sent once;
- `renew-server-cert --if-due` is for cron: nothing is read beyond the SSL state and nothing is
  sent unless the certificate is inside the window (`due`);
- afterwards the server is proven (`rdsssl.ops.server_ssl_proof`; the command's flow with it:
  `rdsssl.ops.server_ssl_change`, whose `prove_change` / `server_summary` are importable here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from rdsssl.errors import ConfigError, CryptoError, UsageError
from rdsssl.models import KeyType, SslState
from rdsssl.ops.plan import DesiredSsl
from rdsssl.ops.server_ssl_change import prove_change, server_summary
from rdsssl.ops.server_ssl_plan import (
    DEFAULT_SERVER_RENEW_BEFORE,
    SSL_CLOUD,
    SSL_CUSTOM,
    SSL_OFF,
    DesiredServer,
    ServerCertFromStore,
    ServerMaterial,
)
from rdsssl.pki import crypto
from rdsssl.pki.server_certs import DEFAULT_SERVER_DAYS
from rdsssl.rds.protocol import RdsApi
from rdsssl.store.castore import CaStore

__all__ = [
    "DEFAULT_SERVER_DAYS",
    "SERVER_KEY_TYPES",
    "Due",
    "check_connection_string",
    "connection_strings",
    "custom_cert_requirement",
    "desired_disable",
    "desired_enable",
    "desired_renew",
    "desired_set_cert",
    "due",
    "internal_connection_string",
    "prepare_custom_cert",
    "prove_change",
    "refuse_ssl_on",
    "server_summary",
]

# Ed25519 server keys work over TLS 1.3 only, and many clients still speak TLS 1.2.
SERVER_KEY_TYPES = (
    KeyType.EC_P256,
    KeyType.EC_P384,
    KeyType.RSA_2048,
    KeyType.RSA_3072,
    KeyType.RSA_4096,
)


def connection_strings(api: RdsApi, instance_id: str) -> list[str]:
    """Every endpoint a server certificate must name: the instance's Normal connection
    strings, internal (Private / Inner) first, then public."""
    nets = [n for n in api.describe_net_info(instance_id) if n.connection_string_type == "Normal"]
    nets.sort(key=lambda n: n.ip_type == "Public")
    names = [n.connection_string for n in nets if n.connection_string]
    if not names:
        raise ConfigError(f"{instance_id} reports no connection string to name")
    return list(dict.fromkeys(names))


def check_connection_string(api: RdsApi, instance_id: str, connection_string: str) -> str:
    """`connection_string` when it is one of the instance's endpoints; ConfigError (exit 3,
    before any call that changes something) naming the ones it has otherwise."""
    names = connection_strings(api, instance_id)
    if connection_string not in names:
        raise ConfigError(
            f"{connection_string!r} is not a connection string of {instance_id}; it has: "
            f"{', '.join(names)}"
        )
    return connection_string


def internal_connection_string(api: RdsApi, instance_id: str) -> str:
    """The endpoint `enable-ssl` protects by default: the internal one (a cloud certificate
    covers one connection string only), else the first the instance reports."""
    return connection_strings(api, instance_id)[0]


def _key_type(key_type: KeyType) -> KeyType:
    if key_type not in SERVER_KEY_TYPES:
        choices = ", ".join(k.value for k in SERVER_KEY_TYPES)
        raise CryptoError(
            f"a server key of type {key_type.value} fails TLS 1.2 clients; use one of {choices}"
        )
    return key_type


def prepare_custom_cert(
    names: RdsApi | Sequence[str],
    instance_id: str,
    server_ca: CaStore,
    *,
    days: int = DEFAULT_SERVER_DAYS,
    now: datetime,
    key_type: KeyType = KeyType.EC_P256,
) -> ServerMaterial:
    """A new key and server certificate for `instance_id` from `server_ca` (unlocked), naming
    every connection string (`names`, or read through the API), recorded in the store with the
    key kept 0600 in its `server-history/`. The material goes into ONE ModifyDBInstanceSSL."""
    listed = connection_strings(names, instance_id) if not isinstance(names, Sequence) else names
    issued = server_ca.issue_server_cert(
        instance_id=instance_id,
        names=list(listed),
        key_type=_key_type(key_type),
        days=days,
        now=now,
    )
    return ServerMaterial(issued.cert_pem, issued.key_pem)


def custom_cert_requirement(
    names: RdsApi | Sequence[str],
    instance_id: str,
    server_ca: CaStore,
    *,
    days: int = DEFAULT_SERVER_DAYS,
    now: datetime,
    key_type: KeyType = KeyType.EC_P256,
    renew_before: timedelta = DEFAULT_SERVER_RENEW_BEFORE,
) -> ServerCertFromStore:
    """The custom certificate as a requirement (`ServerCertFromStore`): the one served is kept
    while current, otherwise `prepare_custom_cert` runs when the change is applied (never on a
    dry run). For `ssl = "custom"` in rdsssl.toml and the renew job."""
    listed = connection_strings(names, instance_id) if not isinstance(names, Sequence) else names
    _key_type(key_type)

    def build() -> ServerMaterial:
        return prepare_custom_cert(
            list(listed), instance_id, server_ca, days=days, now=now, key_type=key_type
        )

    ca_pem = crypto.cert_pem(server_ca.ca_cert).decode()
    return ServerCertFromStore(ca_pem, tuple(listed), build, renew_before)


# ---------------------------------------------------------------- the commands' desired states


def refuse_ssl_on(ssl: SslState, instance_id: str) -> None:
    """`enable-ssl` on an instance that has SSL on: ConfigError saying how to renew instead
    (re-sending SSLEnabled=1 may renew the certificate clients pin)."""
    if ssl.ssl_enabled:
        raise ConfigError(
            f"SSL is already on for {instance_id} ({ssl.ca_type} certificate on "
            f"{ssl.connection_string}); nothing was sent. To renew its certificate: rdsssl "
            f"instance renew-server-cert {instance_id}"
        )


def desired_enable(ssl: SslState, instance_id: str, connection_string: str) -> DesiredSsl:
    """`enable-ssl`: SSL on with the cloud certificate; refused when SSL is on already."""
    refuse_ssl_on(ssl, instance_id)
    return DesiredSsl(server=DesiredServer(SSL_CLOUD, connection_string=connection_string))


def desired_disable() -> DesiredSsl:
    """`disable-ssl`: SSL off (the lockout guard refuses it while client certificates are in
    use, unless forced)."""
    return DesiredSsl(server=DesiredServer(SSL_OFF))


def desired_set_cert(requirement: ServerCertFromStore, connection_string: str) -> DesiredSsl:
    """`set-server-cert`: a custom certificate from the server CA; kept when the one served is
    already current (a re-run sends nothing)."""
    server = DesiredServer(SSL_CUSTOM, requirement, connection_string=connection_string)
    return DesiredSsl(server=server)


@dataclass(frozen=True)
class Due:
    """Whether the served certificate is due for renewal, and why (for --if-due)."""

    due: bool
    reason: str
    expires: datetime | None


def _served_expiry(ssl: SslState) -> datetime | None:
    try:
        cert = crypto.load_certificates(ssl.server_cert_pem.encode(), source="ServerCert")[0]
    except CryptoError:
        return ssl.ssl_expire_time
    return cert.not_valid_after_utc


def due(ssl: SslState, *, now: datetime, before: timedelta) -> Due:
    """Inside the renewal window: the served certificate (else SSLExpireTime) expires within
    `before`, or the service says RequireUpdate."""
    expires = _served_expiry(ssl)
    if ssl.require_update:
        return Due(True, "the service reports RequireUpdate", expires)
    if expires is None:
        return Due(True, "the expiry of the server certificate is unknown", None)
    left = expires - now
    when = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    if left < before:
        return Due(True, f"it expires {when}, within {before.days} days", expires)
    return Due(False, f"it expires {when}, more than {before.days} days away", expires)


def desired_renew(
    ssl: SslState,
    instance_id: str,
    requirement: ServerCertFromStore | None,
) -> DesiredSsl:
    """`renew-server-cert`: the cloud certificate re-requested (SSLEnabled=1, CAType=aliyun:
    the one case where re-sending them is wanted), or a new custom certificate."""
    if not ssl.ssl_enabled:
        raise ConfigError(
            f"SSL is off on {instance_id}: there is no certificate to renew; nothing was sent. "
            f"Switch it on: rdsssl instance enable-ssl {instance_id}"
        )
    if ssl.ca_type == "custom" and requirement is None:
        raise UsageError(
            f"{instance_id} serves a custom certificate: give the server CA that issues its "
            "successor (--server-ca-dir DIR)"
        )
    if ssl.ca_type != "custom" and requirement is not None:
        raise UsageError(
            f"{instance_id} serves the cloud certificate: renew it without --server-ca-dir, "
            f"or switch to your own with rdsssl instance set-server-cert {instance_id}"
        )
    cs = ssl.connection_string
    if requirement is None:
        return DesiredSsl(server=DesiredServer(SSL_CLOUD, connection_string=cs, renew=True))
    server = DesiredServer(SSL_CUSTOM, requirement, connection_string=cs, renew=True)
    return DesiredSsl(server=server)
