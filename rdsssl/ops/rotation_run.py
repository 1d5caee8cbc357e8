"""One `rotate ca` run as a library call: open both stores under the rotation lock, load or
start the recorded state, choose the steps, refuse users who cannot be reissued before any
restart, then run the steps (`rdsssl.ops.rotation.Rotation`).

The caller (the CLI) sits between `open_rotation` and `RotationRun.run`: it shows the steps,
asks for confirmation and unlocks the keys the run needs (`needs_old_key`, `needs_new_key`) on
the main thread, before anything changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rdsssl.errors import UsageError
from rdsssl.ops.probe import ProbeResult
from rdsssl.ops.rotation import Rotation
from rdsssl.ops.rotation_context import Event, Options
from rdsssl.ops.rotation_file import load, prepare, rotation_lock, save, state_path
from rdsssl.ops.rotation_reissue import check_users
from rdsssl.ops.rotation_state import Phase, RotationState, Step, next_action
from rdsssl.rds.protocol import RdsApi
from rdsssl.store.castore import CaStore

__all__ = ["RotationRequest", "RotationRun", "open_rotation", "select_steps"]


@dataclass(frozen=True)
class RotationRequest:
    """What a person asked of a run: which stores and instances, and how far to go."""

    ca_dir: Path
    new_ca_dir: Path | None = None
    instances: tuple[str, ...] = ()
    out_root: Path | None = None
    retire: bool = False
    rollback: bool = False
    phase: str | None = None
    wait_lock: float = 0.0


def select_steps(
    state: RotationState, *, retire: bool, rollback: bool, phase: str | None
) -> list[Step]:
    """By default every step up to `verify`; `retire` goes on; `phase` runs exactly that
    (next) step; `rollback` returns to the old CA."""
    if sum((retire, rollback, phase is not None)) > 1:
        raise UsageError("choose one of --retire, --rollback and --phase")
    if rollback:
        return state.steps_until(Step.ROLLBACK)
    if phase is not None:
        step = Step(phase)
        state.check(step)
        return [] if state.is_done(step) else [step]
    return state.steps_until(Step.RETIRE if retire else Step.VERIFY)


@dataclass
class RotationRun:
    """An opened rotation: `state` None means nothing was recorded and a rollback was asked
    (nothing to do)."""

    old: CaStore
    new: CaStore | None
    state: RotationState | None
    path: Path
    steps: list[Step]
    recorded: bool
    dry_run: bool
    before: Phase | None = None
    completed: list[Step] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def needs_old_key(self) -> bool:
        """Signing with the old CA: a CRL at stage and at rollback."""
        return not self.dry_run and bool({Step.STAGE, Step.ROLLBACK} & set(self.steps))

    @property
    def needs_new_key(self) -> bool:
        """Signing with the new CA: its CRL, the reissued certificates."""
        return not self.dry_run and bool({Step.STAGE, Step.REISSUE, Step.RETIRE} & set(self.steps))

    def run(
        self,
        api: RdsApi,
        options: Options,
        *,
        clock: Callable[[], datetime],
        report: Callable[[Event], None] = lambda _e: None,
        prober: Callable[[str, str, Path, Path], ProbeResult] | None = None,
    ) -> list[Step]:
        """Run the steps; the state is on disk before the first change."""
        assert self.state is not None and self.new is not None
        if not self.dry_run and not self.recorded:
            save(self.path, self.state)

        def record(event: Event) -> None:
            self.events.append(event)
            report(event)

        rotation = Rotation(
            api,
            old=self.old,
            new=self.new,
            state=self.state,
            path=None if self.dry_run else self.path,
            options=options,
            clock=clock,
            report=record,
            prober=prober,
        )
        self.completed = rotation.run(self.steps)
        return self.completed

    @property
    def phase(self) -> Phase | None:
        """The phase to report: where a dry run started, else where the run ended."""
        if self.state is None:
            return None
        return self.before if self.dry_run else self.state.phase

    def to_json(self) -> dict[str, Any]:
        """The JSON document of `rotate ca`."""
        if self.state is None:
            return {"dry_run": self.dry_run, "phase": None, "steps": [], "completed": [],
                    "events": []}  # fmt: skip
        phase = self.phase
        assert phase is not None
        return {
            "dry_run": self.dry_run,
            "phase": phase.value,
            "steps": [s.value for s in self.steps],
            "completed": [] if self.dry_run else [s.value for s in self.completed],
            "events": [e.to_json() for e in self.events],
            "next": next_action(self.state),
            "state_file": str(self.path),
        }


@contextlib.contextmanager
def open_rotation(
    request: RotationRequest, *, now: datetime, dry_run: bool, allow_tls13_only: bool = False
) -> Iterator[RotationRun]:
    """Both stores open and, unless a dry run, the rotation lock held for the whole run."""
    with contextlib.ExitStack() as stack:
        old = stack.enter_context(CaStore.open(request.ca_dir))
        if not dry_run:
            stack.enter_context(rotation_lock(request.ca_dir, wait=request.wait_lock))
        path = state_path(request.ca_dir)
        recorded = load(path)
        if recorded is None and request.rollback:
            yield RotationRun(old, None, None, path, [], False, dry_run)
            return
        new_dir = request.new_ca_dir or (Path(recorded.new.dir) if recorded else None)
        if new_dir is None:
            raise UsageError("--new-ca-dir is required to start a rotation")
        new = stack.enter_context(CaStore.open(new_dir))
        state = prepare(
            recorded, old=old, new=new, instances=request.instances,
            out_root=request.out_root, now=now,
        )  # fmt: skip
        steps = select_steps(
            state, retire=request.retire, rollback=request.rollback, phase=request.phase
        )
        if Step.STAGE in steps:  # before any restart
            check_users(old, now, allow_tls13_only=allow_tls13_only)
        yield RotationRun(old, new, state, path, steps, recorded is not None, dry_run, state.phase)
