"""The library entry points of `rotate ca` and `crl refresh` (`rdsssl.ops.rotation_run`,
`rdsssl.ops.crl_fleet`): their usage rules hold without the CLI, before anything is read from
an instance."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rdsssl.errors import UsageError
from rdsssl.models import KeyType
from rdsssl.ops.crl_fleet import RefreshOptions
from rdsssl.ops.rotation_file import prepare
from rdsssl.ops.rotation_run import RotationRequest, open_rotation, select_steps
from rdsssl.ops.rotation_state import Step
from rdsssl.store.castore import CaStore

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _store(path: Path, cn: str) -> Path:
    CaStore.init(path, cn=cn, key_type=KeyType.EC_P256, days=365, passphrase=None, now=NOW).close()
    return path


def test_a_rollback_without_a_recorded_rotation_is_nothing_to_do(tmp_path: Path) -> None:
    old = _store(tmp_path / "old", "old-ca")
    request = RotationRequest(ca_dir=old, rollback=True)
    with open_rotation(request, now=NOW, dry_run=False) as run:
        assert run.state is None and run.steps == []
        assert run.to_json() == {
            "dry_run": False, "phase": None, "steps": [], "completed": [], "events": []
        }  # fmt: skip
    assert not (old / "rotation.json").exists()


def test_starting_needs_the_new_store(tmp_path: Path) -> None:
    old = _store(tmp_path / "old", "old-ca")
    request = RotationRequest(ca_dir=old, instances=("pgm-1",))
    opened = open_rotation(request, now=NOW, dry_run=True)
    with pytest.raises(UsageError, match="--new-ca-dir is required"), opened:
        pass


def test_a_first_run_plans_up_to_verify_and_needs_both_keys_then(tmp_path: Path) -> None:
    old, new = _store(tmp_path / "old", "old-ca"), _store(tmp_path / "new", "new-ca")
    request = RotationRequest(ca_dir=old, new_ca_dir=new, instances=("pgm-1",))
    with open_rotation(request, now=NOW, dry_run=False) as run:
        assert run.steps == [Step.STAGE, Step.REISSUE, Step.VERIFY]
        assert run.needs_old_key and run.needs_new_key and not run.recorded
    with open_rotation(request, now=NOW, dry_run=True) as dry:
        assert dry.steps == run.steps and not (dry.needs_old_key or dry.needs_new_key)
    assert not (old / "rotation.json").exists()  # nothing is recorded before the first change


@pytest.mark.parametrize(
    ("flags", "ok"),
    [({"retire": True, "rollback": True}, False), ({"retire": True, "phase": "stage"}, False),
     ({"rollback": True}, True), ({"phase": "stage"}, True), ({}, True)],
)  # fmt: skip
def test_one_direction_per_run(tmp_path: Path, flags: dict[str, object], ok: bool) -> None:
    old, new = _store(tmp_path / "old", "old-ca"), _store(tmp_path / "new", "new-ca")
    with CaStore.open(old) as o, CaStore.open(new) as n:
        state = prepare(None, old=o, new=n, instances=["pgm-1"], out_root=tmp_path, now=NOW)
    args = {"retire": False, "rollback": False, "phase": None, **flags}
    if ok:
        steps = select_steps(state, **args)  # type: ignore[arg-type]
        assert steps and all(isinstance(s, Step) for s in steps)
    else:
        with pytest.raises(UsageError, match="choose one of"):
            select_steps(state, **args)  # type: ignore[arg-type]


def test_refresh_options_refuse_a_crl_that_would_be_due_again_at_once() -> None:
    short = RefreshOptions(ca_dirs=(Path("ca"),), days=30, min_remaining=timedelta(days=30))
    with pytest.raises(UsageError, match="--days 30 must be longer than --min-remaining"):
        short.check(from_file=False)
    RefreshOptions(ca_dirs=(Path("ca"),), days=31, min_remaining=timedelta(days=30)).check(
        from_file=False
    )


def test_refresh_options_need_a_store_unless_the_file_names_them() -> None:
    with pytest.raises(UsageError, match="needs the CA store that signs"):
        RefreshOptions().check(from_file=False)
    RefreshOptions().check(from_file=True)
