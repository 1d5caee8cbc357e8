"""`rdsssl crl refresh` end to end: the real SDK over HTTP against state-only emulated instances.

Uploads happen only when due (CRL near nextUpdate, a revocation not yet live), never outside
the maintenance window without --now, and each one leaves one audit line. Instances are set
up through the library with --no-wait semantics and the emulator's clock is moved past the
restart, so only the tests that exercise waiting pay for it (about a second each).

`Cloud` and `make_store` are shared with test_check.py and test_fleet.py (fixtures stay in
each module: tests/e2e/conftest.py belongs to another suite).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from unittest import mock

import pytest

from rdsssl.emulator.server import Emulator
from rdsssl.errors import ConfigError
from rdsssl.models import KeyType
from rdsssl.ops import audit
from rdsssl.ops.apply import ApplyOptions, apply
from rdsssl.ops.clock import Clock
from rdsssl.ops.crl_refresh import Window
from rdsssl.ops.plan import DesiredSsl
from rdsssl.pki import crypto
from rdsssl.rds.api import AliyunRdsApi
from rdsssl.rds.settings import ApiSettings
from rdsssl.store.castore import CaStore
from tests.cli.helpers import Result, invoke

RESTART_SECONDS = 0.3


def make_store(path: Path, *, days: int = 3650, cn: str = "e2e-ca") -> Path:
    """An unencrypted CA store."""
    now = datetime.now(timezone.utc)
    CaStore.init(path, cn=cn, key_type=KeyType.EC_P256, days=days, passphrase=None, now=now).close()
    return path


@dataclass
class Cloud:
    """An emulator, the environment that points the CLI at it, and an adapter for set-up."""

    emu: Emulator
    env: dict[str, str]
    audit_log: Path

    @property
    def api(self) -> AliyunRdsApi:
        """An adapter with the emulator's keys (read from the environment when built)."""
        keys = {k: v for k, v in self.env.items() if k.startswith("ALIBABA_CLOUD_ACCESS")}
        with mock.patch.dict(os.environ, keys):
            return AliyunRdsApi(ApiSettings(region=self.emu.region, endpoint=self.emu.endpoint))

    def cli(self, *args: str | Path, clock: datetime | None = None) -> Result:
        """`rdsssl ARGS` in-process against the emulator."""
        return invoke(*args, env=self.env, clock=(lambda: clock) if clock else None)

    def configure(self, iid: str, ca_dir: Path, *, crl_days: int = 180, crl: bool = True) -> None:
        """Client CA (and a CRL valid `crl_days`) on `iid`, applied at once."""
        now = datetime.now(timezone.utc)
        with CaStore.open(ca_dir) as store:
            store.unlock(None)
            ca_pem = crypto.cert_pem(store.ca_cert).decode()
            crl_pem = store.build_crl(now=now, days=crl_days).pem.decode() if crl else None
        desired = DesiredSsl(client_ca_pem=ca_pem, crl=crl_pem)
        result = apply(self.api, iid, desired, ApplyOptions(wait=False), clock=Clock().at(now))
        assert result.applied
        self.settle()

    def settle(self) -> None:
        """Complete every pending change now (the emulator's clock jumps past the restart)."""
        self.emu.clock.advance(RESTART_SECONDS + 1)
        self.emu.state.tick()

    def modifies(self) -> list[str]:
        """Instance ids of the ModifyDBInstanceSSL calls so far."""
        return [r.instance_id for r in self.emu.requests if r.action == "ModifyDBInstanceSSL"]

    def actions(self) -> set[str]:
        return {r.action for r in self.emu.requests}

    def crl_info(self, iid: str) -> crypto.CrlInfo:
        pem = self.emu.instance(iid).ssl.crl_pem
        (crl,) = crypto.load_crls(pem.encode(), source=iid)
        return crypto.inspect_crl(crl)

    def audit_lines(self) -> list[dict[str, object]]:
        return audit.read(self.audit_log)


def cloud_for(emu: Emulator, audit_log: Path) -> Cloud:
    env = {
        "RDSSSL_ENDPOINT": emu.endpoint,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emu.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emu.access_key_secret,
        "ALIBABA_CLOUD_REGION_ID": emu.region,
        "RDSSSL_AUDIT_LOG": str(audit_log),
    }
    return Cloud(emu, env, audit_log)


@pytest.fixture(scope="module")
def module_emu() -> Iterator[Emulator]:
    with Emulator(
        instances=3, backend="none", restart_seconds=RESTART_SECONDS, acl_lock_seconds=0.2
    ) as emu:
        yield emu


@pytest.fixture
def cloud(module_emu: Emulator, tmp_path: Path) -> Cloud:
    module_emu.reset()
    return cloud_for(module_emu, tmp_path / "audit.jsonl")


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("crl-refresh") / "ca")


def _local_window(now: datetime, start_h: float, end_h: float) -> str:
    local = now.astimezone()
    start, end = local + timedelta(hours=start_h), local + timedelta(hours=end_h)
    return f"{start:%H:%M}-{end:%H:%M}"


# ------------------------------------------------------------------ due or not


def test_a_fresh_crl_is_left_alone(cloud: Cloud, ca_dir: Path) -> None:
    iid = cloud.emu.instance_ids[0]
    cloud.configure(iid, ca_dir)
    before = len(cloud.modifies())
    result = cloud.cli("--json", "crl", "refresh", iid, "--ca-dir", ca_dir)
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["ok"] is True and doc["summary"] == {"total": 1, "current": 1}
    assert doc["instances"][0]["status"] == "current"
    assert len(cloud.modifies()) == before  # no Modify call
    assert cloud.audit_lines() == []


def test_a_crl_near_next_update_is_replaced_once(cloud: Cloud, ca_dir: Path) -> None:
    iid = cloud.emu.instance_ids[0]
    cloud.configure(iid, ca_dir, crl_days=10)  # inside the default 30-day threshold
    before = cloud.crl_info(iid)
    result = cloud.cli("crl", "refresh", iid, "--ca-dir", ca_dir, "--days", "90")
    assert result.exit_code == 0, result.stderr
    assert "uploaded a fresh CRL" in result.stderr and "restarted" in result.stderr
    after = cloud.crl_info(iid)
    assert after.number is not None and before.number is not None
    assert after.number > before.number
    assert after.next_update is not None
    assert after.next_update - datetime.now(timezone.utc) > timedelta(days=89)
    assert cloud.modifies().count(iid) == 2  # set-up + the refresh
    sent, line = cloud.audit_lines()  # `sent` as the call returned, then the outcome
    assert line["instance"] == iid and line["action"] == "modify-ssl:crl"
    assert line["outcome"] == "ok" and line["request_id"]
    assert (sent["outcome"], sent["request_id"]) == ("sent", line["request_id"])
    rerun = cloud.cli("crl", "refresh", iid, "--ca-dir", ca_dir)
    assert rerun.exit_code == 0 and "nothing to do" in rerun.stderr
    assert cloud.modifies().count(iid) == 2 and len(cloud.audit_lines()) == 2


def test_min_remaining_longer_than_the_crl_makes_it_due(cloud: Cloud, ca_dir: Path) -> None:
    iid = cloud.emu.instance_ids[1]
    cloud.configure(iid, ca_dir, crl_days=60)
    result = cloud.cli(
        "--json", "crl", "refresh", iid, "--ca-dir", ca_dir, "--min-remaining", "90d", "--no-wait"
    )
    assert result.exit_code == 0, result.stderr
    (entry,) = result.json()["instances"]
    assert entry["status"] == "sent" and "under 90 days" in entry["reason"]
    assert entry["size"] > 0 and entry["request_id"]
    assert entry["plan"]["effect"] == "restart"


def test_a_revocation_not_yet_live_is_uploaded(cloud: Cloud, tmp_path: Path) -> None:
    ca = make_store(tmp_path / "ca-rev")
    iid = cloud.emu.instance_ids[2]
    cloud.configure(iid, ca)
    with CaStore.open(ca) as store:
        store.unlock(None)
        now = datetime.now(timezone.utc)
        issued = store.issue(user="mallory", key_type=KeyType.EC_P256, days=30, now=now)
        store.revoke(serial=issued.record.serial, now=now)
    serial = issued.record.serial
    assert serial not in cloud.crl_info(iid).revoked_serials
    result = cloud.cli("--json", "crl", "refresh", iid, "--ca-dir", ca, "--no-wait")
    assert result.exit_code == 0, result.stderr
    (entry,) = result.json()["instances"]
    assert entry["status"] == "sent" and entry["entries"] == 1
    assert "not yet on the instance" in entry["reason"]
    cloud.settle()
    assert serial in cloud.crl_info(iid).revoked_serials
    assert cloud.cli("crl", "refresh", iid, "--ca-dir", ca).exit_code == 0
    assert cloud.modifies().count(iid) == 2  # set-up + one refresh, not two


def test_a_store_renewed_but_not_yet_applied_still_refreshes_and_checks_the_instance(
    cloud: Cloud, tmp_path: Path
) -> None:
    """Between `ca renew` and the apply that puts the renewed CA on the instance, the
    instance holds the previous certificate of the same CA: the store's CRLs are still its
    CRLs (same name, key and key identifier), so `check` compares revocations and `crl refresh`
    uploads, instead of calling the store foreign."""
    ca = make_store(tmp_path / "ca-renewed")
    iid = cloud.emu.instance_ids[2]
    cloud.configure(iid, ca)
    with CaStore.open(ca) as store:
        previous = crypto.fingerprint(store.ca_cert)
        store.unlock(None)
        now = datetime.now(timezone.utc)
        store.renew_ca(days=7300, now=now)
        issued = store.issue(user="mallory", key_type=KeyType.EC_P256, days=30, now=now)
        store.revoke(serial=issued.record.serial, now=now)
    checked = cloud.cli("--json", "check", iid, "--ca-dir", ca)
    assert checked.exit_code == 10
    (finding,) = [
        f for f in checked.json()["instances"][0]["findings"] if f["check"] == "revocations"
    ]
    assert finding["severity"] == "critical" and issued.record.serial_hex in finding["msg"]
    result = cloud.cli("--json", "crl", "refresh", iid, "--ca-dir", ca, "--no-wait")
    assert result.exit_code == 0, result.stderr
    assert result.json()["instances"][0]["status"] == "sent"
    cloud.settle()
    assert issued.record.serial in cloud.crl_info(iid).revoked_serials
    ssl = cloud.api.describe_ssl(iid)
    assert crypto.pem_fingerprints((ssl.client_ca_pem or "").encode(), source=iid) == {previous}


def test_dry_run_signs_nothing_and_sends_nothing(cloud: Cloud, ca_dir: Path) -> None:
    iid = cloud.emu.instance_ids[0]
    cloud.configure(iid, ca_dir, crl_days=5)
    with CaStore.open(ca_dir) as store:
        number = store.next_crl_number()
    result = cloud.cli("--json", "crl", "refresh", iid, "--ca-dir", ca_dir, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.json()["instances"][0]["status"] == "would-refresh"
    assert "RESTARTS the instance" in result.stderr
    assert cloud.modifies().count(iid) == 1 and cloud.audit_lines() == []
    with CaStore.open(ca_dir) as store:
        assert store.next_crl_number() == number


# ------------------------------------------------------------------ the maintenance window


def test_outside_the_window_a_due_refresh_is_deferred_unless_now(
    cloud: Cloud, ca_dir: Path
) -> None:
    iid = cloud.emu.instance_ids[1]
    cloud.configure(iid, ca_dir, crl_days=5)
    now = datetime.now(timezone.utc)
    outside = _local_window(now, 1, 2)
    result = cloud.cli(
        "--json", "crl", "refresh", iid, "--ca-dir", ca_dir, "--window", outside, clock=now
    )
    assert result.exit_code == 0, result.stderr  # a cron job must not alarm
    assert result.json()["instances"][0]["status"] == "deferred"
    assert "outside the window" in result.stderr
    assert cloud.modifies().count(iid) == 1 and cloud.audit_lines() == []
    forced = cloud.cli(
        "crl",
        "refresh",
        iid,
        "--ca-dir",
        ca_dir,
        "--window",
        outside,
        "--now",
        "--no-wait",
        clock=now,
    )
    assert forced.exit_code == 0, forced.stderr
    assert cloud.modifies().count(iid) == 2 and len(cloud.audit_lines()) == 1


def test_inside_the_window_it_uploads(cloud: Cloud, ca_dir: Path) -> None:
    iid = cloud.emu.instance_ids[2]
    cloud.configure(iid, ca_dir, crl_days=5)
    now = datetime.now(timezone.utc)
    inside = _local_window(now, -1, 1)
    result = cloud.cli(
        "crl", "refresh", iid, "--ca-dir", ca_dir, "--window", inside, "--no-wait", clock=now
    )
    assert result.exit_code == 0, result.stderr
    assert cloud.modifies().count(iid) == 2


@pytest.mark.parametrize(
    ("window", "inside", "outside"),
    [
        ("02:00-04:00", ["02:00", "03:59"], ["01:59", "04:00", "12:00"]),
        ("22:30-01:00", ["22:30", "23:59", "00:00", "00:59"], ["01:00", "12:00", "22:29"]),
    ],
)
def test_window_parsing_and_midnight_wrap(
    window: str, inside: list[str], outside: list[str]
) -> None:
    win = Window.parse(window)
    assert str(win) == window
    day = datetime.now().astimezone().replace(second=0, microsecond=0)

    def at(hhmm: str) -> datetime:
        h, m = (int(x) for x in hhmm.split(":"))
        return day.replace(hour=h, minute=m)

    assert all(win.contains(at(t)) for t in inside)
    assert not any(win.contains(at(t)) for t in outside)


@pytest.mark.parametrize("bad", ["2-4", "25:00-01:00", "02:00-02:00", "02:60-03:00"])
def test_bad_windows_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        Window.parse(bad)


# ------------------------------------------------------------------ refusals and budgets


def test_an_instance_without_a_client_ca_is_refused(cloud: Cloud, ca_dir: Path) -> None:
    iid = cloud.emu.instance_ids[0]
    result = cloud.cli("crl", "refresh", iid, "--ca-dir", ca_dir)
    assert result.exit_code == 3
    assert "has no client CA" in result.stderr
    assert cloud.modifies() == []


def test_a_bundle_ca_without_its_store_is_refused_before_signing(
    cloud: Cloud, ca_dir: Path, tmp_path: Path
) -> None:
    iid = cloud.emu.instance_ids[1]
    other = make_store(tmp_path / "other", cn="other-ca")
    cloud.configure(iid, ca_dir, crl_days=5)
    result = cloud.cli("crl", "refresh", iid, "--ca-dir", other)
    assert result.exit_code == 3 and "pass the CA store that issued it" in result.stderr
    assert cloud.modifies().count(iid) == 1


def test_size_above_the_budget_is_a_warning(cloud: Cloud, ca_dir: Path) -> None:
    iid = cloud.emu.instance_ids[2]
    cloud.configure(iid, ca_dir, crl_days=5)
    result = cloud.cli("crl", "refresh", iid, "--ca-dir", ca_dir, "--max-size", "100", "--no-wait")
    assert result.exit_code == 0, result.stderr
    assert "above the 100-byte budget" in result.stderr


def test_days_must_outlast_min_remaining(cloud: Cloud, ca_dir: Path) -> None:
    iid = cloud.emu.instance_ids[0]
    result = cloud.cli("crl", "refresh", iid, "--ca-dir", ca_dir, "--days", "20")
    assert result.exit_code == 2 and "--min-remaining" in result.stderr
    assert cloud.emu.requests == []


def test_json_error_document_for_a_usage_error(cloud: Cloud) -> None:
    result = cloud.cli("--json", "crl", "refresh", "pgm-x")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["ok"] is False
