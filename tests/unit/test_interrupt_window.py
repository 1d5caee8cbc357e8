"""An interrupt (Ctrl-C, SIGTERM) at ANY moment after the service has taken a change leaves the
change unconfirmed on record, and the next run confirms it without sending it again.

A signal lands between two lines of Python. Instead of hoping a test's signal hits a given
window, the interrupt is raised at every line `rdsssl` executes from the moment the Modify call
returns (and inside the call itself), one run per line: the property holds for all of them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import rdsssl
from rdsssl.models import AclMode, KeyType, SslModifyRequest
from rdsssl.ops import audit
from rdsssl.ops.apply import ApplyOptions, ApplyResult, apply
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.clock import Clock
from rdsssl.ops.plan import DesiredSsl
from rdsssl.pki import crypto
from rdsssl.rds.service_profile import ServiceProfile

from .conftest import make_pki
from .fakes import FakeApi, FakeTime, ssl_state

PACKAGE = str(Path(rdsssl.__file__).parent)
PEM = crypto.cert_pem(make_pki(KeyType.EC_P256, cn="window-ca").cert).decode()
DESIRED = {
    "client CA": DesiredSsl(client_ca_pem=PEM),
    "client CA and ACL": DesiredSsl(client_ca_pem=PEM, acl=AclMode.PREFER),
}


def _run(api: FakeApi, log: AuditLog, desired: DesiredSsl, *, wait: bool = True) -> ApplyResult:
    t = FakeTime()
    options = ApplyOptions(audit=log, wait=wait, force=True, profile=ServiceProfile(), settle=2)
    return apply(api, "pgm-x", desired, options, clock=Clock(sleep=t.sleep, monotonic=t.clock))


class InterruptAt:
    """Raises KeyboardInterrupt at the `at`-th line `rdsssl` runs once `armed` (a signal
    handler's exception appears exactly there)."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.lines = 0
        self.armed = False
        self.fired = False

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Callable[..., Any] | None:
        if not frame.f_code.co_filename.startswith(PACKAGE):
            return None
        return self._line

    def _line(self, frame: FrameType, event: str, arg: Any) -> Callable[..., Any] | None:
        if event == "line" and self.armed:
            self.lines += 1
            if self.lines == self.at:
                self.fired = True
                raise KeyboardInterrupt  # the trace function is unset; the frame gets it
        return self._line


def _armed_api(trace: InterruptAt, *, inside_the_call: bool = False) -> FakeApi:
    api = FakeApi(ssl_state())
    taken = api.modify_ssl

    def modify_ssl(request: SslModifyRequest) -> str:
        request_id = taken(request)
        if inside_the_call:  # the change is taken, the answer never arrives
            raise KeyboardInterrupt
        trace.armed = True
        return request_id

    api.modify_ssl = modify_ssl  # type: ignore[method-assign]
    return api


def _traced(trace: InterruptAt, api: FakeApi, log: AuditLog, desired: DesiredSsl, wait: bool):  # type: ignore[no-untyped-def]
    sys.settrace(trace)
    try:
        return _run(api, log, desired, wait=wait)
    finally:
        sys.settrace(None)


def _the_next_run_confirms(api: FakeApi, log: AuditLog, desired: DesiredSsl) -> None:
    """The next run sends nothing and ends with the change confirmed: by itself when the
    interrupted run left it unconfirmed, already when that run had written its `ok`."""
    already = audit.read(log.path)[-1]["outcome"] == "ok"  # type: ignore[arg-type]
    again = _run(api, log, desired)
    assert not again.applied and len(api.modify_calls) == 1  # never sent twice
    last = audit.read(log.path)[-1]  # type: ignore[arg-type]
    assert last["outcome"] == "ok"
    assert last["detail"] == ("" if already else "confirmed by a later run")


@pytest.mark.parametrize("wait", [True, False], ids=["wait", "no-wait"])
@pytest.mark.parametrize("what", list(DESIRED))
def test_an_interrupt_at_any_line_after_the_call_leaves_the_change_on_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str, wait: bool
) -> None:
    desired = DESIRED[what]
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # the lines are what is tested, not disks
    endings = set()
    at = 0
    while True:  # one run per line, until a run ends before its interrupt
        at += 1
        monkeypatch.setenv("RDSSSL_STATE_DIR", str(tmp_path / f"state-{at}"))
        log = AuditLog(tmp_path / f"audit-{at}.jsonl")
        trace = InterruptAt(at)
        api = _armed_api(trace)
        audit.forget_unconfirmed()
        try:
            _traced(trace, api, log, desired, wait)
        except KeyboardInterrupt:
            assert trace.fired
        else:
            assert not trace.fired, f"the interrupt at line {at} was swallowed"
            break
        lines = audit.read(log.path)  # type: ignore[arg-type]
        outcomes = [line["outcome"] for line in lines]
        endings.add(tuple(outcomes))
        # Unconfirmed on record (`interrupted`, or `sent` once a --no-wait run is past its
        # change), or confirmed (`ok`) when the interrupt came after the wait's outcome line.
        assert outcomes in (
            ["interrupted"],
            ["sent", "interrupted"],
            ["sent", "ok", "interrupted"],
            ["sent"] if not wait else ["sent", "ok"],
        ), (at, lines)
        rid = lines[-1]["request_id"]
        # the request id is known from the line after the call's (between the two, the
        # interrupt is recorded as one during the call: the next run watches for it all the same)
        assert rid == "req-1" or (outcomes == ["interrupted"] and rid is None), (at, lines)
        if outcomes[-1] == "ok":
            assert audit.unconfirmed() == {}
        else:
            assert lines[-1]["target"] and audit.unconfirmed() == {"pgm-x": rid or ""}, at
        # the next run is another process: an interrupt inside the instance lock's release
        # leaves that lock to the process's exit (the kernel drops a dead holder's flock)
        monkeypatch.setenv("RDSSSL_STATE_DIR", str(tmp_path / f"next-{at}"))
        _the_next_run_confirms(api, log, desired)
    assert at > 50 and ("sent", "interrupted") in endings  # the windows that matter were hit


def test_an_interrupt_during_the_call_leaves_a_change_that_may_have_been_taken(
    tmp_path: Path,
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    api = _armed_api(InterruptAt(0), inside_the_call=True)
    audit.forget_unconfirmed()
    with pytest.raises(KeyboardInterrupt):
        _run(api, log, DESIRED["client CA"])
    (line,) = audit.read(log.path)  # type: ignore[arg-type]
    assert line["outcome"] == "interrupted" and line["request_id"] is None and line["target"]
    assert "may have taken" in line["detail"]
    assert audit.unconfirmed() == {"pgm-x": ""}
    api.modify_ssl = FakeApi.modify_ssl.__get__(api)  # type: ignore[method-assign]
    _the_next_run_confirms(api, log, DESIRED["client CA"])


def test_an_interrupt_before_the_call_records_nothing(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    api = FakeApi(ssl_state())

    def refused_to_start(instance_id: str) -> None:
        raise KeyboardInterrupt

    api.describe_net_info = refused_to_start  # type: ignore[assignment,method-assign]
    api.describe_instance = refused_to_start  # type: ignore[assignment,method-assign]
    with pytest.raises(KeyboardInterrupt):
        _run(api, log, DESIRED["client CA"])
    assert audit.read(log.path) == [] and api.modify_calls == []  # type: ignore[arg-type]
