"""ModifyDBInstanceSSL's parameter rules, as a pure function from (current, request) to a change.

The order of the checks follows docs/aliyun-rds-ssl-api.md §9 from the ACL values onwards
(the instance-level checks before it live in state.py): parameter values, ACL values,
verify-full on PostgreSQL < 12, the one-call setup switch, ACL/CRL without the client CA,
then PEM contents (client CA, CRL, then a custom server certificate).
The server certificate:
- `CAType=custom`: ServerCert/ServerKey are required and checked (pemcheck.check_server_cert:
  parse, not expired by the emulator's clock, key unencrypted and matching), else
  `InvalidServerCertOrPrivateKey`; PostgreSQL then serves exactly that certificate.
- `CAType=aliyun` (or SSL turned on without CAType): a cloud certificate for the request's
  `ConnectionString` only. The current one is kept while SSL stays on, aliyun, for the same
  connection string; otherwise (SSL turned on, custom -> aliyun, another connection string)
  a new one is issued.
- `SSLEnabled=0`: SSL off; the client CA, CRL and ACLs are cleared with it (the console
  implies as much; the service does not say). Turning SSL on again starts with no client CA.
  The switch `ssl_off_keeps_client_ca` keeps them instead, dormant: read back, not in force
  (PostgreSQL runs `ssl = off` with the default rules), and in force again once SSL is on.
Decisions where the real service is undocumented ([U] in the docs), each a switch where it
matters to a client (faults.Switches), chosen to expose client bugs rather than hide them:
- re-sending `SSLEnabled=1` (+ `CAType=aliyun`) while SSL is on renews the cloud certificate
  (`ssl_enable_renews`, True; Terraform's "Update" implies it): a new key, a new year, a
  restart. With the switch off the call is accepted, restarts, and changes nothing;
- the call that turns SSL on may also set the client CA, CRL and ACLs (`one_call_ssl_setup`,
  True, as Terraform's acceptance test sends); off: `IncorrectDBSslStatus`, SSL alone first;
- a PEM without its enable flag (ClientCACert without ClientCAEnabled=1) is ignored;
- replacing the client CA keeps the configured CRL (PostgreSQL then rejects the new CA's
  users with `unknown ca`, docs §4 R3) unless the same call sends a new one;
- SSLEnabled=1 without CAType means `aliyun` when SSL was off, the current type when on;
- a call that changes no SSL field and sends no ACL still runs a full restart cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

from rdsssl.emulator.errors import api_error
from rdsssl.emulator.faults import Switches
from rdsssl.emulator.pemcheck import (
    check_client_ca,
    check_crl,
    check_server_cert,
    fingerprints,
    parse_blocks,
)
from rdsssl.emulator.pg import PgSslConfig

__all__ = ["ACL_MODES", "CloudIssuer", "SslChange", "SslSettings", "plan_ssl_change"]

ACL_MODES: tuple[str, ...] = ("cert", "prefer", "verify-ca", "verify-full")
# connection string -> (certificate PEM, unencrypted key PEM) from the emulator's cloud CA
CloudIssuer = Callable[[str], tuple[str, str]]


@dataclass(frozen=True)
class SslSettings:
    """An instance's SSL block as DescribeDBInstanceSSL reports it ("" = unset)."""

    enabled: bool
    ca_type: str  # "aliyun" | "custom"
    connection_string: str
    server_cert_pem: str
    server_key_pem: str = field(repr=False)
    client_ca_pem: str = ""
    crl_pem: str = ""
    acl: str = ""
    replication_acl: str = ""

    def restart_fields(self) -> tuple[object, ...]:
        """What a restart is needed for: everything except the two ACLs."""
        return (
            self.enabled,
            self.ca_type,
            self.connection_string,
            fingerprints(self.server_cert_pem),
            fingerprints(self.client_ca_pem),
            fingerprints(self.crl_pem),
        )

    def to_pg(self, *, tls_max_version: str | None = None) -> PgSslConfig:
        """The configuration the PostgreSQL backend runs (`tls_max_version`: the TLS cap).
        With SSL off, a client CA kept in the block is not in force."""
        on = self.enabled
        return PgSslConfig(
            server_cert_pem=self.server_cert_pem.encode(),
            server_key_pem=self.server_key_pem.encode(),
            client_ca_pem=(on and self.client_ca_pem.encode()) or None,
            crl_pem=(on and self.crl_pem.encode()) or None,
            acl=(on and self.acl) or None,
            replication_acl=(on and self.replication_acl) or None,
            ssl_enabled=self.enabled,
            tls_max_version=tls_max_version,
        )


@dataclass(frozen=True)
class SslChange:
    """An accepted change: the target block and whether it needs a restart cycle."""

    target: SslSettings
    restart: bool  # False: an ACL-only change (lock, then reload)


def _flag(params: Mapping[str, str], name: str) -> bool | None:
    value = params.get(name) or None
    if value is None:
        return None
    if value not in ("0", "1"):
        raise api_error("InvalidParameter", f"{name} must be 0 or 1, not {value!r}")
    return value == "1"


def _current_cas(pem: str) -> list[x509.Certificate]:
    try:
        return [x509.load_der_x509_certificate(b.der) for b in parse_blocks(pem)]
    except ValueError:
        return []


def plan_ssl_change(
    current: SslSettings,
    params: Mapping[str, str],
    *,
    major_version: int,
    issue_cloud_cert: CloudIssuer,
    now: datetime,
    switches: Switches,
) -> SslChange:
    """Validate a ModifyDBInstanceSSL request against `current`; EmulatorError if refused.

    `issue_cloud_cert` makes a new cloud certificate when one is needed (module docstring);
    `now` is the emulator's clock, for the expiry of a custom certificate.
    The caller has already checked the instance (exists, unlocked, Running, engine, storage)
    and that ConnectionString names one of its endpoints.
    """
    ssl_flag = _flag(params, "SSLEnabled")
    ca_type = params.get("CAType") or None
    if ca_type is not None and ca_type not in ("aliyun", "custom"):
        raise api_error("InvalidCAType.NotFound", f"CAType={ca_type!r}; use aliyun or custom")
    ca_flag = _flag(params, "ClientCAEnabled")
    crl_flag = _flag(params, "ClientCrlEnabled")
    acl = params.get("ACL") or None
    repl = params.get("ReplicationACL") or None
    for name, value in (("ACL", acl), ("ReplicationACL", repl)):
        if value is not None and value not in ACL_MODES:
            raise api_error(
                "InvalidACL.NotFound", f"{name}={value!r}; one of {', '.join(ACL_MODES)}"
            )
    if "verify-full" in (acl, repl) and major_version < 12:
        raise api_error(
            "IncorrectEngineVersion",
            f"verify-full needs PostgreSQL 12 or later; this instance runs {major_version}",
        )

    ssl_on = current.enabled if ssl_flag is None else ssl_flag
    turning_on = ssl_on and not current.enabled
    if turning_on and not switches.one_call_ssl_setup and (ca_flag or crl_flag or acl or repl):
        raise api_error(
            "IncorrectDBSslStatus",
            "SSL is off: turn it on first (SSLEnabled=1, CAType), then set the client CA, "
            "CRL and ACLs in another call",
        )
    if ca_flag and not ssl_on:
        raise api_error("IncorrectDBSslStatus", "enable SSL before the client CA")
    ca_on = ssl_on and (bool(current.client_ca_pem) if ca_flag is None else ca_flag)
    if (acl or repl) and not ca_on:
        raise api_error("InvalidACL.Permission")
    if crl_flag and not ca_on:
        raise api_error("InvalidClientCrl.Permission")

    client_ca = current.client_ca_pem if ca_on else ""
    cas: list[x509.Certificate] = []
    if ca_flag:
        pem = params.get("ClientCACert") or ""
        if not pem:
            raise api_error(
                "InvalidClientCACert", "ClientCACert is required when ClientCAEnabled=1"
            )
        cas = check_client_ca(pem, allow_multiple=switches.multi_ca_bundle)
        client_ca = pem
    crl = current.crl_pem if ca_on and crl_flag is not False else ""
    if crl_flag:
        pem = params.get("ClientCertRevocationList") or ""
        if not pem:
            raise api_error(
                "InvalidClientCrl", "ClientCertRevocationList is required when ClientCrlEnabled=1"
            )
        check_crl(pem, cas or _current_cas(client_ca), check_issuer=switches.crl_issuer_check)
        crl = pem

    connection_string = params.get("ConnectionString", "")
    new_type = ca_type or (current.ca_type if current.enabled else "aliyun")
    cert, key = current.server_cert_pem, current.server_key_pem
    if ssl_on and ca_type == "custom":
        cert, key = params.get("ServerCert") or "", params.get("ServerKey") or ""
        if not cert or not key:
            raise api_error(
                "InvalidServerCertOrPrivateKey", "ServerCert and ServerKey are required for custom"
            )
        check_server_cert(cert, key, now=now)
    elif ssl_on and new_type == "aliyun":
        kept = (
            current.enabled
            and current.ca_type == "aliyun"
            and current.connection_string == connection_string
        )
        renew = kept and ssl_flag is True and switches.ssl_enable_renews
        if not kept or renew:
            cert, key = issue_cloud_cert(connection_string)

    acls = (
        (acl or current.acl or "prefer", repl or current.replication_acl or "prefer")
        if ca_on
        else ("", "")
    )
    if not ssl_on and switches.ssl_off_keeps_client_ca:  # dormant (module docstring)
        client_ca, crl = current.client_ca_pem, current.crl_pem
        acls = (current.acl, current.replication_acl)
    target = SslSettings(
        enabled=ssl_on,
        ca_type=new_type,
        connection_string=connection_string,
        server_cert_pem=cert,
        server_key_pem=key,
        client_ca_pem=client_ca,
        crl_pem=crl,
        acl=acls[0],
        replication_acl=acls[1],
    )
    ssl_changed = target.restart_fields() != current.restart_fields()
    return SslChange(target=target, restart=ssl_changed or (acl is None and repl is None))
