"""One instance's reads, its single ModifyDBInstanceSSL call and the waits, for `rdsssl.ops.apply`.

`Waiting.send` makes the one call and never retries it blindly: after any failed call the
instance is re-read, and a change that shows up is never sent twice. `Waiting.confirm` waits
with evidence (`rdsssl.rds.waiters.ssl_applied`); `Waiting.settle_pending` confirms a change an
earlier run sent and never confirmed. Every call and outcome gets its audit line.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rdsssl.errors import ApiError, PlanChanged, WaiterError, WaiterTimeout
from rdsssl.models import InstanceInfo, Observation, SslState
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.clock import Clock
from rdsssl.ops.plan import (
    Plan,
    differs,
    matches_target,
    read_back_matches,
    refuse_ssl_off,
    state_fingerprints,
    target_fingerprints,
)
from rdsssl.ops.server_ssl_plan import server_cert_fps
from rdsssl.rds import service_profile
from rdsssl.rds.acceptors import instance_ready, ssl_applied
from rdsssl.rds.protocol import RdsApi
from rdsssl.rds.waiters import DENSE, Progress, Reads, WaiterSpec, wait_until

if TYPE_CHECKING:  # rdsssl.ops.apply builds its Waiting from its options
    from rdsssl.ops.apply import ApplyOptions

log = logging.getLogger(__name__)
MODIFY_ATTEMPTS = 3


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


@dataclass
class Accepted:
    """The change this run has put in flight (`Waiting.interrupt_recorded`): set just before
    the call, its request id as soon as the service has taken it."""

    plan: Plan | None = None
    before: SslState | None = None
    request_id: str | None = None

    def sending(self, the_plan: Plan, before: SslState) -> None:
        self.plan, self.before = the_plan, before

    def taken(self, request_id: str) -> None:
        self.request_id = request_id


@dataclass(frozen=True)
class Waiting:
    """One instance's reads, waits and its single change, with the caller's clock."""

    api: RdsApi
    instance_id: str
    timeout: float
    settle: float
    profile: service_profile.ServiceProfile
    clock: Clock
    on_progress: Callable[[Progress], None] | None

    @classmethod
    def of(
        cls,
        api: RdsApi,
        instance_id: str,
        options: ApplyOptions,
        clock: Clock,
        on_progress: Callable[[Progress], None] | None,
    ) -> Waiting:
        """The waits of one change under `options` (profile: $RDSSSL_SERVICE_PROFILE, else the
        documented timings; settle: the profile's unless given)."""
        profile = options.profile or service_profile.load()
        settle = profile.settle if options.settle is None else options.settle
        return cls(api, instance_id, options.timeout, settle, profile, clock, on_progress)

    def _wait(self, spec: WaiterSpec, *, seen: bool = False) -> Observation:
        return wait_until(
            spec,
            observe(self.api, self.instance_id),
            timeout=self.timeout,
            sleep=self.clock.sleep,
            clock=self.clock.monotonic,
            on_progress=self.on_progress,
            seen_transition=seen,
        )

    def until_ready(
        self, *, dry_run: bool, ssl_off_ok: bool = False
    ) -> tuple[InstanceInfo, SslState, tuple[str, ...]]:
        """Read the instance; wait first when another change is under way (not on a dry run);
        refuse a locked instance (locks last until expiry, a full disk, ... are resolved), and
        one with SSL off unless the change is about server SSL itself (`ssl_off_ok`)."""
        info = self.api.describe_instance(self.instance_id)
        ssl = self.api.describe_ssl(self.instance_id)
        notes: tuple[str, ...] = ()
        if not dry_run and (info.status != "Running" or ssl.last_modify_status == "setting"):
            notes = (f"waited for {self.instance_id} to be ready (was {info.status})",)
            self._wait(instance_ready())
            info = self.api.describe_instance(self.instance_id)
            ssl = self.api.describe_ssl(self.instance_id)
        if not ssl_off_ok:
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
            extra["target"] = target_fingerprints(  # for a re-run
                the_plan.request, before, the_plan.retired_server_cert
            )
        audit.record(
            instance=self.instance_id,
            action="modify-ssl:" + ",".join(c.field for c in the_plan.changes),
            outcome=outcome,
            request_id=request_id,
            before=state_fingerprints(before),
            **extra,
        )

    @contextlib.contextmanager
    def interrupt_recorded(self, audit: AuditLog) -> Iterator[Accepted]:
        """Around `send` and `confirm`: an interrupt (Ctrl-C, SIGTERM) at ANY moment after the
        service accepted the change -- while its `sent` line is being written, on the way to
        the wait, or during it -- leaves an `interrupted` line with the request id, so the
        change stays unconfirmed on record and the next run confirms it before planning. One
        during the call itself leaves the line without a request id (the service may have
        taken the change; the next run watches for it). Before the call: no line."""
        accepted = Accepted()
        try:
            yield accepted
        except KeyboardInterrupt:
            if accepted.plan is not None and accepted.before is not None:
                detail = (
                    "the wait was interrupted; run again to confirm"
                    if accepted.request_id
                    else "interrupted during the call, which the service may have taken; "
                    "run again to confirm"
                )
                self.record(
                    audit, accepted.plan, accepted.before, "interrupted", accepted.request_id,
                    detail=detail,
                )  # fmt: skip
            raise

    def send(
        self, the_plan: Plan, before: SslState, audit: AuditLog, accepted: Accepted | None = None
    ) -> tuple[str, bool]:
        """The one Modify call; its `sent` audit line is on disk before anything else happens.
        `accepted` (from `interrupt_recorded`) holds the change from just before the call and
        its request id from the moment the service has taken it, before that line is written.

        After ANY failed call (throttling and busy answers included) the instance is re-read
        before anything is sent again, and a change that shows up is never sent twice: one
        change, one restart. A refusal that proves nothing was taken (a validation error)
        surfaces at once. Returns the request id and whether the change was already seen in
        progress (after an error, the re-read may have waited it out)."""
        request = the_plan.request
        assert request is not None
        accepted = accepted or Accepted()
        matches = read_back_matches(request, the_plan.retired_server_cert)
        fields = ",".join(c.field for c in the_plan.changes)
        for attempt in range(1, MODIFY_ATTEMPTS + 1):
            log.info(
                "%s: sending ModifyDBInstanceSSL (%s), attempt %d",
                self.instance_id,
                fields,
                attempt,
            )
            try:
                accepted.sending(the_plan, before)
                request_id = self.api.modify_ssl(request)
                accepted.taken(request_id)
            except ApiError as exc:
                log.info(
                    "%s: ModifyDBInstanceSSL failed: %s (%s)",
                    self.instance_id,
                    exc.code or type(exc).__name__,
                    "retryable: re-reading the instance" if exc.retryable else "permanent",
                )
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
                    log.info("%s: the change was taken despite the error", self.instance_id)
                    request_id = exc.request_id or "(accepted before the error)"
                    accepted.taken(request_id)
                    self.record(
                        audit,
                        the_plan,
                        before,
                        "sent",
                        request_id,
                        detail=f"taken despite {exc.code or type(exc).__name__}",
                    )
                    return request_id, taken
                if attempt == MODIFY_ATTEMPTS:
                    self.record(
                        audit,
                        the_plan,
                        before,
                        "api-error",
                        exc.request_id or None,
                        detail=exc.code,
                    )
                    raise
                self.clock.sleep(2.0 * attempt)
                if self._check_unchanged(before, matches):
                    request_id = exc.request_id or "(accepted before the error)"
                    accepted.taken(request_id)
                    self.record(
                        audit, the_plan, before, "sent", request_id,
                        detail=f"taken despite {exc.code or type(exc).__name__}",
                    )  # fmt: skip
                    return request_id, False
                continue
            log.info(
                "%s: ModifyDBInstanceSSL accepted (RequestId %s)", self.instance_id, request_id
            )
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
        deadline = self.clock.monotonic() + self.settle
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
                if matches(ssl) and differs(ssl, before):
                    return "shown", ssl
                if differs(ssl, before):
                    return "other", ssl
            if self.clock.monotonic() >= deadline:
                return "quiet", None
            self.clock.sleep(min(1.0, max(0.0, deadline - self.clock.monotonic())))

    def _taken(self, matches: Callable[[SslState], bool], before: SslState) -> bool | None:
        """After a failed Modify: did the service take the change anyway? True: taken and seen
        in progress; False: taken, its values read back; None: the instance stayed as it was
        for the whole settle period, so it was not taken. Another change: `PlanChanged`."""
        verdict, _ = self._watch(matches, state_fingerprints(before))
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
        if matches(ssl) and differs(ssl, state_fingerprints(before)):
            return True
        if differs(ssl, state_fingerprints(before)):
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
            return matches_target(ssl, target)

        def record(outcome: str, detail: str, after: SslState | None = None) -> None:
            audit.record(
                instance=self.instance_id,
                action=str(line.get("action", "modify-ssl")),
                outcome=outcome,
                request_id=str(rid) if rid else None,
                before=before,
                after=state_fingerprints(after) if after is not None else {},
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
        retired = the_plan.retired_server_cert
        spec = ssl_applied(
            read_back_matches(request, the_plan.retired_server_cert),
            stale_failure=stale_failure,
            expected=self.profile.expected(restarts=request.restarts),
            settle=self.settle,
            dense=self.profile.dense_interval(restarts=request.restarts, cap=DENSE),
            not_renewed=(lambda ssl: bool(server_cert_fps(ssl) & retired)) if retired else None,
        )
        try:
            obs = self._wait(spec, seen=seen)
        except WaiterError as exc:
            outcome = "timeout" if isinstance(exc, WaiterTimeout) else "failed"
            log.info("%s: the change %s: %s", self.instance_id, outcome, exc)
            self.record(audit, the_plan, before, outcome, request_id, detail=str(exc))
            raise
        log.info("%s: the change is live (RequestId %s)", self.instance_id, request_id)
        self.record(
            audit,
            the_plan,
            before,
            "ok",
            request_id,
            after=state_fingerprints(obs.ssl) if obs.ssl else {},
        )
        return obs.ssl
