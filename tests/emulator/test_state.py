"""EmulatorState without HTTP: the status machine under a manual clock, and the validation rules.

Each refusal is checked by code, HTTP status and message, in the order docs §9 gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

import pytest

from rdsssl.emulator.cloudca import CloudCa
from rdsssl.emulator.errors import EmulatorError
from rdsssl.emulator.faults import Switches
from rdsssl.emulator.instances import Instance
from rdsssl.emulator.pg import NullBackend, PgApplyError, PgSslConfig
from rdsssl.emulator.sslrules import SslSettings
from rdsssl.emulator.state import EmulatorState
from tests.pgtls import KeyPair, make_ca, make_crl, make_leaf

CA_CRT = "client-ca"


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FailingBackend(NullBackend):
    """Refuses every apply, as PostgreSQL refuses a configuration it cannot load."""

    def apply(self, ssl: PgSslConfig, *, restart: bool) -> None:
        super().apply(ssl, restart=restart)
        raise PgApplyError('could not load SSL certificate revocation list file "crl.pem"')


def _instance(state: EmulatorState, backend: NullBackend, version: str = "15.0") -> Instance:
    ca = CloudCa.create(now=datetime.now(timezone.utc))
    iid = state.new_id()
    cert = ca.issue_server_cert(hostnames=[f"{iid}.pg"], now=datetime.now(timezone.utc))
    ssl = SslSettings(True, "aliyun", f"{iid}.pg", cert.cert_pem.decode(), cert.key_pem.decode())
    inst = Instance(
        id=iid,
        region="cn-hangzhou",
        zone="cn-hangzhou-h",
        engine_version=version,
        connection_string=f"{iid}.pg",
        public_connection_string=f"{iid}o.pg",
        backend=backend,
        ssl=ssl,
    )
    backend.start(ssl.to_pg())
    state.register(inst)
    return inst


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def state(clock: ManualClock) -> EmulatorState:
    return EmulatorState(clock=clock, switches=Switches(), restart_seconds=10, acl_lock_seconds=5)


@pytest.fixture
def backend() -> NullBackend:
    return NullBackend()


@pytest.fixture
def inst(state: EmulatorState, backend: NullBackend) -> Instance:
    return _instance(state, backend)


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return make_ca("state-test-ca")


def _params(inst: Instance, **extra: str) -> Mapping[str, str]:
    return {"DBInstanceId": inst.id, "ConnectionString": inst.connection_string, **extra}


def _enable(ca: KeyPair, **extra: str) -> dict[str, str]:
    return {"ClientCAEnabled": "1", "ClientCACert": ca.cert_pem.decode(), **extra}


def test_a_ca_change_restarts_after_restart_seconds(
    state: EmulatorState, inst: Instance, clock: ManualClock, backend: NullBackend, ca: KeyPair
) -> None:
    state.modify_ssl(_params(inst, **_enable(ca)))
    during = state.get(inst.id)
    assert (during.status, during.last_modify_status) == ("SSL_MODIFYING", "setting")
    assert during.ssl.client_ca_pem == ca.cert_pem.decode()  # the request shows while setting
    assert during.ssl.acl == "prefer"
    clock.now += 9.9
    assert state.get(inst.id).status == "SSL_MODIFYING"
    assert len(backend.applied) == 1  # only start()
    clock.now += 0.1
    after = state.get(inst.id)
    assert (after.status, after.last_modify_status) == ("Running", "success")
    applied, restarted = backend.applied[-1]
    assert restarted and applied.client_ca_pem == ca.cert_pem and applied.acl == "prefer"
    assert state.counters(inst.id) == (1, 0)


def test_an_acl_only_change_locks_then_reloads(
    state: EmulatorState, inst: Instance, clock: ManualClock, backend: NullBackend, ca: KeyPair
) -> None:
    state.modify_ssl(_params(inst, **_enable(ca)))
    clock.now += 10
    state.tick()
    state.modify_ssl(_params(inst, ACL="cert"))
    assert state.get(inst.id).status == "SSL_MODIFYING"
    clock.now += 5
    state.tick()  # the ticker completes it without any read
    assert backend.applied[-1][1] is False and backend.applied[-1][0].acl == "cert"
    assert state.counters(inst.id) == (1, 1)


def test_the_acl_restart_switch_makes_acl_changes_restart(
    state: EmulatorState, inst: Instance, clock: ManualClock, backend: NullBackend, ca: KeyPair
) -> None:
    state.switches.restart_on_acl_change = True
    state.modify_ssl(_params(inst, **_enable(ca)))
    clock.now += 10
    state.modify_ssl(_params(inst, ACL="verify-ca"))
    clock.now += 5
    assert state.counters(inst.id) == (2, 0)


def test_a_configuration_postgresql_refuses_ends_failed_with_the_old_one_kept(
    state: EmulatorState, clock: ManualClock, ca: KeyPair
) -> None:
    inst = _instance(state, FailingBackend())
    before = state.get(inst.id).ssl
    state.modify_ssl(_params(inst, **_enable(ca)))
    clock.now += 10
    after = state.get(inst.id)
    assert (after.status, after.last_modify_status) == ("Running", "failed")
    assert "could not load SSL certificate revocation list" in after.modify_status_reason
    assert after.ssl == before


def test_a_failure_after_an_early_readback_takes_the_new_values_back(
    state: EmulatorState, clock: ManualClock, ca: KeyPair
) -> None:
    """What a waiter that stopped at "Running + success + read-back" never sees."""
    inst = _instance(state, FailingBackend())
    before = state.get(inst.id).ssl
    state.switches.update({"status_lag_seconds": 2.0, "early_readback_seconds": 3.0})
    state.modify_ssl(_params(inst, **_enable(ca)))
    seen = []
    for step in (0.0, 2.0, 3.0, 10.0):
        clock.now += step
        snap = state.get(inst.id)
        seen.append((snap.status, snap.last_modify_status, snap.ssl.client_ca_pem != ""))
    assert seen == [
        ("Running", "", False),
        ("Running", "success", True),
        ("SSL_MODIFYING", "setting", True),
        ("Running", "failed", False),
    ]
    assert state.get(inst.id).ssl == before


def test_disabling_the_client_ca_clears_ca_crl_and_acls(
    state: EmulatorState, inst: Instance, clock: ManualClock, ca: KeyPair
) -> None:
    crl = make_crl(ca, []).decode()
    state.modify_ssl(
        _params(inst, **_enable(ca, ClientCrlEnabled="1", ClientCertRevocationList=crl, ACL="cert"))
    )
    clock.now += 10
    assert state.get(inst.id).ssl.crl_pem == crl
    state.modify_ssl(_params(inst, ClientCAEnabled="0"))
    clock.now += 10
    ssl = state.get(inst.id).ssl
    assert (ssl.client_ca_pem, ssl.crl_pem, ssl.acl, ssl.replication_acl) == ("", "", "", "")
    assert ssl.to_pg().acl is None and ssl.to_pg().client_ca_pem is None


def test_reset_restores_the_initial_block(
    state: EmulatorState, inst: Instance, clock: ManualClock, ca: KeyPair
) -> None:
    initial = state.get(inst.id).ssl
    state.modify_ssl(_params(inst, **_enable(ca)))
    state.reset()
    after = state.get(inst.id)
    assert (after.ssl, after.status, after.restarts) == (initial, "Running", 0)


def _refusal(state: EmulatorState, params: Mapping[str, str]) -> EmulatorError:
    with pytest.raises(EmulatorError) as info:
        state.modify_ssl(params)
    return info.value


@pytest.mark.parametrize(
    ("extra", "code", "status", "message"),
    [
        ({"ACL": "require"}, "InvalidACL.NotFound", 400, "ACL='require'"),
        ({"ReplicationACL": "md5"}, "InvalidACL.NotFound", 400, "ReplicationACL='md5'"),
        ({"ACL": "cert"}, "InvalidACL.Permission", 403, "client CA is enabled"),
        (
            {"ClientCrlEnabled": "1", "ClientCertRevocationList": "x"},
            "InvalidClientCrl.Permission",
            403,
            "client CA is enabled",
        ),
        ({"CAType": "letsencrypt"}, "InvalidCAType.NotFound", 400, "aliyun or custom"),
        ({"ClientCAEnabled": "yes"}, "InvalidParameter", 400, "ClientCAEnabled must be 0 or 1"),
        ({"ClientCAEnabled": "1"}, "InvalidClientCACert", 400, "ClientCACert is required"),
        (
            {"ClientCAEnabled": "1", "ClientCACert": "not a pem"},
            "InvalidClientCACert",
            400,
            "no PEM block",
        ),
        (
            {"SSLEnabled": "0", "ClientCAEnabled": "1", "ClientCACert": "x"},
            "IncorrectDBSslStatus",
            400,
            "enable SSL before the client CA",
        ),
    ],
)
def test_parameter_refusals(
    state: EmulatorState,
    inst: Instance,
    extra: dict[str, str],
    code: str,
    status: int,
    message: str,
) -> None:
    err = _refusal(state, _params(inst, **extra))
    assert (err.code, err.status) == (code, status)
    assert message in err.message
    assert state.get(inst.id).status == "Running"


def test_instance_level_refusals_come_first(state: EmulatorState, inst: Instance) -> None:
    bad_acl = {"ACL": "nonsense"}
    assert _refusal(state, {"ConnectionString": "x"}).code == "MissingDBInstanceId"
    assert _refusal(state, {"DBInstanceId": inst.id}).code == "MissingConnectionString"
    missing = _refusal(state, {"DBInstanceId": "pgm-nope", "ConnectionString": "x", **bad_acl})
    assert (missing.code, missing.status) == ("InvalidDBInstanceId.NotFound", 400)
    state.set_lock_mode(inst.id, "LockByExpiration", "instance_expired")
    locked = _refusal(state, _params(inst, **bad_acl))
    assert (locked.code, locked.status) == ("IncorrectDBInstanceLockMode", 403)
    state.set_lock_mode(inst.id, "Unlock")
    wrong_cs = _refusal(state, {"DBInstanceId": inst.id, "ConnectionString": "x.pg", **bad_acl})
    assert (wrong_cs.code, wrong_cs.status) == ("InvalidConnectionString.NotFound", 404)


def test_a_second_modify_while_modifying_is_refused(
    state: EmulatorState, inst: Instance, ca: KeyPair
) -> None:
    state.modify_ssl(_params(inst, **_enable(ca)))
    err = _refusal(state, _params(inst, ACL="cert"))
    assert (err.code, err.status) == ("IncorrectDBInstanceState", 403)
    assert "SSL_MODIFYING" in err.message


def test_verify_full_needs_postgresql_12(state: EmulatorState, ca: KeyPair) -> None:
    old = _instance(state, NullBackend(major_version=11), version="11.0")
    err = _refusal(state, _params(old, **_enable(ca, ACL="verify-full")))
    assert (err.code, err.status) == ("IncorrectEngineVersion", 403)
    assert "PostgreSQL 12" in err.message


def test_the_client_ca_must_hold_only_ca_certificates(
    state: EmulatorState, inst: Instance, ca: KeyPair
) -> None:
    leaf = make_leaf(ca, "alice")
    err = _refusal(state, _params(inst, ClientCAEnabled="1", ClientCACert=leaf.cert_pem.decode()))
    assert err.code == "InvalidClientCACert"
    assert "not a CA certificate" in err.message
    key = _refusal(state, _params(inst, ClientCAEnabled="1", ClientCACert=leaf.key_pem.decode()))
    assert "PRIVATE KEY, not CERTIFICATE" in key.message


def test_a_bundle_needs_the_multi_ca_switch(
    state: EmulatorState, inst: Instance, clock: ManualClock, ca: KeyPair
) -> None:
    bundle = (ca.cert_pem + make_ca("second-ca").cert_pem).decode()
    state.switches.multi_ca_bundle = False
    err = _refusal(state, _params(inst, ClientCAEnabled="1", ClientCACert=bundle))
    assert err.code == "InvalidClientCACert" and "2 certificates" in err.message
    state.switches.multi_ca_bundle = True
    state.modify_ssl(_params(inst, ClientCAEnabled="1", ClientCACert=bundle))
    clock.now += 10
    assert state.get(inst.id).ssl.client_ca_pem == bundle


def test_a_crl_holding_a_certificate_is_refused(
    state: EmulatorState, inst: Instance, ca: KeyPair
) -> None:
    smuggled = make_crl(ca, []) + make_ca("other").cert_pem  # PostgreSQL would trust it (R9)
    err = _refusal(
        state,
        _params(
            inst, **_enable(ca, ClientCrlEnabled="1", ClientCertRevocationList=smuggled.decode())
        ),
    )
    assert (err.code, err.status) == ("InvalidClientCrl", 400)
    assert "block 2 is CERTIFICATE, not X509 CRL" in err.message


def test_a_crl_from_another_ca_is_refused_unless_the_check_is_off(
    state: EmulatorState, inst: Instance, ca: KeyPair
) -> None:
    foreign = make_crl(make_ca("other"), []).decode()
    params = _params(inst, **_enable(ca, ClientCrlEnabled="1", ClientCertRevocationList=foreign))
    err = _refusal(state, params)
    assert err.code == "InvalidClientCrl" and "not signed by a CA" in err.message
    state.switches.crl_issuer_check = False
    state.modify_ssl(params)
    assert state.get(inst.id).ssl.crl_pem == foreign


@pytest.mark.parametrize(
    ("name", "password", "code"),
    [
        ("Alice", "Good-pass-1", "InvalidAccountName.Malformed"),
        ("postgres", "Good-pass-1", "InvalidAccountName.Malformed"),
        ("pg_alice", "Good-pass-1", "InvalidAccountName.Malformed"),
        ("alice", "short1A", "InvalidAccountPassword.Malformed"),
        ("alice", "alllowercase", "InvalidAccountPassword.Malformed"),
    ],
)
def test_account_rules(
    state: EmulatorState, inst: Instance, name: str, password: str, code: str
) -> None:
    with pytest.raises(EmulatorError) as info:
        state.create_account(inst.id, name, password)
    assert (info.value.code, info.value.status) == (code, 400)


def test_create_account_makes_a_role_and_refuses_duplicates(
    state: EmulatorState, inst: Instance, backend: NullBackend
) -> None:
    state.create_account(inst.id, "alice", "Alice-pass-1", "Normal", "the app")
    assert backend.roles == {"alice": "Alice-pass-1"}
    with pytest.raises(EmulatorError) as info:
        state.create_account(inst.id, "alice", "Alice-pass-2")
    assert info.value.code == "InvalidAccountName.Duplicate"
    assert [a.name for a in state.get(inst.id).accounts.values()] == ["alice"]
