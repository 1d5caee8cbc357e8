"""`rdsssl check` end to end against state-only emulated instances: exit codes (0 well,
10 needs action, 4 API error), the findings listed, Describe calls only, and the Prometheus
textfile, read back by tests/unit/promtext.py (prometheus_client's parser, promtool)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from rdsssl.emulator.server import Emulator
from rdsssl.models import KeyType
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from tests.e2e.test_crl_refresh import RESTART_SECONDS, Cloud, cloud_for, make_store
from tests.unit.promtext import labels, read_metrics

READ_ONLY = {"DescribeDBInstanceAttribute", "DescribeDBInstanceSSL", "DescribeDBInstances"}


@pytest.fixture(scope="module")
def module_emu() -> Iterator[Emulator]:
    with Emulator(
        instances=2, backend="none", restart_seconds=RESTART_SECONDS, acl_lock_seconds=0.2
    ) as emu:
        yield emu


@pytest.fixture
def cloud(module_emu: Emulator, tmp_path: Path) -> Cloud:
    module_emu.reset()
    return cloud_for(module_emu, tmp_path / "audit.jsonl")


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("check") / "ca")


def _statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {e["instance"]: e.get("status", "error") for e in doc["instances"]}


def _findings(doc: dict[str, Any], iid: str) -> list[dict[str, str]]:
    for entry in doc["instances"]:
        if entry["instance"] == iid:
            return list(entry["findings"])
    raise AssertionError(f"{iid} not in the document")


def test_all_well_exits_0_and_writes_the_textfile(
    cloud: Cloud, ca_dir: Path, tmp_path: Path
) -> None:
    ids = cloud.emu.instance_ids
    for iid in ids:
        cloud.configure(iid, ca_dir)
    start = len(cloud.emu.requests)
    prom = tmp_path / "rdsssl.prom"
    result = cloud.cli("--json", "check", *ids, "--ca-dir", ca_dir, "--prometheus", prom)
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["ok"] is True and doc["needs_action"] is False
    assert _statuses(doc) == dict.fromkeys(ids, "ok")
    assert doc["stores"][0]["status"] == "ok"
    assert {r.action for r in cloud.emu.requests[start:]} <= READ_ONLY  # never a change
    metrics = read_metrics(prom.read_text())
    region = cloud.emu.region
    status = metrics["rdsssl_check_status"].samples
    assert {k for k, v in status.items() if v} == {
        labels(rds_instance=i, region=region, state="ok") for i in ids
    }
    assert len(metrics["rdsssl_crl_next_update_timestamp_seconds"].samples) == 2
    assert metrics["rdsssl_local_revocations_pending"].samples == {
        labels(rds_instance=i, region=region): 0.0 for i in ids
    }
    store = str(ca_dir.resolve())
    assert metrics["rdsssl_ca_check_status"].samples[labels(ca_dir=store, state="ok")] == 1
    names = sorted(p.name for p in tmp_path.iterdir() if "rdsssl" in p.name)
    assert names == ["rdsssl-last-success-check.prom", "rdsssl.prom"]  # no temp file left


def test_a_crl_near_expiry_needs_action(cloud: Cloud, ca_dir: Path, tmp_path: Path) -> None:
    good, near = cloud.emu.instance_ids
    cloud.configure(good, ca_dir)
    cloud.configure(near, ca_dir, crl_days=10)
    prom = tmp_path / "rdsssl.prom"
    result = cloud.cli("check", good, near, "--prometheus", prom)
    assert result.exit_code == 10, result.stderr
    assert near in result.stdout and "rdsssl crl refresh" in result.stdout
    status = read_metrics(prom.read_text())["rdsssl_check_status"].samples
    region = cloud.emu.region
    assert {k for k, v in status.items() if v} == {
        labels(rds_instance=good, region=region, state="ok"),
        labels(rds_instance=near, region=region, state="warning"),
    }
    quiet = cloud.cli("check", good, near, "--crl-min-remaining", "5d")
    assert quiet.exit_code == 0, quiet.stdout


def test_a_local_revocation_not_live_is_critical(cloud: Cloud, tmp_path: Path) -> None:
    ca = make_store(tmp_path / "ca-rev")
    iid = cloud.emu.instance_ids[0]
    cloud.configure(iid, ca)
    with CaStore.open(ca) as store:
        store.unlock(None)
        now = datetime.now(timezone.utc)
        issued = store.issue(user="mallory", key_type=KeyType.EC_P256, days=30, now=now)
        store.revoke(serial=issued.record.serial, now=now)
    result = cloud.cli("--json", "check", iid, "--ca-dir", ca)
    assert result.exit_code == 10
    doc = result.json()
    revocations = [f for f in _findings(doc, iid) if f["check"] == "revocations"]
    assert revocations[0]["severity"] == "critical"
    assert revocations[0]["code"] == "revocations-pending"
    assert issued.record.serial_hex in revocations[0]["msg"]
    assert doc["instances"][0]["pending_revocations"] == 1


def test_a_client_ca_expiring_soon_needs_action(cloud: Cloud, tmp_path: Path) -> None:
    ca = make_store(tmp_path / "short-ca", days=20)
    iid = cloud.emu.instance_ids[1]
    cloud.configure(iid, ca, crl_days=15)
    result = cloud.cli("--json", "check", iid, "--ca-dir", ca, "--crl-min-remaining", "7d")
    assert result.exit_code == 10
    doc = result.json()
    (ca_finding,) = [f for f in _findings(doc, iid) if f["check"] == "client_ca"]
    assert ca_finding["severity"] == "warning" and "rotate" in ca_finding["msg"]
    assert ca_finding["code"] == "expires-soon"
    assert doc["stores"][0]["status"] == "warning"  # the local CA itself


def test_drift_from_the_desired_state_file(cloud: Cloud, ca_dir: Path, tmp_path: Path) -> None:
    iid = cloud.emu.instance_ids[0]
    cloud.configure(iid, ca_dir)
    path = tmp_path / "rdsssl.toml"
    path.write_text(f'[defaults]\nca_dir = "{ca_dir}"\ncrl = true\n[[instances]]\nid = "{iid}"\n')
    same = cloud.cli("check", "-f", path)
    assert same.exit_code == 0, same.stdout + same.stderr
    path.write_text(path.read_text() + 'acl = "cert"\n')
    result = cloud.cli("--json", "check", "-f", path)
    assert result.exit_code == 10
    (drift,) = [f for f in _findings(result.json(), iid) if f["check"] == "drift"]
    assert drift["severity"] == "warning" and drift["code"] == "drift"
    assert "acl: prefer -> cert" in drift["msg"] and f"rdsssl apply -f {path}" in drift["msg"]
    assert not any(r.action == "ModifyDBInstanceSSL" for r in cloud.emu.requests[-4:])


def test_an_instance_that_cannot_be_checked_is_an_error_and_the_rest_still_reported(
    cloud: Cloud, ca_dir: Path, tmp_path: Path
) -> None:
    good = cloud.emu.instance_ids[0]
    cloud.configure(good, ca_dir)
    prom = tmp_path / "rdsssl.prom"
    result = cloud.cli("--json", "check", good, "pgm-doesnotexist00", "--prometheus", prom)
    assert result.exit_code == 4  # an API error wins over "needs action"
    doc = result.json()
    assert doc["ok"] is False and doc["exit_code"] == 4
    assert _statuses(doc) == {good: "ok", "pgm-doesnotexist00": "error"}
    error = doc["instances"][1]["error"]
    assert error["type"] == "InstanceNotFound" and error["exit_code"] == 4
    status = read_metrics(prom.read_text())["rdsssl_check_status"].samples
    gone = labels(rds_instance="pgm-doesnotexist00", region=cloud.emu.region, state="unknown")
    assert status[gone] == 1.0  # the region the selection ran in


def test_without_instances_or_stores_it_is_a_usage_error(cloud: Cloud) -> None:
    result = cloud.cli("check")
    assert result.exit_code == 2 and "--ca-dir" in result.stderr


def test_local_store_only(cloud: Cloud, ca_dir: Path) -> None:
    result = cloud.cli("check", "--ca-dir", ca_dir)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert str(ca_dir) in result.stdout and cloud.emu.requests == []


def test_crl_refresh_records_its_last_success_and_a_failure_leaves_it(
    cloud: Cloud, ca_dir: Path, tmp_path: Path
) -> None:
    iid = cloud.emu.instance_ids[0]
    cloud.configure(iid, ca_dir)
    prom = tmp_path / "rdsssl.prom"
    recorded = tmp_path / "rdsssl-last-success-crl-refresh.prom"
    ok = cloud.cli("crl", "refresh", iid, "--ca-dir", ca_dir, "--prometheus", prom)
    assert ok.exit_code == 0, ok.stderr  # nothing due: a successful run all the same
    family = read_metrics(recorded.read_text())["rdsssl_last_success_timestamp_seconds"]
    (when,) = family.samples.values()
    assert set(family.samples) == {labels(job="crl-refresh")}
    assert abs(when - datetime.now(timezone.utc).timestamp()) < 60
    failed = cloud.cli("crl", "refresh", "pgm-doesnotexist00", "--ca-dir", ca_dir,
                       "--prometheus", prom)  # fmt: skip
    assert failed.exit_code == 4, failed.stderr
    assert read_metrics(recorded.read_text())["rdsssl_last_success_timestamp_seconds"] == family
    assert not prom.exists()  # FILE itself is check's


# --- --nagios: a plugin's exit codes and output --------------------------------------------------


def _plugin(stdout: str) -> tuple[str, str, dict[str, int], list[str]]:
    """(state, text, perfdata, long output) of a plugin's stdout."""
    first, *rest = stdout.splitlines()
    status, _, perf = first.partition("|")
    head, _, text = status.partition(" - ")
    assert head.startswith("RDSSSL ") and "|" not in "".join(rest)
    values = {k: int(v.split(";")[0]) for k, v in (p.split("=") for p in perf.split())}
    return head.removeprefix("RDSSSL "), text, values, rest


def test_nagios_ok_warning_critical(cloud: Cloud, ca_dir: Path, tmp_path: Path) -> None:
    good, near = cloud.emu.instance_ids
    cloud.configure(good, ca_dir)
    cloud.configure(near, ca_dir)
    well = cloud.cli("check", good, near, "--ca-dir", ca_dir, "--nagios")
    assert well.exit_code == 0, well.stderr
    state, text, perf, rest = _plugin(well.stdout)
    assert (state, text, rest) == ("OK", "3 checked, all well", [])
    assert perf == {"checked": 3, "ok": 3, "warning": 0, "unknown": 0, "critical": 0}

    cloud.configure(near, ca_dir, crl_days=10)
    warned = cloud.cli("check", good, near, "--nagios")
    assert warned.exit_code == 1, warned.stdout + warned.stderr
    state, text, perf, rest = _plugin(warned.stdout)
    assert state == "WARNING" and text.startswith(f"2 checked, 1 warning; {near}: warning: ")
    assert perf["warning"] == 1 and perf["ok"] == 1
    assert len(rest) == 1 and rest[0].startswith(f"{near}: warning: ") and "crl refresh" in rest[0]

    with CaStore.open(ca_dir) as store:  # a revoked certificate still accepted: critical
        store.unlock(None)
        now = datetime.now(timezone.utc)
        issued = store.issue(user="eve", key_type=KeyType.EC_P256, days=30, now=now)
        store.revoke(serial=issued.record.serial, now=now)
    prom = tmp_path / "rdsssl.prom"
    critical = cloud.cli(
        "check", good, near, "pgm-doesnotexist00", "--ca-dir", ca_dir, "--nagios",
        "--prometheus", prom,
    )  # fmt: skip
    assert critical.exit_code == 2, critical.stdout + critical.stderr
    state, text, perf, rest = _plugin(critical.stdout)
    assert state == "CRITICAL" and perf["critical"] == 2 and perf["unknown"] == 1
    assert rest[0].split(": ")[1] == "critical" and issued.record.serial_hex in critical.stdout
    assert "pgm-doesnotexist00: unknown: " in critical.stdout
    assert (tmp_path / "rdsssl-last-success-check.prom").is_file()  # the check ran


def test_nagios_unknown_when_an_instance_cannot_be_checked_or_nothing_is_selected(
    cloud: Cloud, ca_dir: Path
) -> None:
    good = cloud.emu.instance_ids[0]
    cloud.configure(good, ca_dir)
    gone = cloud.cli("check", good, "pgm-doesnotexist00", "--nagios")
    assert gone.exit_code == 3
    state, text, perf, _ = _plugin(gone.stdout)
    assert state == "UNKNOWN" and "pgm-doesnotexist00: unknown: " in text and perf["ok"] == 1
    for args in (("check", "--nagios"), ("--json", "check", "--ca-dir", ca_dir, "--nagios")):
        refused = cloud.cli(*args)
        assert refused.exit_code == 3 and refused.stdout.startswith("RDSSSL UNKNOWN - ")


def test_the_server_certificate_expiry_follows_the_emulator_clock(
    cloud: Cloud, tmp_path: Path
) -> None:
    """The cloud certificate (one year) watched as the emulator's clock runs towards its end:
    valid, then a warning inside 30 days (and RequireUpdate), critical inside 7, then expired;
    the gauge holds the certificate's own notAfter throughout."""
    iid = cloud.emu.instance_ids[0]
    ssl = cloud.api.describe_ssl(iid)
    leaf = crypto.load_certificates(ssl.server_cert_pem.encode(), source="ServerCert")[0]
    not_after = leaf.not_valid_after_utc
    prom = tmp_path / "rdsssl.prom"
    seen: dict[int, list[dict[str, str]]] = {}
    for days in (0, 340, 360, 370):
        cloud.emu.clock.advance(days * 86400 - cloud.emu.clock.offset)
        at = datetime.now(timezone.utc) + timedelta(days=days)
        result = cloud.cli("--json", "check", iid, "--prometheus", prom, clock=at)
        assert result.exit_code in (0, 10), result.stderr
        seen[days] = [f for f in _findings(result.json(), iid) if f["check"] == "server_cert"]
        gauge = read_metrics(prom.read_text())[
            "rdsssl_server_certificate_expiration_timestamp_seconds"
        ].samples
        assert gauge == {labels(rds_instance=iid, region=cloud.emu.region): not_after.timestamp()}
    by_code = {days: {f["code"]: f for f in found} for days, found in seen.items()}
    assert by_code[0]["valid"]["severity"] == "ok"
    assert "server-cert-update-required" not in by_code[0]
    for days in (340, 360, 370):  # RDS flags it too, 30 days before its end (the emulator's)
        flag = by_code[days]["server-cert-update-required"]
        assert flag["severity"] == "warning" and f"renew-server-cert {iid}" in flag["msg"]
    soon = by_code[340]["expires-soon"]
    assert soon["severity"] == "warning" and f"renew-server-cert {iid}" in soon["msg"]
    assert by_code[360]["expires-soon"]["severity"] == "critical"
    assert by_code[370]["expired"]["severity"] == "critical"


def test_an_instance_with_ssl_off_and_the_file_s_ssl_key(
    cloud: Cloud, ca_dir: Path, tmp_path: Path
) -> None:
    """SSL off is critical and says how to switch it on; with `ssl = "cloud"` in the file the
    drift also lists SSL coming on; without it, no drift is planned (no endpoint to name)."""
    iid = cloud.emu.instance_ids[0]
    cloud.emu.set_ssl_enabled(iid, False)
    path = tmp_path / "rdsssl.toml"
    path.write_text(f'[defaults]\nca_dir = "{ca_dir}"\n[[instances]]\nid = "{iid}"\n')
    start = len(cloud.emu.requests)
    plain = cloud.cli("--json", "check", "-f", path)
    assert plain.exit_code == 10, plain.stderr
    codes = [f["code"] for f in _findings(plain.json(), iid)]
    assert codes == ["ssl-off"]
    (off,) = _findings(plain.json(), iid)
    assert off["severity"] == "critical" and f"rdsssl instance enable-ssl {iid}" in off["msg"]
    path.write_text(path.read_text() + 'ssl = "cloud"\n')
    wanted = cloud.cli("--json", "check", "-f", path)
    assert wanted.exit_code == 10, wanted.stderr
    (drift,) = [f for f in _findings(wanted.json(), iid) if f["check"] == "drift"]
    assert "ssl: off -> on, a cloud certificate" in drift["msg"]
    assert "client_ca: (none) ->" in drift["msg"]
    assert {r.action for r in cloud.emu.requests[start:]} <= READ_ONLY | {
        "DescribeDBInstanceNetInfo"
    }
