"""The lockout guard as one rule (rdsssl.ops.guard), through `service.apply` on a fake API.

Every tightening needs proof or --force; a proof is checked locally before any call (a
certificate is given, matches its key, is valid, chains to a CA that stays, is not on the CRL
that will be live, has CN = the user where the target mode compares them), then probed live.
Variants are parametrised: every ACL transition, both ACL fields, each way a proof can be wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rdsssl.errors import LockoutGuard
from rdsssl.models import AclMode, KeyType, RevocationReason
from rdsssl.ops.apply import ApplyOptions, ApplyResult, apply
from rdsssl.ops.clock import Clock
from rdsssl.ops.guard import CERT_ACLS, Proof
from rdsssl.ops.plan import CrlFromStore, DesiredSsl, guard_need, plan
from rdsssl.ops.probe import ProbeResult
from rdsssl.pki import crypto

from .conftest import Pki, cached_key, make_pki
from .fakes import FakeApi, bad_probe, ok_probe, ssl_state

NOW = datetime.now(timezone.utc).replace(microsecond=0)
CA = make_pki(KeyType.EC_P256, cn="root-ca1")
CA2 = make_pki(KeyType.RSA_2048, cn="root-ca2", role="ca2")
OTHER = make_pki(KeyType.EC_P256, cn="other-ca", role="other")


def _pem(*pkis: Pki) -> str:
    return "".join(crypto.cert_pem(p.cert).decode() for p in pkis)


def _crl(pki: Pki, serials: tuple[int, ...] = ()) -> str:
    revs = [crypto.Revocation(s, NOW - timedelta(hours=1), RevocationReason.UNSPECIFIED)
            for s in serials]  # fmt: skip
    return crypto.crl_pem(crypto.build_crl(pki.cert, pki.key, revs, number=1, now=NOW)).decode()


class Probes:
    """Counts live probes, so a test can assert a refusal came before any call."""

    def __init__(self, result: Callable[[], ProbeResult] = ok_probe) -> None:
        self.calls = 0
        self._result = result

    def __call__(self) -> ProbeResult:
        self.calls += 1
        return self._result()


def _files(
    tmp_path: Path,
    pki: Pki = CA,
    *,
    cn: str = "alice",
    days: int = 365,
    issued_at: datetime = NOW,
    serial: int | None = None,
    key_role: str = "leaf",
) -> tuple[Path, Path, int]:
    """A certificate (CN `cn`, from `pki`) and its key as files; returns their paths and the
    serial."""
    key = cached_key(KeyType.EC_P256, key_role)
    issued = crypto.issue_client_cert(
        pki.cert, pki.key, key.public_key(), user=cn, now=issued_at, days=days, serial=serial
    )
    cert_path = tmp_path / f"{cn}-{issued.cert.serial_number:x}.crt"
    key_path = tmp_path / f"{cn}-{issued.cert.serial_number:x}.key"
    cert_path.write_bytes(crypto.cert_pem(issued.cert))
    key_path.write_bytes(crypto.key_pem(cached_key(KeyType.EC_P256, "leaf")))
    return cert_path, key_path, issued.cert.serial_number


def _apply(
    api: FakeApi, desired: DesiredSsl, proof: Proof | None, *, force: bool = False
) -> ApplyResult:
    options = ApplyOptions(force=force)
    return apply(api, "pgm-x", desired, options, proof=proof, clock=Clock(sleep=lambda s: None))


# ------------------------------------------------------------------ which changes are guarded

_MODES: list[AclMode | None] = [None, *AclMode]


@pytest.mark.parametrize("field", ["acl", "replication_acl"])
@pytest.mark.parametrize("before", _MODES, ids=lambda m: m.value if m else "none")
@pytest.mark.parametrize("after", list(AclMode), ids=lambda m: m.value)
def test_every_acl_transition_into_a_certificate_mode_is_guarded(
    field: str, before: AclMode | None, after: AclMode
) -> None:
    observed = ssl_state(client_ca_pem=_pem(CA), **{field: before})
    the_plan = plan(DesiredSsl(**{field: after}), observed, instance_id="pgm-x")  # type: ignore[arg-type]
    need = guard_need(the_plan, observed)
    expected = after in CERT_ACLS and after != before
    assert (need is not None) is expected
    if need is not None:
        assert need.provable


@pytest.mark.parametrize("acl", list(AclMode), ids=lambda m: m.value)
def test_dropping_a_ca_is_guarded_whatever_the_acl(acl: AclMode) -> None:
    observed = ssl_state(client_ca_pem=_pem(CA, CA2), acl=acl)
    the_plan = plan(DesiredSsl(client_ca_pem=_pem(CA2)), observed, instance_id="pgm-x")
    need = guard_need(the_plan, observed)
    assert need is not None and "ca-dropped" in need.codes


@pytest.mark.parametrize("acl", list(AclMode), ids=lambda m: m.value)
def test_replacing_a_ca_by_its_same_key_renewal_drops_nothing(acl: AclMode) -> None:
    renewed = crypto.renew_ca(CA.cert, CA.key, now=NOW + timedelta(days=1), days=7300)
    observed = ssl_state(client_ca_pem=_pem(CA), acl=acl)
    desired = DesiredSsl(client_ca_pem=crypto.cert_pem(renewed).decode())
    the_plan = plan(desired, observed, instance_id="pgm-x")
    assert [c.field for c in the_plan.changes] == ["client_ca"]
    assert guard_need(the_plan, observed) is None
    api = FakeApi(observed)
    assert _apply(api, desired, None).applied  # no proof, no force
    assert len(api.modify_calls) == 1


def test_a_ca_of_the_same_name_with_another_key_still_counts_as_dropped(tmp_path: Path) -> None:
    impostor = make_pki(KeyType.EC_P256, cn="root-ca1", role="same-name-other-key")
    observed = ssl_state(client_ca_pem=_pem(CA), acl=AclMode.PREFER)
    desired = DesiredSsl(client_ca_pem=_pem(impostor))
    need = guard_need(plan(desired, observed, instance_id="pgm-x"), observed)
    assert need is not None and need.codes == ("ca-dropped",)
    api = FakeApi(observed)
    with pytest.raises(LockoutGuard, match="drops 1 CA"):
        _apply(api, desired, None)
    old_cert, old_key, _ = _files(tmp_path, CA)  # CN=root-ca1 too, but signed by the old key
    with pytest.raises(LockoutGuard, match="not issued by a CA the instance will trust"):
        _apply(api, desired, Proof("alice", old_cert, old_key, Probes()))
    assert api.modify_calls == []


def test_a_certificate_of_the_previous_ca_proves_access_after_a_renewal(tmp_path: Path) -> None:
    renewed = crypto.renew_ca(CA.cert, CA.key, now=NOW, days=7300)
    api = FakeApi(ssl_state(client_ca_pem=_pem(CA), acl=AclMode.PREFER))
    cert, key, _ = _files(tmp_path, CA)  # issued under the certificate being replaced
    probes = Probes()
    desired = DesiredSsl(client_ca_pem=crypto.cert_pem(renewed).decode(), acl=AclMode.CERT)
    assert _apply(api, desired, Proof("alice", cert, key, probes)).applied
    assert probes.calls == 1 and len(api.modify_calls) == 1


def test_adding_a_ca_or_first_enabling_one_is_not_guarded() -> None:
    for before in (None, _pem(CA)):
        observed = ssl_state(client_ca_pem=before, acl=AclMode.PREFER if before else None)
        the_plan = plan(DesiredSsl(client_ca_pem=_pem(CA, CA2)), observed, instance_id="pgm-x")
        assert guard_need(the_plan, observed) is None


@pytest.mark.parametrize("acl", list(AclMode), ids=lambda m: m.value)
def test_disabling_the_client_ca_is_guarded_only_while_an_acl_needs_certificates(
    acl: AclMode, tmp_path: Path
) -> None:
    api = FakeApi(ssl_state(client_ca_pem=_pem(CA), acl=acl))
    cert, key, _ = _files(tmp_path)
    probes = Probes()
    desired = DesiredSsl(disable_client_ca=True)
    if acl in CERT_ACLS:
        with pytest.raises(LockoutGuard, match="set-acl ID --acl prefer"):
            _apply(api, desired, Proof("alice", cert, key, probes))  # no probe can prove it
        assert api.modify_calls == [] and probes.calls == 0
        assert _apply(api, desired, None, force=True).applied
    else:
        assert _apply(api, desired, None).applied


# ------------------------------------------------------------------ what a proof must show


def test_a_tightening_without_proof_is_refused_and_force_skips_the_guard() -> None:
    api = FakeApi(ssl_state(client_ca_pem=_pem(CA), acl=AclMode.PREFER))
    with pytest.raises(LockoutGuard, match="--force"):
        _apply(api, DesiredSsl(acl=AclMode.CERT), None)
    assert api.modify_calls == []
    assert _apply(api, DesiredSsl(acl=AclMode.CERT), None, force=True).applied


def test_a_password_only_probe_is_refused_before_any_call() -> None:
    api = FakeApi(ssl_state(client_ca_pem=_pem(CA), acl=AclMode.PREFER))
    probes = Probes()
    with pytest.raises(LockoutGuard, match="password-only probe proves nothing"):
        _apply(api, DesiredSsl(acl=AclMode.VERIFY_CA), Proof("alice", None, None, probes))
    assert probes.calls == 0 and api.modify_calls == []


@pytest.mark.parametrize("mode", [AclMode.CERT, AclMode.VERIFY_FULL])
def test_a_wrong_cn_is_refused_where_the_target_mode_compares_it(
    mode: AclMode, tmp_path: Path
) -> None:
    api = FakeApi(ssl_state(client_ca_pem=_pem(CA), acl=AclMode.PREFER))
    cert, key, _ = _files(tmp_path, cn="bob")
    probes = Probes()
    with pytest.raises(LockoutGuard, match="its CN is 'bob', not the probe user 'alice'"):
        _apply(api, DesiredSsl(acl=mode), Proof("alice", cert, key, probes))
    assert probes.calls == 0 and api.modify_calls == []


def test_a_wrong_cn_is_fine_for_verify_ca_which_does_not_compare_it(tmp_path: Path) -> None:
    api = FakeApi(ssl_state(client_ca_pem=_pem(CA), acl=AclMode.PREFER))
    cert, key, _ = _files(tmp_path, cn="bob")
    probes = Probes()
    assert _apply(api, DesiredSsl(acl=AclMode.VERIFY_CA), Proof("alice", cert, key, probes)).applied
    assert probes.calls == 1


def test_a_replication_acl_in_cert_mode_compares_the_cn_too(tmp_path: Path) -> None:
    api = FakeApi(ssl_state(client_ca_pem=_pem(CA), acl=AclMode.PREFER))
    cert, key, _ = _files(tmp_path, cn="bob")
    with pytest.raises(LockoutGuard, match="compares them"):
        _apply(api, DesiredSsl(replication_acl=AclMode.CERT), Proof("alice", cert, key, Probes()))


def test_a_certificate_of_a_ca_the_instance_will_not_trust_is_refused(tmp_path: Path) -> None:
    api = FakeApi(ssl_state(client_ca_pem=_pem(CA), acl=AclMode.PREFER))
    cert, key, _ = _files(tmp_path, OTHER)
    with pytest.raises(LockoutGuard, match="not issued by a CA the instance will trust"):
        _apply(api, DesiredSsl(acl=AclMode.CERT), Proof("alice", cert, key, Probes()))


def test_dropping_a_ca_needs_a_certificate_of_a_ca_that_stays(tmp_path: Path) -> None:
    api = FakeApi(ssl_state(client_ca_pem=_pem(CA, CA2), acl=AclMode.PREFER))
    old_cert, old_key, _ = _files(tmp_path, CA)
    new_cert, new_key, _ = _files(tmp_path, CA2)
    desired = DesiredSsl(client_ca_pem=_pem(CA2))
    with pytest.raises(LockoutGuard, match="not issued by a CA the instance will trust"):
        _apply(api, desired, Proof("alice", old_cert, old_key, Probes()))
    assert api.modify_calls == []
    assert _apply(api, desired, Proof("alice", new_cert, new_key, Probes())).applied


def test_a_certificate_on_the_crl_sent_in_the_same_call_is_refused(tmp_path: Path) -> None:
    api = FakeApi(ssl_state(client_ca_pem=_pem(CA), acl=AclMode.PREFER))
    cert, key, serial = _files(tmp_path)
    desired = DesiredSsl(crl=_crl(CA, (serial,)), acl=AclMode.CERT)
    with pytest.raises(LockoutGuard, match="is on the CRL the instance will hold"):
        _apply(api, desired, Proof("alice", cert, key, Probes()))


def test_a_certificate_revoked_in_the_store_is_refused_before_the_crl_is_signed(
    tmp_path: Path,
) -> None:
    api = FakeApi(ssl_state(client_ca_pem=_pem(CA), acl=AclMode.PREFER))
    cert, key, serial = _files(tmp_path)
    signed: list[int] = []

    def build() -> str:
        signed.append(1)
        return _crl(CA, (serial,))

    desired = DesiredSsl(crl=CrlFromStore(frozenset({serial}), build), acl=AclMode.CERT)
    with pytest.raises(LockoutGuard, match="is on the CRL"):
        _apply(api, desired, Proof("alice", cert, key, Probes()))
    assert signed == [] and api.modify_calls == []


def test_a_certificate_already_on_the_instance_crl_is_refused(tmp_path: Path) -> None:
    cert, key, serial = _files(tmp_path)
    observed = ssl_state(client_ca_pem=_pem(CA), crl_pem=_crl(CA, (serial,)), acl=AclMode.PREFER)
    api = FakeApi(observed)
    with pytest.raises(LockoutGuard, match="is on the CRL"):
        _apply(api, DesiredSsl(acl=AclMode.VERIFY_FULL), Proof("alice", cert, key, Probes()))


@pytest.mark.parametrize(
    ("issued_at", "days"),
    [(NOW - timedelta(days=400), 365), (NOW + timedelta(days=2), 365)],
    ids=["expired", "not-yet-valid"],
)
def test_a_certificate_not_valid_now_is_refused(
    tmp_path: Path, issued_at: datetime, days: int
) -> None:
    api = FakeApi(ssl_state(client_ca_pem=_pem(CA), acl=AclMode.PREFER))
    cert, key, _ = _files(tmp_path, issued_at=issued_at, days=days)
    with pytest.raises(LockoutGuard, match="not valid now"):
        _apply(api, DesiredSsl(acl=AclMode.CERT), Proof("alice", cert, key, Probes()))


def test_a_key_that_does_not_match_the_certificate_is_refused(tmp_path: Path) -> None:
    api = FakeApi(ssl_state(client_ca_pem=_pem(CA), acl=AclMode.PREFER))
    cert, _, _ = _files(tmp_path)
    other_key = tmp_path / "other.key"
    other_key.write_bytes(crypto.key_pem(cached_key(KeyType.EC_P256, "someone-else")))
    with pytest.raises(LockoutGuard, match="does not match"):
        _apply(api, DesiredSsl(acl=AclMode.CERT), Proof("alice", cert, other_key, Probes()))


def test_a_good_proof_still_needs_the_live_probe_to_succeed(tmp_path: Path) -> None:
    api = FakeApi(ssl_state(client_ca_pem=_pem(CA), acl=AclMode.PREFER))
    cert, key, _ = _files(tmp_path)
    with pytest.raises(LockoutGuard, match="revoked"):
        _apply(api, DesiredSsl(acl=AclMode.CERT), Proof("alice", cert, key, Probes(bad_probe)))
    assert api.modify_calls == []
    result = _apply(api, DesiredSsl(acl=AclMode.CERT), Proof("alice", cert, key, Probes()))
    assert result.applied and result.guard is not None and result.guard.ok
