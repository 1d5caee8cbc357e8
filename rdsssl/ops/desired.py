"""From the desired-state file to what the service applies: `InstanceSpec` -> `DesiredSsl`, and
`[[instances]]` entries (ids or tags) -> the concrete instances they select.

Kept small and free of prompts and global state: the only I/O goes through the CA store and the
`RdsApi` passed in. Unlocking the CA key is the caller's business (`unlock`): the CLI passes
its passphrase logic (file, env, prompt on a terminal); library callers pass their own or get
`env_unlock` (RDSSSL_CA_PASSPHRASE, else an unencrypted key).

A CRL is only a requirement here (`CrlFromStore`): the service signs one only when the
instance's CRL is not current, so `plan` and dry runs never touch the store's CRL number. One
`DesiredBuilder` signs at most one CRL per CA store, however many instances share it, and is
safe to use from several threads (a concurrent fleet run).

Server SSL (`ssl = "cloud" | "custom"`, `server_with`) needs the instance: its SSL state (SSL
off: the call names the internal connection string, as `rdsssl instance enable-ssl` does) and
its connection strings (a custom certificate names every one of them; a cloud certificate
covers one, which `apply` then says). Like a CRL, a custom certificate is a requirement
(`ServerCertFromStore`): the one served is kept while current, else one is issued by the
server CA store when the change is applied, at most once per instance and run
(`prepare_custom_cert`), so a plan never touches the store. Without `ssl` nothing of the
server side is read or planned.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rdsssl.errors import ConfigError, InputError, RdsSslError
from rdsssl.models import DesiredState, InstanceSpec
from rdsssl.ops.plan import DEFAULT_MIN_CRL_REMAINING, CrlFromStore, DesiredSsl
from rdsssl.ops.server_ssl import connection_strings, prepare_custom_cert
from rdsssl.ops.server_ssl_plan import (
    SSL_CLOUD,
    SSL_CUSTOM,
    DesiredServer,
    ServerCertFromStore,
    ServerMaterial,
)
from rdsssl.pki import crypto
from rdsssl.rds.protocol import RdsApi
from rdsssl.store.castore import CaStore

__all__ = ["DesiredBuilder", "ServerTarget", "Unlock", "desired_ssl", "env_unlock", "resolve"]

PASSPHRASE_ENV = "RDSSSL_CA_PASSPHRASE"

Unlock = Callable[[CaStore], None]
"""Decrypts a CA store's key (calls `store.unlock(passphrase)`); may raise StoreError."""


def env_unlock(store: CaStore) -> None:
    """Unlock with $RDSSSL_CA_PASSPHRASE, or none (an unencrypted key); never prompts."""
    value = os.environ.get(PASSPHRASE_ENV)
    store.unlock(value.encode("utf-8") if value else None)


@dataclass(frozen=True)
class _StoreView:
    """What a plan needs from a CA store, read once: the CA PEM and the serials a fresh CRL
    would list."""

    ca_pem: str
    revoked: frozenset[int]


@dataclass(frozen=True)
class ServerTarget:
    """What `server_with` found out: the instance's connection strings (internal first) and
    whether SSL was off when read (the call then names `endpoints[0]`)."""

    endpoints: tuple[str, ...]
    ssl_was_off: bool


@dataclass
class DesiredBuilder:
    """Builds `DesiredSsl` for specs, caching per CA store (reads, and the one CRL signed).

    `now` fixes the clock of the whole run; `crl_days` is the validity of a CRL signed here;
    `min_remaining`: an instance CRL closer than this to nextUpdate is replaced.
    """

    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    unlock: Unlock = env_unlock
    crl_days: int = crypto.DEFAULT_CRL_DAYS
    min_remaining: timedelta = DEFAULT_MIN_CRL_REMAINING
    wait_lock: float = 0.0
    _views: dict[Path, _StoreView] = field(default_factory=dict, repr=False)
    _crls: dict[Path, str] = field(default_factory=dict, repr=False)
    _failed: dict[Path, RdsSslError] = field(default_factory=dict, repr=False)
    _server: dict[tuple[Path, str], ServerMaterial] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def for_spec(self, spec: InstanceSpec) -> DesiredSsl:
        """The `DesiredSsl` of one `[[instances]]` entry (ACLs of None are left alone)."""
        if spec.ca_dir is not None:
            return DesiredSsl(
                client_ca_pem=self._view(spec.ca_dir).ca_pem,
                crl=self.crl_from_store(spec.ca_dir) if spec.crl else None,
                acl=spec.acl,
                replication_acl=spec.replication_acl,
            )
        if spec.ca_bundle is not None:
            if spec.crl:  # the config loader refuses this already; a hand-made spec may not
                raise ConfigError(f"{spec.source}: crl = true needs ca_dir, not ca_bundle")
            return DesiredSsl(
                client_ca_pem=_read_bundle(spec.ca_bundle),
                acl=spec.acl,
                replication_acl=spec.replication_acl,
            )
        raise ConfigError(f"{spec.source}: no CA: set ca_dir or ca_bundle")

    def server_with(
        self, desired: DesiredSsl, spec: InstanceSpec, api: RdsApi, instance_id: str
    ) -> tuple[DesiredSsl, ServerTarget | None]:
        """`desired` with the server part of `spec` (unchanged without `ssl`): two Describe
        calls (the SSL state, the connection strings), nothing signed or issued."""
        if spec.ssl is None:
            return desired, None
        ssl = api.describe_ssl(instance_id)
        names = tuple(connection_strings(api, instance_id))
        endpoint = None if ssl.ssl_enabled else names[0]  # SSL on: the endpoint it protects
        if spec.ssl == SSL_CLOUD:
            server = DesiredServer(SSL_CLOUD, connection_string=endpoint)
        elif spec.ssl == SSL_CUSTOM:
            if spec.server_ca_dir is None:  # the config loader refuses this already
                raise ConfigError(f'{spec.source}: ssl = "custom" needs server_ca_dir')
            cert = self.server_cert(spec.server_ca_dir, instance_id, names)
            server = DesiredServer(SSL_CUSTOM, cert, connection_string=endpoint)
        else:
            raise ConfigError(f"{spec.source}: ssl = {spec.ssl!r} is not cloud or custom")
        target = ServerTarget(names, not ssl.ssl_enabled)
        return replace(desired, server=server), target

    def server_cert(
        self, server_ca_dir: Path, instance_id: str, names: tuple[str, ...]
    ) -> ServerCertFromStore:
        """The custom certificate requirement of one instance: served certificates of this
        server CA naming every connection string are kept; otherwise `build()` issues one
        (once per instance and run; the key stays in the store's history)."""
        return ServerCertFromStore(
            ca_pem=self._view(server_ca_dir).ca_pem,
            names=names,
            build=lambda: self._issue_server(server_ca_dir, instance_id, names),
        )

    def _issue_server(
        self, server_ca_dir: Path, instance_id: str, names: tuple[str, ...]
    ) -> ServerMaterial:
        key = (server_ca_dir.resolve(), instance_id)
        with self._lock:
            if key[0] in self._failed:
                raise self._failed[key[0]]
            if key not in self._server:
                try:
                    with CaStore.open(server_ca_dir, wait_lock=self.wait_lock) as store:
                        self.unlock(store)
                        self._server[key] = prepare_custom_cert(
                            list(names), instance_id, store, now=self.now
                        )
                except RdsSslError as exc:
                    self._failed[key[0]] = exc
                    raise
            return self._server[key]

    def crl_from_store(self, ca_dir: Path) -> CrlFromStore:
        """The CRL requirement of a CA store: list its revocations, signed only when needed."""
        return CrlFromStore(
            revoked=self._view(ca_dir).revoked,
            build=lambda: self._build_crl(ca_dir),
            min_remaining=self.min_remaining,
        )

    def ca_pem(self, ca_dir: Path) -> str:
        """The CA certificate of a store, as the PEM sent as ClientCACert."""
        return self._view(ca_dir).ca_pem

    def _view(self, ca_dir: Path) -> _StoreView:
        key = ca_dir.resolve()
        with self._lock:
            if key not in self._views:
                with CaStore.open(ca_dir, wait_lock=self.wait_lock) as store:
                    self._views[key] = _StoreView(
                        ca_pem=crypto.cert_pem(store.ca_cert).decode(),
                        revoked=store.live_revocations(now=self.now),
                    )
            return self._views[key]

    def _build_crl(self, ca_dir: Path) -> str:
        """Sign one CRL per store per run (the first instance that needs it pays); a store that
        could not sign it (a wrong passphrase, ...) is not asked again in the same run."""
        key = ca_dir.resolve()
        with self._lock:
            if key in self._failed:
                raise self._failed[key]
            if key not in self._crls:
                try:
                    with CaStore.open(ca_dir, wait_lock=self.wait_lock) as store:
                        self.unlock(store)
                        built = store.build_crl(now=self.now, days=self.crl_days)
                except RdsSslError as exc:
                    self._failed[key] = exc
                    raise
                self._crls[key] = built.pem.decode()
            return self._crls[key]


def _read_bundle(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the CA bundle ({exc.strerror})") from None
    crypto.load_certificates(data, source=str(path), what="a CA bundle")
    return data.decode("utf-8", errors="replace")


def desired_ssl(
    spec: InstanceSpec,
    *,
    now: datetime | None = None,
    unlock: Unlock = env_unlock,
    crl_days: int = crypto.DEFAULT_CRL_DAYS,
    min_remaining: timedelta = DEFAULT_MIN_CRL_REMAINING,
) -> DesiredSsl:
    """One spec's `DesiredSsl` (for several specs sharing a store, use one DesiredBuilder)."""
    builder = DesiredBuilder(
        now=now or datetime.now(timezone.utc),
        unlock=unlock,
        crl_days=crl_days,
        min_remaining=min_remaining,
    )
    return builder.for_spec(spec)


def resolve(
    api: RdsApi, state: DesiredState, *, region: str | None
) -> list[tuple[str, InstanceSpec]]:
    """Every instance the file selects, in file order, each once.

    An `id` entry is taken as is (a wrong id shows up as InstanceNotFound when applied). A
    `tags` entry lists the PostgreSQL instances carrying all its tags in its region (the
    entry's `region`, else `region`). An instance selected by an explicit id entry is not
    taken from a tags entry; one matched by several tags entries follows the first.
    """
    explicit = {spec.id for spec in state.instances if spec.id is not None}
    chosen: dict[str, InstanceSpec] = {}
    for spec in state.instances:
        if spec.id is not None:
            chosen.setdefault(spec.id, spec)
            continue
        where = spec.region or region
        if not where:
            raise ConfigError(
                f"{spec.source}: selecting by tags needs a region: set region in the file, "
                "pass --region or set ALIBABA_CLOUD_REGION_ID"
            )
        for info in api.list_instances(region=where, tags=spec.tags):
            if info.instance_id not in explicit:
                chosen.setdefault(info.instance_id, spec)
    return list(chosen.items())
