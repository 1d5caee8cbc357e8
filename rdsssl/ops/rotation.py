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

``Rotation.run`` is the one entry; each step's work is in its own module: the instance steps in
``rotation_converge`` (resuming a killed run by what each instance holds), ``reissue`` in
``rotation_reissue`` (crash-safe, never two new certificates per user), ``verify`` and the
lockout guard's proofs in ``rotation_probe``; what they share in ``rotation_context``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from rdsssl.ops.rotation_context import Context, Event, Options, Prober
from rdsssl.ops.rotation_converge import for_each_instance
from rdsssl.ops.rotation_probe import given_cert_guard, new_cert_guard, verify
from rdsssl.ops.rotation_reissue import check_users, reissue
from rdsssl.ops.rotation_state import RotationState, Step
from rdsssl.rds.protocol import RdsApi
from rdsssl.store.castore import CaStore

__all__ = ["Rotation"]


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
        self.old, self.new, self.state = old, new, state
        self.ctx = Context(api, old, new, state, path, options, clock, report, prober)

    def run(self, steps: Sequence[Step]) -> list[Step]:
        """Perform ``steps`` in order, each to completion; returns the steps completed. Stops
        early after --no-wait (changes sent, not confirmed: the next run confirms them)."""
        ctx = self.ctx
        handlers: dict[Step, Callable[[], bool]] = {
            Step.STAGE: self._stage,
            Step.REISSUE: lambda: reissue(ctx),
            Step.VERIFY: lambda: verify(ctx),
            Step.RETIRE: self._retire,
            Step.ROLLBACK: self._rollback,
        }
        completed: list[Step] = []
        dry = ctx.options.dry_run
        if Step.STAGE in steps and not self.state.is_done(Step.STAGE):
            check_users(self.old, ctx.clock())  # before staging restarts any instance
        for step in steps:
            if self.state.is_done(step):
                continue
            self.state.begin(step, at=ctx.at())
            if not handlers[step]():
                break
            self.state.complete(step, at=ctx.at())
            ctx.save()
            reached = f"phase {self.state.phase.value}"
            ctx.emit(Event(step, "done", detail=f"would reach {reached}" if dry else reached))
            completed.append(step)
        return completed

    def _stage(self) -> bool:
        return for_each_instance(self.ctx, Step.STAGE, [self.old, self.new], proof_for=None)

    def _retire(self) -> bool:
        ctx = self.ctx
        return for_each_instance(
            ctx, Step.RETIRE, [self.new], proof_for=lambda iid: new_cert_guard(ctx, iid)
        )

    def _rollback(self) -> bool:
        ctx = self.ctx
        done = for_each_instance(
            ctx, Step.ROLLBACK, [self.old], proof_for=lambda iid: given_cert_guard(ctx, iid)
        )
        if done and self.state.users:
            ctx.emit(
                Event(
                    Step.ROLLBACK,
                    "skipped",
                    detail=f"{len(self.state.users)} certificate(s) from the new CA stay issued "
                    f"in {self.new.path}; staging again reuses them",
                )
            )
        return done
