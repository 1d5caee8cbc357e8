"""The pure parts of `rdsssl service-profile record`: timings read off sampled sequences, the
URL-limit search, and the steps (and restarts) announced before a recording."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from rdsssl.models import AclMode, InstanceInfo, SslState
from rdsssl.ops.profile_calls import Original
from rdsssl.ops.profile_recorder import describe_steps, planned_steps
from rdsssl.ops.profile_session import URL_RESOLUTION, URL_SEARCH_MAX, search_url_limit
from rdsssl.ops.profile_timeline import NEW, OLD, Sample, analyse, restart_statuses

RUN, MOD = "Running", "SSL_MODIFYING"


def _seq(*rows: tuple[float, str, str, str]) -> list[Sample]:
    return [Sample(t, status, lms, readback) for t, status, lms, readback in rows]


def test_a_change_in_progress_at_once_has_no_lag_and_no_early_readback() -> None:
    samples = _seq(
        (0.01, MOD, "setting", NEW),
        (1.0, MOD, "setting", NEW),
        (2.01, RUN, "success", NEW),
    )
    timing = analyse(samples)
    assert (timing.status_lag, timing.early_readback, timing.busy) == (0.01, 0.0, 2.0)
    assert timing.saw_progress


def test_lag_then_early_readback_then_the_restart() -> None:
    samples = _seq(
        (0.0, RUN, "", OLD),
        (1.5, RUN, "", OLD),
        (3.1, RUN, "success", NEW),  # the change shows: new values, still Running
        (4.0, RUN, "success", NEW),
        (5.2, MOD, "setting", NEW),  # the restart begins
        (6.0, "Rebooting", "setting", NEW),
        (8.3, RUN, "success", NEW),
    )
    timing = analyse(samples)
    assert timing.status_lag == 3.1
    assert timing.early_readback == pytest.approx(2.1)
    assert timing.busy == pytest.approx(3.1)
    assert restart_statuses(samples) == ["Rebooting"]


def test_a_setting_status_alone_counts_as_progress() -> None:
    samples = _seq(
        (0.0, RUN, "success", OLD), (1.0, RUN, "setting", OLD), (2.0, RUN, "success", NEW)
    )
    timing = analyse(samples)
    assert (timing.status_lag, timing.busy) == (1.0, 1.0)


def test_a_change_never_seen_in_progress_has_no_busy_time() -> None:
    samples = _seq(
        (0.0, RUN, "success", OLD), (1.0, RUN, "success", NEW), (2.0, RUN, "success", NEW)
    )
    timing = analyse(samples)
    assert (timing.status_lag, timing.early_readback, timing.busy) == (1.0, 0.0, None)
    assert not timing.saw_progress
    assert restart_statuses(samples) == []


def test_failed_polls_are_kept_in_the_sequence_but_ignored_by_the_analysis() -> None:
    samples = [
        Sample(0.0, error="IncorrectDBInstanceState"),
        *_seq((1.0, MOD, "setting", NEW), (2.0, RUN, "success", NEW)),
    ]
    assert not samples[0].in_progress and not samples[0].settled
    assert samples[0].to_json() == {"t": 0.0, "error_code": "IncorrectDBInstanceState"}
    assert samples[1].to_json() == {
        "t": 1.0,
        "status": MOD,
        "last_modify_status": "setting",
        "readback": NEW,
    }
    assert samples[0].describe() == "0.0s error IncorrectDBInstanceState"
    assert samples[2].describe() == "2.0s Running / success / read-back new"
    timing = analyse(samples)
    assert (timing.status_lag, timing.busy) == (1.0, 1.0)


@pytest.mark.parametrize("limit", [1024, 5000, 8192, 8200, 32768 + 100, 64000, 700, 300])
def test_the_url_search_finds_the_largest_multiple_of_the_resolution_that_passes(
    limit: int,
) -> None:
    calls: list[int] = []

    def fits(size: int) -> bool:
        calls.append(size)
        return size <= limit

    found = search_url_limit(fits)
    assert found == limit // URL_RESOLUTION * URL_RESOLUTION
    assert fits(found) and not fits(found + URL_RESOLUTION)
    assert len(calls) <= 12  # about log2(63 KiB / 256) calls, plus the two bounds


def test_the_url_search_reports_no_limit_in_one_call_when_the_maximum_passes() -> None:
    calls: list[int] = []

    def fits(size: int) -> bool:
        calls.append(size)
        return True

    assert search_url_limit(fits) is None
    assert calls == [URL_SEARCH_MAX]


def _original(*, ca: bool) -> Original:
    info = InstanceInfo(
        "pgm-x", "cn-hangzhou", "Running", "Unlock", "PostgreSQL", "15.0", "cloud_essd",
        "pgm-x.pg.rds.aliyuncs.com", 5432, "Postpaid",
    )  # fmt: skip
    ssl = SslState(
        ssl_enabled=True, ca_type="aliyun", connection_string="pgm-x.pg.rds.aliyuncs.com",
        server_cert_pem="", server_ca_url="", ssl_expire_time=datetime.now(timezone.utc),
        require_update=False, client_ca_pem="-----BEGIN CERTIFICATE-----" if ca else None,
        crl_pem=None, acl=AclMode.CERT if ca else AclMode.PREFER,
        replication_acl=AclMode.CERT if ca else AclMode.PREFER, last_modify_status="success",
        modify_status_reason="",
    )  # fmt: skip
    return Original(info, ssl)


@pytest.mark.parametrize(("ca", "restarts"), [(False, 2), (True, 3)])
def test_every_restart_is_announced(ca: bool, restarts: int) -> None:
    steps = planned_steps(_original(ca=ca))
    assert sum(s.effect == "restart" for s in steps) == restarts
    assert [s.effect for s in steps].count("acl-lock") == 1
    lines = describe_steps(steps)
    assert sum("RESTART ~3 min" in line for line in lines) == restarts
    assert f"{restarts} restart(s)" in lines[-1]
    assert f"about {3 * restarts + 1} minutes" in lines[-1]
    assert ("disable the client CA (what the ACL" in "\n".join(lines)) is ca
