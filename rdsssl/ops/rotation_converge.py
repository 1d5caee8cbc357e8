"""The instance steps of a rotation (stage, retire, rollback): bring every instance to trust
exactly a target set of CAs, each with its CRL, in ONE change per instance.

Resumability: each instance step is recorded in ``rotation.json`` once done. An instance that
was changed by a run killed before it could record that is recognised by what it holds
(``holds``): when it already trusts exactly the target CAs and its CRLs are signed by exactly
those CAs, the desired CRL is expressed as a ``CrlFromStore`` requirement, so ``planning.plan``
finds nothing to do and ``apply`` makes zero calls (a fixed, freshly signed CRL would differ and
cost a second restart). A busy instance (a killed run's restart still under way) is waited for
before it is judged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from cryptography import x509

from rdsssl.errors import ApiError, ConfigError
from rdsssl.models import InstanceInfo, SslState
from rdsssl.ops import guard
from rdsssl.ops import plan as planning
from rdsssl.ops.apply import apply
from rdsssl.ops.rotation_context import Context, Event
from rdsssl.ops.rotation_state import Step, StepRecord
from rdsssl.ops.waiting import observe
from rdsssl.pki import crl_policy, crl_verdict, crypto
from rdsssl.rds.acceptors import instance_ready
from rdsssl.rds.waiters import wait_until
from rdsssl.store.castore import CaStore

__all__ = ["BundleRefused", "ProofFor", "for_each_instance", "holds"]

ProofFor = Callable[[str], guard.Proof | None]  # instance id -> the lockout guard's proof


class BundleRefused(ApiError):
    """The service refused a client CA bundle of several CAs: an overlap is impossible there.
    Expiry is then covered by ``ca renew`` (the same CA, one change); a key change needs a
    maintenance window (clients move in one step)."""


def _fps(pem: str | None, what: str) -> frozenset[str]:
    if not pem or not pem.strip():
        return frozenset()
    return crypto.pem_fingerprints(pem.encode(), source=what)


_SHAPE = frozenset(
    {
        crl_verdict.Code.NO_CRL,
        crl_verdict.Code.NOT_A_CRL,
        crl_verdict.Code.UNPARSABLE,
        crl_verdict.Code.FOREIGN_CRL,
        crl_verdict.Code.BAD_SIGNATURE,
        crl_verdict.Code.MISSING_CA,
    }
)


def holds(ssl: SslState, cas: Sequence[x509.Certificate], *, now: datetime) -> bool:
    """True when the instance trusts exactly ``cas`` and its CRLs are the CRLs of exactly them
    (each CA covered, none of another CA): the shape the step targeting ``cas`` leaves. Whether
    those CRLs are fresh enough is the CRL requirement's business (``planning.crl_status``)."""
    if _fps(ssl.client_ca_pem, "the instance's client CA") != {crypto.fingerprint(c) for c in cas}:
        return False
    bundle = "".join(crypto.cert_pem(c).decode() for c in cas)
    verdict = crl_policy.evaluate_pem(bundle, ssl.crl_pem, now=now, source="the instance's CRL")
    return not verdict.codes & _SHAPE


class _Crls:
    """The CRLs for a target bundle: what they must list, and one PEM per run, signed only when
    an instance needs it (each build consumes a CRL number in its store)."""

    def __init__(self, stores: Sequence[CaStore], *, now: datetime, days: int) -> None:
        self._stores, self._now, self._days = stores, now, days
        self._pem: str | None = None
        self.revoked = frozenset().union(*(s.live_revocations(now=now) for s in stores))

    def pem(self) -> str:
        if self._pem is None:
            built = [s.build_crl(now=self._now, days=self._days) for s in self._stores]
            self._pem = "".join(b.pem.decode() for b in built)
        return self._pem


def for_each_instance(
    ctx: Context, step: Step, stores: Sequence[CaStore], *, proof_for: ProofFor | None
) -> bool:
    """Bring every instance of the rotation to trust exactly the CAs of ``stores`` (with
    their CRLs); True when all of them are confirmed. Stops at the first error."""
    crls = _Crls(stores, now=ctx.clock(), days=ctx.options.crl_days)
    finished = True
    for iid in list(ctx.state.instances):
        if ctx.state.instance_done(iid, step):
            ctx.emit(Event(step, "unchanged", instance=iid, detail="done by an earlier run"))
            continue
        finished = _converge(ctx, iid, step, stores, crls, proof_for) and finished
    return finished


def _ready(ctx: Context, iid: str) -> tuple[InstanceInfo, SslState]:
    """The instance's state once it is not busy: a change sent by a killed run is judged by
    its outcome, not by the half-way state."""
    info, ssl = ctx.api.describe_instance(iid), ctx.api.describe_ssl(iid)
    busy = info.status != "Running" or ssl.last_modify_status == "setting"
    if busy and not ctx.options.dry_run:
        wait_until(
            instance_ready(),
            observe(ctx.api, iid),
            timeout=ctx.options.timeout,
            on_progress=ctx.options.on_progress,
        )
        info, ssl = ctx.api.describe_instance(iid), ctx.api.describe_ssl(iid)
    return info, ssl


def _check_part_of_rotation(ctx: Context, iid: str, step: Step, ssl: SslState) -> None:
    have = _fps(ssl.client_ca_pem, "the instance's client CA")
    old, new = ctx.state.old, ctx.state.new
    need = {Step.STAGE: {old.fingerprint}, Step.RETIRE: {new.fingerprint}}.get(
        step, {old.fingerprint, new.fingerprint}
    )
    if have & need:
        return
    if step is Step.RETIRE:
        raise ConfigError(f"{iid} does not trust the new CA yet: stage it first")
    raise ConfigError(
        f"{iid} does not trust the old CA {old.subject} ({old.fingerprint[:16]}); it "
        f"holds {', '.join(sorted(f[:16] for f in have)) or 'no client CA'}. This rotation "
        "would replace a CA it does not know: configure the instance first (rdsssl apply)"
    )


def _converge(
    ctx: Context,
    iid: str,
    step: Step,
    stores: Sequence[CaStore],
    crls: _Crls,
    proof_for: ProofFor | None,
) -> bool:
    _info, ssl = _ready(ctx, iid)
    cas = [s.ca_cert for s in stores]
    bundle = "".join(crypto.cert_pem(c).decode() for c in cas)
    there = holds(ssl, cas, now=ctx.clock())
    if not there:
        _check_part_of_rotation(ctx, iid, step, ssl)
    crl: str | planning.CrlFromStore
    if there:  # already there (maybe by a killed run): only a stale CRL counts
        crl = planning.CrlFromStore(revoked=crls.revoked, build=crls.pem)
    elif ctx.options.dry_run:
        ctx.emit(Event(step, "would-change", instance=iid, plan=_dry_plan(iid, ssl, cas)))
        return True
    else:
        crl = crls.pem()
    desired = planning.DesiredSsl(client_ca_pem=bundle, crl=crl)
    preview = planning.plan(
        desired, ssl, instance_id=iid, restart_margin=ctx.options.restart_margin
    )
    if not preview.noop and not ctx.options.dry_run:  # shown before anything is sent
        ctx.emit(Event(step, "changing", instance=iid, plan=preview))
    try:
        result = apply(
            ctx.api,
            iid,
            desired,
            ctx.options.apply_options(),
            proof=proof_for(iid) if proof_for else None,
            on_progress=ctx.options.on_progress,
        )
    except ApiError as exc:
        if step is Step.STAGE and exc.code == "InvalidClientCACert":
            raise _bundle_refused(ctx, iid, exc) from None
        raise
    if result.dry_run:
        outcome = "unchanged" if result.plan.noop else "would-change"
        ctx.emit(Event(step, outcome, instance=iid, plan=result.plan))
        return True
    outcome = "changed" if ctx.options.wait else "sent"
    outcome = outcome if result.applied else "unchanged"
    record = StepRecord(ctx.at(), outcome, request_id=result.request_id)
    ctx.state.mark(iid, step, record)
    ctx.save()
    ctx.emit(Event(step, outcome, instance=iid, request_id=result.request_id, plan=result.plan))
    return record.done


def _bundle_refused(ctx: Context, iid: str, exc: ApiError) -> BundleRefused:
    return BundleRefused(
        f"{iid}: the service refused a client CA bundle of the old and the new CA "
        f"({exc.raw_message}), so this instance cannot trust both at once and an "
        "overlapping rotation is impossible. The refused call changed nothing; "
        f"the rotation stays at phase {ctx.state.phase.value}. If the old CA is "
        f"only expiring, renew it instead: rdsssl ca renew --ca-dir {ctx.old.path} "
        "(same key, one restart, no client re-issue), then rdsssl apply. A key "
        "change on this service needs a maintenance window: clients move to the "
        "new CA in one step, old certificates are refused from the change on",
        action=exc.action,
        code=exc.code,
        request_id=exc.request_id,
        http_status=exc.http_status,
    )


def _dry_plan(iid: str, ssl: SslState, cas: Sequence[x509.Certificate]) -> planning.Plan:
    """A dry run's plan when a fresh CRL is needed: it is not signed on a dry run (that would
    use a CRL number), so the CRL change is described instead of computed."""
    bundle = "".join(crypto.cert_pem(c).decode() for c in cas)
    base = planning.plan(planning.DesiredSsl(client_ca_pem=bundle), ssl, instance_id=iid)
    before = ", ".join(sorted(f[:16] for f in _fps(ssl.crl_pem, "the instance's CRL")))
    names = " + ".join(crypto.name_of(c) for c in cas)
    after = f"fresh CRLs of {names} (signed when applied)"
    crl = planning.Change("crl", before or "(none)", after, planning.Effect.RESTART)
    return replace(base, changes=(*base.changes, crl))
