"""The persisted state of a two-phase CA rotation, and the rules for moving it forward.

``rotate ca`` is run from cron and may be killed at any point, so everything a run has done is
written to ``<old-ca-dir>/rotation.json`` (atomic, 0600) *before* the next thing is attempted:
the phase reached, per instance which steps are done (with the request id), and per user the
certificate reissued from the new CA. The next run reads it back and continues where the last
one stopped; a step recorded as done is never repeated.

Phases (the last step completed)::

    new --stage--> staged --reissue--> reissued --verify--> verified --retire--> retired
     \\________________________\\__________________\\___rollback___> rolled-back --stage--> ...

Why these rules: ``reissue`` before ``stage`` would hand out certificates no instance trusts
yet; ``retire`` before ``verify`` would drop the old CA without proof that a new certificate
works; ``rollback`` after ``retire`` is refused because old certificates are already refused by
then and the old CA is no longer an overlap but a second change. A rolled-back rotation can be
staged again: the certificates already reissued stay valid and are reused.

This module holds the data, its rules and its JSON form; where it lives, its lock and how a
run's arguments are checked against it are in ``rotation_file``. No cloud calls, no CA keys.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from rdsssl.errors import UsageError

__all__ = [
    "FORMAT_VERSION",
    "CaRef",
    "IllegalTransition",
    "Phase",
    "RotationState",
    "Step",
    "StepRecord",
    "UserRecord",
    "next_action",
]

FORMAT_VERSION = 1


class Phase(str, enum.Enum):
    """How far a rotation has got: the last step completed on every instance / user."""

    NEW = "new"
    STAGED = "staged"
    REISSUED = "reissued"
    VERIFIED = "verified"
    RETIRED = "retired"
    ROLLED_BACK = "rolled-back"


class Step(str, enum.Enum):
    """What a run can do; each one moves the rotation to one phase."""

    STAGE = "stage"
    REISSUE = "reissue"
    VERIFY = "verify"
    RETIRE = "retire"
    ROLLBACK = "rollback"


FORWARD = (Step.STAGE, Step.REISSUE, Step.VERIFY, Step.RETIRE)
_ORDER = (Phase.NEW, Phase.STAGED, Phase.REISSUED, Phase.VERIFIED, Phase.RETIRED)
RESULT = {
    Step.STAGE: Phase.STAGED,
    Step.REISSUE: Phase.REISSUED,
    Step.VERIFY: Phase.VERIFIED,
    Step.RETIRE: Phase.RETIRED,
    Step.ROLLBACK: Phase.ROLLED_BACK,
}
_NEEDS = {Step.REISSUE: Step.STAGE, Step.VERIFY: Step.REISSUE, Step.RETIRE: Step.VERIFY}


class IllegalTransition(UsageError):
    """A step was asked for out of order (exit 2): the state file says what must come first."""


@dataclass(frozen=True)
class CaRef:
    """One of the two CA stores, identified by its CA certificate's fingerprint."""

    dir: str
    fingerprint: str
    subject: str


@dataclass(frozen=True)
class StepRecord:
    """What one step did on one instance. ``outcome``: changed | unchanged (the instance already
    held the target) | ok (probe) | sent (--no-wait: not confirmed yet) | failed (probe)."""

    at: str
    outcome: str
    request_id: str | None = None
    detail: str = ""

    @property
    def done(self) -> bool:
        """True when the step need not run on this instance again."""
        return self.outcome in ("changed", "unchanged", "ok")


@dataclass(frozen=True)
class UserRecord:
    """A user's certificate from the new CA. ``pending_since`` is written *before* issuing, so
    a run killed between issuing and recording finds (and resolves) the certificate it made."""

    old_serial: str
    new_serial: str | None = None
    at: str | None = None
    pending_since: str | None = None
    files: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        """True once the certificate and its files are recorded."""
        return self.new_serial is not None


@dataclass
class RotationState:
    """Everything ``rotation.json`` holds. Times are ISO 8601 UTC strings ("...Z")."""

    old: CaRef
    new: CaRef
    instances: dict[str, dict[Step, StepRecord]]
    out_root: str
    created_at: str
    phase: Phase = Phase.NEW
    users: dict[str, UserRecord] = field(default_factory=dict)
    updated_at: str = ""
    history: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def start(
        cls, *, old: CaRef, new: CaRef, instances: list[str], out_root: str, at: str
    ) -> RotationState:
        """A rotation nothing has been done for yet."""
        state = cls(old, new, {i: {} for i in instances}, out_root, at, updated_at=at)
        state.history.append({"at": at, "phase": Phase.NEW.value})
        return state

    # -- rules -----------------------------------------------------------------------------

    def is_done(self, step: Step) -> bool:
        """True when ``step`` has already been completed (running it again is a no-op)."""
        if step is Step.ROLLBACK:
            return self.phase is Phase.ROLLED_BACK
        if self.phase is Phase.ROLLED_BACK:
            return False
        return _ORDER.index(self.phase) >= _ORDER.index(RESULT[step])

    def check(self, step: Step) -> None:
        """IllegalTransition unless ``step`` may run now (done steps are fine: no-ops)."""
        if self.is_done(step):
            return
        if step is Step.ROLLBACK:
            if self.phase is Phase.RETIRED:
                raise IllegalTransition(
                    f"the old CA was retired at {self._since(Phase.RETIRED)}: rollback is no "
                    "longer possible (old certificates are already refused). To go back, rotate "
                    "again from this CA to a new one"
                )
            return
        if step is Step.STAGE:
            return  # from new or rolled-back
        if self.phase is Phase.ROLLED_BACK:
            raise IllegalTransition(
                f"the rotation was rolled back at {self._since(Phase.ROLLED_BACK)}: stage it "
                f"again first (rotate ca without --phase, or --phase stage), not {step.value}"
            )
        needed = _NEEDS[step]
        if not self.is_done(needed):
            raise IllegalTransition(
                f"{step.value} needs {needed.value} first; the rotation is at phase "
                f"{self.phase.value}"
            )

    def steps_until(self, last: Step) -> list[Step]:
        """The steps a run must perform to reach ``last`` (empty when already there)."""
        if last is Step.ROLLBACK:
            return [] if self.is_done(last) else [last]
        wanted = FORWARD[: FORWARD.index(last) + 1]
        return [s for s in wanted if not self.is_done(s)]

    # -- changes ---------------------------------------------------------------------------

    def begin(self, step: Step, *, at: str) -> None:
        """Called before a step runs. Staging again after a rollback forgets the instance
        progress of the earlier attempt (users keep their reissued certificates)."""
        self.check(step)
        if step is Step.STAGE and self.phase is Phase.ROLLED_BACK:
            self.instances = {i: {} for i in self.instances}
            self.updated_at = at

    def complete(self, step: Step, *, at: str) -> None:
        """Record that ``step`` is done everywhere: the rotation moves to its phase."""
        self.check(step)
        if self.is_done(step):
            return
        self.phase = RESULT[step]
        self.updated_at = at
        self.history.append({"at": at, "phase": self.phase.value})

    def mark(self, instance_id: str, step: Step, record: StepRecord) -> None:
        """Record what ``step`` did on one instance."""
        self.instances.setdefault(instance_id, {})[step] = record
        self.updated_at = record.at

    def instance_done(self, instance_id: str, step: Step) -> bool:
        """True when ``step`` is recorded as done on this instance."""
        record = self.instances.get(instance_id, {}).get(step)
        return record is not None and record.done

    def set_user(self, user: str, record: UserRecord, *, at: str) -> None:
        """Record (or replace) a user's reissue progress."""
        self.users[user] = record
        self.updated_at = at

    def _since(self, phase: Phase) -> str:
        times = [h["at"] for h in self.history if h["phase"] == phase.value]
        return times[-1] if times else "an unknown time"

    # -- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The document stored in rotation.json (and shown by ``rotate status --json``)."""
        return {
            "version": FORMAT_VERSION,
            "phase": self.phase.value,
            "old_ca": vars(self.old),
            "new_ca": vars(self.new),
            "out_root": self.out_root,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "instances": {
                iid: {step.value: _record_json(rec) for step, rec in steps.items()}
                for iid, steps in self.instances.items()
            },
            "users": {user: _user_json(rec) for user, rec in self.users.items()},
            "history": list(self.history),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RotationState:
        """Inverse of ``to_json``; KeyError / ValueError / TypeError on a malformed document."""
        if doc["version"] != FORMAT_VERSION:
            raise ValueError(f"unsupported version {doc['version']!r}")
        return cls(
            old=CaRef(**doc["old_ca"]),
            new=CaRef(**doc["new_ca"]),
            instances={
                iid: {Step(s): StepRecord(**rec) for s, rec in steps.items()}
                for iid, steps in doc["instances"].items()
            },
            out_root=str(doc["out_root"]),
            created_at=str(doc["created_at"]),
            phase=Phase(doc["phase"]),
            users={
                user: UserRecord(**{**rec, "files": tuple(rec.get("files", ()))})
                for user, rec in doc["users"].items()
            },
            updated_at=str(doc["updated_at"]),
            history=[dict(h) for h in doc["history"]],
        )


def _record_json(rec: StepRecord) -> dict[str, Any]:
    return {
        "at": rec.at,
        "outcome": rec.outcome,
        "request_id": rec.request_id,
        "detail": rec.detail,
    }


def _user_json(rec: UserRecord) -> dict[str, Any]:
    return {
        "old_serial": rec.old_serial,
        "new_serial": rec.new_serial,
        "at": rec.at,
        "pending_since": rec.pending_since,
        "files": list(rec.files),
    }


def next_action(state: RotationState) -> str:
    """What the next run will do, for people (status, end of a run)."""
    if state.phase is Phase.RETIRED:
        return "nothing: the rotation is complete and the old CA is retired"
    if state.phase is Phase.ROLLED_BACK:
        return "`rotate ca` stages the rotation again (reissued certificates are reused)"
    steps = [s.value for s in state.steps_until(Step.VERIFY)]
    if steps:
        return (
            f"`rotate ca` runs {', '.join(steps)}; later `rotate ca --retire` retires the "
            "old CA (or `--rollback` returns to it)"
        )
    return (
        "`rotate ca --retire` retires the old CA (second restart; old certificates are "
        "refused from then on) once clients use their new certificates; `rotate ca "
        "--rollback` returns to the old CA"
    )
