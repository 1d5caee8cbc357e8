"""Plan files: `rdsssl plan -f rdsssl.toml --out plan.json`, then `rdsssl apply plan.json`
applies exactly that plan, as Terraform's saved plans do.

What a plan file holds (JSON, one document, written atomically with mode 0600):

- `format` ("rdsssl-plan") and `version` (1): anything else is refused (exit 3);
- `created`: when the plan was made (UTC); `source`: the desired-state file it came from (its
  absolute path and SHA-256; informational, the plan does not read it again);
- per instance: its id, region and entry, `before` (`rdsssl.ops.plan.fingerprints` of the
  SSL configuration the plan was made against) and the `connection_string` the call names;
  `changes`, `effect` (restart / acl-lock / none), `restarts`, `warnings`, `guard`; `request`:
  the exact fields of the one ModifyDBInstanceSSL call (a client CA PEM is a certificate:
  public); and `crl_from_store` when a CRL is to be signed at apply time;
- `checksum`: SHA-256 over the canonical JSON of everything else. It catches a garbled,
  truncated or hand-edited file (exit 3); it is not a signature: whoever can write the file can
  recompute it, so keep plan files where only their owner can write them.

A CRL from a CA store is never signed by `plan` (signing bumps the store's CRL number, and a
plan may never be applied). The file describes it instead (`StoreCrl`): the store's directory,
the fingerprint of its CA certificate, the serials the CRL will list, its validity in days. At
apply time the store must still have that CA and exactly those revocations (a revocation made
since the plan would put a CRL on the instance that the plan did not show: the plan is stale,
exit 6); only then is the CRL signed, once per store, before any instance is changed.

Private keys are never written: the writer and the reader both refuse a document holding a
PEM private key block.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rdsssl.errors import InputError, StalePlan
from rdsssl.models import InstanceSpec, SslModifyRequest, SslState
from rdsssl.ops.desired import DesiredBuilder
from rdsssl.ops.instance_change import InstanceOutcome
from rdsssl.ops.plan import Change, CrlFromStore, DesiredSsl, Effect, Plan, PlanWarning
from rdsssl.ops.plan import fingerprints as ssl_fingerprints
from rdsssl.pki import crypto
from rdsssl.store.fsutil import atomic_write

__all__ = [
    "FORMAT",
    "VERSION",
    "PlanFile",
    "PlannedInstance",
    "StoreCrl",
    "check_current",
    "check_store",
    "checksum",
    "crl_days",
    "dumps",
    "planned_instance",
    "source_digest",
    "to_apply",
    "write",
]

FORMAT = "rdsssl-plan"
VERSION = 1
PRIVATE_KEY_MARK = "PRIVATE KEY-----"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class StoreCrl:
    """A CRL that `apply` signs from a CA store (never signed by `plan`)."""

    ca_dir: Path
    ca_fingerprints: tuple[str, ...]
    revoked: frozenset[int]
    days: int
    min_remaining: timedelta


@dataclass(frozen=True)
class PlannedInstance:
    """One instance of a plan file: what it held, and the one call that changes it."""

    instance_id: str
    source: str
    region: str | None
    before: dict[str, object]
    connection_string: str
    changes: tuple[Change, ...]
    request: SslModifyRequest | None
    crl: StoreCrl | None = None
    warnings: tuple[PlanWarning, ...] = ()
    guard: str | None = None

    @property
    def plan(self) -> Plan:
        """The plan as `rdsssl.ops.apply.apply` compares it (`same_plan`) and sends it; the
        CRL source is set by `to_apply`."""
        return Plan(self.instance_id, self.changes, self.request, self.warnings)


@dataclass(frozen=True)
class PlanFile:
    """A loaded (or about to be written) plan file."""

    created: datetime
    source: Path
    source_sha256: str
    instances: tuple[PlannedInstance, ...]

    @property
    def pending(self) -> tuple[PlannedInstance, ...]:
        """The instances that get a call."""
        return tuple(i for i in self.instances if i.changes)


# ------------------------------------------------------------------------------ writing


def _request_json(request: SslModifyRequest | None) -> dict[str, Any] | None:
    if request is None:
        return None
    doc: dict[str, Any] = {
        "connection_string": request.connection_string,
        "client_ca_enabled": request.client_ca_enabled,
        "client_ca_pem": request.client_ca_pem,
        "crl_enabled": request.crl_enabled,
        "crl_pem": request.crl_pem,
        "acl": request.acl.value if request.acl else None,
        "replication_acl": request.replication_acl.value if request.replication_acl else None,
    }
    return doc


def _instance_json(item: PlannedInstance) -> dict[str, Any]:
    plan = item.plan
    crl = item.crl
    return {
        "instance": item.instance_id,
        "source": item.source,
        "region": item.region,
        "before": item.before,
        "connection_string": item.connection_string,
        "effect": plan.effect.value,
        "restarts": plan.effect is Effect.RESTART,
        "changes": [vars(c) | {"effect": c.effect.value} for c in item.changes],
        "warnings": [{"code": w.code, "message": w.message} for w in item.warnings],
        "guard": item.guard,
        "request": _request_json(item.request),
        "crl_from_store": None
        if crl is None
        else {
            "ca_dir": str(crl.ca_dir),
            "ca_fingerprints": list(crl.ca_fingerprints),
            "revoked": [format(s, "X") for s in sorted(crl.revoked)],
            "days": crl.days,
            "min_remaining_seconds": int(crl.min_remaining.total_seconds()),
        },
    }


def checksum(body: dict[str, Any]) -> str:
    """The SHA-256 of a plan document without its checksum, over canonical JSON (sorted keys,
    no whitespace), so that re-indenting the file does not change it but any value does."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def dumps(plan_file: PlanFile) -> str:
    """The plan file's text (with its checksum)."""
    body: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created": plan_file.created.astimezone(timezone.utc).strftime(TIME_FORMAT),
        "source": {"path": str(plan_file.source), "sha256": plan_file.source_sha256},
        "instances": [_instance_json(i) for i in plan_file.instances],
    }
    text = json.dumps({**body, "checksum": checksum(body)}, indent=2) + "\n"
    if PRIVATE_KEY_MARK in text:  # cannot happen through the builders; never let it reach a disk
        raise InputError("refusing to write a plan file that holds a private key")
    return text


def write(path: Path, plan_file: PlanFile) -> None:
    """Write the plan file atomically (readers see the old file or the new one), mode 0600."""
    text = dumps(plan_file)
    try:
        atomic_write(path, text.encode("utf-8"), mode=0o600)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the plan file ({exc.strerror})") from None


def source_digest(path: Path) -> str:
    """The SHA-256 of the desired-state file a plan came from."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror})") from None


def planned_instance(
    outcome: InstanceOutcome, spec: InstanceSpec, region: str | None, builder: DesiredBuilder
) -> PlannedInstance:
    """The plan-file entry of one planned instance (`outcome.preview` made against `before`)."""
    preview = outcome.preview
    assert preview is not None and preview.before is not None
    plan, before = preview.plan, preview.before
    if any(change.field == "ssl" for change in plan.changes):
        raise InputError(
            f"{outcome.instance_id}: a plan file does not carry server SSL changes (ssl = ... "
            "in the desired-state file); apply them with rdsssl apply -f FILE"
        )
    crl = None
    if plan.crl_source is not None:
        assert spec.ca_dir is not None  # a CRL from a store comes only with ca_dir
        ca_pem = builder.ca_pem(spec.ca_dir).encode()
        crl = StoreCrl(
            ca_dir=spec.ca_dir.resolve(),
            ca_fingerprints=tuple(sorted(crypto.pem_fingerprints(ca_pem, source="the CA"))),
            revoked=plan.crl_source.revoked,
            days=builder.crl_days,
            min_remaining=plan.crl_source.min_remaining,
        )
    return PlannedInstance(
        instance_id=outcome.instance_id,
        source=outcome.source,
        region=region,
        before=ssl_fingerprints(before),
        connection_string=before.connection_string,
        changes=plan.changes,
        request=plan.request,
        crl=crl,
        warnings=plan.warnings,
        guard=outcome.guard,
    )


def crl_days(plan_file: PlanFile) -> int | None:
    """The validity the planned CRLs are signed with (one per plan: one builder made it)."""
    days = {i.crl.days for i in plan_file.instances if i.crl is not None}
    if len(days) > 1:
        raise InputError("a plan file asks for CRLs of several validities; run rdsssl plan again")
    return days.pop() if days else None


# ------------------------------------------------------------------------------ applying


def _field_diffs(before: dict[str, object], now: dict[str, object]) -> str:
    keys = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    return ", ".join(keys) or "connection_string"


def check_current(item: PlannedInstance, ssl: SslState) -> None:
    """`StalePlan` (exit 6) when the instance no longer holds what the plan was made against
    (its fingerprints, or the connection string the call names)."""
    now = ssl_fingerprints(ssl)
    if now != item.before or ssl.connection_string != item.connection_string:
        raise StalePlan(
            f"stale plan: {item.instance_id} changed since the plan was made "
            f"({_field_diffs(item.before, now)} differ); nothing was sent; "
            "run rdsssl plan again"
        )


def check_store(item: PlannedInstance, builder: DesiredBuilder) -> None:
    """`StalePlan` (exit 6) when the CA store of a planned CRL has another CA or other
    revocations than the plan recorded (the CRL signed now would not be the planned one)."""
    crl = item.crl
    if crl is None:
        return
    ca_fps = tuple(sorted(crypto.pem_fingerprints(builder.ca_pem(crl.ca_dir).encode(), source="")))
    revoked = builder.crl_from_store(crl.ca_dir).revoked
    if ca_fps != tuple(sorted(crl.ca_fingerprints)) or revoked != crl.revoked:
        what = "CA certificate" if ca_fps != tuple(sorted(crl.ca_fingerprints)) else "revocations"
        raise StalePlan(
            f"stale plan: {item.instance_id}: the {what} of the CA store {crl.ca_dir} changed "
            "since the plan was made; nothing was sent; run rdsssl plan again"
        )


def to_apply(item: PlannedInstance, builder: DesiredBuilder) -> tuple[DesiredSsl, Plan]:
    """What `rdsssl.ops.apply.apply` needs to send exactly this plan: a `DesiredSsl` that asks
    for exactly the recorded fields, and the recorded plan as the one shown (`expected`). A CRL
    from a store is signed by `builder` (once per store) when the change is applied."""
    request = item.request
    assert request is not None, "an up-to-date instance has nothing to apply"
    crl: str | CrlFromStore | None = request.crl_pem
    source = None
    if item.crl is not None:
        store_crl = builder.crl_from_store(item.crl.ca_dir)
        source = CrlFromStore(item.crl.revoked, store_crl.build, item.crl.min_remaining)
        crl = source
    desired = DesiredSsl(
        client_ca_pem=request.client_ca_pem,
        crl=crl,
        acl=request.acl,
        replication_acl=request.replication_acl,
        disable_client_ca=request.client_ca_enabled is False,
    )
    return desired, Plan(item.instance_id, item.changes, request, item.warnings, source)
