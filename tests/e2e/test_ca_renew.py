"""`rdsssl ca renew` end to end: the real SDK over HTTP against the emulator, real PostgreSQL
behind it, clients connecting with their certificate files.

An instance trusts CA v1 with its CRL and ACL `cert`; alice holds a v1 certificate, bob's is
revoked. `ca renew` makes v2 (same key, same subject, new serial and validity), and `apply -f`
with the same file swaps the CA in ONE ModifyDBInstanceSSL call (one restart), with no probe:
the lockout guard sees no CA dropped. Afterwards alice's OLD certificate still logs in, bob's
is still refused as revoked (the CRL signed under v1 is v2's CRL too), and a certificate issued
under v2 logs in.

Every test runs under both emulator profiles: `documented`, and `pessimistic`, which refuses
multi-CA bundles and shows a change late and then early; the client is told so by the service
profile file it would have recorded on such an account (RDSSSL_SERVICE_PROFILE). Under
`pessimistic`, `rotate ca` stops at stage (exit 4, nothing changed) and points at `ca renew`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from rdsssl.models import AclMode
from rdsssl.ops.apply import ApplyOptions, apply
from rdsssl.ops.plan import DesiredSsl
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from tests.cli.helpers import Result
from tests.e2e.conftest import Cloud, make_cloud

BOB_PASSWORD = "Bob-e2e-pass-22"
# What a client recorded on a pessimistic account would know: fast restarts (as the emulator
# is told), a change that shows 3 s late and then, for 2 s, early.
PESSIMISTIC_CLIENT_PROFILE = {
    "format": 1,
    "restart_seconds": 0.3,
    "acl_lock_seconds": 0.2,
    "status_lag_seconds": 3.0,
    "early_readback_seconds": 2.0,
}


class RenewCloud:
    """A `Cloud` under one emulator profile, with the service profile its client uses."""

    def __init__(self, cloud: Cloud, profile: str, client_env: dict[str, str]) -> None:
        self.cloud, self.profile, self.client_env = cloud, profile, client_env
        self.iid = cloud.iid

    def cli(self, *args: str | Path) -> Result:
        return self.cloud.cli(*args, env=self.client_env)

    def modify_calls(self, outcome: str = "ok") -> int:
        """ModifyDBInstanceSSL calls that ended with `outcome` (since the last reset)."""
        return sum(1 for r in self.cloud.calls("ModifyDBInstanceSSL") if r.outcome == outcome)

    def restarts(self) -> int:
        return self.cloud.emu.restarts(self.iid)

    def instance_fingerprints(self) -> tuple[frozenset[str], frozenset[str]]:
        """(client CA, CRL) fingerprints the instance holds, as Describe reads them."""
        ssl = self.cloud.api().describe_ssl(self.iid)
        ca = crypto.pem_fingerprints((ssl.client_ca_pem or "").encode(), source="ca")
        crl = crypto.pem_fingerprints((ssl.crl_pem or "").encode(), source="crl")
        return ca, crl

    def probe(self, user: str, folder: Path, *extra: str) -> Result:
        """`rdsssl probe` with the certificate files in `folder` (no password: ACL `cert`)."""
        files: list[str | Path] = ["--cert", folder / "client.crt", "--key", folder / "client.key"]
        return self.cli("probe", self.iid, "--user", user, *files, *extra)


@pytest.fixture(scope="module", params=["documented", "pessimistic"])
def renew_cloud(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RenewCloud]:
    """One emulator per profile (real PostgreSQL, accounts alice and bob)."""
    profile: str = request.param
    work = tmp_path_factory.mktemp(f"ca-renew-{profile}")
    client_env: dict[str, str] = {}
    if profile == "pessimistic":
        path = work / "service-profile.json"
        path.write_text(json.dumps(PESSIMISTIC_CLIENT_PROFILE))
        client_env["RDSSSL_SERVICE_PROFILE"] = str(path)
    for cloud in make_cloud(work, profile=profile, acl_lock_seconds=0.2):
        cloud.api().create_account(cloud.iid, "bob", BOB_PASSWORD)
        yield RenewCloud(cloud, profile, client_env)


@pytest.fixture
def rc(renew_cloud: RenewCloud) -> RenewCloud:
    renew_cloud.cloud.emu.reset()
    return renew_cloud


def _toml(path: Path, iid: str, ca_dir: Path) -> Path:
    path.write_text(
        f'[defaults]\nca_dir = "{ca_dir}"\ncrl = true\nacl = "cert"\n\n'
        f'[[instances]]\nid = "{iid}"\n'
    )
    return path


def _configure_v1(rc: RenewCloud, tmp_path: Path) -> tuple[Path, Path]:
    """CA v1 with alice valid and bob revoked; the instance on v1 + its CRL + ACL cert (set up
    through the library without waiting: the emulator's clock jumps past the change). Returns
    the store and the desired-state file, which the instance then matches."""
    cloud = rc.cloud
    ca = cloud.new_ca(tmp_path / "ca")
    cloud.issue(ca, tmp_path / "alice")
    cloud.issue(ca, tmp_path / "bob", user="bob")
    assert rc.cli("cert", "revoke", "--ca-dir", ca, "--user", "bob").exit_code == 0
    with CaStore.open(ca) as store:
        store.unlock(None)
        ca_pem = crypto.cert_pem(store.ca_cert).decode()
        crl_pem = store.build_crl(now=datetime.now(timezone.utc)).pem.decode()
    desired = DesiredSsl(client_ca_pem=ca_pem, crl=crl_pem, acl=AclMode.CERT)
    assert apply(cloud.api(), rc.iid, desired, ApplyOptions(wait=False, force=True)).applied
    cloud.emu.clock.advance(30)
    cloud.emu.state.tick()
    config = _toml(tmp_path / "rdsssl.toml", rc.iid, ca)
    assert rc.cli("plan", "-f", config).stdout.strip().endswith("up to date, nothing to change")
    assert rc.probe("alice", tmp_path / "alice").exit_code == 0
    assert rc.probe("bob", tmp_path / "bob", "--expect", "revoked").exit_code == 0
    return ca, config


def test_renewed_ca_applied_in_one_call_keeps_old_certificates_and_the_crl_working(
    rc: RenewCloud, tmp_path: Path
) -> None:
    ca, config = _configure_v1(rc, tmp_path)
    v1_ca, v1_crl = rc.instance_fingerprints()
    calls, restarts = rc.modify_calls(), rc.restarts()

    renewed = rc.cli("--json", "ca", "renew", "--ca-dir", ca)
    assert renewed.exit_code == 0, renewed.stderr
    v2 = renewed.json()["ca"]["fingerprint"]
    assert {renewed.json()["previous"]["fingerprint"]} == v1_ca and v2 not in v1_ca

    planned = rc.cli("--json", "plan", "-f", config)
    assert planned.exit_code == 0, planned.stderr
    (entry,) = planned.json()["instances"]
    assert [c["field"] for c in entry["plan"]["changes"]] == ["client_ca"]  # the CRL still fits
    assert entry["guard"] is None  # no CA dropped: nothing to prove

    applied = rc.cli("--json", "apply", "-f", config, "--yes")  # no probe, no --force
    assert applied.exit_code == 0, applied.stderr
    (done,) = applied.json()["instances"]
    assert (done["status"], done["guard_probe"]) == ("changed", None)
    assert (rc.modify_calls(), rc.restarts()) == (calls + 1, restarts + 1)
    assert rc.instance_fingerprints() == (frozenset({v2}), v1_crl)

    old_alice = rc.probe("alice", tmp_path / "alice", "--expect", "ok")
    assert old_alice.exit_code == 0, old_alice.stdout + old_alice.stderr
    bob = rc.probe("bob", tmp_path / "bob", "--expect", "revoked")
    assert bob.exit_code == 0, bob.stdout + bob.stderr
    rc.cloud.issue(ca, tmp_path / "alice-v2")  # signed under v2
    (v2_cert,) = crypto.load_certificates((ca / "ca.crt").read_bytes(), source="ca.crt")
    crt = (tmp_path / "alice-v2" / "client.crt").read_bytes()
    (issued,) = crypto.load_certificates(crt, source="alice-v2")
    assert crypto.fingerprint(v2_cert) == v2 and issued.issuer == v2_cert.subject
    new_alice = rc.probe("alice", tmp_path / "alice-v2")
    assert new_alice.exit_code == 0, new_alice.stdout + new_alice.stderr

    again = rc.cli("--json", "apply", "-f", config, "--yes")
    assert again.exit_code == 0 and again.json()["summary"] == {"total": 1, "up-to-date": 1}
    assert rc.modify_calls() == calls + 1


@pytest.mark.parametrize("renew_cloud", ["pessimistic"], indirect=True)
def test_rotate_ca_under_a_service_that_refuses_bundles_points_at_ca_renew(
    rc: RenewCloud, tmp_path: Path
) -> None:
    ca, _config = _configure_v1(rc, tmp_path)
    new_ca = rc.cloud.new_ca(tmp_path / "ca2")
    before, calls, restarts = rc.instance_fingerprints(), rc.modify_calls(), rc.restarts()
    args: list[str | Path] = [rc.iid, "--ca-dir", ca, "--new-ca-dir", new_ca]
    args += ["--out-root", tmp_path / "out"]
    rotated = rc.cli("--json", "rotate", "ca", *args, "--yes")
    assert rotated.exit_code == 4, rotated.stderr
    error = rotated.json()["error"]
    assert error["type"] == "BundleRefused" and error["exit_code"] == 4
    message = error["message"]
    assert "refused a client CA bundle" in message and "changed nothing" in message
    assert f"rdsssl ca renew --ca-dir {ca}" in message and "maintenance window" in message
    assert rc.instance_fingerprints() == before
    assert (rc.modify_calls(), rc.restarts()) == (calls, restarts)
    assert rc.modify_calls(outcome="InvalidClientCACert") == 1  # the refused call only
    assert not (tmp_path / "out").exists()
    old_alice = rc.probe("alice", tmp_path / "alice")
    assert old_alice.exit_code == 0, old_alice.stdout + old_alice.stderr
    # ... and the advice works: the store renews (nothing of the rotation was done)
    assert rc.cli("ca", "renew", "--ca-dir", ca).exit_code == 0
