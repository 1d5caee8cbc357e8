"""service.plan / apply against an in-memory RdsApi: diffs, no-ops, dry runs, guard rails.

The fake applies a Modify instantly (no status machine): the waiter paths are covered by
tests/unit/test_waiters.py and, with a real status machine, by the emulator tests.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rdsssl.errors import ApiError, ConfigError, CryptoError, LockoutGuard
from rdsssl.models import (
    AclMode,
    KeyType,
    RevocationReason,
    SslState,
)
from rdsssl.ops import audit
from rdsssl.ops.apply import ApplyOptions, apply
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.clock import Clock
from rdsssl.ops.guard import Proof
from rdsssl.ops.plan import CrlFromStore, DesiredSsl, Effect, plan
from rdsssl.pki import crypto

from .conftest import cached_key, make_pki
from .fakes import FakeApi, FakeTime, bad_probe, instance_info, ok_probe, ssl_state

NOW = datetime.now(timezone.utc).replace(microsecond=0)
CA = make_pki(KeyType.EC_P256, cn="root-ca1")
CA2 = make_pki(KeyType.RSA_2048, cn="root-ca2", role="ca2")


def _ca(pki: object = CA) -> str:
    return crypto.cert_pem(pki.cert).decode()  # type: ignore[attr-defined]


def _crl(
    pki: object = CA, serials: tuple[int, ...] = (), days: int = 90, at: datetime = NOW
) -> str:
    revs = [
        crypto.Revocation(s, at - timedelta(hours=1), RevocationReason.KEY_COMPROMISE)
        for s in serials
    ]
    crl = crypto.build_crl(pki.cert, pki.key, revs, number=1, now=at, days=days)  # type: ignore[attr-defined]
    return crypto.crl_pem(crl).decode()


def _alice_files(tmp_path: Path) -> tuple[Path, Path]:
    """alice's certificate from CA and its key, as files (what a guard proof names)."""
    issued = CA.issue("alice", now=NOW)
    cert, key = tmp_path / "alice.crt", tmp_path / "alice.key"
    cert.write_bytes(crypto.cert_pem(issued.cert))
    key.write_bytes(crypto.key_pem(cached_key(KeyType.EC_P256, "leaf")))
    return cert, key


# ------------------------------------------------------------------ plan


def test_plan_full_configuration_is_one_request_with_every_field() -> None:
    desired = DesiredSsl(
        client_ca_pem=_ca(), crl=_crl(), acl=AclMode.CERT, replication_acl=AclMode.VERIFY_CA
    )
    p = plan(desired, ssl_state(), instance_id="pgm-x")
    assert [c.field for c in p.changes] == ["client_ca", "crl", "acl", "replication_acl"]
    assert p.effect is Effect.RESTART
    assert p.request is not None
    assert p.request.client_ca_enabled and p.request.crl_enabled
    assert p.request.acl is AclMode.CERT and p.request.replication_acl is AclMode.VERIFY_CA
    assert p.request.connection_string == "pgm-x.pg.rds.aliyuncs.com"


def test_plan_is_noop_when_everything_holds() -> None:
    ca, crl = _ca(), _crl()
    observed = ssl_state(client_ca_pem=ca, crl_pem=crl, acl=AclMode.CERT)
    p = plan(DesiredSsl(client_ca_pem=ca, crl=crl, acl=AclMode.CERT), observed, instance_id="x")
    assert p.noop and p.request is None and p.effect is Effect.NONE


def test_plan_ignores_pem_formatting_differences() -> None:
    ca = _ca()
    reformatted = "some prose before the block\r\n" + ca.replace("\n", "\r\n") + "\n\n"
    p = plan(DesiredSsl(client_ca_pem=reformatted), ssl_state(client_ca_pem=ca), instance_id="x")
    assert p.noop


@pytest.mark.parametrize("field", ["acl", "replication_acl"])
def test_plan_acl_only_change_is_an_acl_lock_not_a_restart(field: str) -> None:
    observed = ssl_state(client_ca_pem=_ca(), acl=AclMode.PREFER, replication_acl=AclMode.PREFER)
    p = plan(DesiredSsl(**{field: AclMode.VERIFY_FULL}), observed, instance_id="x")  # type: ignore[arg-type]
    assert [c.field for c in p.changes] == [field]
    assert p.effect is Effect.ACL_LOCK
    assert p.request is not None and not p.request.restarts


def test_plan_ca_change_only_sends_the_ca() -> None:
    observed = ssl_state(client_ca_pem=_ca(CA), acl=AclMode.CERT)
    p = plan(DesiredSsl(client_ca_pem=_ca(CA2), acl=AclMode.CERT), observed, instance_id="x")
    assert [c.field for c in p.changes] == ["client_ca"]
    assert p.request is not None and p.request.acl is None and p.request.crl_pem is None


def test_plan_disable_client_ca() -> None:
    p = plan(DesiredSsl(disable_client_ca=True), ssl_state(client_ca_pem=_ca()), instance_id="x")
    assert p.request is not None and p.request.client_ca_enabled is False
    assert plan(DesiredSsl(disable_client_ca=True), ssl_state(), instance_id="x").noop


def test_plan_crl_from_store_is_noop_when_current_and_uploads_when_not() -> None:
    ca = _ca()
    built: list[int] = []

    def build() -> str:
        built.append(1)
        return _crl(serials=(7,))

    req = CrlFromStore(revoked=frozenset({7}), build=build, min_remaining=timedelta(days=30))
    current = ssl_state(client_ca_pem=ca, crl_pem=_crl(serials=(7,), days=90))
    assert plan(DesiredSsl(client_ca_pem=ca, crl=req), current, instance_id="x", now=NOW).noop
    missing_revocation = ssl_state(client_ca_pem=ca, crl_pem=_crl(serials=(), days=90))
    p = plan(DesiredSsl(client_ca_pem=ca, crl=req), missing_revocation, instance_id="x", now=NOW)
    assert [c.field for c in p.changes] == ["crl"] and "not yet on the instance" in p.changes[
        0
    ].after
    nearly_expired = ssl_state(client_ca_pem=ca, crl_pem=_crl(serials=(7,), days=10))
    p = plan(DesiredSsl(client_ca_pem=ca, crl=req), nearly_expired, instance_id="x", now=NOW)
    assert [c.field for c in p.changes] == ["crl"] and "nextUpdate" in p.changes[0].after
    assert built == []  # planning never signs a CRL


# ------------------------------------------------------------------ apply


def test_apply_sends_one_call_then_a_rerun_sends_none() -> None:
    api = FakeApi(ssl_state())
    desired = DesiredSsl(client_ca_pem=_ca(), crl=_crl(), acl=AclMode.PREFER)
    first = apply(api, "pgm-x", desired, clock=Clock(sleep=lambda s: None))
    assert first.applied and len(api.modify_calls) == 1
    second = apply(api, "pgm-x", desired, clock=Clock(sleep=lambda s: None))
    assert not second.applied and second.plan.noop and len(api.modify_calls) == 1


def test_dry_run_makes_no_modify_call_and_signs_no_crl() -> None:
    api = FakeApi(ssl_state(client_ca_pem=_ca()))
    built: list[int] = []

    def build() -> str:
        built.append(1)
        return _crl()

    desired = DesiredSsl(crl=CrlFromStore(revoked=frozenset(), build=build))
    result = apply(api, "pgm-x", desired, ApplyOptions(dry_run=True))
    assert result.dry_run and not result.applied and not result.plan.noop
    assert api.modify_calls == [] and built == []


def test_apply_signs_the_store_crl_once_and_uploads_it() -> None:
    api = FakeApi(ssl_state(client_ca_pem=_ca()))
    desired = DesiredSsl(crl=CrlFromStore(revoked=frozenset({9}), build=lambda: _crl(serials=(9,))))
    result = apply(api, "pgm-x", desired, clock=Clock(sleep=lambda s: None))
    assert result.applied and len(api.modify_calls) == 1
    sent = api.modify_calls[0].crl_pem
    assert (
        sent is not None
        and 9 in crypto.inspect_crl(crypto.load_crls(sent.encode(), source="x")[0]).revoked_serials
    )


@pytest.mark.parametrize("budget", [100, 1_000_000])
def test_a_crl_over_the_size_budget_is_a_coded_warning_not_a_refusal(budget: int) -> None:
    api = FakeApi(ssl_state(client_ca_pem=_ca()))
    options = ApplyOptions(dry_run=True, crl_size_budget=budget)
    result = apply(api, "pgm-x", DesiredSsl(crl=_crl(serials=(1, 2, 3))), options)
    codes = [w.code for w in result.plan.warnings]
    assert codes == (["crl-over-size-budget"] if budget == 100 else [])
    doc = result.plan.to_dict()
    assert doc["warning_codes"] == codes and len(doc["warnings"]) == len(codes)  # type: ignore[arg-type]
    if codes:
        assert "above the 100-byte budget" in str(result.plan.warnings[0])


def test_acl_without_client_ca_is_refused_locally() -> None:
    api = FakeApi(ssl_state())
    with pytest.raises(ConfigError, match="needs the client CA"):
        apply(api, "pgm-x", DesiredSsl(acl=AclMode.PREFER))
    assert api.modify_calls == []


def test_verify_full_needs_pg12() -> None:
    api = FakeApi(ssl_state(client_ca_pem=_ca()), instance_info(engine_version="11.0"))
    with pytest.raises(ConfigError, match="PostgreSQL >= 12"):
        apply(
            api, "pgm-x", DesiredSsl(replication_acl=AclMode.VERIFY_FULL), ApplyOptions(force=True)
        )
    assert api.modify_calls == []


def test_crl_that_does_not_cover_every_ca_is_refused() -> None:
    bundle = _ca(CA) + _ca(CA2)
    api = FakeApi(ssl_state())
    with pytest.raises(CryptoError, match="no usable CRL for CA"):
        apply(api, "pgm-x", DesiredSsl(client_ca_pem=bundle, crl=_crl(CA)))
    assert api.modify_calls == []


@pytest.mark.parametrize(
    ("left", "margin", "refused"),
    [
        (timedelta(minutes=30), timedelta(hours=1), True),  # expires during/after the restart
        (timedelta(hours=12), timedelta(hours=1), False),
        (timedelta(hours=12), timedelta(days=1), True),  # a longer margin, configured
    ],
)
def test_crl_expiring_within_the_restart_margin_is_refused(
    left: timedelta, margin: timedelta, refused: bool
) -> None:
    api = FakeApi(ssl_state(client_ca_pem=_ca()))
    crl = _crl(days=30, at=NOW - timedelta(days=30) + left)
    if refused:
        with pytest.raises(CryptoError, match="restart"):
            apply(api, "pgm-x", DesiredSsl(crl=crl), ApplyOptions(restart_margin=margin))
        assert api.modify_calls == []
    else:
        t = FakeTime()
        apply(
            api,
            "pgm-x",
            DesiredSsl(crl=crl),
            ApplyOptions(restart_margin=margin),
            clock=Clock(sleep=t.sleep, monotonic=t.clock),
        )
        assert len(api.modify_calls) == 1


def test_ca_change_that_keeps_an_old_crl_not_covering_it_is_refused() -> None:
    api = FakeApi(ssl_state(client_ca_pem=_ca(CA), crl_pem=_crl(CA)))
    with pytest.raises(CryptoError, match="no usable CRL for CA"):
        apply(api, "pgm-x", DesiredSsl(client_ca_pem=_ca(CA2)), ApplyOptions(force=True))


def test_lockout_guard_refuses_without_probe_and_with_a_failing_probe(tmp_path: Path) -> None:
    api = FakeApi(ssl_state(client_ca_pem=_ca(), acl=AclMode.PREFER))
    cert, key = _alice_files(tmp_path)
    with pytest.raises(LockoutGuard, match="--force"):
        apply(api, "pgm-x", DesiredSsl(acl=AclMode.CERT))
    with pytest.raises(LockoutGuard, match="revoked"):
        apply(
            api, "pgm-x", DesiredSsl(acl=AclMode.CERT), proof=Proof("alice", cert, key, bad_probe)
        )
    assert api.modify_calls == []
    ok = apply(
        api,
        "pgm-x",
        DesiredSsl(acl=AclMode.CERT),
        proof=Proof("alice", cert, key, ok_probe),
        clock=Clock(sleep=lambda s: None),
    )
    assert ok.applied and ok.guard is not None and ok.guard.ok


def test_force_skips_the_guard() -> None:
    api = FakeApi(ssl_state(client_ca_pem=_ca(), acl=AclMode.PREFER))
    result = apply(
        api,
        "pgm-x",
        DesiredSsl(acl=AclMode.VERIFY_CA),
        ApplyOptions(force=True),
        clock=Clock(sleep=lambda s: None),
    )
    assert result.applied and result.guard is None


def test_loosening_the_acl_needs_no_guard() -> None:
    api = FakeApi(ssl_state(client_ca_pem=_ca(), acl=AclMode.CERT))
    assert apply(
        api, "pgm-x", DesiredSsl(acl=AclMode.PREFER), clock=Clock(sleep=lambda s: None)
    ).applied


def test_locked_instance_is_refused() -> None:
    api = FakeApi(ssl_state(), instance_info(lock_mode="LockByExpiration"))
    with pytest.raises(ApiError, match="locked"):
        apply(api, "pgm-x", DesiredSsl(client_ca_pem=_ca()))
    assert api.modify_calls == []


def test_ambiguous_modify_failure_is_not_resent_when_the_change_is_underway() -> None:
    api = FakeApi(ssl_state())
    api.fail_modify = [ApiError("boom", code="InternalError", retryable=True)]
    original = api.describe_ssl

    def describe_ssl(instance_id: str) -> SslState:
        # After the 500 the service re-reads: the change is in progress on the instance, and
        # the next read finds it done (the call was taken despite the error).
        if len(api.modify_calls) == 1 and api.ssl.client_ca_pem is None:
            if api.ssl.last_modify_status == "setting":
                api.ssl = dataclasses.replace(
                    api.ssl, client_ca_pem=_ca(), last_modify_status="success"
                )
            else:
                api.ssl = dataclasses.replace(api.ssl, last_modify_status="setting")
        return original(instance_id)

    api.describe_ssl = describe_ssl  # type: ignore[method-assign]
    result = apply(
        api,
        "pgm-x",
        DesiredSsl(client_ca_pem=_ca()),
        ApplyOptions(wait=False),
        clock=Clock(sleep=lambda s: None),
    )
    assert result.applied and len(api.modify_calls) == 1


def test_ambiguous_modify_failure_is_resent_when_nothing_happened() -> None:
    api = FakeApi(ssl_state())
    api.fail_modify = [ApiError("boom", code="ServiceUnavailable", retryable=True)]
    t = FakeTime()
    result = apply(
        api,
        "pgm-x",
        DesiredSsl(client_ca_pem=_ca()),
        ApplyOptions(settle=10),
        clock=Clock(sleep=t.sleep, monotonic=t.clock),
    )
    assert result.applied and len(api.modify_calls) == 2
    assert t.now >= 10  # the instance was watched for the settle period before the re-send
    assert api.ssl.client_ca_pem == _ca()


def test_permanent_modify_error_surfaces_unchanged() -> None:
    api = FakeApi(ssl_state())
    api.fail_modify = [ApiError("bad", code="InvalidClientCACert")]
    with pytest.raises(ApiError, match="InvalidClientCACert"):
        apply(api, "pgm-x", DesiredSsl(client_ca_pem=_ca()), clock=Clock(sleep=lambda s: None))
    assert len(api.modify_calls) == 1


def test_audit_log_gets_a_sent_and_an_outcome_line_per_change_none_for_a_noop(
    tmp_path: Path,
) -> None:
    log = AuditLog(tmp_path / "audit" / "audit.jsonl")
    api = FakeApi(ssl_state())
    desired = DesiredSsl(client_ca_pem=_ca(), acl=AclMode.PREFER)
    apply(api, "pgm-x", desired, ApplyOptions(audit=log), clock=Clock(sleep=lambda s: None))
    apply(api, "pgm-x", desired, ApplyOptions(audit=log), clock=Clock(sleep=lambda s: None))
    apply(api, "pgm-x", desired, ApplyOptions(audit=log, dry_run=True))
    lines = audit.read(log.path)  # type: ignore[arg-type]
    assert [line["outcome"] for line in lines] == ["sent", "ok"]
    sent, line = lines
    assert sent["request_id"] == "req-1" and sent["after"] == {}
    assert line["instance"] == "pgm-x" and line["outcome"] == "ok"
    assert line["request_id"] == "req-1" and line["action"] == "modify-ssl:client_ca,acl"
    assert line["before"]["client_ca"] == []
    assert line["after"]["client_ca"] == sorted(crypto.pem_fingerprints(_ca().encode(), source="x"))
    assert "BEGIN" not in (tmp_path / "audit" / "audit.jsonl").read_text()
    assert oct((tmp_path / "audit" / "audit.jsonl").stat().st_mode & 0o777) == "0o600"


def test_audit_log_records_a_refused_modify(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    api = FakeApi(ssl_state())
    api.fail_modify = [ApiError("bad", code="InvalidClientCACert", request_id="r-9")]
    with pytest.raises(ApiError):
        apply(
            api,
            "pgm-x",
            DesiredSsl(client_ca_pem=_ca()),
            ApplyOptions(audit=log),
            clock=Clock(sleep=lambda s: None),
        )
    [line] = audit.read(tmp_path / "audit.jsonl")
    assert line["outcome"] == "api-error" and line["request_id"] == "r-9"
