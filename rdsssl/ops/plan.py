"""Planning one instance's change: what it should hold (`DesiredSsl`), what differs (`Plan`),
and the local checks made before anything is sent (`validate`, the CRL policy's verdict).

Pure comparisons over parsed fingerprints: no API call, no file, no clock (`now` is passed in).
A plan holds every differing field in ONE request (one restart instead of the manual
procedure's two restarts and a lock); a CRL is a requirement (`CrlFromStore`) signed only when
the change is applied, so a plan never touches the store. Applying a plan is `rdsssl.ops.apply`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from rdsssl.errors import ConfigError
from rdsssl.models import AclMode, InstanceInfo, SslModifyRequest, SslState

__all__ = [  # the evidence functions live in rdsssl.ops.plan_evidence; kept importable here
    "differs",
    "fingerprints",
    "matches_target",
    "read_back_matches",
    "state_fingerprints",
    "target_fingerprints",
]
from rdsssl.ops import guard
from rdsssl.ops.plan_evidence import (
    differs,
    fingerprints,
    matches_target,
    read_back_matches,
    state_fingerprints,
    target_fingerprints,
)
from rdsssl.ops.server_ssl_plan import (
    SSL_OFF,
    DesiredServer,
    ServerCertFromStore,
    ServerDiff,
    diff_server,
    issuer_warning,
    request_connection_string,
)
from rdsssl.pki import crl_policy, crypto
from rdsssl.rds import service_profile

CERT_ACLS = guard.CERT_ACLS
DEFAULT_MIN_CRL_REMAINING = timedelta(days=7)  # an expired CRL locks out every certificate user


class Effect(str, enum.Enum):
    """What a change costs the instance, in the order of severity."""

    NONE = "none"
    ACL_LOCK = "acl-lock"  # ~1 min during which the instance refuses other operations
    RESTART = "restart"  # ~3 min restart; open sessions are dropped


_SEVERITY = {Effect.NONE: 0, Effect.ACL_LOCK: 1, Effect.RESTART: 2}


@dataclass(frozen=True, eq=False)
class CrlFromStore:
    """A CRL requirement rather than a fixed PEM: the instance's CRL is current when, for every
    CA in the bundle, it holds a CRL signed by that CA that lists exactly `revoked` and stays
    valid for at least `min_remaining`. Only then is no upload needed; otherwise `build()` signs
    a fresh one (which bumps the store's CRL number, so it is never called on a dry run)."""

    revoked: frozenset[int]
    build: Callable[[], str]
    min_remaining: timedelta = DEFAULT_MIN_CRL_REMAINING


@dataclass(frozen=True)
class DesiredSsl:
    """What an instance should hold; None leaves a field as it is on the instance."""

    client_ca_pem: str | None = None
    crl: str | CrlFromStore | None = None
    acl: AclMode | None = None
    replication_acl: AclMode | None = None
    disable_client_ca: bool = False
    server: DesiredServer | None = None  # None: server SSL left as it is (`server_ssl_plan`)

    @property
    def client_part(self) -> bool:
        """Some client CA / CRL / ACL field is asked for."""
        fields = (self.client_ca_pem, self.crl, self.acl, self.replication_acl)
        return self.disable_client_ca or any(f is not None for f in fields)


@dataclass(frozen=True)
class Change:
    """One differing field, shown to the user before anything is sent. `code` and `reason` say
    why, for a program and for people (for a fresh CRL: `CrlStatus`); nobody parses `after`."""

    field: str
    before: str
    after: str
    effect: Effect
    code: str = ""
    reason: str = ""


@dataclass(frozen=True)
class PlanWarning:
    """Something the person should know before the change goes out; `code` is stable
    (`crl-over-size-budget`), `message` is for people."""

    code: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Plan:
    """The changes for one instance and the single request that realises them."""

    instance_id: str
    changes: tuple[Change, ...]
    request: SslModifyRequest | None
    warnings: tuple[PlanWarning, ...] = ()
    crl_source: CrlFromStore | None = None  # a CRL to sign at apply time
    server_source: ServerCertFromStore | None = None  # a server certificate to issue then
    retired_server_cert: frozenset[str] = frozenset()  # must be gone afterwards (evidence)

    @property
    def noop(self) -> bool:
        """True when the instance already holds the desired configuration."""
        return not self.changes

    @property
    def effect(self) -> Effect:
        """The most severe effect of all changes (what the user must plan for)."""
        worst = Effect.NONE
        for change in self.changes:
            if _SEVERITY[change.effect] > _SEVERITY[worst]:
                worst = change.effect
        return worst

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary; PEM text never appears, only fingerprints."""
        return {
            "instance": self.instance_id,
            "effect": self.effect.value,
            "changes": [vars(c) | {"effect": c.effect.value} for c in self.changes],
            "warnings": [w.message for w in self.warnings],
            "warning_codes": [w.code for w in self.warnings],
        }


# ---------------------------------------------------------------- comparing


def _fps(pem: str | None, what: str) -> frozenset[str]:
    if not pem or not pem.strip():
        return frozenset()
    return crypto.pem_fingerprints(pem.encode(), source=what)


def _short(fps: frozenset[str]) -> str:
    return ", ".join(sorted(f[:16] for f in fps)) if fps else "(none)"


@dataclass(frozen=True)
class CrlStatus:
    """Whether an instance's CRL satisfies a `CrlFromStore` requirement, and why not.

    `code`: `current`; `no-client-ca`; a `crl_policy.Code` value (the CRL on the instance is
    refused by the CRL policy: missing, expired, not yet valid, listing a CA, ...);
    `renewal-window` (it reaches nextUpdate within `min_remaining`); `revocations-pending`
    (a revocation of the store is not on it)."""

    code: str
    reason: str

    @property
    def current(self) -> bool:
        """True when no upload is needed."""
        return self.code == "current"


def crl_status(
    crl_pem: str | None,
    ca_pem: str,
    req: CrlFromStore,
    *,
    now: datetime,
    restart_margin: timedelta = crl_policy.DEFAULT_RESTART_MARGIN,
) -> CrlStatus:
    """The instance's CRL against `req`, judged by the one CRL policy (`rdsssl.pki.crl_policy`)."""
    if not ca_pem.strip():
        return CrlStatus("no-client-ca", "the instance has no client CA")
    verdict = crl_policy.evaluate_pem(
        ca_pem, crl_pem, now=now, restart_margin=restart_margin, source="the instance's CRL"
    )
    if not verdict.ok:
        finding = verdict.findings[0]
        return CrlStatus(finding.code.value, finding.message())
    next_update = verdict.next_update
    if next_update is not None and next_update - now < req.min_remaining:
        days = req.min_remaining.days
        when = next_update.strftime("%Y-%m-%dT%H:%M:%SZ")
        return CrlStatus("renewal-window", f"its nextUpdate {when} is under {days} days away")
    missing = req.revoked - verdict.listed
    if missing:
        return CrlStatus(
            "revocations-pending", f"{len(missing)} local revocation(s) not yet on the instance"
        )
    return CrlStatus("current", "current")


def plan(
    desired: DesiredSsl,
    ssl: SslState,
    *,
    instance_id: str,
    now: datetime | None = None,
    restart_margin: timedelta = crl_policy.DEFAULT_RESTART_MARGIN,
) -> Plan:
    """Compare desired with observed and build the one request that realises the difference."""
    now = now or datetime.now(timezone.utc)
    changes: list[Change] = []
    fields: dict[str, object] = {}
    source: CrlFromStore | None = None
    server = ServerDiff()
    if desired.server is not None:  # SSL itself and the server certificate (server_ssl_plan)
        server = diff_server(desired.server, ssl, now=now)
        for name, before, after, code, reason in server.changes:
            changes.append(Change(name, before, after, Effect.RESTART, code, reason))
        fields.update(server.fields)
        if desired.server.ssl == SSL_OFF:
            if desired.client_part:
                raise ConfigError(
                    "SSL off takes the client CA, CRL and ACLs with it: ask for no client "
                    "setting together with ssl off"
                )
            return _plan(instance_id, ssl, changes, fields, None, server)
    observed_ca = _fps(ssl.client_ca_pem, "the instance's client CA")
    if desired.disable_client_ca:
        if observed_ca:
            changes.append(Change("client_ca", _short(observed_ca), "(disabled)", Effect.RESTART))
            fields["client_ca_enabled"] = False
        return _plan(instance_id, ssl, changes, fields, None, server)
    ca_pem = desired.client_ca_pem
    if ca_pem is not None:
        wanted = _fps(ca_pem, "the desired client CA")
        if wanted != observed_ca:
            changes.append(Change("client_ca", _short(observed_ca), _short(wanted), Effect.RESTART))
            fields.update(client_ca_enabled=True, client_ca_pem=ca_pem)
    effective_ca = ca_pem if ca_pem is not None else (ssl.client_ca_pem or "")
    observed_crl = _fps(ssl.crl_pem, "the instance's CRL")
    if isinstance(desired.crl, CrlFromStore):
        status = crl_status(
            ssl.crl_pem, effective_ca, desired.crl, now=now, restart_margin=restart_margin
        )
        if not status.current:
            after = f"a fresh CRL ({status.reason})"
            change = Change(
                "crl", _short(observed_crl), after, Effect.RESTART, status.code, status.reason
            )
            changes.append(change)
            source = desired.crl  # signed in apply(), so a dry run leaves the store untouched
    elif desired.crl is not None:
        wanted = _fps(desired.crl, "the desired CRL")
        if wanted != observed_crl:
            changes.append(Change("crl", _short(observed_crl), _short(wanted), Effect.RESTART))
            fields.update(crl_enabled=True, crl_pem=desired.crl)
    for name, want, have in (
        ("acl", desired.acl, ssl.acl),
        ("replication_acl", desired.replication_acl, ssl.replication_acl),
    ):
        if want is not None and want != have:
            changes.append(
                Change(name, have.value if have else "(none)", want.value, Effect.ACL_LOCK)
            )
            fields[name] = want
    return _plan(instance_id, ssl, changes, fields, source, server)


def _plan(
    instance_id: str,
    ssl: SslState,
    changes: list[Change],
    fields: dict[str, object],
    source: CrlFromStore | None,
    server: ServerDiff,
) -> Plan:
    if not changes:
        return Plan(instance_id, (), None)
    request = SslModifyRequest(
        instance_id=instance_id,
        connection_string=request_connection_string(server, ssl, instance_id),
        **fields,  # type: ignore[arg-type]
    )
    return Plan(
        instance_id,
        tuple(changes),
        request,
        crl_source=source,
        server_source=server.source,
        retired_server_cert=server.retired,
    )


# ---------------------------------------------------------------- validating


def validate(
    plan_: Plan,
    desired: DesiredSsl,
    instance: InstanceInfo,
    ssl: SslState,
    *,
    now: datetime,
    crl_pem: str | None = None,
    restart_margin: timedelta = crl_policy.DEFAULT_RESTART_MARGIN,
    crl_size_budget: int | None = None,
) -> list[PlanWarning]:
    """The local checks made before anything is sent; raises on anything the service would
    refuse or that would lock users out (the CRL that will be live is judged by the one CRL
    policy, `rdsssl.pki.crl_policy`, against the CA bundle that will be live). Returns warnings
    (CRL size, ...)."""
    warnings: list[PlanWarning] = []
    request = plan_.request
    if request is None or request.ssl_enabled is False:  # SSL off: nothing of the client left
        return warnings
    issuer = issuer_warning([c.code for c in plan_.changes if c.field == "ssl"], ssl)
    if issuer is not None:
        warnings.append(PlanWarning("server-ca-changes", issuer))
    ca_enabled_after = (
        bool(ssl.client_ca_pem)
        if request.client_ca_enabled is None
        else (request.client_ca_enabled)
    )
    ca_pem_after = request.client_ca_pem if request.client_ca_pem else (ssl.client_ca_pem or "")
    if request.client_ca_pem:
        crypto.load_ca_certificates(
            request.client_ca_pem.encode(), source="the client CA bundle", now=now
        )
    for name, acl in (("ACL", request.acl), ("ReplicationACL", request.replication_acl)):
        if acl is None:
            continue
        if not ca_enabled_after:
            raise ConfigError(
                f"{name} {acl.value} needs the client CA enabled: set a client CA "
                "in the same apply (ca_dir / ca_bundle) or first"
            )
        if acl is AclMode.VERIFY_FULL and instance.major_version < 12:
            raise ConfigError(
                f"{name} verify-full needs PostgreSQL >= 12; {instance.instance_id} "
                f"runs {instance.engine_version}: use verify-ca"
            )
    crl_after = crl_pem if crl_pem is not None else (request.crl_pem or None)
    if (request.crl_enabled or plan_.crl_source) and not ca_enabled_after:
        raise ConfigError("a CRL needs the client CA enabled: set a client CA first or together")
    fresh_later = plan_.crl_source is not None and crl_pem is None  # signed when applied
    if crl_after is None and ssl.crl_pem and request.client_ca_pem and not fresh_later:
        crl_after = ssl.crl_pem  # a CA change keeps the old CRL: it must still cover the bundle
    if crl_after and ca_enabled_after:
        budget = service_profile.CRL_SIZE_BUDGET if crl_size_budget is None else crl_size_budget
        warnings += _check_crl(
            crl_after, ca_pem_after, now=now, restart_margin=restart_margin, budget=budget
        )
    return warnings


def _check_crl(
    crl_pem: str, ca_pem: str, *, now: datetime, restart_margin: timedelta, budget: int
) -> list[PlanWarning]:
    verdict = crl_policy.evaluate_pem(ca_pem, crl_pem, now=now, restart_margin=restart_margin)
    verdict.raise_if_refused("refusing to upload this CRL")
    size = len(crl_pem.encode())
    if size > budget:
        message = (
            f"the CRL is {size} bytes, above the {budget}-byte budget: the RDS API may refuse "
            "the request as too long (entries of certificates expired over 30 days ago are "
            "already dropped)"
        )
        return [PlanWarning("crl-over-size-budget", message)]
    return []


def refuse_ssl_off(instance_id: str, ssl: SslState) -> None:
    """ConfigError (exit 3, before any call) when server SSL is off: the client CA, CRL and
    ACLs ride on it, and ModifyDBInstanceSSL needs a ConnectionString it then does not have."""
    if not ssl.ssl_enabled or not ssl.connection_string:
        raise ConfigError(
            f"SSL is off on {instance_id} (SSLEnabled off, no ConnectionString): SSL must be "
            f"enabled on the instance first (rdsssl instance enable-ssl {instance_id}, or "
            '`ssl = "cloud"` in rdsssl.toml), then run this again; nothing was sent'
        )


def guard_need(plan_: Plan, ssl: SslState) -> guard.Need | None:
    """Why this plan could lock users out (the lockout guard's reason), or None."""
    return guard.need_for(plan_.request, ssl, guard_target(plan_, ssl))


def guard_reason(plan_: Plan, ssl: SslState) -> str | None:
    """The lockout guard's reason as a sentence, or None (for plan displays)."""
    need = guard_need(plan_, ssl)
    return need.reason if need else None


def guard_target(plan_: Plan, ssl: SslState) -> guard.Target:
    fresh = plan_.crl_source.revoked if plan_.crl_source is not None else None
    return guard.target_of(plan_.request, ssl, fresh_crl_revoked=fresh)


def same_plan(a: Plan, b: Plan) -> bool:
    """Whether two plans of one instance make the same change (what was shown is what is
    sent): the same fields, from the same values, to the same values."""
    return a.instance_id == b.instance_id and a.changes == b.changes


def describe_changes(plan_: Plan) -> str:
    """The changes of a plan in one line (for messages)."""
    if plan_.noop:
        return "no change"
    return "; ".join(f"{c.field}: {c.before} -> {c.after}" for c in plan_.changes)
