"""Value types shared across rdsssl: frozen dataclasses and enums, no behaviour beyond parsing."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path


class KeyType(str, enum.Enum):
    """Private key algorithms rdsssl can generate. EC P-256 is the default: fast and small."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    ED25519 = "ed25519"


class AclMode(str, enum.Enum):
    """RDS client ACL modes (ACL / ReplicationACL of ModifyDBInstanceSSL)."""

    CERT = "cert"
    PREFER = "prefer"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


class CertStatus(str, enum.Enum):
    """Inventory status of an issued certificate. Expiry is derived from not_after, not stored."""

    VALID = "valid"
    REVOKED = "revoked"


class RevocationReason(str, enum.Enum):
    """CRL reason codes (RFC 5280) accepted by `cert revoke --reason`, with openssl's spelling."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    CA_COMPROMISE = "CACompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    CERTIFICATE_HOLD = "certificateHold"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"


# --------------------------------------------------------------------------------------------
# Cloud-side value types: what rdsssl.rds.api returns and rdsssl.rds.waiters observes. They
# are plain data: api.py parses SDK responses into them, so no SDK object travels further.


# LastModifyStatus values of DescribeDBInstanceSSL (doc §2); "" before any SSL change.
MODIFY_SUCCESS = "success"
MODIFY_SETTING = "setting"
MODIFY_FAILED = "failed"
STATUS_RUNNING = "Running"
LOCK_UNLOCK = "Unlock"


@dataclasses.dataclass(frozen=True)
class InstanceInfo:
    """One RDS instance as DescribeDBInstanceAttribute (or DescribeDBInstances) reports it.

    Only the fields the pre-flight checks of a change need: status and lock mode (is it
    safe to change now?), engine, version and storage (is a client CA possible at all?), the
    main endpoint (ModifyDBInstanceSSL needs a ConnectionString) and the pay type (Serverless
    has no SSL). `port` is 0 when the source did not say (DescribeDBInstances has no Port).
    `tags` holds the tags known for the instance: the RDS Describe calls do not return tags,
    so only `list_instances(tags=...)` fills it, with the tags the instance was selected by.
    """

    instance_id: str
    region: str
    status: str
    lock_mode: str
    engine: str
    engine_version: str
    storage_type: str
    connection_string: str
    port: int
    pay_type: str
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def major_version(self) -> int:
        """PostgreSQL major version from EngineVersion ("13.0" -> 13); 0 when unparsable, which
        makes every version check (verify-full needs >= 12) fail closed."""
        head = self.engine_version.strip().split(".", 1)[0]
        return int(head) if head.isdigit() else 0


@dataclasses.dataclass(frozen=True)
class SslState:
    """The SSL configuration observed through DescribeDBInstanceSSL.

    The response also carries the server's private key (ServerKey); it is deliberately not a
    field here, so it can never reach a log, a JSON document or an error message. PEM fields
    that the service returns empty are None, so "no client CA" is `client_ca_pem is None`.
    Compare PEMs by parsed fingerprint, never as text: whether RDS normalises them is unknown.
    """

    ssl_enabled: bool
    ca_type: str
    connection_string: str
    server_cert_pem: str
    server_ca_url: str
    ssl_expire_time: datetime | None
    require_update: bool
    client_ca_pem: str | None
    crl_pem: str | None
    acl: AclMode | None
    replication_acl: AclMode | None
    last_modify_status: str  # "success" / "setting" / "failed" / "" (doc §2)
    modify_status_reason: str

    @property
    def client_ca_enabled(self) -> bool:
        """RDS has no explicit flag in the read-back: a configured client CA means enabled."""
        return self.client_ca_pem is not None

    @property
    def crl_enabled(self) -> bool:
        """Same for the CRL: configured means enabled."""
        return self.crl_pem is not None


@dataclasses.dataclass(frozen=True)
class NetInfo:
    """One endpoint from DescribeDBInstanceNetInfo; ModifyDBInstanceSSL names one of these.

    `ip_type` is Public / Private / Inner; `connection_string_type` is Normal or
    ReadWriteSplitting (SSL does not work on read/write-splitting endpoints).
    """

    connection_string: str
    ip_address: str
    ip_type: str
    port: int
    connection_string_type: str


def _pem_digest(pem: str) -> str:
    """A short, stable tag for PEM text in summaries: never the text itself (a CRL can be
    0.5 MB, and summaries end up in logs). Hashes the raw text; formatting changes alter it,
    so it identifies what was sent, not the certificate (the service compares fingerprints)."""
    return "sha256:" + hashlib.sha256(pem.encode("utf-8")).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class SslModifyRequest:
    """One ModifyDBInstanceSSL call: server SSL, the client CA, CRL and ACLs of PostgreSQL.

    None means "do not send this field" (the instance keeps its value). The adapter sends only
    the set fields plus DBInstanceId and ConnectionString. `ssl_enabled` / `ca_type` are set
    only by the server-side commands (turning SSL on or off, a custom server certificate, a
    renewal): re-sending them may renew the cloud server certificate clients pin (doc §1.3), so
    a client-CA / CRL / ACL change never carries them. `server_key_pem` is a secret: it is sent
    once, never shown (`repr=False`, absent from `summary()`). Everything set here goes in ONE
    call (one restart).
    """

    instance_id: str
    connection_string: str
    client_ca_enabled: bool | None = None
    client_ca_pem: str | None = None
    crl_enabled: bool | None = None
    crl_pem: str | None = None
    acl: AclMode | None = None
    replication_acl: AclMode | None = None
    ssl_enabled: bool | None = None
    ca_type: str | None = None  # "aliyun" (cloud certificate) or "custom"
    server_cert_pem: str | None = None
    server_key_pem: str | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.ca_type is not None and self.ca_type not in ("aliyun", "custom"):
            raise ValueError(f"ca_type must be 'aliyun' or 'custom', not {self.ca_type!r}")
        if self.ca_type == "custom" and not (self.server_cert_pem and self.server_key_pem):
            raise ValueError("ca_type='custom' needs server_cert_pem and server_key_pem")
        # The API requires the PEM whenever the feature is switched on (doc §1.1).
        if self.client_ca_enabled and not self.client_ca_pem:
            raise ValueError("client_ca_enabled=True needs client_ca_pem")
        if self.crl_enabled and not self.crl_pem:
            raise ValueError("crl_enabled=True needs crl_pem")

    @property
    def restarts(self) -> bool:
        """A client-CA or CRL change restarts the instance (~3 min); an ACL-only change locks
        it (~1 min) instead (doc §1.4)."""
        fields = (
            self.client_ca_enabled,
            self.client_ca_pem,
            self.crl_enabled,
            self.crl_pem,
            self.ssl_enabled,
            self.ca_type,
            self.server_cert_pem,
        )
        return any(value is not None for value in fields)

    def summary(self) -> str:
        """One line for logs and confirmations; PEMs appear as digests only."""
        parts = [f"{self.instance_id} ({self.connection_string})"]
        if self.ssl_enabled is not None:
            parts.append(f"SSLEnabled={int(self.ssl_enabled)}")
        if self.ca_type is not None:
            parts.append(f"CAType={self.ca_type}")
        if self.server_cert_pem is not None:
            parts.append(f"ServerCert={_pem_digest(self.server_cert_pem)}")
        if self.server_key_pem is not None:
            parts.append("ServerKey=(sent, not shown)")
        if self.client_ca_enabled is not None:
            parts.append(f"ClientCAEnabled={int(self.client_ca_enabled)}")
        if self.client_ca_pem is not None:
            parts.append(f"ClientCACert={_pem_digest(self.client_ca_pem)}")
        if self.crl_enabled is not None:
            parts.append(f"ClientCrlEnabled={int(self.crl_enabled)}")
        if self.crl_pem is not None:
            size = len(self.crl_pem.encode("utf-8"))
            parts.append(f"ClientCertRevocationList={_pem_digest(self.crl_pem)} ({size} bytes)")
        if self.acl is not None:
            parts.append(f"ACL={self.acl.value}")
        if self.replication_acl is not None:
            parts.append(f"ReplicationACL={self.replication_acl.value}")
        return " ".join(parts)


@dataclasses.dataclass(frozen=True)
class Observation:
    """What a waiter sees on one poll. `error_code` is set (and the others may be None) when
    the poll itself failed with an API error: errors are data for the acceptor tables, as in
    botocore. `at` is the waiter's clock reading."""

    instance: InstanceInfo | None
    ssl: SslState | None
    error_code: str | None
    at: float


@dataclasses.dataclass(frozen=True)
class InstanceSpec:
    """One `[[instances]]` entry of the desired-state file, defaults already merged.

    Exactly one of `id` / `tags` is set; exactly one of `ca_dir` / `ca_bundle` (paths are
    absolute, resolved against the file's directory). `crl` implies `ca_dir`. An ACL of None
    leaves the instance's ACL as it is. `ssl`: "cloud" (the cloud certificate, CAType=aliyun)
    or "custom" (a server certificate from the server CA store `server_ca_dir`); None leaves
    the instance's server SSL as it is. `source` names the entry for messages, e.g.
    "rdsssl.toml: instances[2] (id pgm-x)".
    """

    id: str | None
    tags: Mapping[str, str] | None
    region: str | None
    ca_dir: Path | None
    ca_bundle: Path | None
    crl: bool
    acl: AclMode | None
    replication_acl: AclMode | None
    source: str
    ssl: str | None = None  # "cloud" | "custom" | None (leave server SSL alone)
    server_ca_dir: Path | None = None  # the server CA store of ssl = "custom"


@dataclasses.dataclass(frozen=True)
class DesiredState:
    """A loaded desired-state file."""

    path: Path
    instances: tuple[InstanceSpec, ...]
    rate: float | None = None  # API calls per second of a run over the file (`rate = N`)
