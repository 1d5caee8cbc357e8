"""Profiles and their switches through the official SDK: one test per switch, both settings.

State-only instances and the movable clock (tests/emulator/conftest.py: restarts take 100 s,
ACL locks 50 s), so every phase of a change is observed at a chosen instant. The same module
also checks the profile files (load, round trip, refusals) and `emulator serve --profile`.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
from alibabacloud_rds20140815.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from darabonba.exceptions import UnretryableException

from rdsssl.emulator.faults import Switches
from rdsssl.emulator.pg import NullBackend
from rdsssl.emulator.profiles import (
    BUILTIN_PROFILES,
    DOCUMENTED,
    PESSIMISTIC,
    load_profile,
    parse_profile,
)
from rdsssl.emulator.server import Emulator
from tests.emulator.conftest import ACL_LOCK_SECONDS, RESTART_SECONDS
from tests.emulator.sdk import control, modify, ssl_of, status_of
from tests.pgtls import KeyPair, make_ca, utcnow

LAG, EARLY = 30.0, 20.0


@dataclass(frozen=True)
class Seen:
    """What a poller sees at one instant: the two statuses and which CA reads back."""

    status: str
    last_modify_status: str
    client_ca: str


def _seen(client: Client, iid: str) -> Seen:
    body = ssl_of(client, iid)
    return Seen(status_of(client, iid), body.last_modify_status, body.client_cacert)


def _enable_ca(client: Client, iid: str, conn_str: str, ca: KeyPair) -> None:
    modify(client, iid, conn_str, client_caenabled=1, client_cacert=ca.cert_pem.decode())


def _applied(emu: Emulator, iid: str) -> int:
    """How many configurations the instance's (state-only) backend was given so far."""
    backend = emu.instance(iid).backend
    assert isinstance(backend, NullBackend)
    return len(backend.applied)


def _code(exc: pytest.ExceptionInfo[ClientException]) -> tuple[str, int]:
    return exc.value.code, exc.value.status_code


# -- status_lag_seconds -------------------------------------------------------------------------


def test_without_status_lag_the_change_shows_at_once(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    ca = client_ca.cert_pem.decode()
    _enable_ca(client, iid, conn_str, client_ca)
    assert _seen(client, iid) == Seen("SSL_MODIFYING", "setting", ca)
    emu.clock.advance(RESTART_SECONDS)
    assert _seen(client, iid) == Seen("Running", "success", ca)


def test_status_lag_shows_the_old_state_then_the_timeline(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    ca = client_ca.cert_pem.decode()
    control(emu, "faults", {"switches": {"status_lag_seconds": LAG}})
    applied = _applied(emu, iid)
    _enable_ca(client, iid, conn_str, client_ca)
    assert _seen(client, iid) == Seen("Running", "", "")  # queued: nothing shows yet
    emu.clock.advance(LAG - 1)
    assert _seen(client, iid) == Seen("Running", "", "")
    with pytest.raises(ClientException) as exc:  # but the instance is busy all along
        modify(client, iid, conn_str, acl="cert")
    assert _code(exc) == ("IncorrectDBInstanceState", 403)
    emu.clock.advance(2)
    assert _seen(client, iid) == Seen("SSL_MODIFYING", "setting", ca)
    assert _applied(emu, iid) == applied  # PostgreSQL still runs the old configuration
    emu.clock.advance(RESTART_SECONDS)
    assert _seen(client, iid) == Seen("Running", "success", ca)
    assert (_applied(emu, iid), emu.restarts(iid)) == (applied + 1, 1)


def test_status_lag_shows_the_previous_last_modify_status(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    """A second change reads `success` from the first one during its lag, with the old CA."""
    _enable_ca(client, iid, conn_str, client_ca)
    emu.clock.advance(RESTART_SECONDS)
    emu.faults.switches.status_lag_seconds = LAG
    other = make_ca("lag-second-ca")
    _enable_ca(client, iid, conn_str, other)
    assert _seen(client, iid) == Seen("Running", "success", client_ca.cert_pem.decode())
    emu.clock.advance(LAG + 1)
    assert _seen(client, iid) == Seen("SSL_MODIFYING", "setting", other.cert_pem.decode())


# -- early_readback_seconds ---------------------------------------------------------------------


def test_early_readback_shows_new_values_running_success_before_the_restart(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    ca = client_ca.cert_pem.decode()
    emu.faults.switches.early_readback_seconds = EARLY
    applied = _applied(emu, iid)
    _enable_ca(client, iid, conn_str, client_ca)
    assert _seen(client, iid) == Seen("Running", "success", ca)  # a naive waiter stops here
    emu.clock.advance(EARLY - 1)
    assert _seen(client, iid) == Seen("Running", "success", ca)
    assert (_applied(emu, iid), emu.restarts(iid)) == (applied, 0)  # the old configuration
    with pytest.raises(ClientException) as exc:
        modify(client, iid, conn_str, acl="cert")
    assert _code(exc)[0] == "IncorrectDBInstanceState"
    emu.clock.advance(2)
    assert _seen(client, iid) == Seen("SSL_MODIFYING", "setting", ca)
    emu.clock.advance(RESTART_SECONDS)
    assert _seen(client, iid) == Seen("Running", "success", ca)
    assert (_applied(emu, iid), emu.restarts(iid)) == (applied + 1, 1)


def test_lag_then_early_readback_then_restart(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    """The pessimistic timeline: [0, L) old, [L, L+E) new + success, [L+E, L+E+R) setting."""
    ca = client_ca.cert_pem.decode()
    emu.faults.switches.update({"status_lag_seconds": LAG, "early_readback_seconds": EARLY})
    _enable_ca(client, iid, conn_str, client_ca)
    timeline = []
    for step in (0, LAG - 1, 2, EARLY - 2, 2, RESTART_SECONDS - 2, 2):
        emu.clock.advance(step)
        timeline.append(_seen(client, iid))
    assert timeline == [
        Seen("Running", "", ""),
        Seen("Running", "", ""),
        Seen("Running", "success", ca),
        Seen("Running", "success", ca),
        Seen("SSL_MODIFYING", "setting", ca),
        Seen("SSL_MODIFYING", "setting", ca),
        Seen("Running", "success", ca),
    ]
    assert emu.restarts(iid) == 1


# -- busy_code ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("switches", "code", "status", "message"),
    [
        ({}, "IncorrectDBInstanceState", 403, "Current DB instance state does not support"),
        (
            {"busy_code": "InvalideStatus.Format"},
            "InvalideStatus.Format",
            400,
            "The instance status does not support this operation",
        ),
        (
            {"busy_code": "OperationDenied.DBInstanceStatus"},
            "OperationDenied.DBInstanceStatus",
            403,
            "not permitted due to status of instance",
        ),
        (  # recorded on an account: a code the catalogue does not know, its recorded status
            {"busy_code": "Instance.Busy", "busy_http_status": 409},
            "Instance.Busy",
            409,
            "The instance status does not support this operation",
        ),
    ],
)
def test_busy_code_answers_a_second_modify_during_the_restart(
    client: Client,
    emu: Emulator,
    iid: str,
    conn_str: str,
    client_ca: KeyPair,
    switches: dict[str, object],
    code: str,
    status: int,
    message: str,
) -> None:
    control(emu, "faults", {"switches": switches})
    _enable_ca(client, iid, conn_str, client_ca)
    assert status_of(client, iid) == "SSL_MODIFYING"
    with pytest.raises(ClientException) as exc:
        modify(client, iid, conn_str, acl="verify-ca")
    assert _code(exc) == (code, status)
    assert message in exc.value.message and "SSL_MODIFYING" in exc.value.message
    emu.clock.advance(RESTART_SECONDS)
    modify(client, iid, conn_str, acl="verify-ca")  # idle again: accepted
    assert ssl_of(client, iid).acl == "verify-ca"


# -- multi_ca_bundle ----------------------------------------------------------------------------


@pytest.mark.parametrize("allowed", [True, False])
def test_multi_ca_bundle(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair, allowed: bool
) -> None:
    bundle = (client_ca.cert_pem + make_ca("bundle-second-ca").cert_pem).decode()
    control(emu, "faults", {"switches": {"multi_ca_bundle": allowed}})
    if allowed:
        modify(client, iid, conn_str, client_caenabled=1, client_cacert=bundle)
        emu.clock.advance(RESTART_SECONDS)
        assert ssl_of(client, iid).client_cacert == bundle
        return
    with pytest.raises(ClientException) as exc:
        modify(client, iid, conn_str, client_caenabled=1, client_cacert=bundle)
    assert _code(exc) == ("InvalidClientCACert", 400)
    assert "2 certificates; only one is accepted" in exc.value.message
    assert (status_of(client, iid), ssl_of(client, iid).client_cacert) == ("Running", "")


# -- restart_on_acl_change ----------------------------------------------------------------------


@pytest.mark.parametrize(("restarts", "counters"), [(False, (1, 1)), (True, (2, 0))])
def test_acl_only_change_reloads_or_restarts(
    client: Client,
    emu: Emulator,
    iid: str,
    conn_str: str,
    client_ca: KeyPair,
    restarts: bool,
    counters: tuple[int, int],
) -> None:
    control(emu, "faults", {"switches": {"restart_on_acl_change": restarts}})
    _enable_ca(client, iid, conn_str, client_ca)
    emu.clock.advance(RESTART_SECONDS)
    modify(client, iid, conn_str, acl="cert")
    assert status_of(client, iid) == "SSL_MODIFYING"
    emu.clock.advance(ACL_LOCK_SECONDS)
    assert (emu.restarts(iid), emu.reloads(iid)) == counters
    backend = emu.instance(iid).backend
    assert isinstance(backend, NullBackend)
    assert backend.applied[-1][0].acl == "cert" and backend.applied[-1][1] is restarts


# -- url_limit ----------------------------------------------------------------------------------


def _status_for_target(emu: Emulator, length: int) -> int:
    """HTTP status of an unsigned GET whose request target is exactly `length` bytes."""
    target = "/?Action=DescribeDBInstanceSSL&Version=2014-08-15&DBInstanceId=x&Pad="
    target += "a" * (length - len(target))
    conn = http.client.HTTPConnection(emu.host, emu.port, timeout=10)
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert (b"Tengine" in body) == (resp.status == 414)  # the gateway's HTML page
    return resp.status


def _big_crl(ca: KeyPair, revoked: int) -> str:
    now = utcnow()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(now + timedelta(days=7))
    )
    for serial in range(1, revoked + 1):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial * 7919)
            .revocation_date(now - timedelta(minutes=1))
            .build()
        )
    crl = builder.sign(ca.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM).decode()


def test_url_limit_8192_answers_an_html_414_above_it(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    crl = _big_crl(client_ca, 300)  # about 12 KB of query once URL-encoded
    fields = {
        "client_caenabled": 1,
        "client_cacert": client_ca.cert_pem.decode(),
        "client_crl_enabled": 1,
        "client_cert_revocation_list": crl,
    }
    assert _status_for_target(emu, 20_000) == 400  # documented: no limit below 64 KiB
    control(emu, "faults", {"switches": {"url_limit": 8192}})
    assert _status_for_target(emu, 8192) == 400  # reaches the signature check
    assert _status_for_target(emu, 8193) == 414
    with pytest.raises(UnretryableException):
        modify(client, iid, conn_str, **fields)
    assert (emu.requests[-1].outcome, status_of(client, iid)) == ("HTTP414", "Running")
    emu.reset()  # back to the documented profile: the same call goes through
    modify(client, iid, conn_str, **fields)
    emu.clock.advance(RESTART_SECONDS)
    assert ssl_of(client, iid).client_cert_revocation_list == crl


# -- not_found_http_status ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 404])
def test_not_found_http_status(client: Client, emu: Emulator, status: int) -> None:
    if status != 400:
        control(emu, "faults", {"switches": {"not_found_http_status": status}})
    with pytest.raises(ClientException) as exc:
        ssl_of(client, "pgm-doesnotexist")
    assert _code(exc) == ("InvalidDBInstanceId.NotFound", status)


# -- acl_without_ca, LastModifyStatus, SSL off ---------------------------------------------------


@pytest.mark.parametrize("readback", ["prefer", ""])
def test_acl_reads_back_prefer_with_ssl_on_and_no_client_ca(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair, readback: str
) -> None:
    if readback != "prefer":
        emu.faults.switches.acl_without_ca = readback
    body = ssl_of(client, iid)
    assert (body.sslenabled, body.client_cacert, body.acl, body.replication_acl) == (
        "on",
        "",
        readback,
        readback,
    )
    _enable_ca(client, iid, conn_str, client_ca)  # with a CA and no ACL sent: prefer either way
    emu.clock.advance(RESTART_SECONDS)
    assert (ssl_of(client, iid).acl, ssl_of(client, iid).replication_acl) == ("prefer", "prefer")
    emu.set_ssl_enabled(iid, False)
    assert (ssl_of(client, iid).acl, ssl_of(client, iid).replication_acl) == ("", "")


def test_last_modify_status_is_empty_until_the_first_change_and_after_reset(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    assert (ssl_of(client, iid).last_modify_status, status_of(client, iid)) == ("", "Running")
    _enable_ca(client, iid, conn_str, client_ca)
    emu.clock.advance(RESTART_SECONDS)
    assert ssl_of(client, iid).last_modify_status == "success"
    control(emu, "reset", {})
    assert ssl_of(client, iid).last_modify_status == ""


def test_ssl_off_and_on_through_the_control_route(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    _enable_ca(client, iid, conn_str, client_ca)
    emu.clock.advance(RESTART_SECONDS)
    doc = control(emu, f"instances/{iid}", {"SSLEnabled": "off"})
    assert doc["SSLEnabled"] == "off"
    body = ssl_of(client, iid)
    assert (body.sslenabled, body.connection_string, body.catype, body.server_cert) == (
        "off",
        "",
        "",
        "",
    )
    assert (body.client_cacert, body.client_cert_revocation_list, body.acl) == ("", "", "")
    backend = emu.instance(iid).backend
    assert isinstance(backend, NullBackend)
    assert (
        backend.applied[-1][0].ssl_enabled is False and backend.applied[-1][0].client_ca_pem is None
    )
    with pytest.raises(ClientException) as exc:  # a client CA needs SSL first, as today
        _enable_ca(client, iid, conn_str, client_ca)
    assert _code(exc) == ("IncorrectDBSslStatus", 400)

    doc = control(emu, f"instances/{iid}", {"SSLEnabled": "on"})
    body = ssl_of(client, iid)
    assert (doc["SSLEnabled"], body.sslenabled, body.catype) == ("on", "on", "aliyun")
    assert body.connection_string == conn_str and "BEGIN CERTIFICATE" in body.server_cert
    assert (body.client_cacert, body.acl) == ("", "prefer")
    assert backend.applied[-1][0].ssl_enabled is True
    assert (emu.restarts(iid), emu.reloads(iid)) == (1, 0)  # out of band: not an SSL change


def test_ssl_control_route_refuses_bad_values_and_a_busy_instance(
    emu: Emulator, iid: str, conn_str: str, client: Client, client_ca: KeyPair
) -> None:
    with pytest.raises(AssertionError, match=r"HTTP 400.*SSLEnabled must be on or off"):
        control(emu, f"instances/{iid}", {"SSLEnabled": "yes"})
    with pytest.raises(AssertionError, match=r"HTTP 400.*unknown keys: SSL"):
        control(emu, f"instances/{iid}", {"SSL": "off"})
    _enable_ca(client, iid, conn_str, client_ca)
    with pytest.raises(AssertionError, match=r"HTTP 403.*IncorrectDBInstanceState"):
        control(emu, f"instances/{iid}", {"SSLEnabled": "off"})
    assert ssl_of(client, iid).sslenabled == "on"


# -- crlf_pem_readback --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["exact", "normalized"])
def test_crlf_pem_readback(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair, mode: str
) -> None:
    lf = client_ca.cert_pem.decode()
    crlf = lf.replace("\n", "\r\n")
    emu.faults.switches.crlf_pem_readback = mode
    modify(client, iid, conn_str, client_caenabled=1, client_cacert=crlf)
    emu.clock.advance(RESTART_SECONDS)
    body = ssl_of(client, iid)
    assert body.client_cacert == (crlf if mode == "exact" else lf)
    assert ("\r" in body.client_cacert) is (mode == "exact")


# -- profiles -----------------------------------------------------------------------------------


def test_the_builtin_profiles() -> None:
    assert load_profile("documented") is DOCUMENTED and load_profile(PESSIMISTIC) is PESSIMISTIC
    assert set(BUILTIN_PROFILES) == {"documented", "pessimistic"}
    assert DOCUMENTED.switches() == Switches()  # the dataclass defaults are the documented answers
    assert PESSIMISTIC.switches() == Switches(
        multi_ca_bundle=False,
        restart_on_acl_change=True,
        status_lag_seconds=3.0,
        early_readback_seconds=2.0,
        busy_code="InvalideStatus.Format",
        url_limit=8192,
        crlf_pem_readback="normalized",
        one_call_ssl_setup=False,
        ssl_enable_renews=False,
    )
    assert (DOCUMENTED.restart_seconds, PESSIMISTIC.acl_lock_seconds) == (None, None)


RECORDED = {
    "format": 1,
    "name": "recorded cn-hangzhou 2026-12-04",
    "region": "cn-hangzhou",
    "engine_version": "15.0",
    "recorded_at": "2026-12-04T10:00:00Z",
    "multi_ca_bundle": False,
    "acl_change_restarts": True,
    "busy_error": {"code": "OperationDenied.DBInstanceStatus", "http_status": 400},
    "not_found_http_status": 404,
    "url_limit_bytes": 16384,
    "tls_max_version": None,
    "status_lag_seconds": 1.5,
    "early_readback_seconds": 0,
    "restart_seconds": 170.0,
    "acl_lock_seconds": 55,
    "acl_without_ca": "",
    "crlf_pem_readback": "normalized",
    "one_call_ssl_setup": False,
    "ssl_enable_renews": True,
    "sequences": {"ca_change": [{"t": 0, "status": "Running"}], "acl_change": []},
}


def test_a_profile_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "recorded.json"
    path.write_text(json.dumps(RECORDED))
    profile = load_profile(path)
    assert profile.name == RECORDED["name"] and profile.busy_error.http_status == 400
    assert profile.sequences == RECORDED["sequences"]
    again = tmp_path / "again.json"
    again.write_text(json.dumps(profile.to_json()))
    assert load_profile(str(again)) == profile
    assert profile.to_json() == {
        **RECORDED,
        "early_readback_seconds": 0.0,
        "acl_lock_seconds": 55.0,
    }
    switches = profile.switches()
    assert (switches.busy_code, switches.busy_http_status) == (
        "OperationDenied.DBInstanceStatus",
        400,
    )
    assert (switches.not_found_http_status, switches.url_limit, switches.tls_max_version) == (
        404,
        16384,
        None,
    )
    assert (switches.one_call_ssl_setup, switches.ssl_enable_renews) == (False, True)


def test_missing_optional_keys_take_the_documented_answers(tmp_path: Path) -> None:
    path = tmp_path / "sparse-recording.json"
    path.write_text(json.dumps({"format": 1, "multi_ca_bundle": False}))
    profile = load_profile(path)
    assert profile == replace(DOCUMENTED, name="sparse-recording", multi_ca_bundle=False)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({**RECORDED, "status_lag": 3}, "unknown key 'status_lag'"),
        (
            {**RECORDED, "busy_error": {"code": "X", "status": 400}},
            "busy_error: unknown key 'status'",
        ),
        ({k: v for k, v in RECORDED.items() if k != "format"}, "format: missing"),
        ({**RECORDED, "format": 2}, "format: 2 is not supported"),
        ({**RECORDED, "multi_ca_bundle": "no"}, "multi_ca_bundle: expected true or false"),
        ({**RECORDED, "status_lag_seconds": -1}, "status_lag_seconds: expected a finite number"),
        ({**RECORDED, "tls_max_version": "TLSv1.4"}, "tls_max_version: expected one of"),
        ({**RECORDED, "crlf_pem_readback": "lf"}, "crlf_pem_readback: expected one of"),
        ({**RECORDED, "ssl_enable_renews": "yes"}, "ssl_enable_renews: expected true or false"),
        ({**RECORDED, "one_call_ssl_setup": 1}, "one_call_ssl_setup: expected true or false"),
        ({**RECORDED, "url_limit_bytes": 0}, "url_limit_bytes: expected a positive number"),
        ({**RECORDED, "not_found_http_status": 200}, "not_found_http_status: expected an HTTP"),
        ({**RECORDED, "sequences": []}, "sequences: expected an object of lists"),
        ([RECORDED], "a profile is a JSON object"),
    ],
)
def test_a_bad_profile_is_refused_naming_the_key(doc: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_profile(doc)


def test_an_unloadable_profile_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file, and not a built-in profile"):
        load_profile("optimistic")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(f"profile '{bad}': not JSON")):
        load_profile(bad)
    bad.write_text(json.dumps({**RECORDED, "colour": "blue"}))
    with pytest.raises(ValueError, match=re.escape(f"profile '{bad}': unknown key 'colour'")):
        load_profile(bad)


def test_an_emulator_takes_a_profile_file_and_explicit_timings_win(tmp_path: Path) -> None:
    path = tmp_path / "recorded.json"
    path.write_text(json.dumps(RECORDED))
    with Emulator(instances=0, backend="none", profile=path) as emu:
        assert (emu.state.restart_seconds, emu.state.acl_lock_seconds) == (170.0, 55.0)
        doc = control(emu, "faults")
        assert (doc["profile"], doc["url_limit"]) == (RECORDED["name"], 16384)
        assert doc["switches"] == dataclasses.asdict(load_profile(path).switches())
        assert (doc["switches"]["status_lag_seconds"], doc["switches"]["busy_http_status"]) == (
            1.5,
            400,
        )
    with Emulator(instances=0, backend="none", profile=path, restart_seconds=1.0) as emu:
        assert (emu.state.restart_seconds, emu.state.acl_lock_seconds) == (1.0, 55.0)
    with Emulator(instances=0, backend="none", profile="pessimistic") as emu:
        assert (emu.state.restart_seconds, emu.state.acl_lock_seconds) == (0.3, 0.2)


def test_faults_route_shows_the_profile_and_reset_restores_its_switches(emu: Emulator) -> None:
    with Emulator(instances=0, backend="none", profile="pessimistic") as pess:
        doc = control(pess, "faults", {"switches": {"multi_ca_bundle": True, "url_limit": None}})
        assert (doc["profile"], doc["switches"]["multi_ca_bundle"], doc["url_limit"]) == (
            "pessimistic",
            True,
            None,
        )
        control(pess, "reset", {})
        doc = control(pess, "faults")
        assert doc["switches"] == dataclasses.asdict(PESSIMISTIC.switches())
        assert (doc["switches"]["multi_ca_bundle"], doc["url_limit"]) == (False, 8192)
    assert control(emu, "faults")["profile"] == "documented"


def test_switches_over_the_control_route_are_checked_all_or_none(emu: Emulator) -> None:
    with pytest.raises(AssertionError, match=r"HTTP 400.*early_readback_seconds: expected a"):
        control(
            emu,
            "faults",
            {"switches": {"status_lag_seconds": 5, "early_readback_seconds": "soon"}},
        )
    with pytest.raises(AssertionError, match=r"HTTP 400.*busy_code: expected an error code"):
        control(emu, "faults", {"switches": {"busy_code": "not a code"}})
    with pytest.raises(AssertionError, match=r"HTTP 400.*unknown switch.*lag"):
        control(emu, "faults", {"switches": {"lag": 5}})
    assert control(emu, "faults")["switches"] == dataclasses.asdict(Switches())  # none was set
