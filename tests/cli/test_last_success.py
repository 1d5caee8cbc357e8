"""`rdsssl_last_success_timestamp_seconds{job=...}` (rdsssl.ops.last_success and the
`@last_success` decorator of rdsssl.cli.last_success): written next to `--prometheus FILE` /
$RDSSSL_PROMETHEUS_FILE by `cert renew`, `rotate ca` and `check` when they succeed; a failed run
or a dry run leaves it as it was. (`crl refresh` is covered in tests/e2e/test_check.py.)"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rdsssl.errors import InputError
from rdsssl.ops.check_prometheus import write_prometheus
from rdsssl.ops.last_success import JOBS, last_success_file, last_success_registry
from tests.cli.helpers import invoke, issue
from tests.unit.promtext import labels, read_metrics

WHEN = datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


def clock(at: datetime = WHEN) -> datetime:
    return at


def last_success(path: Path) -> dict[tuple[tuple[str, str], ...], float]:
    family = read_metrics(path.read_text())["rdsssl_last_success_timestamp_seconds"]
    assert family.type == "gauge"
    return family.samples


def test_one_file_per_job_next_to_the_named_textfile(tmp_path: Path) -> None:
    base = tmp_path / "rdsssl.prom"
    assert [last_success_file(base, j).name for j in JOBS] == [
        "rdsssl-last-success-cert-renew.prom",
        "rdsssl-last-success-crl-refresh.prom",
        "rdsssl-last-success-rotate.prom",
        "rdsssl-last-success-check.prom",
    ]
    with pytest.raises(InputError, match="unknown job"):
        last_success_file(base, "renew")
    path = last_success_file(base, "rotate")
    write_prometheus(path, last_success_registry("rotate", now=WHEN))
    assert last_success(path) == {labels(job="rotate"): WHEN.timestamp()}


def test_cert_renew_records_success_and_a_failed_run_leaves_it(
    ca_dir: Path, tmp_path: Path
) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    issue(ca_dir, "bob", tmp_path / "b", "--days", "5")
    prom = tmp_path / "m" / "rdsssl.prom"
    prom.parent.mkdir()
    recorded = prom.parent / "rdsssl-last-success-cert-renew.prom"
    env = {"RDSSSL_PROMETHEUS_FILE": str(prom)}
    args = ("cert", "renew", "--ca-dir", ca_dir, "--out-root", tmp_path / "out")
    t0 = datetime.now(timezone.utc).replace(microsecond=0)
    dry = invoke(*args, "--dry-run", "--prometheus", prom, clock=lambda: t0)
    assert dry.exit_code == 0, dry.stderr
    assert not recorded.exists()  # a dry run is not a run
    done = invoke(*args, "--user", "alice", "--prometheus", prom, clock=lambda: t0)
    assert done.exit_code == 0, done.stderr
    assert last_success(recorded) == {labels(job="cert-renew"): t0.timestamp()}
    assert not prom.exists()  # FILE itself belongs to `check`
    t1 = t0 + timedelta(hours=1)
    failed = invoke(*args, "--user", "bob", "--deploy-hook", "exit 3", env=env, clock=lambda: t1)
    assert failed.exit_code == 1, failed.stderr  # renewed, but the hook failed
    assert last_success(recorded) == {labels(job="cert-renew"): t0.timestamp()}
    t2 = t0 + timedelta(hours=2)
    again = invoke(*args, "--deploy-hook", "true", env=env, clock=lambda: t2)
    assert again.exit_code == 0, again.stderr  # the hook retried, nothing else due
    assert last_success(recorded) == {labels(job="cert-renew"): t2.timestamp()}


def test_an_unwritable_record_is_a_warning_not_a_failure(ca_dir: Path, tmp_path: Path) -> None:
    prom = tmp_path / "missing-dir" / "rdsssl.prom"
    args = ("cert", "renew", "--ca-dir", ca_dir, "--out-root", tmp_path / "out")
    result = invoke(*args, "--prometheus", prom, clock=clock)
    assert result.exit_code == 0
    assert "cert-renew run succeeded, but its last success was not recorded" in result.stderr
    assert not prom.parent.exists()


def test_check_records_success_also_when_it_needs_action(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    assert invoke("ca", "init", "--ca-dir", ca, "--no-passphrase", "--days", "20").exit_code == 0
    prom = tmp_path / "rdsssl.prom"
    recorded = tmp_path / "rdsssl-last-success-check.prom"
    found = invoke("check", "--ca-dir", ca, env={"RDSSSL_PROMETHEUS_FILE": str(prom)}, clock=clock)
    assert found.exit_code == 10, found.stderr  # the CA expires within 30 days
    assert "rdsssl_ca_check_status" in read_metrics(prom.read_text())
    assert last_success(recorded) == {labels(job="check"): WHEN.timestamp()}
    later = WHEN + timedelta(hours=1)
    broken = invoke("check", "--ca-dir", tmp_path / "nostore", "--prometheus", prom,
                    clock=lambda: later)  # fmt: skip
    assert broken.exit_code == 3, broken.stderr
    assert last_success(recorded) == {labels(job="check"): WHEN.timestamp()}
    status = read_metrics(prom.read_text())["rdsssl_ca_check_status"].samples
    unknown = labels(ca_dir=str((tmp_path / "nostore").resolve()), state="unknown")
    assert status[unknown] == 1.0  # the check file itself is rewritten, with the store unknown


def test_rotate_ca_records_success_but_not_for_a_dry_run(ca_dir: Path, tmp_path: Path) -> None:
    prom = tmp_path / "rdsssl.prom"
    recorded = tmp_path / "rdsssl-last-success-rotate.prom"
    args = ("rotate", "ca", "--ca-dir", ca_dir, "--rollback", "--prometheus", prom)
    dry = invoke(*args, "--dry-run", clock=clock)
    assert dry.exit_code == 0, dry.stderr
    assert not recorded.exists()
    done = invoke(*args, clock=clock)  # no rotation recorded: nothing to roll back, exit 0
    assert done.exit_code == 0, done.stderr
    assert last_success(recorded) == {labels(job="rotate"): WHEN.timestamp()}
    failed = invoke("rotate", "ca", "--ca-dir", tmp_path / "nostore", "--rollback",
                    "--prometheus", prom, clock=lambda: WHEN + timedelta(days=1))  # fmt: skip
    assert failed.exit_code == 3, failed.stderr
    assert last_success(recorded) == {labels(job="rotate"): WHEN.timestamp()}
