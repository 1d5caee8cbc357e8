"""The one-instance use case (`rdsssl.ops.instance_change`) and the fleet over it
(`rdsssl.ops.apply_fleet`), against `FakeApi`: one JSON shape, the dry run, the earlier change
confirmed first, and CA keys unlocked in the calling thread only, once per store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from rdsssl.errors import ExitCode, StoreError
from rdsssl.models import InstanceSpec, KeyType
from rdsssl.ops import apply_fleet
from rdsssl.ops.apply import ApplyOptions
from rdsssl.ops.apply_fleet import Target
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.clock import Clock
from rdsssl.ops.desired import DesiredBuilder
from rdsssl.ops.instance_change import InstanceChange, InstanceOutcome
from rdsssl.ops.plan import DesiredSsl
from rdsssl.pki import crypto
from rdsssl.rds.waiters import Progress
from rdsssl.store.castore import CaStore

from .conftest import make_pki
from .fakes import FakeApi, FakeTime, ssl_state

NOW = datetime.now(timezone.utc).replace(microsecond=0)
CA = make_pki(KeyType.EC_P256, cn="root-ca1")
PEM = crypto.cert_pem(CA.cert).decode()


def _change(tmp_path: Path, **options: object) -> InstanceChange:
    t = FakeTime()
    audit = AuditLog(tmp_path / "audit.jsonl")
    opts = ApplyOptions(audit=audit, settle=1, **options)  # type: ignore[arg-type]
    return InstanceChange(opts, clock=Clock(sleep=t.sleep, monotonic=t.clock).at(NOW))


def test_a_dry_run_plans_sends_nothing_and_says_so_in_its_one_json_shape(tmp_path: Path) -> None:
    api = FakeApi(ssl_state())
    notes: list[str] = []
    change = InstanceChange(_change(tmp_path, dry_run=True).options, on_note=notes.append)
    outcome = change.complete(api, change.prepare(api, "pgm-x", DesiredSsl(client_ca_pem=PEM)))
    doc = outcome.to_json()
    assert api.modify_calls == [] and outcome.result is None
    assert (doc["status"], doc["dry_run"], doc["applied"], doc["ok"]) == (
        "planned",
        True,
        False,
        True,
    )
    assert doc["plan"]["changes"][0]["field"] == "client_ca" and "revoked_probe" not in doc
    assert notes == ["pgm-x: dry run, nothing sent"]


def test_the_change_is_applied_once_and_a_rerun_finds_nothing_to_do(tmp_path: Path) -> None:
    api = FakeApi(ssl_state())
    change = _change(tmp_path)
    first = change.complete(api, change.prepare(api, "pgm-x", DesiredSsl(client_ca_pem=PEM)))
    again = change.complete(api, change.prepare(api, "pgm-x", DesiredSsl(client_ca_pem=PEM)))
    assert len(api.modify_calls) == 1
    assert (first.to_json()["status"], first.to_json()["waited"]) == ("changed", True)
    assert (again.to_json()["status"], again.result, again.dry_run) == ("up-to-date", None, False)


def test_an_earlier_unconfirmed_change_is_confirmed_before_the_plan(tmp_path: Path) -> None:
    api = FakeApi(ssl_state())
    sent = _change(tmp_path, wait=False)
    sent.complete(api, sent.prepare(api, "pgm-x", DesiredSsl(client_ca_pem=PEM)))
    assert sent.options.audit_log.pending("pgm-x") is not None  # --no-wait: not confirmed
    notes: list[str] = []
    change = InstanceChange(_change(tmp_path).options, clock=sent.clock, on_note=notes.append)
    outcome = change.prepare(api, "pgm-x", DesiredSsl(client_ca_pem=PEM))
    assert "is not confirmed yet: confirming it first" in notes[0]
    assert change.options.audit_log.pending("pgm-x") is None
    assert outcome.preview is not None and outcome.preview.plan.noop
    assert not outcome.needs_run and len(api.modify_calls) == 1


def test_an_error_outcome_carries_its_exit_code_in_the_json(tmp_path: Path) -> None:
    outcome = InstanceOutcome("pgm-x", "command line", error=StoreError("wrong passphrase"))
    doc = outcome.to_json()
    assert (doc["ok"], doc["status"], doc["error"]["exit_code"]) == (
        False,
        "failed",
        int(ExitCode.BAD_INPUT),
    )
    assert outcome.exit_code == int(ExitCode.BAD_INPUT)


def _fleet_change(tmp_path: Path) -> InstanceChange:
    """Real time: a fleet worker sleeps with the run's cancellable sleep (`fleet.sleeper`)."""
    return InstanceChange(ApplyOptions(audit=AuditLog(tmp_path / "audit.jsonl"), settle=0))


def _store(tmp_path: Path) -> Path:
    path = tmp_path / "ca"
    CaStore.init(path, cn="c", key_type=KeyType.EC_P256, days=10, passphrase=b"pw", now=NOW).close()
    return path


def _targets(ca_dir: Path, apis: list[FakeApi]) -> list[Target]:
    spec = InstanceSpec(
        id=None,
        tags=None,
        region=None,
        ca_dir=ca_dir,
        ca_bundle=None,
        crl=True,
        acl=None,
        replication_acl=None,
        source="rdsssl.toml: instances[1]",
    )
    return [
        Target(InstanceOutcome(f"pgm-{n}", spec.source), api, spec) for n, api in enumerate(apis)
    ]


def test_the_fleet_unlocks_each_store_once_in_the_calling_thread(tmp_path: Path) -> None:
    ca_dir = _store(tmp_path)
    threads: list[threading.Thread] = []

    def unlock(store: CaStore) -> None:
        threads.append(threading.current_thread())
        store.unlock(b"pw")

    apis = [FakeApi(ssl_state()) for _ in range(3)]
    targets = _targets(ca_dir, apis)
    builder = DesiredBuilder(now=NOW, unlock=unlock)
    change = _fleet_change(tmp_path)
    apply_fleet.plan_all(targets, builder, audit=change.options.audit, concurrency=3)
    assert threads == [] and all(t.outcome.needs_run for t in targets)  # planning signs nothing
    apply_fleet.apply_all(change, targets, concurrency=3)
    assert threads == [threading.main_thread()]  # once, before any worker started
    assert [len(api.modify_calls) for api in apis] == [1, 1, 1]
    crls = {api.modify_calls[0].crl_pem for api in apis}
    assert len(crls) == 1 and None not in crls  # one CRL signed for the store, sent to all
    assert apply_fleet.failure([t.outcome for t in targets]) is None


def test_a_store_that_cannot_be_unlocked_fails_its_instances_and_is_asked_once(
    tmp_path: Path,
) -> None:
    ca_dir = _store(tmp_path)
    asked: list[str] = []

    def unlock(store: CaStore) -> None:
        asked.append("?")
        store.unlock(b"wrong")

    apis = [FakeApi(ssl_state()) for _ in range(2)]
    targets = _targets(ca_dir, apis)
    apply_fleet.plan_all(targets, DesiredBuilder(now=NOW, unlock=unlock), concurrency=2)
    apply_fleet.apply_all(_fleet_change(tmp_path), targets, concurrency=2)
    outcomes = [t.outcome for t in targets]
    assert asked == ["?"] and [api.modify_calls for api in apis] == [[], []]
    assert all(isinstance(o.error, StoreError) for o in outcomes)
    error = apply_fleet.failure(outcomes)
    assert error is not None and error.exit_code == ExitCode.BAD_INPUT
    assert apply_fleet.summary(outcomes) == {"total": 2, "failed": 2}


def test_clock_at_fixes_now_and_sleeping_swaps_only_the_sleep() -> None:
    t = FakeTime()
    clock = Clock(sleep=t.sleep, monotonic=t.clock).at(NOW)
    slept: list[float] = []
    other = clock.sleeping(slept.append)
    other.sleep(2.0)
    clock.sleep(3.0)
    assert (clock.now(), other.now()) == (NOW, NOW)
    assert (slept, t.sleeps, other.monotonic()) == ([2.0], [3.0], 3.0)


def test_in_a_fleet_each_instance_reports_progress_to_its_own_sink(tmp_path: Path) -> None:
    """`progress_for` gives every instance its own progress sink (the CLI names the instance on
    each line of `apply -f`); without it everything goes to `on_progress`."""
    base = _change(tmp_path)
    seen: dict[str, int] = {}
    shared: list[object] = []

    def sink_for(iid: str) -> Callable[[Progress], None]:
        def sink(p: Progress) -> None:
            seen[iid] = seen.get(iid, 0) + 1

        return sink

    fleet = InstanceChange(base.options, clock=base.clock, progress_for=sink_for)
    single = InstanceChange(base.options, clock=base.clock, on_progress=shared.append)
    for change, iid in ((fleet, "pgm-a"), (fleet, "pgm-b"), (single, "pgm-c")):
        api = FakeApi(ssl_state())
        change.complete(api, change.prepare(api, iid, DesiredSsl(client_ca_pem=PEM)))
    assert set(seen) == {"pgm-a", "pgm-b"} and all(n > 0 for n in seen.values())
    assert shared  # the single-instance change used its one sink
