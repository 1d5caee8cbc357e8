"""The region from the aliyun CLI's ~/.aliyun/config.json: which profile is chosen (--profile,
then ALIBABA_CLOUD_PROFILE, then the file's `current`), what a missing file or profile says
(the file and the profile, never a secret of the file), and the adapter and the CLI using it
when no --region / ALIBABA_CLOUD_REGION_ID is given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rdsssl.cli import App
from rdsssl.errors import ConfigError, ExitCode
from rdsssl.rds.api import AliyunRdsApi
from rdsssl.rds.settings import ApiSettings, cli_config_path, default_region, profile_region
from tests.cli.helpers import invoke

SECRETS = ("AK-SECRET-dev", "STS-TOKEN-ops", "ROLE-AK-SECRET")
TRUNCATED = '{"current": "dev", "profiles": [{"name": "dev", "access_key_secret": "AK-SECRET-dev"'


def profiles() -> list[dict[str, Any]]:
    """An AK profile, an StsToken one and a RamRoleArn one (the last without a region)."""
    return [
        {
            "name": "dev",
            "mode": "AK",
            "access_key_id": "AKID-dev",
            "access_key_secret": SECRETS[0],
            "region_id": "cn-hangzhou",
        },
        {
            "name": "ops",
            "mode": "StsToken",
            "access_key_id": "STS.AKID",
            "access_key_secret": "sts-secret",
            "sts_token": SECRETS[1],
            "region_id": " eu-central-1 ",
        },
        {
            "name": "role",
            "mode": "RamRoleArn",
            "access_key_id": "AKID-role",
            "access_key_secret": SECRETS[2],
            "ram_role_arn": "acs:ram::1:role/x",
            "ram_session_name": "s",
            "region_id": "",
        },
    ]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of its own, with none of the region and profile variables set."""
    for name in (
        "ALIBABA_CLOUD_PROFILE",
        "ALIBABA_CLOUD_REGION_ID",
        "ALIBABA_CLOUD_CLI_PROFILE_DISABLED",
        "RDSSSL_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def write_config(home: Path, doc: Any) -> Path:
    path = home / ".aliyun" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_the_config_path_follows_home(home: Path) -> None:
    assert cli_config_path() == home / ".aliyun" / "config.json"


def test_the_current_profile_gives_the_region(home: Path) -> None:
    write_config(home, {"current": "dev", "profiles": profiles()})
    assert profile_region() == "cn-hangzhou"
    assert default_region() == "cn-hangzhou"


def test_env_profile_beats_current_and_explicit_beats_env(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(home, {"current": "dev", "profiles": profiles()})
    monkeypatch.setenv("ALIBABA_CLOUD_PROFILE", "ops")
    assert profile_region() == "eu-central-1"  # StsToken mode: only region_id is read
    assert profile_region("dev") == "cn-hangzhou"


def test_a_missing_file_names_it(home: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        profile_region("dev")
    assert str(home / ".aliyun" / "config.json") in str(caught.value)
    assert "no such file" in str(caught.value)
    assert default_region("dev") is None


def test_an_unknown_profile_names_the_file_and_the_profile_not_the_secrets(home: Path) -> None:
    path = write_config(home, {"current": "dev", "profiles": profiles()})
    with pytest.raises(ConfigError) as caught:
        profile_region("prod")
    message = str(caught.value)
    assert str(path) in message and "'prod'" in message
    assert "dev, ops, role" in message  # what exists, by name
    no_secret(message)


def test_a_profile_without_a_region_says_so(home: Path) -> None:
    path = write_config(home, {"current": "role", "profiles": profiles()})
    with pytest.raises(ConfigError) as caught:
        profile_region()
    assert str(caught.value) == f"{path}: profile 'role' has no region_id"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (TRUNCATED, "not valid JSON (line 1)"),
        ("[1, 2]", "expected a JSON object"),
        ({"current": "dev"}, "no profiles list"),
        ({"profiles": profiles()}, "no current profile: select one with --profile"),
    ],
)  # fmt: skip
def test_a_malformed_config_is_a_config_error_without_its_text(
    home: Path, doc: Any, expected: str
) -> None:
    write_config(home, doc)
    with pytest.raises(ConfigError) as caught:
        profile_region()
    assert expected in str(caught.value)
    no_secret(str(caught.value))


def test_an_unreadable_config_is_a_config_error(home: Path) -> None:
    path = write_config(home, "x")
    path.unlink()
    path.mkdir()  # a directory where the file should be: unreadable for any user
    with pytest.raises(ConfigError, match="cannot read the aliyun CLI config"):
        profile_region("dev")


def test_disabling_the_cli_profile_disables_its_region(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(home, {"current": "dev", "profiles": profiles()})
    monkeypatch.setenv("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "TRUE")
    with pytest.raises(ConfigError, match="ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true"):
        profile_region()


def test_settings_take_the_profile_region_only_without_an_explicit_one(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(home, {"current": "dev", "profiles": profiles()})
    assert ApiSettings.from_env().region == "cn-hangzhou"
    assert ApiSettings.from_env(profile="ops").region == "eu-central-1"
    monkeypatch.setenv("ALIBABA_CLOUD_REGION_ID", "cn-beijing")
    assert ApiSettings.from_env(profile="ops").region == "cn-beijing"
    assert ApiSettings.from_env(region="ap-southeast-1").region == "ap-southeast-1"


def test_the_adapter_uses_the_profile_region(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    write_config(home, {"current": "ops", "profiles": profiles()})
    with AliyunRdsApi(ApiSettings()) as api:  # no region given: the StsToken profile's
        assert "eu-central-1" in api.endpoint


def test_the_adapter_without_any_region_names_the_file_and_profile(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    path = write_config(home, {"current": "dev", "profiles": profiles()})
    with pytest.raises(ConfigError) as caught:
        AliyunRdsApi(ApiSettings(profile="role"))
    message = str(caught.value)
    assert message.startswith("no region: pass --region, set ALIBABA_CLOUD_REGION_ID")
    assert f"{path}: profile 'role' has no region_id" in message
    no_secret(message)


def test_the_cli_without_a_region_exits_3_naming_the_file_and_profile(home: Path) -> None:
    path = write_config(home, {"current": "dev", "profiles": profiles()})
    env = {
        "HOME": str(home),
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "AKID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret",
    }
    result = invoke("--profile", "prod", "instance", "show", "pgm-bp1x", env=env)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "no region" in result.stderr and str(path) in result.stderr
    assert "'prod'" in result.stderr
    no_secret(result.stderr + result.stdout)


def test_the_cli_takes_the_region_of_the_chosen_profile(home: Path) -> None:
    write_config(home, {"current": "ops", "profiles": profiles()})
    env = {"HOME": str(home)}
    app = App(interactive=False)
    result = invoke("-v", "ca", "show", "--ca-dir", home / "none", env=env, app=app)
    assert app.region == "eu-central-1"  # the current profile's (StsToken: region only)
    assert f"region eu-central-1 from the aliyun CLI profile in {home}" in result.stderr
    app = App(interactive=False)
    invoke("ca", "show", "--ca-dir", home, env={**env, "ALIBABA_CLOUD_PROFILE": "dev"}, app=app)
    assert app.region == "cn-hangzhou"
    app = App(interactive=False)
    invoke("--region", "cn-beijing", "ca", "show", "--ca-dir", home, env=env, app=app)
    assert app.region == "cn-beijing"
