"""Injected faults reach the SDK as the documented exceptions (docs §5.1-§5.2), reproducibly."""

from __future__ import annotations

import pytest
from alibabacloud_rds20140815.client import Client
from alibabacloud_tea_openapi.exceptions import (
    ClientException,
    ServerException,
    ThrottlingException,
)
from darabonba.exceptions import UnretryableException

from rdsssl.emulator.faults import Fault, Faults
from rdsssl.emulator.server import Emulator
from tests.emulator.conftest import RESTART_SECONDS
from tests.emulator.sdk import control, modify, ssl_of, status_of
from tests.pgtls import KeyPair


def test_a_planned_sequence_gives_the_documented_exceptions(
    client: Client, emu: Emulator, iid: str, conn_str: str
) -> None:
    for kind in ("throttling", "unavailable", "internal", "html502"):
        emu.faults.push(kind, action="ModifyDBInstanceSSL")
    calls = []
    for expected in (ClientException, ServerException, ServerException, UnretryableException):
        with pytest.raises(expected) as exc:
            modify(client, iid, conn_str, sslenabled=1)
        calls.append(exc.value)
    throttled, unavailable, internal, html = calls
    assert not isinstance(throttled, ThrottlingException)
    assert (throttled.code, throttled.status_code) == ("Throttling.User", 400)
    assert (unavailable.code, unavailable.status_code) == ("ServiceUnavailable", 503)
    assert (internal.code, internal.status_code) == ("InternalError", 500)
    assert "json" in str(html.inner_exception).lower()
    assert [r.outcome for r in emu.requests] == [
        "Throttling.User",
        "ServiceUnavailable",
        "InternalError",
        "HTTP502",
    ]
    assert status_of(client, iid) == "Running"  # none of them reached the instance
    modify(client, iid, conn_str)  # the plan is used up: the fifth call goes through
    assert status_of(client, iid) == "SSL_MODIFYING"


def test_faults_target_one_action_only(client: Client, emu: Emulator, iid: str) -> None:
    emu.faults.push("throttling", action="ModifyDBInstanceSSL")
    assert ssl_of(client, iid).sslenabled == "on"


def test_retry_after_makes_a_throttling_exception(client: Client, emu: Emulator, iid: str) -> None:
    emu.faults.push("throttling", retry_after_ms=1500)
    with pytest.raises(ThrottlingException) as exc:
        ssl_of(client, iid)
    assert (exc.value.code, exc.value.retry_after) == ("Throttling.User", 1500)


def test_an_after_fault_applies_the_change_yet_reports_an_error(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    """The hazard behind "re-read the state before re-sending a Modify call"."""
    emu.faults.push("internal", action="ModifyDBInstanceSSL", after=True)
    with pytest.raises(ServerException):
        modify(client, iid, conn_str, client_caenabled=1, client_cacert=client_ca.cert_pem.decode())
    assert ssl_of(client, iid).last_modify_status == "setting"
    emu.clock.advance(RESTART_SECONDS)
    assert ssl_of(client, iid).client_cacert == client_ca.cert_pem.decode()


def test_a_long_url_is_an_html_414(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    emu.faults.url_limit = 512  # the CA PEM alone is longer, URL-encoded
    with pytest.raises(UnretryableException):
        modify(client, iid, conn_str, client_caenabled=1, client_cacert=client_ca.cert_pem.decode())
    assert (emu.requests[-1].outcome, emu.requests[-1].status) == ("HTTP414", 414)
    assert ssl_of(client, iid).client_cacert == ""  # short URLs still pass


def test_latency_delays_without_failing(client: Client, emu: Emulator, iid: str) -> None:
    slept: list[float] = []
    assert emu._app is not None
    emu._app.sleep = slept.append
    try:
        emu.faults.latency = 0.25
        emu.faults.push("latency", latency=2.0)
        assert ssl_of(client, iid).sslenabled == "on"
        assert ssl_of(client, iid).sslenabled == "on"
    finally:
        emu._app.sleep = __import__("time").sleep
    assert slept == [2.25, 0.25]
    assert emu.requests[0].fault == "latency" and emu.requests[0].outcome == "ok"


def test_rates_are_deterministic_for_a_seed() -> None:
    def run(seed: int) -> list[str | None]:
        faults = Faults(seed=seed)
        faults.set_rate("unavailable", 0.3)
        faults.set_rate("throttling", 0.2, action="ModifyDBInstanceSSL")
        drawn = [faults.draw("ModifyDBInstanceSSL") for _ in range(50)]
        return [f.kind if f else None for f in drawn]

    first = run(3)
    assert first == run(3)
    assert first != run(4)
    assert {"unavailable", "throttling", None} == set(first)


def test_planned_faults_come_before_rates_and_in_order() -> None:
    faults = Faults(seed=0)
    faults.set_rate("internal", 1.0)
    faults.push("throttling", action="DescribeDBInstanceSSL", count=2)
    faults.push("html502")
    assert [faults.draw("DescribeDBInstanceSSL") for _ in range(4)] == [
        Fault("throttling"),
        Fault("throttling"),
        Fault("html502"),
        Fault("internal"),
    ]
    faults.clear()
    assert faults.draw("DescribeDBInstanceSSL") is None


def test_faults_and_switches_over_the_control_route(
    client: Client, emu: Emulator, iid: str
) -> None:
    doc = control(
        emu,
        "faults",
        {
            "push": [{"kind": "unavailable", "action": "DescribeDBInstanceSSL"}],
            "switches": {"multi_ca_bundle": False},
            "url_limit": 8192,
        },
    )
    assert doc["switches"]["multi_ca_bundle"] is False and doc["url_limit"] == 8192
    assert emu.state.switches.multi_ca_bundle is False
    with pytest.raises(ServerException):
        ssl_of(client, iid)
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("nonsense")
