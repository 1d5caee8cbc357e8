"""The server part of a plan (rdsssl.ops.server_ssl_plan folded into rdsssl.ops.plan), the guard
of `disable-ssl`, the evidence of a renewal, and server certificates kept by a CA store."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import cast

import pytest

from rdsssl.errors import ChangeFailed, ConfigError, CryptoError, LockoutGuard, UsageError
from rdsssl.models import AclMode, InstanceInfo, KeyType, SslModifyRequest, SslState
from rdsssl.ops import server_ssl
from rdsssl.ops.apply import ApplyOptions, ApplyResult, apply
from rdsssl.ops.clock import Clock
from rdsssl.ops.guard import need_for, target_of
from rdsssl.ops.plan import (
    DesiredSsl,
    matches_target,
    plan,
    read_back_matches,
    target_fingerprints,
)
from rdsssl.ops.server_ssl_plan import (
    DesiredServer,
    ServerCertFromStore,
    ServerMaterial,
    server_cert_fps,
    server_cert_status,
)
from rdsssl.ops.waiting import observe
from rdsssl.pki import crypto
from rdsssl.pki.server_certs import issue_server_cert
from rdsssl.rds.acceptors import ssl_applied
from rdsssl.rds.protocol import RdsApi
from rdsssl.rds.waiters import wait_until
from rdsssl.store.castore import CaStore

from .conftest import Pki, cached_key, make_pki
from .fakes import FakeApi, FakeTime, ssl_state

NOW = datetime.now(timezone.utc).replace(microsecond=0)
SERVER_CA = make_pki(KeyType.EC_P256, cn="server-ca", role="server-ca")
OTHER_CA = make_pki(KeyType.EC_P256, cn="other-server-ca", role="other-server-ca")
CLIENT_CA = make_pki(KeyType.EC_P256, cn="root-ca1")
NAMES = ("pgm-x.pg.rds.aliyuncs.com", "pgm-x-pub.pg.rds.aliyuncs.com")
CS = NAMES[0]


def _server(
    ca: Pki = SERVER_CA, names: tuple[str, ...] = NAMES, days: int = 365, role: str = "srv"
) -> ServerMaterial:
    key = cached_key(KeyType.EC_P256, role)
    issued = issue_server_cert(ca.cert, ca.key, key.public_key(), names=list(names), now=NOW,
                               days=days)  # fmt: skip
    return ServerMaterial(crypto.cert_pem(issued.cert).decode(), crypto.key_pem(key).decode())


def _fp(pem: str) -> str:
    return next(iter(crypto.pem_fingerprints(pem.encode(), source="t")))


def _ca_pem(pki: Pki = CLIENT_CA) -> str:
    return crypto.cert_pem(pki.cert).decode()


class Builds:
    """A `ServerCertFromStore.build` that counts its calls."""

    def __init__(self, material: ServerMaterial) -> None:
        self.material = material
        self.calls = 0

    def __call__(self) -> ServerMaterial:
        self.calls += 1
        return self.material


def _requirement(build: Builds, before: timedelta = timedelta(days=30)) -> ServerCertFromStore:
    return ServerCertFromStore(crypto.cert_pem(SERVER_CA.cert).decode(), NAMES, build, before)


OFF = ssl_state(ssl_enabled=False, ca_type="", connection_string="", acl=None)


# ------------------------------------------------------------------ planning


def test_ssl_on_and_the_client_side_go_in_one_request() -> None:
    desired = DesiredSsl(
        client_ca_pem=_ca_pem(),
        acl=AclMode.CERT,
        server=DesiredServer("cloud", connection_string=CS),
    )
    the_plan = plan(desired, OFF, instance_id="pgm-x", now=NOW)
    assert [c.field for c in the_plan.changes] == ["ssl", "client_ca", "acl"]
    request = the_plan.request
    assert request is not None
    assert (request.ssl_enabled, request.ca_type, request.connection_string) == (True, "aliyun", CS)
    assert request.client_ca_enabled and request.acl is AclMode.CERT
    assert the_plan.changes[0].code == "ssl-on" and the_plan.effect.value == "restart"


def test_ssl_on_from_off_needs_a_connection_string() -> None:
    with pytest.raises(ConfigError, match="--connection-string"):
        plan(DesiredSsl(server=DesiredServer("cloud")), OFF, instance_id="pgm-x", now=NOW)


def test_cloud_is_left_alone_unless_renewed() -> None:
    served = _server(OTHER_CA, role="cloud").cert_pem
    ssl = ssl_state(server_cert_pem=served, connection_string=CS)
    assert plan(DesiredSsl(server=DesiredServer("cloud")), ssl, instance_id="pgm-x", now=NOW).noop
    renew = plan(
        DesiredSsl(server=DesiredServer("cloud", renew=True)), ssl, instance_id="pgm-x", now=NOW
    )
    assert renew.changes[0].code == "renew-requested"
    assert renew.retired_server_cert == frozenset({_fp(served)})
    assert (
        renew.request is not None
        and renew.request.ssl_enabled
        and renew.request.ca_type == "aliyun"
    )
    moved = plan(
        DesiredSsl(server=DesiredServer("cloud", connection_string=NAMES[1])),
        ssl, instance_id="pgm-x", now=NOW,
    )  # fmt: skip
    assert moved.changes[0].code == "endpoint-moved"
    assert moved.request is not None and moved.request.connection_string == NAMES[1]


def test_ssl_off_alone() -> None:
    the_plan = plan(
        DesiredSsl(server=DesiredServer("off")), ssl_state(), instance_id="pgm-x", now=NOW
    )
    assert the_plan.request is not None and the_plan.request.ssl_enabled is False
    assert plan(DesiredSsl(server=DesiredServer("off")), OFF, instance_id="pgm-x", now=NOW).noop
    with pytest.raises(ConfigError, match="ssl off"):
        plan(
            DesiredSsl(acl=AclMode.PREFER, server=DesiredServer("off")),
            ssl_state(), instance_id="pgm-x", now=NOW,
        )  # fmt: skip


def test_desired_server_is_validated() -> None:
    with pytest.raises(ConfigError, match="one of off, cloud, custom"):
        DesiredServer("on")
    with pytest.raises(ConfigError, match="needs its certificate"):
        DesiredServer("custom")
    with pytest.raises(ConfigError):
        DesiredServer("cloud", cert=_server())


def test_custom_material_is_sent_and_never_shown() -> None:
    material = _server()
    the_plan = plan(
        DesiredSsl(server=DesiredServer("custom", material)), ssl_state(), instance_id="pgm-x",
        now=NOW,
    )  # fmt: skip
    request = the_plan.request
    assert request is not None and request.server_key_pem == material.key_pem
    for text in (repr(request), request.summary(), repr(the_plan), str(the_plan.to_dict()),
                 repr(material)):  # fmt: skip
        assert "PRIVATE KEY" not in text
    served = ssl_state(ca_type="custom", server_cert_pem=material.cert_pem)
    assert plan(DesiredSsl(server=DesiredServer("custom", material)), served, instance_id="pgm-x",
                now=NOW).noop  # fmt: skip


@pytest.mark.parametrize(
    ("served", "ca_type", "enabled", "code"),
    [
        (lambda: _server().cert_pem, "custom", True, "current"),
        (lambda: _server(OTHER_CA).cert_pem, "custom", True, "other-issuer"),
        (lambda: _server(names=NAMES[:1]).cert_pem, "custom", True, "names-missing"),
        # names are judged as verify-full judges them: a wildcard covers one left-most label
        (lambda: _server(names=("*.pg.rds.aliyuncs.com",)).cert_pem, "custom", True, "current"),
        (lambda: _server(names=("*.rds.aliyuncs.com",)).cert_pem, "custom", True, "names-missing"),
        (lambda: _server(names=tuple(map(str.upper, NAMES))).cert_pem, "custom", True, "current"),
        (lambda: _server(days=10).cert_pem, "custom", True, "renewal-window"),
        (lambda: _server().cert_pem, "aliyun", True, "cloud-certificate"),
        (lambda: "", "", False, "ssl-off"),
        (lambda: "not a pem", "custom", True, "no-certificate"),
    ],
)
def test_server_cert_status(
    served: Callable[[], str], ca_type: str, enabled: bool, code: str
) -> None:
    ssl = ssl_state(ssl_enabled=enabled, ca_type=ca_type, server_cert_pem=served())
    build = Builds(_server(role="next"))
    assert server_cert_status(ssl, _requirement(build), now=NOW).code == code
    the_plan = plan(
        DesiredSsl(server=DesiredServer("custom", _requirement(build), connection_string=CS)),
        ssl, instance_id="pgm-x", now=NOW,
    )  # fmt: skip
    assert the_plan.noop == (code == "current")
    assert build.calls == 0  # planning never issues a certificate
    if code != "current":
        assert the_plan.server_source is not None and the_plan.changes[0].code == code


# ------------------------------------------------------------------ evidence


def test_a_renewal_counts_only_when_the_old_certificate_is_gone() -> None:
    old, new = _server(role="old"), _server(role="new")
    request = SslModifyRequest("pgm-x", CS, ssl_enabled=True, ca_type="aliyun")
    matches = read_back_matches(request, frozenset({_fp(old.cert_pem)}))
    assert not matches(ssl_state(connection_string=CS, server_cert_pem=old.cert_pem))
    assert matches(ssl_state(connection_string=CS, server_cert_pem=new.cert_pem))
    assert not matches(ssl_state(connection_string=NAMES[1], server_cert_pem=new.cert_pem))
    target = target_fingerprints(request, ssl_state(), frozenset({_fp(old.cert_pem)}))
    assert matches_target(ssl_state(connection_string=CS, server_cert_pem=new.cert_pem), target)
    assert not matches_target(ssl_state(connection_string=CS, server_cert_pem=old.cert_pem), target)


def test_ssl_off_reads_back_as_off_and_old_audit_targets_still_match() -> None:
    off = SslModifyRequest("pgm-x", CS, ssl_enabled=False)
    assert read_back_matches(off)(OFF) and not read_back_matches(off)(ssl_state())
    # an audit line written before the server side was recorded has no `server` key
    old_target: dict[str, object] = {
        "client_ca": [],
        "crl": [],
        "acl": None,
        "replication_acl": None,
    }
    assert matches_target(ssl_state(), old_target)
    assert not matches_target(ssl_state(acl=AclMode.CERT), old_target)


# ------------------------------------------------------------------ the guard


@pytest.mark.parametrize(
    ("before", "guarded"),
    [
        (ssl_state(client_ca_pem=_ca_pem(), acl=AclMode.PREFER), True),
        (ssl_state(acl=AclMode.CERT), True),
        (ssl_state(replication_acl=AclMode.VERIFY_CA), True),
        (ssl_state(acl=AclMode.PREFER), False),
    ],
)
def test_ssl_off_is_guarded_while_client_certificates_are_in_use(
    before: SslState, guarded: bool
) -> None:
    request = SslModifyRequest("pgm-x", CS, ssl_enabled=False)
    need = need_for(request, before, target_of(request, before))
    assert (need is not None) == guarded
    if need is not None:
        assert need.codes == ("ssl-disabled",) and not need.provable
        assert "--force" in need.reason


def _apply(
    api: FakeApi, desired: DesiredSsl, *, force: bool = False, dry_run: bool = False
) -> ApplyResult:
    options = ApplyOptions(force=force, dry_run=dry_run, settle=0.0, lock=False)
    return apply(api, "pgm-x", desired, options, clock=Clock(sleep=lambda s: None))


def test_disable_ssl_is_refused_before_any_call_unless_forced() -> None:
    api = FakeApi(ssl_state(client_ca_pem=_ca_pem(), acl=AclMode.CERT))
    desired = server_ssl.desired_disable()
    with pytest.raises(LockoutGuard, match="SSL is switched off"):
        _apply(api, desired)
    assert api.modify_calls == []
    result = _apply(api, desired, force=True)
    assert result.applied and result.final is not None and not result.final.ssl_enabled


def test_apply_issues_the_custom_certificate_once_and_only_for_real() -> None:
    material = _server(role="issued")
    build = Builds(material)
    api = FakeApi(OFF)
    desired = server_ssl.desired_set_cert(_requirement(build), CS)
    preview = _apply(api, desired, dry_run=True)
    assert not preview.plan.noop and build.calls == 0 and api.modify_calls == []
    result = _apply(api, desired)
    assert build.calls == 1
    (sent,) = api.modify_calls
    assert (sent.ssl_enabled, sent.ca_type, sent.server_cert_pem) == (
        True,
        "custom",
        material.cert_pem,
    )
    assert result.final is not None and result.final.server_cert_pem == material.cert_pem
    assert _apply(api, desired).plan.noop and build.calls == 1  # current: kept


def test_enable_on_an_instance_with_ssl_off_and_refusals() -> None:
    api = FakeApi(OFF)
    api.cloud_cert_pem = _server(OTHER_CA, role="cloud").cert_pem
    result = _apply(api, server_ssl.desired_enable(OFF, "pgm-x", CS))
    assert result.applied and result.final is not None and result.final.ca_type == "aliyun"
    with pytest.raises(ConfigError, match="renew-server-cert"):
        server_ssl.desired_enable(api.ssl, "pgm-x", CS)
    with pytest.raises(ConfigError, match="enable-ssl"):
        server_ssl.desired_renew(OFF, "pgm-x", None)
    with pytest.raises(UsageError, match="--server-ca-dir"):
        server_ssl.desired_renew(ssl_state(ca_type="custom"), "pgm-x", None)
    with pytest.raises(UsageError, match="set-server-cert"):
        server_ssl.desired_renew(ssl_state(), "pgm-x", _requirement(Builds(_server())))


def test_a_new_server_ca_is_warned_about() -> None:
    cloud = ssl_state(server_cert_pem=_server(OTHER_CA, role="cloud").cert_pem)
    to_custom = _apply(
        FakeApi(cloud),
        server_ssl.desired_set_cert(_requirement(Builds(_server())), CS),
        dry_run=True,
    )
    assert [w.code for w in to_custom.plan.warnings] == ["server-ca-changes"]
    custom = ssl_state(ca_type="custom", server_cert_pem=_server(days=10).cert_pem)
    renewal = server_ssl.desired_renew(custom, "pgm-x", _requirement(Builds(_server(role="n"))))
    assert _apply(FakeApi(custom), renewal, dry_run=True).plan.warnings == ()  # same CA
    from_off = _apply(FakeApi(OFF), server_ssl.desired_enable(OFF, "pgm-x", CS), dry_run=True)
    assert from_off.plan.warnings == ()  # nobody verifies a server that has no SSL


def test_due() -> None:
    soon = ssl_state(server_cert_pem=_server(days=10).cert_pem)
    later = ssl_state(server_cert_pem=_server(days=300).cert_pem)
    assert server_ssl.due(soon, now=NOW, before=timedelta(days=30)).due
    verdict = server_ssl.due(later, now=NOW, before=timedelta(days=30))
    assert not verdict.due and "more than 30 days" in verdict.reason
    assert server_ssl.due(later, now=NOW, before=timedelta(days=400)).due
    assert server_ssl.due(
        ssl_state(server_cert_pem=later.server_cert_pem, require_update=True),
        now=NOW, before=timedelta(days=1),
    ).due  # fmt: skip


# ------------------------------------------------------------------ the store


def _tables(store: Path) -> set[str]:
    with sqlite3.connect(store / "inventory.sqlite") as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_server_certificates_in_a_ca_store(tmp_path: Path) -> None:
    path = tmp_path / "server-ca"
    CaStore.init(path, cn="server-ca", key_type=KeyType.EC_P256, days=3650, passphrase=None,
                 now=NOW).close()  # fmt: skip
    assert "server_certs" not in _tables(path)  # the schema is untouched until one is issued
    with CaStore.open(path) as store:
        store.unlock(None)
        material = server_ssl.prepare_custom_cert(list(NAMES), "pgm-x", store, now=NOW, days=90)
        (record,) = store.server_certs(instance_id="pgm-x")
        assert store.certificates() == []  # not a database user
    assert "server_certs" in _tables(path)
    assert record.names == NAMES and record.fingerprint == _fp(material.cert_pem)
    key_file = path / "server-history" / f"{record.serial_hex}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((path / "server-history").stat().st_mode) == 0o700
    assert key_file.read_text() == material.key_pem
    assert "PRIVATE KEY" not in repr(material) and "PRIVATE KEY" not in str(record.to_json())
    with CaStore.open(path) as store:  # reopens (the schema probes still pass)
        assert store.problems() == []
        assert len(store.server_certs()) == 1
        store.unlock(None)
        with pytest.raises(CryptoError, match=r"TLS 1\.2"):
            server_ssl.prepare_custom_cert(
                list(NAMES), "pgm-x", store, now=NOW, key_type=KeyType.ED25519
            )
        assert len(store.server_certs()) == 1  # refused before anything was issued


# ------------------------------------------------------------------ the renewal's wait


class Renewal(FakeApi):
    """Status lag, a restart, then Running/success serving `after`."""

    def __init__(self, t: FakeTime, before: str, after: str) -> None:
        super().__init__(ssl_state(server_cert_pem=before, connection_string=CS))
        self.t, self.before, self.after = t, before, after

    def describe_ssl(self, instance_id: str) -> SslState:
        if self.t.now < 2:
            return self.ssl
        status = "setting" if self.t.now < 5 else "success"
        return replace(self.ssl, server_cert_pem=self.after, last_modify_status=status)

    def describe_instance(self, instance_id: str) -> InstanceInfo:
        return replace(self.info, status="SSL_MODIFYING" if 2 <= self.t.now < 5 else "Running")


@pytest.mark.parametrize("renewed", [True, False])
def test_a_renewal_the_service_ignores_fails_at_once(renewed: bool) -> None:
    old, new = _server(role="old").cert_pem, _server(role="new").cert_pem
    t = FakeTime()
    api = Renewal(t, old, new if renewed else old)
    retired = frozenset({_fp(old)})
    request = SslModifyRequest("pgm-x", CS, ssl_enabled=True, ca_type="aliyun")
    spec = ssl_applied(
        read_back_matches(request, retired),
        not_renewed=lambda ssl: bool(server_cert_fps(ssl) & retired),
        timeout=600,
    )
    poll = observe(cast(RdsApi, api), "pgm-x")
    if renewed:
        obs = wait_until(spec, poll, sleep=t.sleep, clock=t.clock)
        assert obs.ssl is not None and obs.ssl.server_cert_pem == new
    else:
        with pytest.raises(ChangeFailed, match="did not renew"):
            wait_until(spec, poll, sleep=t.sleep, clock=t.clock)
        assert t.now < 60  # not the 600-s timeout
