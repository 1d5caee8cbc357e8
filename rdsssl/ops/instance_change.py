"""The one-instance change every mutating command makes (``instance enable-client-ca`` and
friends, ``apply -f``, ``plan -f``), as a use case the command line only renders.

One instance, one change: `InstanceChange.prepare` confirms an earlier run's unconfirmed change
and makes the plan to show (a dry-run `rdsssl.ops.apply.apply`: Describe calls only, never a CRL
signed). After the caller's confirmation, `InstanceChange.complete` applies it: re-read (stop if
the plan differs from the one shown), the lockout guard with a proof built from the probe
options, one ModifyDBInstanceSSL call, the wait, then with probe options a probe afterwards
(without a password under ACL `cert`, so a certificate-only login is what it proves) and, if
asked, a revoked certificate that must be refused. Everything lands in one `InstanceOutcome`
with ONE JSON shape (`to_json`). A failure after the call is the outcome's `error`; one before
it (bad input, the guard, an API error) is raised, since nothing was changed.

Many instances: `rdsssl.ops.apply_fleet`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from rdsssl.errors import ExitCode, RdsSslError, VerificationError
from rdsssl.models import AclMode
from rdsssl.ops import apply as applying
from rdsssl.ops.apply import ApplyOptions, ApplyResult
from rdsssl.ops.clock import SYSTEM_CLOCK, Clock
from rdsssl.ops.guard import Proof
from rdsssl.ops.plan import DesiredSsl, fingerprints, guard_reason
from rdsssl.ops.probe import ProbeOutcome, ProbeResult
from rdsssl.ops.probe_options import ProbeOptions, run_probe
from rdsssl.ops.server_ssl_proof import ServerProof
from rdsssl.rds.protocol import RdsApi
from rdsssl.rds.waiters import Progress

__all__ = ["InstanceChange", "InstanceOutcome", "error_json", "probe_json"]


def probe_json(result: ProbeResult) -> dict[str, Any]:
    """The JSON shape of a probe (no secret: the detail has the password masked)."""
    return {
        "outcome": result.outcome.value,
        "ok": result.ok,
        "user": result.user,
        "host": result.target.host,
        "port": result.target.port,
        "sslmode": result.sslmode,
        "detail": result.detail,
        "hint": result.hint,
        "elapsed": round(result.elapsed, 3),
    }


def error_json(exc: BaseException) -> dict[str, Any]:
    """The JSON shape of an error (secret-free: errors never hold one)."""
    code = int(exc.exit_code) if isinstance(exc, RdsSslError) else int(ExitCode.UNEXPECTED)
    message = str(exc) if isinstance(exc, RdsSslError) else f"unexpected {type(exc).__name__}"
    return {"type": type(exc).__name__, "message": " ".join(message.split()), "exit_code": code}


@dataclass
class InstanceOutcome:
    """One instance's way through a command: its plan, the change, the proofs, or the error.
    `dry_run` is set by the one-instance commands (their documents carry it)."""

    instance_id: str
    source: str  # the desired-state entry, or "command line"
    desired: DesiredSsl | None = None
    preview: ApplyResult | None = None
    result: ApplyResult | None = None
    verification: ProbeResult | None = None
    revoked: ProbeResult | None = None
    error: BaseException | None = None
    dry_run: bool | None = None
    first: InstanceOutcome | None = None  # a first call of its own (SSL on, then the rest)
    server_proof: ServerProof | None = None  # after a server-side change (server_ssl_proof)

    @property
    def exit_code(self) -> int:
        """0, or the exit code of the error (1 for one that is not an rdsssl error)."""
        if self.error is None:
            return int(ExitCode.OK)
        if isinstance(self.error, RdsSslError):
            return int(self.error.exit_code)
        return int(ExitCode.UNEXPECTED)

    @property
    def guard(self) -> str | None:
        """Why the planned change could lock users out (the lockout guard's reason)."""
        if self.preview is None or self.preview.before is None:
            return None
        return guard_reason(self.preview.plan, self.preview.before)

    @property
    def needs_run(self) -> bool:
        """Something to send, or an earlier run's change to confirm first."""
        return self.preview is not None and (
            not self.preview.plan.noop or self.preview.pending is not None
        )

    @property
    def status(self) -> str:
        """One word for summaries: failed, changed, sent, planned, up-to-date."""
        if self.error is not None:
            return "failed"
        if self.result is not None and self.result.applied:
            return "changed" if self.result.final is not None else "sent"
        if self.preview is not None and not self.preview.plan.noop:
            return "planned"
        return "up-to-date"

    def to_json(self) -> dict[str, Any]:
        """The instance in a JSON document: plan, request id, fingerprints, proofs, error."""
        result, applied = self.result or self.preview, self.result
        doc: dict[str, Any] = {
            "instance": self.instance_id,
            "ok": self.error is None,  # the per-instance envelope every fleet command shares
            "exit_code": (0 if self.error is None else int(error_json(self.error)["exit_code"])),
            "source": self.source,
            "status": self.status,
            "plan": result.plan.to_dict() if result else None,
            "guard": self.guard,
            "applied": bool(applied and applied.applied),
            "waited": bool(applied and applied.final is not None),
            "request_id": applied.request_id if applied else None,
            "fingerprints": fingerprints(result.final) if result and result.final else None,
            "guard_probe": probe_json(applied.guard) if applied and applied.guard else None,
            "verification": probe_json(self.verification) if self.verification else None,
            "elapsed": round(applied.elapsed, 1) if applied else None,
        }
        if self.dry_run is not None:
            doc["dry_run"] = self.dry_run
        if self.first is not None:
            doc["first_call"] = self.first.to_json()
        if self.server_proof is not None:
            doc["server_proof"] = self.server_proof.to_json()
        if self.revoked is not None:
            doc["revoked_probe"] = {
                "user": self.revoked.user,
                "outcome": self.revoked.outcome.value,
            }
        if self.error is not None:
            doc["error"] = error_json(self.error)
        return doc


def _ignore(_: str) -> None:
    return None


def _ssl_was_off(outcome: InstanceOutcome) -> bool:
    """The plan shown switches SSL on: nobody logs in with SSL (let alone a certificate) today,
    so the lockout guard's live probe is a plain login (the probe user and password work); the
    certificate is checked against the target locally, and proven by the probe afterwards."""
    preview = outcome.preview
    return preview is not None and preview.before is not None and not preview.before.ssl_enabled


@dataclass(frozen=True)
class InstanceChange:
    """The one-instance use case under `options`. `probe`: the certificate that proves a
    tightening (the guard) and the change (afterwards). `on_note`: progress sentences (an
    earlier change being confirmed, a busy instance waited for). `progress_for`: a progress
    sink per instance (a fleet names the instance on every line), else `on_progress`."""

    options: ApplyOptions
    probe: ProbeOptions | None = None
    clock: Clock = SYSTEM_CLOCK
    on_progress: Callable[[Progress], None] | None = None
    on_note: Callable[[str], None] = _ignore
    progress_for: Callable[[str], Callable[[Progress], None] | None] | None = None

    def _progress(self, instance_id: str) -> Callable[[Progress], None] | None:
        if self.progress_for is not None:
            return self.progress_for(instance_id)
        return self.on_progress

    def prepare(self, api: RdsApi, instance_id: str, desired: DesiredSsl) -> InstanceOutcome:
        """Confirm an earlier unconfirmed change (not on a dry run: the plan is then made
        against what the instance will be, not what it still shows), then the plan to show."""
        if not self.options.dry_run:
            self.confirm_earlier(api, instance_id)
        return self.preview(api, InstanceOutcome(instance_id, "command line", desired))

    def confirm_earlier(self, api: RdsApi, instance_id: str) -> str | None:
        """`rdsssl.ops.apply.confirm_earlier`, announced; its RequestId, or None."""
        earlier = self.options.audit_log.pending(instance_id)
        if earlier is None:
            return None
        self.on_note(
            f"{instance_id}: a change sent earlier (RequestId {earlier.get('request_id', '?')}) "
            "is not confirmed yet: confirming it first"
        )
        return applying.confirm_earlier(
            api,
            instance_id,
            self.options,
            clock=self.clock,
            on_progress=self._progress(instance_id),
        )

    def preview(self, api: RdsApi, outcome: InstanceOutcome) -> InstanceOutcome:
        """The plan, validated locally: a dry run (Describe calls only), guard not yet applied.
        An earlier run's unconfirmed change is reported (`preview.pending`)."""
        assert outcome.desired is not None
        options = ApplyOptions(dry_run=True, force=True, audit=self.options.audit)
        outcome.preview = applying.apply(api, outcome.instance_id, outcome.desired, options)
        return outcome

    def complete(
        self, api: RdsApi, outcome: InstanceOutcome, *, revoked: ProbeOptions | None = None
    ) -> InstanceOutcome:
        """After the caller's confirmation: nothing on a dry run or when nothing is to be done;
        else `apply_one`, then with `revoked` a connection with that certificate must be
        refused as revoked once the change is live (a `VerificationError` otherwise)."""
        assert outcome.preview is not None
        outcome.dry_run = self.options.dry_run
        if not outcome.needs_run or self.options.dry_run:
            if self.options.dry_run and not outcome.preview.plan.noop:
                self.on_note(f"{outcome.instance_id}: dry run, nothing sent")
            return outcome
        self.apply_one(api, outcome)
        final = outcome.result.final if outcome.result is not None else None
        if revoked is None or final is None or outcome.error is not None:
            return outcome
        iid = outcome.instance_id
        refused = outcome.revoked = run_probe(api, iid, revoked)
        if refused.outcome is not ProbeOutcome.REVOKED:
            outcome.error = VerificationError(
                f"{iid}: the CRL is live, but the revoked certificate of "
                f"{refused.user} was not refused as revoked ({refused.outcome.value}: "
                f"{refused.detail}); check that the CRL lists it (rdsssl crl show)"
            )
        return outcome

    def apply_one(self, api: RdsApi, outcome: InstanceOutcome) -> InstanceOutcome:
        """The change itself: re-read (stop if the plan differs from the one shown), guard (a
        proof unless `force`), one Modify call, wait, and with probe options a probe afterwards.
        A failed probe after the change is a `VerificationError` in `outcome.error`."""
        assert outcome.desired is not None
        iid, probe = outcome.instance_id, self.probe
        proof = None
        if probe is not None and probe.given:
            assert probe.user is not None
            mode = "disable" if _ssl_was_off(outcome) else "verify-full"
            proof = Proof(
                probe.user, probe.cert, probe.key, lambda: run_probe(api, iid, probe, sslmode=mode)
            )
        result = applying.apply(
            api,
            iid,
            outcome.desired,
            replace(self.options, dry_run=False),
            proof=proof,
            expected=outcome.preview.plan if outcome.preview is not None else None,
            clock=self.clock,
            on_progress=self._progress(iid),
        )
        outcome.result = result
        for note in result.notes:
            self.on_note(f"{iid}: {note}")
        if result.applied and result.final is not None and probe is not None and probe.given:
            cert_only = result.final.acl is AclMode.CERT
            checked = run_probe(api, iid, probe.without_password() if cert_only else probe)
            outcome.verification = checked
            if not checked.ok:
                outcome.error = VerificationError(
                    f"{iid}: the change was applied, but the probe as {checked.user} now fails "
                    f"({checked.outcome.value}: {checked.detail}); {checked.hint}".rstrip("; ")
                )
        return outcome
