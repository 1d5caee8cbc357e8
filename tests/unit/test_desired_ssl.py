"""`ssl = "cloud" | "custom"` from the desired-state file to the plan (rdsssl.ops.desired
`DesiredBuilder.server_with`, rdsssl.ops.apply_fleet `plan_all`): which endpoint the call
names, the custom certificate as a requirement issued once, the two-call fallback a service
profile asks for, the endpoints a cloud certificate leaves uncovered, and the profile key."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path

import pytest

from rdsssl.errors import ConfigError, InputError
from rdsssl.models import AclMode, InstanceSpec, KeyType, NetInfo, SslModifyRequest
from rdsssl.ops import apply_fleet, fleet_ssl, plan_file
from rdsssl.ops.apply import ApplyOptions
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.clock import Clock
from rdsssl.ops.desired import DesiredBuilder
from rdsssl.ops.instance_change import InstanceChange, InstanceOutcome
from rdsssl.ops.plan import DesiredSsl
from rdsssl.ops.server_ssl_plan import ServerCertFromStore
from rdsssl.rds import service_profile
from rdsssl.store.castore import CaStore

from .conftest import NOW
from .fakes import FakeApi, ssl_state

pytestmark = pytest.mark.unit

INTERNAL = "pgm-x.pg.rds.aliyuncs.com"
PUBLIC = "pgm-xo.pg.rds.aliyuncs.com"


class ServerApi(FakeApi):
    """Two endpoints (public listed first, as a service may), and SSL switched by Modify."""

    def describe_net_info(self, instance_id: str) -> list[NetInfo]:
        return [
            NetInfo(PUBLIC, "203.0.113.5", "Public", 5432, "Normal"),
            NetInfo(
                "pgm-x-rw.pg.rds.aliyuncs.com", "10.0.0.6", "Private", 5432, "ReadWriteSplitting"
            ),
            NetInfo(INTERNAL, "10.0.0.5", "Private", 5432, "Normal"),
        ]

    def modify_ssl(self, request: SslModifyRequest) -> str:
        rid = super().modify_ssl(request)
        if request.ssl_enabled:
            self.ssl = dataclasses.replace(
                self.ssl,
                ssl_enabled=True,
                ca_type=request.ca_type or "aliyun",
                connection_string=request.connection_string,
            )
        return rid


def _store(path: Path, cn: str) -> Path:
    CaStore.init(path, cn=cn, key_type=KeyType.EC_P256, days=3650, passphrase=None, now=NOW).close()
    return path


@pytest.fixture
def client_ca(tmp_path: Path) -> Path:
    return _store(tmp_path / "ca", "root-ca1")


def _spec(ca_dir: Path, **kw: object) -> InstanceSpec:
    base: dict[str, object] = dict(
        id="pgm-x", tags=None, region=None, ca_dir=ca_dir, ca_bundle=None, crl=True,
        acl=AclMode.CERT, replication_acl=None, source="rdsssl.toml: instances[1] (id pgm-x)",
    )  # fmt: skip
    base.update(kw)
    return InstanceSpec(**base)  # type: ignore[arg-type]


def _off() -> ServerApi:
    return ServerApi(ssl_state(ssl_enabled=False, connection_string="", ca_type=""))


def test_without_ssl_the_server_side_is_not_read_nor_planned(client_ca: Path) -> None:
    api = _off()
    builder = DesiredBuilder(now=NOW)
    desired = builder.for_spec(_spec(client_ca))
    same, target = builder.server_with(desired, _spec(client_ca), api, "pgm-x")
    assert same is desired and same.server is None and target is None
    assert api.describe_calls == 0


def test_cloud_from_ssl_off_names_the_internal_endpoint(client_ca: Path) -> None:
    builder = DesiredBuilder(now=NOW)
    spec = _spec(client_ca, ssl="cloud")
    desired, target = builder.server_with(builder.for_spec(spec), spec, _off(), "pgm-x")
    assert desired.server is not None and desired.server.ssl == "cloud"
    assert desired.server.connection_string == INTERNAL  # internal first, RW splitting left out
    assert target is not None and target.ssl_was_off
    assert target.endpoints == (INTERNAL, PUBLIC)
    on = ServerApi(ssl_state(connection_string=PUBLIC))
    desired, target = builder.server_with(builder.for_spec(spec), spec, on, "pgm-x")
    assert desired.server is not None and desired.server.connection_string is None  # kept
    assert target is not None and not target.ssl_was_off


def test_custom_is_a_requirement_issued_once_per_instance(client_ca: Path, tmp_path: Path) -> None:
    server_ca = _store(tmp_path / "server-ca", "db-server-ca")
    builder = DesiredBuilder(now=NOW)
    spec = _spec(client_ca, ssl="custom", server_ca_dir=server_ca)
    desired, _ = builder.server_with(builder.for_spec(spec), spec, _off(), "pgm-x")
    assert desired.server is not None and desired.server.ssl == "custom"
    cert = desired.server.cert
    assert isinstance(cert, ServerCertFromStore) and cert.names == (INTERNAL, PUBLIC)
    with CaStore.open(server_ca) as store:
        assert store.server_certs() == []  # nothing issued while planning
    first, second = cert.build(), cert.build()
    assert first == second and first.cert_pem and "PRIVATE KEY" not in repr(first)
    with CaStore.open(server_ca) as store:
        (record,) = store.server_certs(instance_id="pgm-x")
    assert set(record.names) == {INTERNAL, PUBLIC}


def test_custom_without_server_ca_dir_from_a_hand_made_spec_is_refused(client_ca: Path) -> None:
    builder = DesiredBuilder(now=NOW)
    spec = _spec(client_ca, ssl="custom")
    with pytest.raises(ConfigError, match="server_ca_dir"):
        builder.server_with(builder.for_spec(spec), spec, _off(), "pgm-x")


def _planned(
    client_ca: Path, profile: service_profile.ServiceProfile, api: ServerApi | None = None
) -> apply_fleet.Target:
    spec = _spec(client_ca, ssl="cloud")
    target = apply_fleet.Target(InstanceOutcome("pgm-x", spec.source), api or _off(), spec)
    apply_fleet.plan_all([target], DesiredBuilder(now=NOW), concurrency=1, profile=profile)
    assert target.outcome.error is None, target.outcome.error
    return target


def test_one_call_by_default_two_when_the_profile_says_so(client_ca: Path) -> None:
    one = _planned(client_ca, service_profile.ServiceProfile())
    assert one.outcome.first is None and one.outcome.preview is not None
    plan = one.outcome.preview.plan
    assert [c.field for c in plan.changes] == ["ssl", "client_ca", "crl", "acl"]
    request = plan.request
    assert request is not None and request.ssl_enabled and request.ca_type == "aliyun"
    assert request.connection_string == INTERNAL and request.acl is AclMode.CERT
    assert "two-calls" not in {w.code for w in plan.warnings}

    two = _planned(client_ca, service_profile.ServiceProfile(one_call_ssl_setup=False))
    first = two.outcome.first
    assert first is not None and first.preview is not None
    assert [c.field for c in first.preview.plan.changes] == ["ssl"]  # SSL alone first
    first_request = first.preview.plan.request
    assert first_request is not None and first_request.client_ca_pem is None
    assert two.outcome.preview is not None
    assert "two-calls" in {w.code for w in two.outcome.preview.plan.warnings}
    assert two.outcome.to_json()["first_call"]["plan"]["changes"][0]["field"] == "ssl"


def test_no_split_when_ssl_is_already_on(client_ca: Path) -> None:
    on = ServerApi(ssl_state(connection_string=INTERNAL))
    target = _planned(client_ca, service_profile.ServiceProfile(one_call_ssl_setup=False), on)
    assert target.outcome.first is None and target.outcome.preview is not None
    assert [c.field for c in target.outcome.preview.plan.changes] == ["client_ca", "crl", "acl"]


def test_the_plan_names_the_endpoints_a_cloud_certificate_leaves_uncovered(
    client_ca: Path,
) -> None:
    target = _planned(client_ca, service_profile.ServiceProfile())
    assert target.outcome.preview is not None
    (warning,) = [
        w for w in target.outcome.preview.plan.warnings
        if w.code == "cloud-certificate-one-endpoint"
    ]  # fmt: skip
    assert f"covers {INTERNAL} only" in warning.message and PUBLIC in warning.message
    assert 'ssl = "custom"' in warning.message


def test_a_plan_file_does_not_carry_server_changes(client_ca: Path) -> None:
    target = _planned(client_ca, service_profile.ServiceProfile())
    assert target.spec is not None
    with pytest.raises(InputError, match="rdsssl apply -f"):
        plan_file.planned_instance(target.outcome, target.spec, None, DesiredBuilder(now=NOW))


def test_the_apply_phase_issues_the_custom_certificate_up_front(
    client_ca: Path, tmp_path: Path
) -> None:
    server_ca = _store(tmp_path / "server-ca", "db-server-ca")
    spec = _spec(client_ca, ssl="custom", server_ca_dir=server_ca)
    target = apply_fleet.Target(InstanceOutcome("pgm-x", spec.source), _off(), spec)
    builder = DesiredBuilder(now=NOW)
    apply_fleet.plan_all([target], builder, concurrency=1, profile=service_profile.ServiceProfile())
    apply_fleet.sign_up_front([target])
    assert target.outcome.error is None
    with CaStore.open(server_ca) as store:
        assert len(store.server_certs(instance_id="pgm-x")) == 1


def test_the_profile_key_defaults_to_one_call_and_must_be_a_boolean() -> None:
    assert service_profile.ServiceProfile().one_call_ssl_setup is True
    doc = {"format": 1, "one_call_ssl_setup": False}
    assert service_profile.parse(doc, source="p.json").one_call_ssl_setup is False
    assert service_profile.parse({"format": 1}, source="p.json").one_call_ssl_setup is True
    with pytest.raises(ConfigError, match="one_call_ssl_setup must be true or false"):
        service_profile.parse({"format": 1, "one_call_ssl_setup": "no"}, source="p.json")


def test_desired_ssl_without_server_is_today_s_behaviour(client_ca: Path) -> None:
    desired = DesiredBuilder(now=NOW).for_spec(_spec(client_ca))
    assert isinstance(desired, DesiredSsl) and desired.server is None


def test_two_calls_send_ssl_first_then_exactly_the_rest_even_without_wait(
    client_ca: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proved: list[str] = []

    def no_network(api: object, outcome: InstanceOutcome, **_: object) -> None:
        proved.append(outcome.instance_id)  # the TLS proof itself: tests/e2e/test_ssl_setup.py

    monkeypatch.setattr(fleet_ssl, "prove_change", no_network)
    api = _off()
    target = _planned(client_ca, service_profile.ServiceProfile(one_call_ssl_setup=False), api)
    options = ApplyOptions(audit=AuditLog(tmp_path / "audit.jsonl"), settle=0, wait=False)
    change = InstanceChange(replace(options, force=True), clock=Clock().at(NOW))
    apply_fleet.apply_all(change, [target], concurrency=1)
    assert target.outcome.error is None, target.outcome.error
    first, second = api.modify_calls
    assert first.ssl_enabled and first.ca_type == "aliyun" and first.connection_string == INTERNAL
    assert first.client_ca_pem is None and first.acl is None and first.crl_pem is None
    assert second.ssl_enabled is None and second.ca_type is None  # never re-sent
    assert second.client_ca_pem and second.crl_pem and second.acl is AclMode.CERT
    assert target.outcome.first is not None and target.outcome.first.result is not None
    assert target.outcome.first.result.final is not None  # the first call was waited for
    assert proved == ["pgm-x"]  # the first call's proof (the second is not waited: --no-wait)
    assert target.outcome.result is not None
    assert "two-calls" in {w.code for w in target.outcome.result.plan.warnings}
