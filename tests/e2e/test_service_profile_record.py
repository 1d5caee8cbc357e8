"""`rdsssl service-profile record` against the emulator, through the real SDK and a real
PostgreSQL: the recorded answers match the profile's switches, the file loads in both readers,
and the instance is restored after a run, a failure, a Ctrl-C, and (by hand) after a second one.

Timings are short (1 s restarts, 0.5 s ACL locks, 0.1 s polls); the pessimistic profile's own
3 s lag and 2 s early read-back make its run the longest (about 20 s).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from rdsssl.emulator.profiles import load_profile
from rdsssl.errors import ApiError, InputError
from rdsssl.models import AclMode, SslModifyRequest, SslState
from rdsssl.ops.profile_calls import RecordOptions
from rdsssl.ops.profile_recorder import Step, record, record_with_consent
from rdsssl.ops.profile_restore import SavedFiles
from rdsssl.pki import crypto
from rdsssl.rds import service_profile
from rdsssl.rds.api import AliyunRdsApi
from tests.cli.helpers import invoke
from tests.e2e.conftest import ALICE_PASSWORD, Cloud, make_cloud

TIMINGS: dict[str, Any] = {"restart_seconds": 1.0, "acl_lock_seconds": 0.5}


@pytest.fixture(scope="module")
def module_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    """A documented-profile emulator with 1 s restarts and 0.5 s ACL locks (alice exists)."""
    yield from make_cloud(tmp_path_factory.mktemp("record"), profile="documented", **TIMINGS)


@pytest.fixture
def cloud(module_cloud: Cloud) -> Cloud:
    module_cloud.emu.reset()
    return module_cloud


class Messages:
    """What the recorder said (info and warn), for assertions."""

    def __init__(self) -> None:
        self.info: list[str] = []
        self.warn: list[str] = []

    def options(self, **overrides: Any) -> RecordOptions:
        values: dict[str, Any] = {
            "probe_user": "alice",
            "probe_password": ALICE_PASSWORD,
            "poll_interval": 0.1,
            "settle": 3.0,
            "timeout": 60.0,
            "info": self.info.append,
            "warn": self.warn.append,
        }
        values.update(overrides)
        return RecordOptions(**values)


def fps(pem: str | None) -> frozenset[str]:
    return crypto.pem_fingerprints(pem.encode(), source="test") if pem else frozenset()


def wait_idle(api: AliyunRdsApi, iid: str, timeout: float = 30.0) -> SslState:
    """Until Running and no SSL change `setting`; the SSL read-back then."""
    deadline = time.monotonic() + timeout
    while True:
        ssl = api.describe_ssl(iid)
        if ssl.last_modify_status != "setting" and api.describe_instance(iid).status == "Running":
            return ssl
        assert time.monotonic() < deadline, f"{iid} still busy"
        time.sleep(0.05)


def no_client_ca(cloud: Cloud) -> None:
    """The instance ended as it began: no client CA, no CRL, and PostgreSQL agrees."""
    ssl = wait_idle(cloud.api(), cloud.iid)
    assert ssl.client_ca_pem is None and ssl.crl_pem is None
    applied = cloud.emu.instance(cloud.iid).applied
    assert applied is not None and applied.client_ca_pem is None


def install_original(cloud: Cloud, cn: str = "users-ca") -> SslState:
    """A client CA (not the recorder's), its CRL and ACLs cert / verify-ca, in one call."""
    now = datetime.now(timezone.utc)
    key = crypto.generate_key()
    ca = crypto.make_ca(key, cn=cn, now=now)
    crl = crypto.build_crl(ca, key, [], number=1, now=now)
    api = cloud.api()
    api.modify_ssl(
        SslModifyRequest(
            cloud.iid,
            cloud.emu.instance(cloud.iid).connection_string,
            client_ca_enabled=True,
            client_ca_pem=crypto.cert_pem(ca).decode(),
            crl_enabled=True,
            crl_pem=crypto.crl_pem(crl).decode(),
            acl=AclMode.CERT,
            replication_acl=AclMode.VERIFY_CA,
        )
    )
    time.sleep(0.2)
    ssl = wait_idle(api, cloud.iid)
    assert ssl.client_ca_pem and ssl.crl_pem and ssl.acl is AclMode.CERT
    return ssl


def same_as(ssl: SslState, original: SslState) -> bool:
    return (
        fps(ssl.client_ca_pem) == fps(original.client_ca_pem)
        and fps(ssl.crl_pem) == fps(original.crl_pem)
        and (ssl.acl, ssl.replication_acl) == (original.acl, original.replication_acl)
    )


# ------------------------------------------------------------------ recorded answers


def test_documented_answers_are_recorded_and_the_instance_restored(
    cloud: Cloud, tmp_path: Path
) -> None:
    out = tmp_path / "documented.json"
    said = Messages()
    result = record(cloud.api(), cloud.iid, out=out, options=said.options())
    p = result.profile
    assert p["multi_ca_bundle"] is True
    assert p["acl_change_restarts"] is False
    assert p["busy_error"] == {"code": "IncorrectDBInstanceState", "http_status": 403}
    assert p["not_found_http_status"] == 400
    assert p["url_limit_bytes"] is None
    assert p["tls_max_version"] == "TLSv1.2"
    assert p["status_lag_seconds"] < 1.0  # the first poll, right after the call
    assert p["early_readback_seconds"] == 0.0
    # the emulated length, plus PostgreSQL's own restart / reload and up to one poll
    assert 0.9 <= p["restart_seconds"] <= 2.5
    assert 0.4 <= p["acl_lock_seconds"] <= 2.0
    assert p["acl_without_ca"] == "prefer"
    assert p["crlf_pem_readback"] == "exact"
    assert (p["region"], p["engine_version"]) == (cloud.emu.region, "15.0")
    first = p["sequences"]["ca_change"][0]
    assert first["status"] == "SSL_MODIFYING" and first["readback"] == "new"
    assert p["sequences"]["acl_change"][-1]["status"] == "Running"
    # restored: no client CA, as before; the saved originals are gone once that is verified
    no_client_ca(cloud)
    assert SavedFiles.next_to(out).existing() == []
    assert result.restored == "the client CA is off again, as it was"
    # one restart for the bundle, a reload for the ACL change, one restart to restore
    assert (cloud.emu.restarts(cloud.iid), cloud.emu.reloads(cloud.iid)) == (2, 1)
    # round trip: both readers take the file, with the recorded answers
    replayed = load_profile(out)
    assert replayed.switches().multi_ca_bundle is True
    assert replayed.busy_error.code == "IncorrectDBInstanceState"
    assert replayed.restart_seconds == p["restart_seconds"]
    client = service_profile.load(out)
    assert client.acl_change_restarts is False
    assert client.tls_max_version == "TLSv1.2"
    assert client.sequences["ca_change"] == p["sequences"]["ca_change"]


def test_pessimistic_answers_are_recorded(tmp_path: Path) -> None:
    clouds = make_cloud(tmp_path, profile="pessimistic", **TIMINGS)
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: next(clouds, None))
        cloud = next(clouds)
        out = tmp_path / "pessimistic.json"
        said = Messages()
        result = record(cloud.api(), cloud.iid, out=out, options=said.options())
        p = result.profile
        assert p["multi_ca_bundle"] is False
        assert p["acl_change_restarts"] is True
        assert p["busy_error"] == {"code": "InvalideStatus.Format", "http_status": 400}
        assert p["not_found_http_status"] == 400
        assert p["url_limit_bytes"] == 8192
        assert p["tls_max_version"] == "TLSv1.2"
        assert 2.7 <= p["status_lag_seconds"] <= 4.0
        assert p["early_readback_seconds"] == pytest.approx(2.0, abs=0.5)
        assert 0.9 <= p["restart_seconds"] <= 2.5
        assert 0.4 <= p["acl_lock_seconds"] <= 2.5  # this one restarts PostgreSQL
        assert p["acl_without_ca"] == "prefer"
        assert p["crlf_pem_readback"] == "normalized"
        assert any("two-CA bundle with CRLF was refused" in n for n in result.notes)
        ca_change = p["sequences"]["ca_change"]
        assert ca_change[0]["readback"] == "old" and ca_change[0]["status"] == "Running"
        no_client_ca(cloud)
        replayed = load_profile(out).switches()
        assert (replayed.url_limit, replayed.crlf_pem_readback) == (8192, "normalized")
        assert replayed.restart_on_acl_change is True
        assert service_profile.load(out).status_lag_seconds == p["status_lag_seconds"]


# ------------------------------------------------------------------ restoring


class Faulty:
    """The adapter, with a hook run before each ModifyDBInstanceSSL (to inject faults)."""

    def __init__(self, api: AliyunRdsApi, before_modify: Callable[[SslModifyRequest], None]):
        self._api = api
        self._before = before_modify

    def modify_ssl(self, request: SslModifyRequest) -> str:
        self._before(request)
        return self._api.modify_ssl(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


def test_restored_after_a_failure_mid_way(cloud: Cloud, tmp_path: Path) -> None:
    def fail_the_acl_change(request: SslModifyRequest) -> None:
        if request.acl is not None:  # accepted, and still answered with an InternalError
            cloud.emu.faults.push("internal", action="ModifyDBInstanceSSL", after=True)

    out = tmp_path / "failed.json"
    said = Messages()
    api: Any = Faulty(cloud.api(), fail_the_acl_change)
    with pytest.raises(ApiError) as exc:
        record(api, cloud.iid, out=out, options=said.options())
    assert exc.value.code == "InternalError"
    assert not out.exists()
    no_client_ca(cloud)
    assert SavedFiles.next_to(out).existing() == []
    assert any("restored: the client CA is off again" in w for w in said.warn)
    # the ACL change that was accepted anyway ran to its end before the restore was sent
    assert (cloud.emu.restarts(cloud.iid), cloud.emu.reloads(cloud.iid)) == (2, 1)


def interrupting_sleep(*at: int) -> Callable[[float], None]:
    """A sleep that raises KeyboardInterrupt on its calls number `at` (1-based)."""
    calls = [0]

    def sleep(seconds: float) -> None:
        calls[0] += 1
        if calls[0] in at:
            raise KeyboardInterrupt
        time.sleep(seconds)

    return sleep


def test_restored_after_ctrl_c(cloud: Cloud, tmp_path: Path) -> None:
    out = tmp_path / "interrupted.json"
    said = Messages()
    with pytest.raises(KeyboardInterrupt):
        record(cloud.api(), cloud.iid, out=out, options=said.options(sleep=interrupting_sleep(3)))
    assert said.warn[0].startswith(f"interrupted: restoring {cloud.iid}")
    assert said.warn[-1] == f"{cloud.iid} restored: the client CA is off again, as it was"
    no_client_ca(cloud)
    assert not out.exists() and SavedFiles.next_to(out).existing() == []


def test_a_second_ctrl_c_abandons_the_restore_and_says_how_to_finish_by_hand(
    cloud: Cloud, tmp_path: Path
) -> None:
    original = install_original(cloud)
    out = tmp_path / "abandoned.json"
    said = Messages()
    # 3rd sleep: while the client CA is being disabled; 4th: the restore waiting for that
    options = said.options(sleep=interrupting_sleep(3, 4))
    with pytest.raises(KeyboardInterrupt):
        record(cloud.api(), cloud.iid, out=out, options=options)
    report = said.warn[-1]
    assert report.startswith(f"restore abandoned: {cloud.iid} was NOT restored")
    assert "client CA none instead of the original CA" in report
    saved = SavedFiles.next_to(out)
    assert sorted(saved.existing()) == sorted([saved.json, saved.ca, saved.crl])
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in saved.existing())
    # the commands in the report (and in the saved file) restore the instance
    commands = report.split("restore them by hand with: ", 1)[1].split("; ")
    assert len(commands) == 3
    assert json.loads(saved.json.read_text())["restore_commands"] == commands
    wait_idle(cloud.api(), cloud.iid)
    for command in commands:
        args = shlex.split(command)
        assert args[0] == "rdsssl"
        result = cloud.cli(*args[1:])
        assert result.exit_code == 0, result.stderr
    assert same_as(wait_idle(cloud.api(), cloud.iid), original)


# ------------------------------------------------------------------ the command


def test_the_command_records_and_restores_an_instance_with_a_client_ca(
    cloud: Cloud, tmp_path: Path
) -> None:
    original = install_original(cloud)
    out = tmp_path / "cli.json"
    result = cloud.cli(
        "--json", "service-profile", "record", cloud.iid, "--out", out, "--throwaway",
        "--yes", "--poll-interval", "0.1",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["ok"] is True and doc["out"] == str(out)
    p = doc["profile"]
    assert json.loads(out.read_text()) == p
    # no probe user: the restart question is inferred, the TLS version is not measured
    assert p["acl_change_restarts"] is False
    assert any(n.startswith("acl_change_restarts: inferred") for n in doc["notes"])
    assert "tls_max_version" not in p
    assert load_profile(out).tls_max_version == "TLSv1.2"  # the documented answer on replay
    # the client CA was switched off first: the ACL read back without one
    disabled = [r for r in cloud.mutating() if r.params.get("ClientCAEnabled") == "0"]
    assert len(disabled) == 1
    assert p["acl_without_ca"] == "prefer"
    assert "RESTART ~3 min" in result.stderr and "3 restart(s)" in result.stderr
    # restored in one call: the original CA, CRL and ACLs
    assert same_as(wait_idle(cloud.api(), cloud.iid), original)
    assert doc["restored"] == "the original client CA, CRL and ACLs read back"
    restore = cloud.mutating()[-1]
    assert restore.params["ClientCAEnabled"] == "1" and restore.params["ACL"] == "cert"
    assert restore.params["ClientCrlEnabled"] == "1"


def test_throwaway_is_required(cloud: Cloud, tmp_path: Path) -> None:
    result = cloud.cli("service-profile", "record", cloud.iid, "--out", tmp_path / "p.json")
    assert result.exit_code == 2
    assert "--throwaway is required" in result.stderr and "restarts" in result.stderr
    assert cloud.emu.requests == []


def test_ssl_off_is_refused_before_any_change(cloud: Cloud, tmp_path: Path) -> None:
    cloud.emu.set_ssl_enabled(cloud.iid, False)
    try:
        result = cloud.cli(
            "service-profile", "record", cloud.iid, "--out", tmp_path / "p.json",
            "--throwaway", "--yes",
        )  # fmt: skip
    finally:
        cloud.emu.set_ssl_enabled(cloud.iid, True)
    assert result.exit_code == 3
    assert "SSL is off" in result.stderr
    assert cloud.mutating() == []
    assert not (tmp_path / "p.json.original.json").exists()


def test_without_a_terminal_yes_is_required(cloud: Cloud, tmp_path: Path) -> None:
    args: list[str | Path] = ["service-profile", "record", cloud.iid, "--out", tmp_path / "p.json"]
    args.append("--throwaway")
    result = cloud.cli(*args)
    assert result.exit_code == 2
    assert "pass --yes" in result.stderr
    assert "RESTART ~3 min" in result.stderr  # the steps were shown first
    assert cloud.mutating() == []


def test_no_at_the_prompt_changes_nothing(cloud: Cloud, tmp_path: Path) -> None:
    args: list[str | Path] = ["service-profile", "record", cloud.iid, "--out", tmp_path / "p.json"]
    args.append("--throwaway")
    result = invoke(*args, env=cloud.env, interactive=True, input="n\n", cwd=cloud.work)
    assert result.exit_code == 130
    assert cloud.mutating() == []


def test_the_library_asks_for_consent_with_the_planned_steps_before_any_change(
    cloud: Cloud, tmp_path: Path
) -> None:
    shown: list[list[str]] = []

    def refuse(steps: Sequence[Step]) -> None:
        shown.append([s.effect for s in steps])
        raise KeyboardInterrupt

    out = tmp_path / "p.json"
    with pytest.raises(KeyboardInterrupt):
        record_with_consent(
            cloud.api(), cloud.iid, out=out, options=Messages().options(), consent=refuse
        )
    assert shown == [["none", "none", "restart", "acl-lock", "restart"]]  # no client CA yet
    assert cloud.mutating() == [] and not out.exists()
    assert SavedFiles.next_to(out).existing() == []


def test_a_probe_user_needs_its_password_variable(cloud: Cloud, tmp_path: Path) -> None:
    args: list[str | Path] = ["service-profile", "record", cloud.iid, "--out", tmp_path / "p.json"]
    args.append("--throwaway")
    result = cloud.cli(*args, "--yes", "--probe-user", "alice")
    assert result.exit_code == 2 and "--probe-password-env" in result.stderr
    result = cloud.cli(*args, "--yes", "--probe-user", "alice", "--probe-password-env", "NOPE")
    assert result.exit_code == 3 and "NOPE is not set" in result.stderr
    assert cloud.emu.requests == []


def test_an_unfinished_earlier_recording_is_not_overwritten(cloud: Cloud, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    leftover = SavedFiles.next_to(out).json
    leftover.write_text('{"client_ca_pem": "the only copy"}')
    result = cloud.cli("service-profile", "record", cloud.iid, "--out", out, "--throwaway", "--yes")
    assert result.exit_code == 3
    assert "did not finish restoring" in result.stderr
    assert leftover.read_text() == '{"client_ca_pem": "the only copy"}'
    assert cloud.emu.requests == []


def test_an_instance_left_with_the_temporary_ca_is_refused(cloud: Cloud, tmp_path: Path) -> None:
    install_original(cloud, cn="rdsssl profile recorder CA 1")
    before = len(cloud.mutating())
    with pytest.raises(InputError, match="still has the recorder's temporary client CA"):
        record(cloud.api(), cloud.iid, out=tmp_path / "p.json", options=Messages().options())
    assert len(cloud.mutating()) == before
    assert SavedFiles.next_to(tmp_path / "p.json").existing() == []
