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

This module holds the data, its rules, where it lives and how a run's arguments are checked
against it; no cloud calls, no CA keys.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rdsssl.errors import ConfigError, StoreError, UsageError
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from rdsssl.store.fsutil import atomic_write
from rdsssl.store.lock import FileLock, current_command
from rdsssl.store.records import format_time

__all__ = [
    "FORMAT_VERSION",
    "LOCK_FILE",
    "STATE_FILE",
    "CaRef",
    "IllegalTransition",
    "Phase",
    "RotationState",
    "Step",
    "StepRecord",
    "UserRecord",
    "ca_ref",
    "load",
    "next_action",
    "prepare",
    "rotation_lock",
    "save",
    "state_path",
]

STATE_FILE = "rotation.json"
LOCK_FILE = ".rotation.lock"
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


# -- setting up ----------------------------------------------------------------------------


def state_path(ca_dir: Path) -> Path:
    """Where a rotation away from the CA in ``ca_dir`` is recorded."""
    return ca_dir / STATE_FILE


def rotation_lock(ca_dir: Path, *, wait: float = 0.0) -> FileLock:
    """The lock two ``rotate ca`` runs share. Separate from the store's own lock, so issuing or
    revoking in the old store is not blocked for the minutes a rotation waits for restarts."""
    return FileLock(
        ca_dir / LOCK_FILE,
        command=current_command(),
        wait=wait,
        label=f"the CA rotation of {ca_dir}",
    )


def ca_ref(store: CaStore) -> CaRef:
    """How the state file names a store: its directory and its CA's fingerprint."""
    return CaRef(
        dir=str(store.path.absolute()),
        fingerprint=crypto.fingerprint(store.ca_cert),
        subject=crypto.name_of(store.ca_cert),
    )


def prepare(
    state: RotationState | None,
    *,
    old: CaStore,
    new: CaStore,
    instances: Sequence[str],
    out_root: Path | None,
    now: datetime,
) -> RotationState:
    """The state to run with: the recorded one, checked against the stores and arguments of
    this run, or a fresh one (not yet saved) for the first run."""
    old_ref, new_ref = ca_ref(old), ca_ref(new)
    if old_ref.fingerprint == new_ref.fingerprint:
        raise UsageError(f"{new.path} holds the same CA as {old.path}; rotate to a new CA store")
    if state is None:
        if not instances:
            raise UsageError("name the instances to rotate: rdsssl rotate ca ID... --ca-dir ...")
        root = (out_root or Path.cwd()).absolute()
        ids = list(dict.fromkeys(instances))
        return RotationState.start(
            old=old_ref, new=new_ref, instances=ids, out_root=str(root), at=format_time(now)
        )
    if state.old.fingerprint != old_ref.fingerprint:
        renewed = state.old.fingerprint in {v.info.fingerprint for v in old.ca_history()}
        if renewed:
            raise ConfigError(
                f"{state_path(old.path)} records a rotation away from CA "
                f"{state.old.fingerprint[:16]}, which {old.path} has since renewed (rdsssl ca "
                f"renew) to {old_ref.fingerprint[:16]}: the recorded rotation (phase "
                f"{state.phase.value}) is out of date; move {state_path(old.path)} aside "
                "to start a rotation from the renewed CA"
            )
        raise ConfigError(
            f"{state_path(old.path)} records a rotation away from CA {state.old.fingerprint[:16]}"
            f", but {old.path} holds {old_ref.fingerprint[:16]}; restore the original ca.crt"
        )
    if state.new.fingerprint != new_ref.fingerprint:
        raise UsageError(
            f"this rotation goes to {state.new.subject} ({state.new.fingerprint[:16]}) in "
            f"{state.new.dir}, not to the CA in {new.path}; pass that --new-ca-dir or none"
        )
    if instances and set(instances) != set(state.instances):
        raise UsageError(
            f"this rotation covers {' '.join(state.instances)}; name the same instances, or none"
        )
    if out_root is not None and str(out_root.absolute()) != state.out_root:
        raise UsageError(
            f"this rotation writes certificates to {state.out_root}; pass that --out-root or none"
        )
    return state


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


def load(path: Path) -> RotationState | None:
    """The state in ``path``, or None when no rotation was ever started there."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return RotationState.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            f"{path} is not a rotation state rdsssl can read ({type(exc).__name__}: {exc}); "
            "restore it from a backup, or move it aside to start the rotation over"
        ) from None


def save(path: Path, state: RotationState) -> None:
    """Write the state atomically, private to its owner (it names users and instances)."""
    data = json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n"
    atomic_write(path, data.encode("utf-8"), mode=0o600)
