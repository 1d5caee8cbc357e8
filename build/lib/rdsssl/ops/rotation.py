"""Two-phase client CA rotation with overlap and rollback.

A client CA cannot be swapped in one step without locking out every client that still holds a
certificate from the old CA, so the rotation overlaps (prior art §4.2: "bundle old and new"):

1. ``stage``: every instance trusts old + new CA, with one CRL per CA (PostgreSQL refuses the
   users of a CA without a CRL as "unknown ca", postgres-client-cert-behaviour §4 R4) and the
   ACL untouched: ONE ModifyDBInstanceSSL per instance, so one restart.
2. ``reissue``: every user holding a valid old-CA certificate gets one from the new CA (same key
   type), written to ``OUT_ROOT/<user>/`` like ``cert renew``. Old certificates stay valid.
3. ``verify``: a probe with a new certificate must succeed on every instance (exit 6 if not).
4. ``retire``: new CA + its CRL only (second restart); old certificates are refused from now.

``rollback`` (until retire) puts the old CA and its CRL back (one restart). The new
certificates stay issued in the new store; staging again reuses them.

Resumability: each instance step is recorded in ``rotation.json`` once done. An instance that
was changed by a run killed before it could record that is recognised by what it holds: when it
already trusts exactly the target CAs and its CRLs are signed by exactly those CAs, the desired
CRL is expressed as a ``CrlFromStore`` requirement, so ``planning.plan`` finds nothing to do and
``apply`` makes zero calls (a fixed, freshly signed CRL would differ and cost a second restart).
A busy instance (a killed run's restart still under way) is waited for before it is judged.
Reissue records the user's intent before issuing and goes through ``cert renew``'s crash-safe
swap, so a certificate a killed run issued is finished and adopted, and a key it staged but
never got certified is discarded: never two valid new certificates per user.

User names: a valid old-CA certificate whose CN is no valid user name (an old store's) cannot be
reissued. A run that would stage refuses up front (``check_users``), before any instance
restarts; revoking those certificates clears it. A run past staging reissues everyone else,
reports each such certificate, and then fails (exit 3) without completing the step.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from rdsssl.errors import (
    ApiError,
    ConfigError,
    CryptoError,
    InputError,
    UsageError,
    VerificationError,
)
from rdsssl.models import InstanceInfo, SslState
from rdsssl.ops import guard
from rdsssl.ops import plan as planning
from rdsssl.ops.apply import ApplyOptions, apply
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.cert_renewal import finish_interrupted, renew_due
from rdsssl.ops.probe import ProbeResult
from rdsssl.ops.renewal_plan import RenewalPlan, tls12_skips
from rdsssl.ops.rotation_state import RotationState, Step, StepRecord, UserRecord, save
from rdsssl.ops.waiting import observe
from rdsssl.pki import crl_policy, crl_verdict, crypto
from rdsssl.rds import waiters
from rdsssl.rds.acceptors import instance_ready
from rdsssl.rds.api import RdsApi
from rdsssl.rds.service_profile import ServiceProfile
from rdsssl.rds.waiters import Progress, wait_until
from rdsssl.store.castore import CaStore
from rdsssl.store.files import client_file_names, user_dir
from rdsssl.store.records import CertRecord, format_time, parse_time

__all__ = [
    "BundleRefused",
    "Event",
    "Options",
    "Prober",
    "Rotation",
    "check_users",
    "holds",
]

# store_renew's staging directory of a renewal in progress; see Rotation._finish_interrupted.
_RENEW_PENDING = ".pending"
Prober = Callable[[str, str, Path, Path], ProbeResult]  # (instance, user, cert, key)


class BundleRefused(ApiError):
    """The service refused a client CA bundle of several CAs: an overlap is impossible there.
    Expiry is then covered by ``ca renew`` (the same CA, one change); a key change needs a
    maintenance window (clients move in one step)."""


@dataclass(frozen=True)
class Options:
    """How a run behaves; the defaults suit a library caller that waits for every change."""

    dry_run: bool = False
    wait: bool = True
    force: bool = False
    timeout: float = waiters.DEFAULT_TIMEOUT
    audit: AuditLog | None = None
    days: int = crypto.DEFAULT_LEAF_DAYS
    crl_days: int = crypto.DEFAULT_CRL_DAYS
    probe_user: str | None = None
    probe_cert: Path | None = None
    probe_key: Path | None = None
    on_progress: Callable[[Progress], None] | None = None
    restart_margin: timedelta = crl_policy.DEFAULT_RESTART_MARGIN
    profile: ServiceProfile | None = None
    settle: float | None = None

    def apply_options(self) -> ApplyOptions:
        """The options of each instance's change."""
        return ApplyOptions(
            dry_run=self.dry_run,
            wait=self.wait,
            force=self.force,
            timeout=self.timeout,
            settle=self.settle,
            restart_margin=self.restart_margin,
            profile=self.profile,
            audit=self.audit,
        )


@dataclass(frozen=True)
class Event:
    """One thing a run did (or would do, on a dry run), reported as it happens.

    ``outcome``: changing (with the plan, before the call) | changed | unchanged | sent |
    would-change | reissued | adopted |
    would-reissue | refused (a certificate that cannot be reissued) | ok | failed |
    would-probe | skipped | done."""

    step: Step
    outcome: str
    instance: str | None = None
    user: str | None = None
    detail: str = ""
    request_id: str | None = None
    plan: planning.Plan | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (fingerprints only, never PEM)."""
        return {
            "step": self.step.value,
            "outcome": self.outcome,
            "instance": self.instance,
            "user": self.user,
            "detail": self.detail,
            "request_id": self.request_id,
            "plan": self.plan.to_dict() if self.plan else None,
        }


# ---------------------------------------------------------------- instance helpers


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


def _issued_by(path: Path, ca: x509.Certificate) -> None:
    """InputError unless the certificate in ``path`` was signed by ``ca``."""
    try:
        cert = crypto.load_certificates(path.read_bytes(), source=str(path), what="a cert")[0]
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        raise InputError(
            f"{path} is not a certificate from the new CA ({crypto.name_of(ca)}): verify must "
            "prove that a NEW certificate works"
        ) from None


def _serial_on_disk(out_dir: Path) -> int | None:
    """The serial of ``out_dir/client.crt`` when ``client.key`` matches it, else None."""
    try:
        crt, key = out_dir / "client.crt", out_dir / "client.key"
        cert = crypto.load_certificates(crt.read_bytes(), source=str(crt), what="a cert")[0]
        pkey = crypto.load_private_key(key.read_bytes(), source=str(key), passphrase=None)
        crypto.check_key_matches(cert, pkey, source=str(key))
    except (OSError, InputError):
        return None
    return cert.serial_number


def _users_to_reissue(old: CaStore, now: datetime) -> dict[str, CertRecord]:
    """Each user's newest valid (unrevoked, unexpired) certificate from the old CA (users
    whose name ``_name_problem`` refuses are left out: see ``_unusable``)."""
    newest: dict[str, CertRecord] = {}
    for row in old.certificates():
        valid = row.state(now) == "valid" and _name_problem(row.cn) is None
        if valid and (row.cn not in newest or row.not_after >= newest[row.cn].not_after):
            newest[row.cn] = row
    return dict(sorted(newest.items()))


def _name_problem(cn: str) -> str | None:
    """Why no certificate can be reissued for ``cn`` (``crypto.validate_role_name``), or None."""
    try:
        crypto.validate_role_name(cn)
    except CryptoError as exc:
        return str(exc)
    return None


def _unusable(
    old: CaStore, now: datetime, *, allow_tls13_only: bool = False
) -> list[tuple[CertRecord, str]]:
    """The valid old-CA certificates that cannot be reissued (a bad user name; a key type that
    fails over TLS 1.2, unless `allow_tls13_only`), with the reason."""
    rows = [r for r in old.certificates() if r.state(now) == "valid"]
    found = [(r, p) for r, p in ((r, _name_problem(r.cn)) for r in rows) if p is not None]
    if not allow_tls13_only:
        named = {r.serial for r, _ in found}
        plan = tls12_skips(RenewalPlan(due=[r for r in rows if r.serial not in named], blocked=[]))
        found += [(s.record, s.problem) for s in plan.skipped]
    return found


def _revoke_hint(old: CaStore, rows: list[tuple[CertRecord, str]]) -> str:
    commands = " && ".join(
        f"rdsssl cert revoke --ca-dir {old.path} --serial {r.serial_hex}" for r, _ in rows
    )
    return f"fix them as said, or revoke them ({commands}), then run rotate ca again"


def check_users(old: CaStore, now: datetime, *, allow_tls13_only: bool = False) -> None:
    """InputError listing the valid old-CA certificates that could not be reissued (bad user
    names, keys that fail over TLS 1.2), so that a rotation refuses them before staging restarts
    any instance."""
    bad = _unusable(old, now, allow_tls13_only=allow_tls13_only)
    if bad:
        listed = "; ".join(f"certificate {r.serial_hex}: {problem}" for r, problem in bad)
        raise InputError(
            f"{len(bad)} valid certificate(s) of the old CA cannot be reissued ({listed}). "
            f"No instance was changed: {_revoke_hint(old, bad)}"
        )


# ---------------------------------------------------------------- the run


class Rotation:
    """One run over a rotation state. ``path`` None (dry runs) keeps the state in memory."""

    def __init__(
        self,
        api: RdsApi,
        *,
        old: CaStore,
        new: CaStore,
        state: RotationState,
        path: Path | None,
        options: Options,
        clock: Callable[[], datetime],
        report: Callable[[Event], None] = lambda e: None,
        prober: Prober | None = None,
    ) -> None:
        self.api, self.old, self.new, self.state = api, old, new, state
        self.path, self.options, self.clock = path, options, clock
        self._report, self._prober = report, prober

    def _at(self) -> str:
        return format_time(self.clock())

    def _save(self) -> None:
        if self.path is not None and not self.options.dry_run:
            save(self.path, self.state)

    def _emit(self, event: Event) -> None:
        self._report(event)

    def run(self, steps: Sequence[Step]) -> list[Step]:
        """Perform ``steps`` in order, each to completion; returns the steps completed. Stops
        early after --no-wait (changes sent, not confirmed: the next run confirms them)."""
        handlers: dict[Step, Callable[[], bool]] = {
            Step.STAGE: self._stage,
            Step.REISSUE: self._reissue,
            Step.VERIFY: self._verify,
            Step.RETIRE: self._retire,
            Step.ROLLBACK: self._rollback,
        }
        completed: list[Step] = []
        dry = self.options.dry_run
        if Step.STAGE in steps and not self.state.is_done(Step.STAGE):
            check_users(self.old, self.clock())  # before staging restarts any instance
        for step in steps:
            if self.state.is_done(step):
                continue
            self.state.begin(step, at=self._at())
            if not handlers[step]():
                break
            self.state.complete(step, at=self._at())
            self._save()
            reached = f"phase {self.state.phase.value}"
            self._emit(Event(step, "done", detail=f"would reach {reached}" if dry else reached))
            completed.append(step)
        return completed

    # -- instance steps ----------------------------------------------------------------------

    def _stage(self) -> bool:
        return self.for_each_instance(Step.STAGE, [self.old, self.new], proof_for=None)

    def _retire(self) -> bool:
        return self.for_each_instance(Step.RETIRE, [self.new], proof_for=self._new_cert_guard)

    def _rollback(self) -> bool:
        done = self.for_each_instance(Step.ROLLBACK, [self.old], proof_for=self._given_cert_guard)
        if done and self.state.users:
            self._emit(
                Event(
                    Step.ROLLBACK,
                    "skipped",
                    detail=f"{len(self.state.users)} certificate(s) from the new CA stay issued "
                    f"in {self.new.path}; staging again reuses them",
                )
            )
        return done

    def for_each_instance(
        self,
        step: Step,
        stores: Sequence[CaStore],
        *,
        proof_for: Callable[[str], guard.Proof | None] | None,
    ) -> bool:
        """Bring every instance of the rotation to trust exactly the CAs of ``stores`` (with
        their CRLs); True when all of them are confirmed. Stops at the first error."""
        crls = _Crls(stores, now=self.clock(), days=self.options.crl_days)
        finished = True
        for iid in list(self.state.instances):
            if self.state.instance_done(iid, step):
                self._emit(Event(step, "unchanged", instance=iid, detail="done by an earlier run"))
                continue
            finished = self._converge(iid, step, stores, crls, proof_for) and finished
        return finished

    def _ready(self, iid: str) -> tuple[InstanceInfo, SslState]:
        """The instance's state once it is not busy: a change sent by a killed run is judged by
        its outcome, not by the half-way state."""
        info, ssl = self.api.describe_instance(iid), self.api.describe_ssl(iid)
        busy = info.status != "Running" or ssl.last_modify_status == "setting"
        if busy and not self.options.dry_run:
            wait_until(
                instance_ready(),
                observe(self.api, iid),
                timeout=self.options.timeout,
                on_progress=self.options.on_progress,
            )
            info, ssl = self.api.describe_instance(iid), self.api.describe_ssl(iid)
        return info, ssl

    def _check_part_of_rotation(self, iid: str, step: Step, ssl: SslState) -> None:
        have = _fps(ssl.client_ca_pem, "the instance's client CA")
        old, new = self.state.old, self.state.new
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
        self,
        iid: str,
        step: Step,
        stores: Sequence[CaStore],
        crls: _Crls,
        proof_for: Callable[[str], guard.Proof | None] | None,
    ) -> bool:
        _info, ssl = self._ready(iid)
        cas = [s.ca_cert for s in stores]
        bundle = "".join(crypto.cert_pem(c).decode() for c in cas)
        there = holds(ssl, cas, now=self.clock())
        if not there:
            self._check_part_of_rotation(iid, step, ssl)
        crl: str | planning.CrlFromStore
        if there:  # already there (maybe by a killed run): only a stale CRL counts
            crl = planning.CrlFromStore(revoked=crls.revoked, build=crls.pem)
        elif self.options.dry_run:
            self._emit(Event(step, "would-change", instance=iid, plan=_dry_plan(iid, ssl, cas)))
            return True
        else:
            crl = crls.pem()
        desired = planning.DesiredSsl(client_ca_pem=bundle, crl=crl)
        preview = planning.plan(
            desired, ssl, instance_id=iid, restart_margin=self.options.restart_margin
        )
        if not preview.noop and not self.options.dry_run:  # shown before anything is sent
            self._emit(Event(step, "changing", instance=iid, plan=preview))
        try:
            result = apply(
                self.api,
                iid,
                desired,
                self.options.apply_options(),
                proof=proof_for(iid) if proof_for else None,
                on_progress=self.options.on_progress,
            )
        except ApiError as exc:
            if step is Step.STAGE and exc.code == "InvalidClientCACert":
                raise BundleRefused(
                    f"{iid}: the service refused a client CA bundle of the old and the new CA "
                    f"({exc.raw_message}), so this instance cannot trust both at once and an "
                    "overlapping rotation is impossible. The refused call changed nothing; "
                    f"the rotation stays at phase {self.state.phase.value}. If the old CA is "
                    f"only expiring, renew it instead: rdsssl ca renew --ca-dir {self.old.path} "
                    "(same key, one restart, no client re-issue), then rdsssl apply. A key "
                    "change on this service needs a maintenance window: clients move to the "
                    "new CA in one step, old certificates are refused from the change on",
                    action=exc.action,
                    code=exc.code,
                    request_id=exc.request_id,
                    http_status=exc.http_status,
                ) from None
            raise
        if result.dry_run:
            outcome = "unchanged" if result.plan.noop else "would-change"
            self._emit(Event(step, outcome, instance=iid, plan=result.plan))
            return True
        outcome = "changed" if self.options.wait else "sent"
        outcome = outcome if result.applied else "unchanged"
        record = StepRecord(self._at(), outcome, request_id=result.request_id)
        self.state.mark(iid, step, record)
        self._save()
        self._emit(
            Event(step, outcome, instance=iid, request_id=result.request_id, plan=result.plan)
        )
        return record.done

    # -- probes ------------------------------------------------------------------------------

    def _probe_files(self) -> tuple[str, Path, Path]:
        """The user and the NEW certificate to probe with."""
        opts = self.options
        if opts.probe_user is None:
            raise UsageError(
                "verify needs a user to probe as: --probe-user USER (a user reissued in this "
                "rotation; add --probe-password-env VAR when the ACL wants a password)"
            )
        if (opts.probe_cert is None) != (opts.probe_key is None):
            raise UsageError("--probe-cert and --probe-key go together")
        if opts.probe_cert is not None and opts.probe_key is not None:
            _issued_by(opts.probe_cert, self.new.ca_cert)
            return opts.probe_user, opts.probe_cert, opts.probe_key
        record = self.state.users.get(opts.probe_user)
        if record is None or not record.done:
            done = sorted(u for u, r in self.state.users.items() if r.done)
            raise UsageError(
                f"no certificate was reissued for {opts.probe_user!r} in this rotation (reissued:"
                f" {', '.join(done) or 'none yet'}); probe as one of them, or pass "
                "--probe-cert/--probe-key with a certificate from the new CA"
            )
        folder = user_dir(Path(self.state.out_root), opts.probe_user)
        return opts.probe_user, folder / "client.crt", folder / "client.key"

    def _probe(self, iid: str, user: str, cert: Path, key: Path) -> ProbeResult:
        if self._prober is None:
            raise UsageError("this run has no way to probe instances (no prober given)")
        return self._prober(iid, user, cert, key)

    def _new_cert_guard(self, iid: str) -> guard.Proof | None:
        """Retire drops the old CA: the lockout guard probes with a new certificate."""
        if self.options.probe_user is None:
            return None  # apply refuses unless --force: dropping a CA needs a proof
        user, cert, key = self._probe_files()
        return guard.Proof(user, cert, key, lambda: self._probe(iid, user, cert, key))

    def _given_cert_guard(self, iid: str) -> guard.Proof | None:
        """Rollback drops the new CA: only a certificate the operator names proves anything."""
        opts = self.options
        if opts.probe_user is None or opts.probe_cert is None or opts.probe_key is None:
            return None
        user, cert, key = opts.probe_user, opts.probe_cert, opts.probe_key
        return guard.Proof(user, cert, key, lambda: self._probe(iid, user, cert, key))

    def _verify(self) -> bool:
        if self.options.dry_run:
            who = self.options.probe_user or "(needs --probe-user)"
            for iid in self.state.instances:
                self._emit(Event(Step.VERIFY, "would-probe", instance=iid, user=who))
            return True
        user, cert, key = self._probe_files()
        failures: list[str] = []
        for iid in self.state.instances:
            if self.state.instance_done(iid, Step.VERIFY):
                self._emit(Event(Step.VERIFY, "unchanged", instance=iid, detail="verified before"))
                continue
            result = self._probe(iid, user, cert, key)
            outcome = "ok" if result.ok else "failed"
            detail = f"{result.outcome.value}: {result.detail}"
            self.state.mark(iid, Step.VERIFY, StepRecord(self._at(), outcome, detail=detail))
            self._save()
            self._emit(Event(Step.VERIFY, outcome, instance=iid, user=user, detail=detail))
            if not result.ok:
                hint = f"; {result.hint}" if result.hint else ""
                failures.append(f"{iid}: {detail}{hint}")
        if failures:
            raise VerificationError(
                f"the probe as {user} with its new certificate failed on {len(failures)} "
                f"instance(s): {' | '.join(failures)}. Nothing was retired and old certificates "
                "keep working; fix this and run rotate ca again"
            )
        return True

    # -- reissue -----------------------------------------------------------------------------

    def _reissue(self) -> bool:
        now = self.clock()
        due = _users_to_reissue(self.old, now)
        refused = _unusable(self.old, now, allow_tls13_only=self.options.force)
        root = Path(self.state.out_root)
        targets = {user: user_dir(root, user) for user in due}  # refuse bad names first
        if not due and not refused:
            self._emit(Event(Step.REISSUE, "skipped", detail="no valid old-CA certificate"))
        for row, problem in refused:
            detail = f"certificate {row.serial_hex} is not reissued: {problem}"
            self._emit(Event(Step.REISSUE, "refused", detail=detail))
        skip = {r.serial for r, _ in refused}
        for user, old in due.items():
            if old.serial not in skip:
                self._reissue_one(user, old, root, targets[user], now)
        if refused:
            raise InputError(
                f"every other user was reissued, but {len(refused)} certificate(s) of the old "
                f"CA cannot be (see above); the reissue step stays open: "
                f"{_revoke_hint(self.old, refused)}"
            )
        return True

    def _reissue_one(
        self, user: str, old: CertRecord, root: Path, out_dir: Path, now: datetime
    ) -> None:
        """One user, through ``cert renew``'s crash-safe swap (``store_renew.renew_due``)
        signing with the NEW store. The intent is recorded first, so a run killed after the
        certificate went live but before it was recorded adopts it instead of issuing again."""
        record = self.state.users.get(user)
        if record is not None and record.new_serial is not None:
            row = self.new.get(int(record.new_serial, 16))
            if row is not None and row.state(now) == "valid":
                self._emit(Event(Step.REISSUE, "unchanged", user=user, detail=record.new_serial))
                return
        if self.options.dry_run:
            self._emit(Event(Step.REISSUE, "would-reissue", user=user, detail=old.serial_hex))
            return
        at = format_time(now)
        if record is not None and record.pending_since is not None:
            kept = self._finish_interrupted(user, parse_time(record.pending_since), root, now)
            if kept is not None:
                self._record_user(user, old, kept.serial_hex, out_dir, at)
                self._emit(Event(Step.REISSUE, "adopted", user=user, detail=kept.serial_hex))
                return
        self.state.set_user(user, UserRecord(old.serial_hex, pending_since=at), at=at)
        self._save()  # the intent is on disk before the certificate exists
        plan = RenewalPlan(due=[old], blocked=[])
        (done,) = renew_due(
            self.new,
            plan,
            now=now,
            out_root=root,
            days=self.options.days,
            allow_tls13_only=self.options.force,
        )
        self._record_user(user, old, done.new.serial_hex, out_dir, at)
        short = " (ends with the new CA, earlier than asked)" if done.truncated else ""
        detail = f"{old.serial_hex} -> {done.new.serial_hex} in {out_dir}{short}"
        self._emit(Event(Step.REISSUE, "reissued", user=user, detail=detail))

    def _record_user(self, user: str, old: CertRecord, serial: str, out_dir: Path, at: str) -> None:
        files = tuple(str(out_dir / n) for n in client_file_names("pem"))
        self.state.set_user(user, UserRecord(old.serial_hex, serial, at, None, files), at=at)
        self._save()

    def _finish_interrupted(
        self, user: str, since: datetime, root: Path, now: datetime
    ) -> CertRecord | None:
        """The certificate a killed run issued for ``user`` and put live, if any."""
        finish_interrupted(self.new, out_root=root, user=user)  # a certified key: finish it
        out_dir = user_dir(root, user)
        mine = self.new.certificates(user=user)
        if not mine:  # finish_interrupted skips users the store has never certified
            pending = out_dir / _RENEW_PENDING
            if pending.is_dir():  # a key staged by the killed run, never signed: unusable
                shutil.rmtree(pending)
            return None
        on_disk = _serial_on_disk(out_dir)
        live = [r for r in mine if r.serial == on_disk and r.created_at >= since]
        return live[0] if live and live[0].state(now) == "valid" else None


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
