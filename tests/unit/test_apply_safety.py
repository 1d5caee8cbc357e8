"""`service.apply`'s safety rules on a fake API: one change costs one call whatever fails, the
plan that is sent is the plan that was shown, the audit trail comes first, one run at a time.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from rdsssl.errors import (
    ApiError,
    ApiUnreachable,
    InputError,
    InstanceBusy,
    LockHeld,
    PlanChanged,
    Throttled,
)
from rdsssl.models import AclMode, KeyType, SslState
from rdsssl.ops import audit
from rdsssl.ops.apply import ApplyOptions, ApplyResult, apply
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.clock import Clock
from rdsssl.ops.plan import DesiredSsl, Plan, plan
from rdsssl.pki import crypto
from rdsssl.store.paths import instance_lock

from .conftest import make_pki
from .fakes import FakeApi, FakeTime, ssl_state

NOW = datetime.now(timezone.utc).replace(microsecond=0)
CA = make_pki(KeyType.EC_P256, cn="root-ca1")
CA2 = make_pki(KeyType.EC_P256, cn="root-ca2", role="ca2")
PEM = crypto.cert_pem(CA.cert).decode()
PEM2 = crypto.cert_pem(CA2.cert).decode()

# Every kind of failure a Modify call can end with that does not prove a refusal.
TRANSIENT: dict[str, ApiError] = {
    "throttled": Throttled("slow down", code="Throttling.User", retryable=True),
    "busy": InstanceBusy("busy", code="IncorrectDBInstanceState", retryable=True),
    "5xx": ApiError("boom", code="ServiceUnavailable", http_status=503, retryable=True),
    "timeout": ApiUnreachable("cannot reach the RDS API: timed out", retryable=True),
}


def _run(
    api: FakeApi, desired: DesiredSsl, *, expected: Plan | None = None, **options: Any
) -> ApplyResult:
    t = FakeTime()
    clock = Clock(sleep=t.sleep, monotonic=t.clock)
    options = {"settle": 5, **options}
    return apply(api, "pgm-x", desired, ApplyOptions(**options), expected=expected, clock=clock)


@pytest.mark.parametrize("kind", list(TRANSIENT))
def test_an_error_after_the_change_was_taken_never_costs_a_second_call(kind: str) -> None:
    api = FakeApi(ssl_state())
    api.fail_after = [TRANSIENT[kind]]
    result = _run(api, DesiredSsl(client_ca_pem=PEM))
    assert result.applied and len(api.modify_calls) == 1


@pytest.mark.parametrize("kind", list(TRANSIENT))
def test_an_error_before_the_change_was_taken_is_sent_again_after_a_re_read(kind: str) -> None:
    api = FakeApi(ssl_state())
    api.fail_modify = [TRANSIENT[kind]]
    reads_before = api.describe_calls
    result = _run(api, DesiredSsl(client_ca_pem=PEM))
    assert result.applied and len(api.modify_calls) == 2
    assert api.describe_calls > reads_before + 2  # re-read between the two calls


def test_a_refusal_is_never_sent_again() -> None:
    api = FakeApi(ssl_state())
    api.fail_modify = [ApiError("bad", code="InvalidClientCACert")]
    with pytest.raises(ApiError, match="InvalidClientCACert"):
        _run(api, DesiredSsl(client_ca_pem=PEM))
    assert len(api.modify_calls) == 1


def test_if_the_instance_changed_meanwhile_nothing_more_is_sent() -> None:
    api = FakeApi(ssl_state(client_ca_pem=PEM, acl=AclMode.PREFER))
    api.fail_modify = [TRANSIENT["throttled"]]
    original = api.describe_ssl

    def someone_else(instance_id: str) -> SslState:  # another actor changed the ACL meanwhile
        if api.modify_calls:
            api.ssl = dataclasses.replace(api.ssl, acl=AclMode.VERIFY_CA)
        return original(instance_id)

    api.describe_ssl = someone_else  # type: ignore[method-assign]
    with pytest.raises(PlanChanged, match="another change ran on the instance"):
        _run(api, DesiredSsl(client_ca_pem=PEM2), force=True)
    assert len(api.modify_calls) == 1


def test_the_plan_sent_is_the_plan_shown() -> None:
    api = FakeApi(ssl_state(client_ca_pem=PEM, acl=AclMode.PREFER))
    shown = plan(DesiredSsl(acl=AclMode.VERIFY_CA), api.ssl, instance_id="pgm-x")
    api.ssl = dataclasses.replace(api.ssl, client_ca_pem=PEM2)  # changed after it was shown
    with pytest.raises(PlanChanged, match="Nothing was sent") as exc:
        _run(api, DesiredSsl(client_ca_pem=PEM, acl=AclMode.VERIFY_CA), expected=shown, force=True)
    assert exc.value.exit_code == 6 and api.modify_calls == []
    same = plan(DesiredSsl(acl=AclMode.VERIFY_CA), api.ssl, instance_id="pgm-x")
    assert _run(api, DesiredSsl(acl=AclMode.VERIFY_CA), expected=same, force=True).applied


def test_an_unwritable_audit_log_stops_before_any_call(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    api = FakeApi(ssl_state())
    with pytest.raises(InputError, match=r"audit log .* is not writable") as exc:
        _run(api, DesiredSsl(client_ca_pem=PEM), audit=AuditLog(blocker / "audit.jsonl"))
    assert exc.value.exit_code == 3 and api.modify_calls == [] and api.describe_calls == 0
    # a dry run writes no audit line, so it does not need the log
    assert _run(api, DesiredSsl(client_ca_pem=PEM), dry_run=True, audit=AuditLog(blocker / "x"))


def test_the_sent_line_is_on_disk_before_the_wait(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    api = FakeApi(ssl_state())
    seen: list[list[str]] = []
    original = api.describe_instance

    def describe_instance(instance_id: str):  # type: ignore[no-untyped-def]
        if api.modify_calls:  # the wait's polls: what is in the log by then?
            seen.append([line["outcome"] for line in audit.read(log.path)])  # type: ignore[arg-type]
        return original(instance_id)

    api.describe_instance = describe_instance  # type: ignore[method-assign]
    _run(api, DesiredSsl(client_ca_pem=PEM), audit=log)
    assert seen and seen[0] == ["sent"]
    assert [line["outcome"] for line in audit.read(log.path)] == ["sent", "ok"]  # type: ignore[arg-type]


def test_an_interrupted_wait_leaves_the_sent_line_and_an_unconfirmed_change(
    tmp_path: Path,
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    api = FakeApi(ssl_state())
    api.ssl = dataclasses.replace(api.ssl, last_modify_status="success")

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    original = api.modify_ssl

    def slow_modify(request):  # type: ignore[no-untyped-def]
        rid = original(request)
        api.ssl = dataclasses.replace(api.ssl, last_modify_status="setting")  # a long restart
        return rid

    api.modify_ssl = slow_modify  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        apply(
            api,
            "pgm-x",
            DesiredSsl(client_ca_pem=PEM),
            ApplyOptions(audit=log),
            clock=Clock(sleep=interrupt),
        )
    assert [line["outcome"] for line in audit.read(log.path)] == ["sent", "interrupted"]  # type: ignore[arg-type]
    assert audit.unconfirmed()["pgm-x"] == "req-1"
    audit.AuditLog.disabled().record(instance="pgm-x", action="x", outcome="ok")  # confirmed
    assert "pgm-x" not in audit.unconfirmed()


def test_a_second_run_waits_for_the_instance_lock_then_finds_nothing_to_do() -> None:
    api = FakeApi(ssl_state())
    holder = instance_lock("pgm-x")
    holder.acquire()
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(_run(api, DesiredSsl(client_ca_pem=PEM))))
    worker.start()
    worker.join(0.3)
    assert worker.is_alive() and api.modify_calls == []  # waiting for the lock: nothing read
    api.ssl = dataclasses.replace(api.ssl, client_ca_pem=PEM)  # the first run's change
    holder.release()
    worker.join(10)
    assert done and not done[0].applied and api.modify_calls == []  # type: ignore[attr-defined]


def test_the_instance_lock_says_who_holds_it() -> None:
    holder = instance_lock("pgm-y")
    holder.acquire()
    try:
        with pytest.raises(LockHeld, match="instance pgm-y is locked by pid"):
            instance_lock("pgm-y", wait=0).acquire()
    finally:
        holder.release()


def test_an_instance_id_that_is_not_one_is_refused() -> None:
    with pytest.raises(InputError, match="not a valid RDS instance id"):
        instance_lock("../etc/passwd")


# ------------------------------------------------------------------ re-run to confirm


def _sent_then_killed(tmp_path: Path, api: FakeApi) -> AuditLog:
    """A run that sent the CA change and was killed before its outcome line."""
    log = AuditLog(tmp_path / "audit.jsonl")
    real = api.modify_ssl

    def killed(request):  # type: ignore[no-untyped-def]
        real(request)
        raise KeyboardInterrupt  # after the call: its `sent` line may or may not be written

    api.modify_ssl = killed  # type: ignore[method-assign]
    t = FakeTime()
    with pytest.raises(KeyboardInterrupt):
        clock = Clock(sleep=t.sleep, monotonic=t.clock)
        apply(api, "pgm-x", DesiredSsl(client_ca_pem=PEM), ApplyOptions(audit=log), clock=clock)
    api.modify_ssl = real  # type: ignore[method-assign]
    return log


def _sent_line(log: AuditLog, api: FakeApi) -> None:
    """Write the `sent` line a killed run leaves (the kill above came before it)."""
    from rdsssl.ops.plan import fingerprints, target_fingerprints
    from rdsssl.ops.plan import plan as make_plan

    before = dataclasses.replace(api.ssl, client_ca_pem=None)
    shown = make_plan(DesiredSsl(client_ca_pem=PEM), before, instance_id="pgm-x")
    assert shown.request is not None
    log.record(
        instance="pgm-x",
        action="modify-ssl:client_ca",
        outcome="sent",
        request_id="req-1",
        before=fingerprints(before),
        target=target_fingerprints(shown.request, before),
    )


def test_a_re_run_confirms_a_change_an_earlier_run_sent_and_sends_nothing(tmp_path: Path) -> None:
    api = FakeApi(ssl_state())
    log = _sent_then_killed(tmp_path, api)
    _sent_line(log, api)
    dry = _run(api, DesiredSsl(client_ca_pem=PEM), dry_run=True, audit=log)
    assert dry.pending == "req-1"
    assert audit.read(log.path)[-1]["outcome"] == "sent"  # type: ignore[arg-type]  # a dry run writes nothing
    result = _run(api, DesiredSsl(client_ca_pem=PEM), audit=log)
    assert not result.applied and len(api.modify_calls) == 1
    last = audit.read(log.path)[-1]  # type: ignore[arg-type]
    assert (last["outcome"], last["request_id"]) == ("ok", "req-1")
    assert last["detail"] == "confirmed by a later run"


def test_a_sent_change_that_never_shows_is_recorded_and_planned_afresh(tmp_path: Path) -> None:
    api = FakeApi(ssl_state())
    log = AuditLog(tmp_path / "audit.jsonl")
    _sent_line(log, api)  # the line says it was sent; the instance never shows it
    result = _run(api, DesiredSsl(client_ca_pem=PEM), audit=log)
    assert result.applied and len(api.modify_calls) == 1
    outcomes = [line["outcome"] for line in audit.read(log.path)]  # type: ignore[arg-type]
    assert outcomes == ["sent", "not-seen", "sent", "ok"]


def test_a_sent_change_superseded_by_another_is_recorded_as_such(tmp_path: Path) -> None:
    api = FakeApi(ssl_state(client_ca_pem=PEM2))  # someone configured another CA meanwhile
    log = AuditLog(tmp_path / "audit.jsonl")
    _sent_line(log, api)
    _run(api, DesiredSsl(acl=AclMode.PREFER), audit=log, force=True)
    outcomes = [line["outcome"] for line in audit.read(log.path)]  # type: ignore[arg-type]
    assert outcomes[:2] == ["sent", "superseded"]
