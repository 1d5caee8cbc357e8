"""Use cases over one instance: describe, plan (desired vs observed), apply with one call, wait.

Every change follows the same rules (docs/ARCHITECTURE.md): read first, compare by parsed
fingerprints, call ModifyDBInstanceSSL only when something differs and then exactly once with
every differing field (one restart instead of the manual procedure's two restarts and a lock),
validate locally before sending anything, refuse changes that could lock users out unless a probe
proves otherwise, and wait until the read-back equals what was sent.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from rdsssl.errors import (
    ApiError,
    ConfigError,
    PlanChanged,
    WaiterError,
    WaiterTimeout,
)
from rdsssl.models import AclMode, InstanceInfo, Observation, SslModifyRequest, SslState
from rdsssl.ops import guard
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.probe import ProbeResult
from rdsssl.pki import crl_policy, crypto
from rdsssl.rds import service_profile
from rdsssl.rds.acceptors import instance_ready, ssl_applied
from rdsssl.rds.api import RdsApi
from rdsssl.rds.waiters import (
    DEFAULT_TIMEOUT,
    DENSE,
    Progress,
    Reads,
    WaiterSpec,
    wait_until,
)
from rdsssl.store.paths import instance_lock

CERT_ACLS = guard.CERT_ACLS
DEFAULT_MIN_CRL_REMAINING = timedelta(days=7)  # an expired CRL locks out every certificate user
DEFAULT_SETTLE = service_profile.DEFAULT_SETTLE
_MODIFY_ATTEMPTS = 3


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
class Plan:
    """The changes for one instance and the single request that realises them."""

    instance_id: str
    changes: tuple[Change, ...]
    request: SslModifyRequest | None
    warnings: tuple[str, ...] = ()
    crl_source: CrlFromStore | None = None  # a CRL to sign at apply time

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
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class ApplyResult:
    """What apply did: nothing (noop / dry run) or one Modify call, and what it observed."""

    plan: Plan
    applied: bool
    dry_run: bool
    request_id: str | None = None
    final: SslState | None = None
    guard: ProbeResult | None = None
    elapsed: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    before: SslState | None = None  # what the plan was made against
    pending: str | None = None  # an earlier run's change, sent and not yet confirmed (its id)


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
    observed_ca = _fps(ssl.client_ca_pem, "the instance's client CA")
    if desired.disable_client_ca:
        if observed_ca:
            changes.append(Change("client_ca", _short(observed_ca), "(disabled)", Effect.RESTART))
            fields["client_ca_enabled"] = False
        return _plan(instance_id, ssl, changes, fields, None)
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
    return _plan(instance_id, ssl, changes, fields, source)


def _plan(
    instance_id: str,
    ssl: SslState,
    changes: list[Change],
    fields: dict[str, object],
    source: CrlFromStore | None,
) -> Plan:
    if not changes:
        return Plan(instance_id, (), None)
    request = SslModifyRequest(
        instance_id=instance_id,
        connection_string=ssl.connection_string,
        **fields,  # type: ignore[arg-type]
    )
    return Plan(instance_id, tuple(changes), request, crl_source=source)


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
) -> list[str]:
    """The local checks made before anything is sent; raises on anything the service would
    refuse or that would lock users out (the CRL that will be live is judged by the one CRL
    policy, `rdsssl.pki.crl_policy`, against the CA bundle that will be live). Returns warnings
    (CRL size, ...)."""
    warnings: list[str] = []
    request = plan_.request
    if request is None:
        return warnings
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
) -> list[str]:
    verdict = crl_policy.evaluate_pem(ca_pem, crl_pem, now=now, restart_margin=restart_margin)
    verdict.raise_if_refused("refusing to upload this CRL")
    size = len(crl_pem.encode())
    if size > budget:
        return [
            f"the CRL is {size} bytes, above the {budget}-byte budget: the RDS API may refuse "
            "the request as too long (entries of certificates expired over 30 days ago are "
            "already dropped)"
        ]
    return []


def refuse_ssl_off(instance_id: str, ssl: SslState) -> None:
    """ConfigError (exit 3, before any call) when server SSL is off: the client CA, CRL and
    ACLs ride on it, and ModifyDBInstanceSSL needs a ConnectionString it then does not have."""
    if not ssl.ssl_enabled or not ssl.connection_string:
        raise ConfigError(
            f"SSL is off on {instance_id} (SSLEnabled off, no ConnectionString): SSL must be "
            "enabled on the instance first (the RDS console: Data Security > SSL), then run "
            "this again; nothing was sent"
        )


def guard_need(plan_: Plan, ssl: SslState) -> guard.Need | None:
    """Why this plan could lock users out (the lockout guard's reason), or None."""
    return guard.need_for(plan_.request, ssl, _target(plan_, ssl))


def guard_reason(plan_: Plan, ssl: SslState) -> str | None:
    """The lockout guard's reason as a sentence, or None (for plan displays)."""
    need = guard_need(plan_, ssl)
    return need.reason if need else None


def _target(plan_: Plan, ssl: SslState) -> guard.Target:
    fresh = plan_.crl_source.revoked if plan_.crl_source is not None else None
    return guard.target_of(plan_.request, ssl, fresh_crl_revoked=fresh)


def same_plan(a: Plan, b: Plan) -> bool:
    """Whether two plans of one instance make the same change (what was shown is what is
    sent): the same fields, from the same values, to the same values."""
    return a.instance_id == b.instance_id and a.changes == b.changes


# ---------------------------------------------------------------- applying


def fingerprints(ssl: SslState) -> dict[str, object]:
    """The secret-free identity of an SSL configuration, for audit lines and JSON output."""
    return {
        "client_ca": sorted(_fps(ssl.client_ca_pem, "the instance's client CA")),
        "crl": sorted(_fps(ssl.crl_pem, "the instance's CRL")),
        "acl": ssl.acl.value if ssl.acl else None,
        "replication_acl": ssl.replication_acl.value if ssl.replication_acl else None,
    }


def target_fingerprints(request: SslModifyRequest, before: SslState) -> dict[str, object]:
    """`fingerprints` of the state `request` leads to from `before` (what a sent change should
    read back as: kept in its `sent` audit line, so that a later run can confirm it)."""
    if request.client_ca_enabled is False:
        return {"client_ca": [], "crl": [], "acl": None, "replication_acl": None}
    now = fingerprints(before)
    if request.client_ca_pem is not None:
        now["client_ca"] = sorted(_fps(request.client_ca_pem, "the client CA sent"))
    if request.crl_pem is not None:
        now["crl"] = sorted(_fps(request.crl_pem, "the CRL sent"))
    if request.acl is not None:
        now["acl"] = request.acl.value
    if request.replication_acl is not None:
        now["replication_acl"] = request.replication_acl.value
    return now


def observe(api: RdsApi, instance_id: str) -> Reads:
    """What the waiters poll on one instance: DescribeDBInstanceSSL and
    DescribeDBInstanceAttribute as separate reads, so that `wait_until` makes one API call per
    poll while the change is in progress and adds the attribute read only to confirm `Running`
    once the SSL read-back says done (rdsssl.rds.waiters decides; API errors become observations
    there)."""
    return Reads(
        ssl=lambda: api.describe_ssl(instance_id),
        instance=lambda: api.describe_instance(instance_id),
    )


def _read_back_matches(request: SslModifyRequest) -> Callable[[SslState], bool]:
    """The waiter's success test: the read-back equals what was sent (by fingerprint)."""

    def matches(ssl: SslState) -> bool:
        if request.client_ca_enabled is False:
            return not (ssl.client_ca_pem or "").strip()
        if request.client_ca_pem is not None and _fps(ssl.client_ca_pem, "ca") != _fps(
            request.client_ca_pem, "ca"
        ):
            return False
        if request.crl_pem is not None and _fps(ssl.crl_pem, "crl") != _fps(request.crl_pem, "crl"):
            return False
        if request.acl is not None and ssl.acl != request.acl:
            return False
        return request.replication_acl is None or ssl.replication_acl == request.replication_acl

    return matches


def confirm_earlier(
    api: RdsApi,
    instance_id: str,
    audit: AuditLog,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    profile: service_profile.ServiceProfile | None = None,
    settle: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    lock: bool = True,
) -> str | None:
    """Confirm a change an earlier run sent and never confirmed, before planning the next one
    (under a status lag the instance still looks as it did before that change, so a plan made
    now would be made against the past). Returns its RequestId, or None when nothing was
    pending. Its outcome line is written to `audit`."""
    line = audit.pending(instance_id)
    if line is None:
        return None
    audit.check_writable()
    profile = profile or service_profile.load()
    settle = profile.settle if settle is None else settle
    waiting = _Waiting(api, instance_id, timeout, settle, profile, sleep, clock, on_progress)
    held = instance_lock(instance_id) if lock else contextlib.nullcontext()
    with held:
        waiting.settle_pending(audit, now or datetime.now(timezone.utc))
    return str(line.get("request_id") or "?")


def apply(
    api: RdsApi,
    instance_id: str,
    desired: DesiredSsl,
    *,
    dry_run: bool = False,
    wait: bool = True,
    force: bool = False,
    proof: guard.Proof | None = None,
    expected: Plan | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    profile: service_profile.ServiceProfile | None = None,
    settle: float | None = None,
    restart_margin: timedelta = crl_policy.DEFAULT_RESTART_MARGIN,
    crl_size_budget: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    audit: AuditLog | None = None,
    lock: bool = True,
) -> ApplyResult:
    """Read, plan, validate, guard, then at most ONE ModifyDBInstanceSSL call and a wait.

    A busy instance (not Running, or a change still `setting`) is waited for first. A dry run
    makes only Describe calls and never signs a CRL. `expected`: the plan the user saw and
    confirmed; if the instance now calls for another one, nothing is sent (`PlanChanged`).
    `lock`: hold the instance's lock (`rdsssl.store.paths.instance_lock`) from the read to the call,
    so two runs never both send a change. `profile`: what the service is known to do (its
    timings place the waiter's dense polls; default: $RDSSSL_SERVICE_PROFILE, else the documented
    timings). `settle` (default:
    the profile's): how long to watch for a change to show before taking a quiet instance at
    its word, after an error and in the wait.
    """
    started = clock()
    now = now or datetime.now(timezone.utc)
    audit = audit or AuditLog.disabled()
    if not dry_run:
        audit.check_writable()  # never make a change the log cannot record
    profile = profile or service_profile.load()  # $RDSSSL_SERVICE_PROFILE, else documented
    settle = profile.settle if settle is None else settle
    waiting = _Waiting(api, instance_id, timeout, settle, profile, sleep, clock, on_progress)
    held = instance_lock(instance_id) if lock and not dry_run else contextlib.nullcontext()
    with held:
        earlier = audit.pending(instance_id)
        pending = str(earlier.get("request_id") or "?") if earlier else None
        confirmed = waiting.settle_pending(audit, now) if earlier and not dry_run else False
        info, ssl, notes = waiting.until_ready(dry_run=dry_run)
        the_plan = plan(
            desired, ssl, instance_id=instance_id, now=now, restart_margin=restart_margin
        )
        shown_plan_holds = expected is None or same_plan(the_plan, expected)
        if not shown_plan_holds and not (confirmed and the_plan.noop):
            assert expected is not None  # confirming an earlier change may leave nothing to do
            raise PlanChanged(
                f"{instance_id} changed since the plan was shown: it now needs "
                f"{_describe_changes(the_plan)} instead of {_describe_changes(expected)}. "
                "Nothing was sent; run the command again to see the new plan"
            )
        if the_plan.noop:
            return ApplyResult(
                the_plan,
                False,
                dry_run,
                elapsed=clock() - started,
                final=ssl,
                before=ssl,
                pending=None if confirmed else pending,
            )

        def validated(candidate: Plan) -> list[str]:
            return validate(
                candidate,
                desired,
                info,
                ssl,
                now=now,
                restart_margin=restart_margin,
                crl_size_budget=crl_size_budget,
            )

        warnings = validated(the_plan)
        need = guard_need(the_plan, ssl)
        checked = None
        if need is not None and not force and not dry_run:
            checked = guard.prove(
                need, proof, _target(the_plan, ssl), instance_id=instance_id, now=now
            )
        the_plan = replace(the_plan, warnings=tuple(warnings))
        if dry_run:
            return ApplyResult(
                the_plan,
                False,
                True,
                elapsed=clock() - started,
                notes=notes,
                before=ssl,
                pending=pending,
            )
        if the_plan.crl_source is not None:  # signed only now, so dry runs leave the store alone
            assert the_plan.request is not None
            pem = the_plan.crl_source.build()
            request = replace(the_plan.request, crl_enabled=True, crl_pem=pem)
            extra = validated(replace(the_plan, request=request))
            the_plan = replace(the_plan, request=request, warnings=tuple(warnings + extra))
        request_id, seen = waiting.send(the_plan, ssl, audit)
    try:
        final = waiting.confirm(the_plan, ssl, request_id, audit, seen=seen) if wait else None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM after the call: its `sent` line stays valid
        waiting.record(
            audit, the_plan, ssl, "interrupted", request_id,
            detail="the wait was interrupted; run again to confirm",
        )  # fmt: skip
        raise
    return ApplyResult(
        the_plan,
        True,
        False,
        request_id=request_id,
        final=final,
        guard=checked,
        elapsed=clock() - started,
        notes=notes,
        before=ssl,
    )


def _describe_changes(plan_: Plan) -> str:
    if plan_.noop:
        return "no change"
    return "; ".join(f"{c.field}: {c.before} -> {c.after}" for c in plan_.changes)


@dataclass(frozen=True)
class _Waiting:
    """One instance's reads, waits and its single change, with the caller's clock and sleep."""

    api: RdsApi
    instance_id: str
    timeout: float
    settle: float
    profile: service_profile.ServiceProfile
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    on_progress: Callable[[Progress], None] | None

    def _wait(self, spec: WaiterSpec, *, seen: bool = False) -> Observation:
        return wait_until(
            spec,
            observe(self.api, self.instance_id),
            timeout=self.timeout,
            sleep=self.sleep,
            clock=self.clock,
            on_progress=self.on_progress,
            seen_transition=seen,
        )

    def until_ready(self, *, dry_run: bool) -> tuple[InstanceInfo, SslState, tuple[str, ...]]:
        """Read the instance; wait first when another change is under way (not on a dry run);
        refuse a locked instance (locks last until expiry, a full disk, ... are resolved)."""
        info = self.api.describe_instance(self.instance_id)
        ssl = self.api.describe_ssl(self.instance_id)
        notes: tuple[str, ...] = ()
        if not dry_run and (info.status != "Running" or ssl.last_modify_status == "setting"):
            notes = (f"waited for {self.instance_id} to be ready (was {info.status})",)
            self._wait(instance_ready())
            info = self.api.describe_instance(self.instance_id)
            ssl = self.api.describe_ssl(self.instance_id)
        refuse_ssl_off(self.instance_id, ssl)
        if info.lock_mode and info.lock_mode != "Unlock":
            raise ApiError(
                f"{self.instance_id} is locked ({info.lock_mode}); unlock it first",
                code="IncorrectDBInstanceLockMode",
            )
        return info, ssl, notes

    def record(
        self,
        audit: AuditLog,
        the_plan: Plan,
        before: SslState,
        outcome: str,
        request_id: str | None,
        **extra: Any,
    ) -> None:
        if outcome in ("sent", "interrupted") and the_plan.request is not None:
            extra["target"] = target_fingerprints(the_plan.request, before)  # for a re-run
        audit.record(
            instance=self.instance_id,
            action="modify-ssl:" + ",".join(c.field for c in the_plan.changes),
            outcome=outcome,
            request_id=request_id,
            before=fingerprints(before),
            **extra,
        )

    def send(self, the_plan: Plan, before: SslState, audit: AuditLog) -> tuple[str, bool]:
        """The one Modify call; its `sent` audit line is on disk before anything else happens.

        After ANY failed call (throttling and busy answers included) the instance is re-read
        before anything is sent again, and a change that shows up is never sent twice: one
        change, one restart. A refusal that proves nothing was taken (a validation error)
        surfaces at once. Returns the request id and whether the change was already seen in
        progress (after an error, the re-read may have waited it out)."""
        request = the_plan.request
        assert request is not None
        matches = _read_back_matches(request)
        for attempt in range(1, _MODIFY_ATTEMPTS + 1):
            try:
                request_id = self.api.modify_ssl(request)
            except ApiError as exc:
                if not exc.retryable:
                    self.record(
                        audit,
                        the_plan,
                        before,
                        "api-error",
                        exc.request_id or None,
                        detail=exc.code,
                    )
                    raise
                taken = self._taken(matches, before)
                if taken is not None:
                    request_id = exc.request_id or "(accepted before the error)"
                    self.record(
                        audit,
                        the_plan,
                        before,
                        "sent",
                        request_id,
                        detail=f"taken despite {exc.code or type(exc).__name__}",
                    )
                    return request_id, taken
                if attempt == _MODIFY_ATTEMPTS:
                    self.record(
                        audit,
                        the_plan,
                        before,
                        "api-error",
                        exc.request_id or None,
                        detail=exc.code,
                    )
                    raise
                self.sleep(2.0 * attempt)
                if self._check_unchanged(before, matches):
                    request_id = exc.request_id or "(accepted before the error)"
                    self.record(
                        audit, the_plan, before, "sent", request_id,
                        detail=f"taken despite {exc.code or type(exc).__name__}",
                    )  # fmt: skip
                    return request_id, False
                continue
            self.record(audit, the_plan, before, "sent", request_id)
            return request_id, False
        raise AssertionError("unreachable")

    def _watch(
        self, matches: Callable[[SslState], bool], before: dict[str, object]
    ) -> tuple[str, SslState | None]:
        """Watch the instance for `settle` seconds for a change that `matches` describes:
        `seen` (it went through a restart or lock, now over, and reads back: the state is
        returned), `shown` (its values read back, no progress seen yet), `other` (a change ran
        and the read-back is something else), `quiet` (nothing but `before` all along)."""
        deadline = self.clock() + self.settle
        while True:
            try:
                info = self.api.describe_instance(self.instance_id)
                ssl = self.api.describe_ssl(self.instance_id)
            except ApiError as exc:
                if not exc.retryable:
                    raise
            else:
                if info.status != "Running" or ssl.last_modify_status == "setting":
                    obs = self._wait(instance_ready())
                    after = obs.ssl or self.api.describe_ssl(self.instance_id)
                    return ("seen" if matches(after) else "other"), after
                if matches(ssl) and fingerprints(ssl) != before:
                    return "shown", ssl
                if fingerprints(ssl) != before:
                    return "other", ssl
            if self.clock() >= deadline:
                return "quiet", None
            self.sleep(min(1.0, max(0.0, deadline - self.clock())))

    def _taken(self, matches: Callable[[SslState], bool], before: SslState) -> bool | None:
        """After a failed Modify: did the service take the change anyway? True: taken and seen
        in progress; False: taken, its values read back; None: the instance stayed as it was
        for the whole settle period, so it was not taken. Another change: `PlanChanged`."""
        verdict, _ = self._watch(matches, fingerprints(before))
        if verdict == "other":
            raise PlanChanged(
                f"{self.instance_id}: another change ran on the instance while this one was "
                "being sent; nothing more was sent. Run the command again to see the new plan"
            )
        return {"seen": True, "shown": False}.get(verdict)

    def _check_unchanged(self, before: SslState, matches: Callable[[SslState], bool]) -> bool:
        """Before a re-send: True when the change shows up after all (it was taken: send
        nothing more); `PlanChanged` when the instance holds something else than what the plan
        was made against; False when it is unchanged (send again)."""
        ssl = self.api.describe_ssl(self.instance_id)
        if matches(ssl) and fingerprints(ssl) != fingerprints(before):
            return True
        if fingerprints(ssl) != fingerprints(before):
            raise PlanChanged(
                f"{self.instance_id} changed while this change was being sent; nothing more "
                "was sent. Run the command again to see the new plan"
            )
        return False

    def settle_pending(self, audit: AuditLog, now: datetime) -> bool:
        """A change an earlier run sent and never confirmed (its `sent` line is the last one
        for this instance: the run was killed, interrupted or used --no-wait) is confirmed
        first, with the same evidence as any wait, so that a re-run neither sends it again
        while the service still hides it (status lag) nor calls it done too early (early
        read-back). Its outcome line is written now."""
        line = audit.pending(self.instance_id)
        if line is None or not isinstance(line.get("target"), dict):
            return False
        target: dict[str, object] = line["target"]
        rid = line.get("request_id")
        before = line.get("before") if isinstance(line.get("before"), dict) else {}

        def matches(ssl: SslState) -> bool:
            return fingerprints(ssl) == target

        def record(outcome: str, detail: str, after: SslState | None = None) -> None:
            audit.record(
                instance=self.instance_id,
                action=str(line.get("action", "modify-ssl")),
                outcome=outcome,
                request_id=str(rid) if rid else None,
                before=before,
                after=fingerprints(after) if after is not None else {},
                detail=detail,
                now=now,
            )

        verdict, ssl = self._watch(matches, before or {})
        if verdict == "shown":  # its values read back: the usual evidence before calling it done
            obs = self._wait(ssl_applied(matches, settle=self.settle))
            verdict, ssl = "seen", obs.ssl
        if verdict == "seen" and ssl is not None and ssl.last_modify_status == "failed":
            record("failed", f"confirmed by a later run: {ssl.modify_status_reason}", ssl)
        elif verdict == "seen":
            record("ok", "confirmed by a later run", ssl)
        elif verdict == "other":
            record("superseded", "another change ran on the instance since", ssl)
        else:
            record("not-seen", f"no trace of it after {self.settle:g}s; planning afresh")
        return True

    def confirm(
        self, the_plan: Plan, before: SslState, request_id: str, audit: AuditLog, *, seen: bool
    ) -> SslState | None:
        """Wait for the change to be live; the outcome gets its own audit line (`ok`,
        `failed`, `timeout`, or `interrupted`, after which the change stays unconfirmed)."""
        request = the_plan.request
        assert request is not None
        stale_failure = before.last_modify_status == "failed"  # an earlier change's verdict
        spec = ssl_applied(
            _read_back_matches(request),
            stale_failure=stale_failure,
            expected=self.profile.expected(restarts=request.restarts),
            settle=self.settle,
            dense=self.profile.dense_interval(restarts=request.restarts, cap=DENSE),
        )
        try:
            obs = self._wait(spec, seen=seen)
        except WaiterError as exc:
            outcome = "timeout" if isinstance(exc, WaiterTimeout) else "failed"
            self.record(audit, the_plan, before, outcome, request_id, detail=str(exc))
            raise
        self.record(
            audit,
            the_plan,
            before,
            "ok",
            request_id,
            after=fingerprints(obs.ssl) if obs.ssl else {},
        )
        return obs.ssl
