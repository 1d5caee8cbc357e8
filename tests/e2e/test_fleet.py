"""Fleet runs end to end: instances selected by tag (DescribeDBInstances) or by a desired-state
file, handled concurrently behind one request budget; one instance failing never stops the
others, the exit code says so, and the audit log holds exactly one line per change."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from rdsssl.emulator.server import Emulator
from rdsssl.models import KeyType
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from tests.e2e.test_crl_refresh import RESTART_SECONDS, Cloud, cloud_for, make_store

TEAM = {"team": "fleet-e2e"}


@pytest.fixture(scope="module")
def module_emu() -> Iterator[Emulator]:
    with Emulator(
        instances=1, backend="none", restart_seconds=RESTART_SECONDS, acl_lock_seconds=0.2
    ) as emu:
        for n in range(4):  # four tagged instances; the untagged first one is never selected
            emu.add_instance(tags={**TEAM, "tier": "gold" if n < 2 else "silver"})
        yield emu


@pytest.fixture
def cloud(module_emu: Emulator, tmp_path: Path) -> Cloud:
    module_emu.reset()
    return cloud_for(module_emu, tmp_path / "audit.jsonl")


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("fleet") / "ca")


def test_crl_refresh_by_tag_one_failure_does_not_stop_the_others(
    cloud: Cloud, ca_dir: Path
) -> None:
    untagged, *tagged = cloud.emu.instance_ids
    near, fresh, also_near, bare = tagged
    cloud.configure(near, ca_dir, crl_days=5)
    cloud.configure(fresh, ca_dir)
    cloud.configure(also_near, ca_dir, crl_days=5)
    # `bare` has no client CA: refreshing it is an input error (exit 3) for that one only
    start = len(cloud.modifies())
    result = cloud.cli(
        "--json", "crl", "refresh", "--tag", "team=fleet-e2e", "--ca-dir", ca_dir,
        "--concurrency", "4", "--rate", "200", "--yes",
    )  # fmt: skip
    assert result.exit_code == 3, result.stderr
    doc = result.json()
    assert doc["ok"] is False and doc["exit_code"] == 3
    by_id = {e["instance"]: e for e in doc["instances"]}
    assert set(by_id) == set(tagged)  # DescribeDBInstances by tag; the untagged one is left out
    assert by_id[near]["status"] == by_id[also_near]["status"] == "refreshed"
    assert by_id[fresh]["status"] == "current"
    assert by_id[bare]["ok"] is False and by_id[bare]["error"]["type"] == "ConfigError"
    assert doc["summary"] == {"total": 4, "refreshed": 2, "current": 1, "failed": 1}
    assert sorted(cloud.modifies()[start:]) == sorted([near, also_near])
    lines = cloud.audit_lines()  # sent + ok per change, none for the no-op or the failure
    for iid in (near, also_near):
        assert [line["outcome"] for line in lines if line["instance"] == iid] == ["sent", "ok"]
    assert {str(line["instance"]) for line in lines} == {near, also_near}
    assert untagged not in {r.instance_id for r in cloud.emu.requests}
    # both uploads used ONE freshly signed CRL (one signature per store per run)
    assert cloud.crl_info(near).fingerprint == cloud.crl_info(also_near).fingerprint


def test_tags_are_anded(cloud: Cloud, ca_dir: Path) -> None:
    gold = cloud.emu.instance_ids[1:3]
    for iid in gold:
        cloud.configure(iid, ca_dir)
    result = cloud.cli("--json", "check", "--tag", "team=fleet-e2e", "--tag", "tier=gold")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert sorted(e["instance"] for e in result.json()["instances"]) == sorted(gold)
    none = cloud.cli("check", "--tag", "team=fleet-e2e", "--tag", "tier=platinum")
    assert none.exit_code == 3 and "tier=platinum" in none.stderr
    bad = cloud.cli("check", "--tag", "team")
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.stderr
    both = cloud.cli("check", gold[0], "--tag", "team=fleet-e2e")
    assert both.exit_code == 2 and "exactly one of" in both.stderr


def test_check_a_desired_state_file_with_a_failing_instance(
    cloud: Cloud, ca_dir: Path, tmp_path: Path
) -> None:
    tagged = cloud.emu.instance_ids[1:]
    for iid in tagged:
        cloud.configure(iid, ca_dir)
    path = tmp_path / "rdsssl.toml"
    path.write_text(
        f'[defaults]\nca_dir = "{ca_dir}"\ncrl = true\n'
        '[[instances]]\ntags = { team = "fleet-e2e" }\n'
        '[[instances]]\nid = "pgm-gone0000000000"\n'
    )
    result = cloud.cli("--json", "check", "-f", path, "--concurrency", "5")
    assert result.exit_code == 4, result.stderr
    doc = result.json()
    ok = [e["instance"] for e in doc["instances"] if e["ok"]]
    assert sorted(ok) == sorted(tagged)
    assert [e["error"]["type"] for e in doc["instances"] if not e["ok"]] == ["InstanceNotFound"]
    assert all(e["status"] == "ok" for e in doc["instances"] if e["ok"])


def test_crl_refresh_from_a_desired_state_file_uses_each_entry_store(
    cloud: Cloud, ca_dir: Path, tmp_path: Path
) -> None:
    first, second = cloud.emu.instance_ids[1:3]
    other = make_store(tmp_path / "other", cn="other-ca")
    cloud.configure(first, ca_dir, crl_days=5)
    cloud.configure(second, other, crl_days=5)
    path = tmp_path / "rdsssl.toml"
    path.write_text(
        f'[[instances]]\nid = "{first}"\nca_dir = "{ca_dir}"\ncrl = true\n'
        f'[[instances]]\nid = "{second}"\nca_dir = "{other}"\ncrl = false\n'
    )
    result = cloud.cli("--json", "crl", "refresh", "-f", path, "--no-wait")
    assert result.exit_code == 0, result.stderr
    by_id = {e["instance"]: e["status"] for e in result.json()["instances"]}
    assert by_id == {first: "sent", second: "skipped"}
    assert [line["instance"] for line in cloud.audit_lines()] == [first]


def test_apply_file_configures_tagged_instances_concurrently_one_failure_isolated(
    cloud: Cloud, ca_dir: Path, tmp_path: Path
) -> None:
    untagged, *tagged = cloud.emu.instance_ids
    config = tmp_path / "rdsssl.toml"
    config.write_text(
        f'[defaults]\nca_dir = "{ca_dir}"\ncrl = true\nacl = "prefer"\n\n'
        '[[instances]]\ntags = { team = "fleet-e2e" }\n\n'
        '[[instances]]\nid = "pgm-doesnotexist"\n'
    )
    args = ("--json", "apply", "-f", config, "--yes", "--concurrency", "4", "--rate", "200")
    first = cloud.cli(*args)
    assert first.exit_code == 4, first.stderr  # the unknown instance: InvalidDBInstanceId.NotFound
    by_id = {e["instance"]: e for e in first.json()["instances"]}
    assert by_id["pgm-doesnotexist"]["ok"] is False
    assert all(by_id[iid]["ok"] and by_id[iid]["applied"] for iid in tagged), by_id
    # one ModifyDBInstanceSSL (CA + CRL + ACL) per tagged instance, none for the others
    assert sorted(cloud.modifies()) == sorted(tagged)
    assert untagged not in cloud.modifies()
    assert all(cloud.emu.restarts(iid) == 1 for iid in tagged)
    # a second run changes nothing anywhere
    second = cloud.cli(*args)
    assert second.exit_code == 4
    assert sorted(cloud.modifies()) == sorted(tagged)


def test_an_encrypted_store_is_unlocked_once_per_run_however_many_instances(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc = tmp_path / "enc-ca"
    now = datetime.now(timezone.utc)
    CaStore.init(enc, cn="enc-ca", key_type=KeyType.EC_P256, days=90, passphrase=b"pw", now=now)
    tagged = cloud.emu.instance_ids[1:]
    runs: list[list[str]] = []
    real = crypto.load_private_key

    def counting(data: bytes, *, source: str, passphrase: bytes | None) -> crypto.PrivateKey:
        runs[-1].append(source)  # every decryption of a key, in the run going on
        return real(data, source=source, passphrase=passphrase)

    monkeypatch.setattr(crypto, "load_private_key", counting)
    run = dataclasses.replace(cloud, env={**cloud.env, "RDSSSL_CA_PASSPHRASE": "pw"})
    config = tmp_path / "rdsssl.toml"
    config.write_text(
        f'[defaults]\nca_dir = "{enc}"\ncrl = true\n\n'
        '[[instances]]\ntags = { team = "fleet-e2e" }\n'
    )
    runs.append([])  # apply: the CRL of the one store goes to four instances
    applied = run.cli("--json", "apply", "-f", config, "--yes", "--no-wait", "--rate", "200")
    assert applied.exit_code == 0, applied.stderr
    assert sorted(cloud.modifies()) == sorted(tagged)
    cloud.settle()
    runs.append([])  # crl refresh: every instance due at once (--min-remaining beyond the CRL)
    refreshed = run.cli(
        "--json", "crl", "refresh", "--tag", "team=fleet-e2e", "--ca-dir", enc,
        "--min-remaining", "300d", "--days", "301", "--no-wait", "--yes", "--rate", "200",
    )  # fmt: skip
    assert refreshed.exit_code == 0, refreshed.stderr
    # --no-wait: sent, not seen
    assert refreshed.json()["summary"] == {"total": len(tagged), "sent": len(tagged)}
    assert runs == [[str(enc / "ca.key")]] * 2  # one unlock per run, not one per instance
