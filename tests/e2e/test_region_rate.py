"""The region from the aliyun CLI profile and the request budget of `plan` / `apply`, end to
end: a tags entry is listed in the region of the profile's `region_id` when no --region is
given, and every plan and apply says what its rate limit cost (which rate, from where, how many
calls, the least time they take), with --rate > the file's `rate` > the service profile's
`api_rate` > 10."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rdsssl.emulator.server import Emulator
from tests.cli.helpers import Result, invoke
from tests.e2e.test_crl_refresh import Cloud, cloud_for, make_store

TEAM = {"team": "rate-e2e"}


@pytest.fixture(scope="module")
def module_emu() -> Iterator[Emulator]:
    with Emulator(instances=1, backend="none", restart_seconds=0.2, acl_lock_seconds=0.1) as emu:
        for _ in range(3):  # three tagged instances; the first one is never selected
            emu.add_instance(tags=TEAM)
        yield emu


@pytest.fixture
def cloud(module_emu: Emulator, tmp_path: Path) -> Cloud:
    module_emu.reset()
    return cloud_for(module_emu, tmp_path / "audit.jsonl")


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("rate") / "ca")


def desired_file(tmp_path: Path, ca_dir: Path, top: str = "") -> Path:
    path = tmp_path / "rdsssl.toml"
    path.write_text(
        f'{top}[defaults]\nca_dir = "{ca_dir}"\nacl = "prefer"\n\n'
        '[[instances]]\ntags = { team = "rate-e2e" }\n'
    )
    return path


def aliyun_home(tmp_path: Path, profiles: list[dict[str, Any]], current: str) -> Path:
    home = tmp_path / "home"
    (home / ".aliyun").mkdir(parents=True)
    doc = {"current": current, "profiles": profiles}
    (home / ".aliyun" / "config.json").write_text(json.dumps(doc), encoding="utf-8")
    return home


def role_profile(region: str) -> dict[str, Any]:
    """A RamRoleArn profile: only its region is used here (the keys come from the env)."""
    return {
        "name": "role",
        "mode": "RamRoleArn",
        "access_key_id": "AKID-role",
        "access_key_secret": "ROLE-SECRET-never-shown",
        "ram_role_arn": "acs:ram::1:role/rdsssl",
        "ram_session_name": "rdsssl",
        "region_id": region,
    }


def test_tags_are_listed_in_the_profile_region_and_the_plan_says_what_the_rate_costs(
    cloud: Cloud, ca_dir: Path, tmp_path: Path
) -> None:
    _untagged, *tagged = cloud.emu.instance_ids
    home = aliyun_home(tmp_path, [role_profile(cloud.emu.region)], current="role")
    env = {k: v for k, v in cloud.env.items() if k != "ALIBABA_CLOUD_REGION_ID"}
    config = desired_file(tmp_path, ca_dir, top="rate = 50\n\n")
    start = len(cloud.emu.requests)
    result = invoke("--json", "plan", "-f", config, env={**env, "HOME": str(home)})
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert sorted(e["instance"] for e in doc["instances"]) == sorted(tagged)
    calls = len(cloud.emu.requests) - start  # every call the plan made reached the emulator
    assert calls >= 1 + len(tagged)  # the listing, then at least one read per instance
    assert doc["rate"] == {
        "calls_per_second": 50.0,
        "source": str(config),
        "instances": len(tagged),
        "calls": calls,
        "minimum_seconds": round((calls - 1) / 50, 1),
    }
    assert f"rate limit 50 calls/s ({config}): {calls} API call(s) for 3 instance(s)" in (
        result.stderr
    )
    assert "ROLE-SECRET-never-shown" not in result.stdout + result.stderr


def test_a_profile_in_another_region_finds_nothing_but_the_env_region_wins(
    cloud: Cloud, ca_dir: Path, tmp_path: Path
) -> None:
    home = aliyun_home(tmp_path, [role_profile("xx-nowhere-1")], current="role")
    config = desired_file(tmp_path, ca_dir)
    env = {k: v for k, v in cloud.env.items() if k != "ALIBABA_CLOUD_REGION_ID"}
    elsewhere = invoke("--json", "plan", "-f", config, env={**env, "HOME": str(home)})
    assert elsewhere.json()["instances"] == []  # listed in xx-nowhere-1: no instance there
    here = invoke("--json", "plan", "-f", config, env={**cloud.env, "HOME": str(home)})
    assert len(here.json()["instances"]) == 3


def test_rate_precedence_flag_file_service_profile_default(
    cloud: Cloud, ca_dir: Path, tmp_path: Path
) -> None:
    with_rate = desired_file(tmp_path, ca_dir, top="rate = 40\n\n")
    profile = tmp_path / "service-profile.json"
    profile.write_text(json.dumps({"format": 1, "name": "acct", "api_rate": 25}))

    def rate(*args: str | Path, env: dict[str, str] | None = None) -> dict[str, Any]:
        result = cloud.cli("--json", *args) if env is None else _cli(cloud, env, "--json", *args)
        assert result.exit_code == 0, result.stderr
        found: dict[str, Any] = result.json()["rate"]
        return found

    with_profile = {"RDSSSL_SERVICE_PROFILE": str(profile)}
    flag = rate("apply", "-f", with_rate, "--dry-run", "--rate", "200", env=with_profile)
    assert (flag["calls_per_second"], flag["source"]) == (200.0, "--rate")
    from_file = rate("apply", "-f", with_rate, "--dry-run", env=with_profile)
    assert (from_file["calls_per_second"], from_file["source"]) == (40.0, str(with_rate))
    with_rate.write_text(with_rate.read_text().replace("rate = 40\n", ""))
    from_profile = rate("plan", "-f", with_rate, env=with_profile)
    assert (from_profile["calls_per_second"], from_profile["source"]) == (
        25.0,
        "service profile acct",
    )
    default = rate("plan", "-f", with_rate)
    assert (default["calls_per_second"], default["source"]) == (10.0, "default")
    assert default["instances"] == 3 and default["calls"] >= 4
    assert default["minimum_seconds"] == round((default["calls"] - 1) / 10, 1)


def test_a_saved_plan_is_paced_by_the_flag_or_the_service_profile(
    cloud: Cloud, ca_dir: Path, tmp_path: Path
) -> None:
    config = desired_file(tmp_path, ca_dir, top="rate = 40\n\n")
    plan = tmp_path / "plan.json"
    saved = cloud.cli("plan", "-f", config, "--out", plan)
    assert saved.exit_code == 0, saved.stderr
    profile = tmp_path / "service-profile.json"
    profile.write_text(json.dumps({"format": 1, "name": "acct", "api_rate": 25}))
    env = {"RDSSSL_SERVICE_PROFILE": str(profile)}
    checked = _cli(cloud, env, "--json", "apply", plan, "--dry-run")
    assert checked.exit_code == 0, checked.stderr
    assert checked.json()["rate"]["source"] == "service profile acct"  # the file is not read
    applied = _cli(cloud, env, "--json", "apply", plan, "--no-wait", "--rate", "100")
    assert applied.exit_code == 0, applied.stderr
    doc = applied.json()
    assert doc["rate"]["source"] == "--rate" and doc["rate"]["instances"] == 3
    assert doc["rate"]["calls"] >= 6  # a re-read and a ModifyDBInstanceSSL per instance
    assert doc["rate"]["minimum_seconds"] == round((doc["rate"]["calls"] - 1) / 100, 1)


def _cli(cloud: Cloud, extra: dict[str, str], *args: str | Path) -> Result:
    return invoke(*args, env={**cloud.env, **extra})
