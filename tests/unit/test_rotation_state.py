"""The rotation state machine: legal and illegal transitions, persistence, the next action."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from rdsssl.errors import ExitCode, StoreError
from rdsssl.ops.rotation_file import load, save
from rdsssl.ops.rotation_state import (
    CaRef,
    IllegalTransition,
    Phase,
    RotationState,
    Step,
    StepRecord,
    UserRecord,
    next_action,
)

AT = "2025-01-15T12:00:00Z"
LATER = "2025-01-16T12:00:00Z"


def _state(*instances: str) -> RotationState:
    return RotationState.start(
        old=CaRef("/srv/ca", "aa" * 32, "CN=old"),
        new=CaRef("/srv/ca2", "bb" * 32, "CN=new"),
        instances=list(instances or ("pgm-1", "pgm-2")),
        out_root="/srv/out",
        at=AT,
    )


def _advance(state: RotationState, *steps: Step) -> RotationState:
    for step in steps:
        state.begin(step, at=LATER)
        state.complete(step, at=LATER)
    return state


def test_a_new_rotation_runs_forward_one_phase_per_step() -> None:
    state = _state()
    assert state.phase is Phase.NEW
    assert state.steps_until(Step.VERIFY) == [Step.STAGE, Step.REISSUE, Step.VERIFY]
    assert state.steps_until(Step.RETIRE)[-1] is Step.RETIRE
    seen = []
    for step in (Step.STAGE, Step.REISSUE, Step.VERIFY, Step.RETIRE):
        _advance(state, step)
        seen.append(state.phase)
    assert seen == [Phase.STAGED, Phase.REISSUED, Phase.VERIFIED, Phase.RETIRED]
    assert [h["phase"] for h in state.history] == [
        "new",
        "staged",
        "reissued",
        "verified",
        "retired",
    ]
    assert state.steps_until(Step.RETIRE) == []
    assert "complete" in next_action(state)


def test_completing_a_done_step_again_changes_nothing() -> None:
    state = _advance(_state(), Step.STAGE, Step.REISSUE)
    history = list(state.history)
    state.complete(Step.STAGE, at="2030-01-01T00:00:00Z")
    assert (state.phase, state.history) == (Phase.REISSUED, history)
    assert state.is_done(Step.STAGE) and not state.is_done(Step.VERIFY)
    assert state.steps_until(Step.VERIFY) == [Step.VERIFY]


@pytest.mark.parametrize(
    ("done", "step", "needs"),
    [
        ((), Step.REISSUE, "stage"),
        ((), Step.VERIFY, "reissue"),
        ((), Step.RETIRE, "verify"),
        ((Step.STAGE,), Step.VERIFY, "reissue"),
        ((Step.STAGE, Step.REISSUE), Step.RETIRE, "verify"),
    ],
)
def test_a_step_out_of_order_is_refused(done: tuple[Step, ...], step: Step, needs: str) -> None:
    state = _advance(_state(), *done)
    with pytest.raises(IllegalTransition, match=f"{step.value} needs {needs} first") as exc:
        state.begin(step, at=LATER)
    assert exc.value.exit_code == ExitCode.USAGE
    assert state.phase is (
        Phase.NEW if not done else Phase.STAGED if len(done) == 1 else Phase.REISSUED
    )


@pytest.mark.parametrize("done", [(), (Step.STAGE,), (Step.STAGE, Step.REISSUE, Step.VERIFY)])
def test_rollback_is_possible_until_retire(done: tuple[Step, ...]) -> None:
    state = _advance(_state(), *done)
    assert state.steps_until(Step.ROLLBACK) == [Step.ROLLBACK]
    _advance(state, Step.ROLLBACK)
    assert state.phase is Phase.ROLLED_BACK
    assert state.steps_until(Step.ROLLBACK) == []  # rolling back twice is a no-op


def test_rollback_after_retire_is_refused_with_the_reason() -> None:
    state = _advance(_state(), Step.STAGE, Step.REISSUE, Step.VERIFY, Step.RETIRE)
    with pytest.raises(IllegalTransition, match=r"retired at 2025-01-16.*no longer possible"):
        state.check(Step.ROLLBACK)
    assert state.phase is Phase.RETIRED


def test_after_a_rollback_only_stage_may_run_and_it_forgets_instance_progress() -> None:
    state = _advance(_state("pgm-1"), Step.STAGE)
    state.mark("pgm-1", Step.STAGE, StepRecord(AT, "changed", request_id="r1"))
    state.set_user("alice", UserRecord("a1", "b1", AT), at=AT)
    _advance(state, Step.ROLLBACK)
    for step in (Step.REISSUE, Step.VERIFY, Step.RETIRE):
        with pytest.raises(IllegalTransition, match="rolled back"):
            state.check(step)
    assert state.steps_until(Step.VERIFY) == [Step.STAGE, Step.REISSUE, Step.VERIFY]
    assert "stages the rotation again" in next_action(state)
    state.begin(Step.STAGE, at=LATER)
    assert state.instances == {"pgm-1": {}}
    assert state.users["alice"].done  # reissued certificates are kept and reused


def test_instance_progress_counts_only_confirmed_steps() -> None:
    state = _state("pgm-1", "pgm-2")
    state.mark("pgm-1", Step.STAGE, StepRecord(AT, "sent", request_id="r1"))
    state.mark("pgm-2", Step.STAGE, StepRecord(AT, "unchanged"))
    state.mark("pgm-2", Step.VERIFY, StepRecord(AT, "failed", detail="unknown-ca"))
    assert not state.instance_done("pgm-1", Step.STAGE)  # --no-wait: the next run confirms
    assert state.instance_done("pgm-2", Step.STAGE)
    assert not state.instance_done("pgm-2", Step.VERIFY)
    assert not state.instance_done("pgm-3", Step.STAGE)


def test_state_round_trips_through_a_private_file(tmp_path: Path) -> None:
    state = _advance(_state(), Step.STAGE)
    state.mark("pgm-1", Step.STAGE, StepRecord(AT, "changed", request_id="r1"))
    state.set_user("alice", UserRecord("a1", pending_since=AT), at=AT)
    state.set_user("bob", UserRecord("b1", "c1", AT, files=("/x/bob/client.crt",)), at=AT)
    path = tmp_path / "rotation.json"
    save(path, state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load(path)
    assert loaded is not None
    assert loaded.to_json() == state.to_json()
    assert loaded.instances["pgm-1"][Step.STAGE] == StepRecord(AT, "changed", request_id="r1")
    assert not loaded.users["alice"].done and loaded.users["bob"].files == ("/x/bob/client.crt",)
    doc = json.loads(path.read_text())
    assert (doc["version"], doc["phase"], doc["new_ca"]["subject"]) == (1, "staged", "CN=new")


def test_no_state_file_means_no_rotation(tmp_path: Path) -> None:
    assert load(tmp_path / "rotation.json") is None


@pytest.mark.parametrize("text", ["{", '{"version": 99}', '{"version": 1, "phase": "flying"}'])
def test_a_damaged_state_file_is_a_store_error_saying_what_to_do(tmp_path: Path, text: str) -> None:
    path = tmp_path / "rotation.json"
    path.write_text(text)
    with pytest.raises(StoreError, match="move it aside") as exc:
        load(path)
    assert exc.value.exit_code == ExitCode.BAD_INPUT
