"""The database-server interface the emulator state sees, its errors, and a state-only backend.

Split from pg.py (which re-exports everything here) so that code needing only the types, such
as `--backend none` fleets, reads them without the cluster machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "NullBackend",
    "PgApplyError",
    "PgBackend",
    "PgError",
    "PgNotFound",
    "PgSslConfig",
]


class PgError(Exception):
    """Base of the PostgreSQL backend errors: PostgreSQL missing, initdb failed, server down."""


class PgNotFound(PgError):
    """initdb/pg_ctl are missing; the message says how to install them."""


class PgApplyError(PgError):
    """PostgreSQL would not take a configuration; the previous one is still running.

    `reason` is the server's own words (log or pg_hba_file_rules), fit for ModifyStatusReason.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PgSslConfig:
    """Everything the emulator decides about one instance's TLS and pg_hba.

    `acl` / `replication_acl`: an RDS ACL value (cert, prefer, verify-ca, verify-full) or None
    for "no client CA" (password over TCP, SSL optional); see `pg_hba.acl_line`.
    `tls_max_version`: `ssl_max_protocol_version` (e.g. "TLSv1.2", which RDS for PostgreSQL
    documents as its highest version), or None for PostgreSQL's default (no cap: TLS 1.3).
    Under TLS 1.2 an ECDSA client certificate works only on the server's `ssl_ecdh_curve`
    (prime256v1 by default): P-384 client keys fail with `wrong curve`
    (docs/postgres-client-cert-behaviour.md §6).
    """

    server_cert_pem: bytes
    server_key_pem: bytes = field(repr=False)
    client_ca_pem: bytes | None = None
    crl_pem: bytes | None = None
    acl: str | None = None
    replication_acl: str | None = None
    ssl_enabled: bool = True
    tls_max_version: str | None = None


class PgBackend(Protocol):
    """What the emulator state needs from the database server behind an instance."""

    host: str
    port: int
    major_version: int

    def start(self, ssl: PgSslConfig) -> None: ...

    def apply(self, ssl: PgSslConfig, *, restart: bool) -> None: ...

    def create_role(self, name: str, password: str) -> None: ...

    def stop(self) -> None: ...


class NullBackend:
    """State-only backend for fleet-scale runs: records what it was told, never fails.

    `applied` holds (config, restarted) pairs; `start` counts as a restart.
    """

    def __init__(self, *, major_version: int = 15, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.major_version = major_version
        self.applied: list[tuple[PgSslConfig, bool]] = []
        self.roles: dict[str, str] = {}
        self.running = False

    def start(self, ssl: PgSslConfig) -> None:
        self.applied.append((ssl, True))
        self.running = True

    def apply(self, ssl: PgSslConfig, *, restart: bool) -> None:
        self.applied.append((ssl, restart))

    def create_role(self, name: str, password: str) -> None:
        self.roles[name] = password

    def stop(self) -> None:
        self.running = False
