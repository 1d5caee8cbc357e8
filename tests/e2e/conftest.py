"""End-to-end fixtures: the `rdsssl` CLI (in-process, through `rdsssl.cli.run`) against an
emulator over HTTP with the real SDK, and a real PostgreSQL behind each instance.

One emulator per test module (`cloud`), reset before each test (`fresh`): SSL blocks back to
initial, faults and the request log cleared; the database account alice stays.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rdsssl.emulator.requestlog import LoggedRequest
from rdsssl.emulator.server import Emulator
from rdsssl.rds.api import AliyunRdsApi
from rdsssl.rds.settings import ApiSettings
from tests.cli.helpers import Result, invoke

ALICE_PASSWORD = "Alice-e2e-pass-1"


@dataclass
class Cloud:
    """One emulator, its instance, and the environment a user would set to reach it."""

    emu: Emulator
    iid: str
    work: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "RDSSSL_ENDPOINT": self.emu.endpoint,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": self.emu.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": self.emu.access_key_secret,
            "ALIBABA_CLOUD_REGION_ID": self.emu.region,
            "RDSSSL_AUDIT_LOG": str(self.work / "audit.jsonl"),
            "ALICE_PASSWORD": ALICE_PASSWORD,
            # what the emulator does (its profile, its timings), as a recorded profile would
            "RDSSSL_SERVICE_PROFILE": str(self.emu.service_profile_file),
        }

    def cli(self, *args: str | Path, env: dict[str, str] | None = None) -> Result:
        """`rdsssl ARGS` with the emulator's environment (stdin is not a terminal)."""
        return invoke(*args, env={**self.env, **(env or {})}, cwd=self.work)

    def api(self) -> AliyunRdsApi:
        """An adapter with the emulator's key pair (read from the environment when built)."""
        with pytest.MonkeyPatch.context() as mp:
            for name, value in self.env.items():
                mp.setenv(name, value)
            return AliyunRdsApi(ApiSettings.from_env())

    def calls(self, action: str) -> list[LoggedRequest]:
        return [r for r in self.emu.requests if r.action == action]

    def mutating(self) -> list[LoggedRequest]:
        """Every call that is not a Describe (the control routes are not in the log)."""
        return [r for r in self.emu.requests if not r.action.startswith("Describe")]

    def new_ca(self, path: Path) -> Path:
        """An unencrypted CA store (CN=root-ca1) at `path`."""
        result = invoke("ca", "init", "--ca-dir", path, "--cn", "root-ca1", "--no-passphrase")
        assert result.exit_code == 0, result.stderr
        return path

    def issue(self, ca_dir: Path, out: Path, user: str = "alice") -> list[str]:
        """A certificate for `user`; returns the probe options that use it."""
        result = invoke("cert", "issue", "--ca-dir", ca_dir, "--user", user, "--out", out)
        assert result.exit_code == 0, result.stderr
        return ["--cert", str(out / "client.crt"), "--key", str(out / "client.key")]


def make_cloud(tmp: Path, **emulator: object) -> Iterator[Cloud]:
    """Start an emulator (real PostgreSQL unless backend="none") with the account alice."""
    options: dict[str, object] = {"instances": 1, "backend": "pg", "restart_seconds": 0.3}
    options.update(emulator)
    with Emulator(**options) as emu:  # type: ignore[arg-type]
        cloud = Cloud(emu, emu.instance_ids[0], tmp)
        cloud.api().create_account(cloud.iid, "alice", ALICE_PASSWORD)
        yield cloud


PROFILES = ("documented", "pessimistic")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module that sets `PROFILES = ...`, or a test marked `@pytest.mark.profiles(...)`, runs
    under each emulator profile named (the `emulator_profile` fixture); others run under
    `documented` only."""
    if "emulator_profile" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("profiles")
        profiles = getattr(metafunc.module, "PROFILES", ("documented",))
        if marker is not None:
            profiles = marker.args
        metafunc.parametrize("emulator_profile", profiles, scope="module")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, emulator_profile: str) -> Iterator[Cloud]:
    """The module's emulator (real PostgreSQL, 0.3 s restarts, 0.2 s ACL locks) under
    `emulator_profile` (the module's `PROFILES`)."""
    yield from make_cloud(tmp_path_factory.mktemp("e2e"), profile=emulator_profile)


@pytest.fixture
def fresh(cloud: Cloud) -> Cloud:
    """The module's emulator, reset before the test, with an empty audit log (a change the
    last test left unconfirmed does not belong to the reset instance)."""
    cloud.emu.reset()
    (cloud.work / "audit.jsonl").unlink(missing_ok=True)
    return cloud
