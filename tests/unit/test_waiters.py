"""Waiters: scripted observations, a fake clock and an injected sleep; one behaviour per test."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest

from rdsssl.errors import ApiError, ChangeFailed, InstanceNotFound, Throttled, WaiterTimeout
from rdsssl.models import AclMode, InstanceInfo, Observation, SslState
from rdsssl.waiters import (
    Progress,
    WaiterSpec,
    acl_applied,
    instance_ready,
    ssl_applied,
    wait_until,
)

NEW_CA = "-----BEGIN CERTIFICATE-----\nnew\n-----END CERTIFICATE-----\n"
OLD_CA = "-----BEGIN CERTIFICATE-----\nold\n-----END CERTIFICATE-----\n"

INFO = InstanceInfo(
    instance_id="pgm-1",
    region="cn-hangzhou",
    status="Running",
    lock_mode="Unlock",
    engine="PostgreSQL",
    engine_version="15.0",
    storage_type="cloud_essd",
    connection_string="pgm-1.pg.rds.aliyuncs.com",
    port=5432,
    pay_type="Postpaid",
)
SSL = SslState(
    ssl_enabled=True,
    ca_type="aliyun",
    connection_string=INFO.connection_string,
    server_cert_pem="",
    server_ca_url="",
    ssl_expire_time=None,
    require_update=False,
    client_ca_pem=OLD_CA,
    crl_pem=None,
    acl=AclMode.PREFER,
    replication_acl=None,
    last_modify_status="success",
    modify_status_reason="",
)


def obs(
    status: str = "Running",
    modify: str = "success",
    ca: str | None = OLD_CA,
    reason: str = "",
    acl: AclMode | None = AclMode.PREFER,
) -> Observation:
    return Observation(
        replace(INFO, status=status),
        replace(
            SSL, last_modify_status=modify, modify_status_reason=reason, client_ca_pem=ca, acl=acl
        ),
        None,
        0.0,
    )


def has_new_ca(ssl: SslState) -> bool:
    return ssl.client_ca_pem == NEW_CA


class FakeTime:
    """A clock that only moves when the waiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


Observe = Callable[[], Observation]


def scripted(items: Sequence[Observation | Exception]) -> tuple[Observe, list[int]]:
    """An observe() returning (or raising) the items in order, then repeating the last one."""
    calls = [0]

    def observe() -> Observation:
        item = items[min(calls[0], len(items) - 1)]
        calls[0] += 1
        if isinstance(item, Exception):
            raise item
        return item

    return observe, calls


def run(
    spec: WaiterSpec,
    observe: Observe,
    t: FakeTime,
    *,
    timeout: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Observation:
    return wait_until(
        spec,
        observe,
        sleep=t.sleep,
        clock=t.clock,
        rng=random.Random(7),
        timeout=timeout,
        on_progress=on_progress,
    )


def test_success_returns_the_observation_that_matched() -> None:
    done = obs(ca=NEW_CA)
    observe, calls = scripted([obs("SSL_MODIFYING", "setting"), done])
    t = FakeTime()
    assert run(ssl_applied(has_new_ca), observe, t) is done
    assert calls[0] == 2
    assert len(t.sleeps) == 1


def test_post_call_race_running_with_old_config_is_not_success() -> None:
    observe, calls = scripted([obs(), obs(), obs("SSL_MODIFYING", "setting"), obs(ca=NEW_CA)])
    result = run(ssl_applied(has_new_ca), observe, FakeTime())
    assert result.ssl is not None and result.ssl.client_ca_pem == NEW_CA
    assert calls[0] == 4


def test_failed_is_terminal_and_reports_the_reason() -> None:
    failed = obs("Running", "failed", reason="invalid client CA certificate")
    observe, calls = scripted([obs("SSL_MODIFYING", "setting"), failed])
    with pytest.raises(ChangeFailed) as caught:
        run(ssl_applied(has_new_ca), observe, FakeTime())
    assert "invalid client CA certificate" in str(caught.value)
    assert caught.value.waiter == "SslApplied"
    assert caught.value.last_observation is failed
    assert calls[0] == 2


def test_stale_failure_from_an_earlier_change_waits_for_a_transition() -> None:
    stale = obs("Running", "failed", reason="an older change")
    observe, calls = scripted([stale, obs("SSL_MODIFYING", "setting"), obs(ca=NEW_CA)])
    result = run(ssl_applied(has_new_ca, stale_failure=True), observe, FakeTime())
    assert result.ssl is not None and result.ssl.client_ca_pem == NEW_CA
    assert calls[0] == 3


def test_deleting_is_terminal() -> None:
    observe, calls = scripted([obs("SSL_MODIFYING", "setting"), obs("Deleting", "setting")])
    with pytest.raises(ChangeFailed, match="Deleting"):
        run(ssl_applied(has_new_ca), observe, FakeTime())
    assert calls[0] == 2


def test_instance_not_found_while_polling_is_terminal() -> None:
    gone = InstanceNotFound("gone", code="InvalidDBInstanceId.NotFound")
    observe, _ = scripted([obs("SSL_MODIFYING", "setting"), gone])
    with pytest.raises(ChangeFailed) as caught:
        run(ssl_applied(has_new_ca), observe, FakeTime())
    assert caught.value.last_observation.error_code == "InvalidDBInstanceId.NotFound"


def test_transient_api_error_while_polling_is_retried() -> None:
    throttled = Throttled("slow down", code="Throttling.User", retryable=True)
    busy_5xx = ApiError("oops", code="InternalError", retryable=True)
    observe, calls = scripted([throttled, busy_5xx, obs(ca=NEW_CA)])
    result = run(ssl_applied(has_new_ca), observe, FakeTime())
    assert result.ssl is not None and result.ssl.client_ca_pem == NEW_CA
    assert calls[0] == 3


def test_permanent_api_error_while_polling_is_raised_at_once() -> None:
    denied = ApiError("no", code="Forbidden.RAM", retryable=False)
    observe, calls = scripted([denied, obs(ca=NEW_CA)])
    with pytest.raises(ApiError, match=r"Forbidden\.RAM"):
        run(ssl_applied(has_new_ca), observe, FakeTime())
    assert calls[0] == 1


def test_timeout_raises_waiter_timeout_with_the_last_observation() -> None:
    stuck = obs("SSL_MODIFYING", "setting")
    observe, _ = scripted([stuck])
    t = FakeTime()
    with pytest.raises(WaiterTimeout) as caught:
        run(ssl_applied(has_new_ca), observe, t, timeout=60)
    error = caught.value
    assert error.last_observation is stuck
    assert error.elapsed == t.now
    assert t.now <= 60  # stop_before_delay: no sleep runs past the deadline
    assert "SslApplied" in str(error) and "SSL_MODIFYING" in str(error)


def test_progress_callback_gets_name_status_elapsed_and_next_delay() -> None:
    seen: list[Progress] = []
    observe, _ = scripted([obs("SSL_MODIFYING", "setting"), obs(ca=NEW_CA)])
    t = FakeTime()
    run(ssl_applied(has_new_ca), observe, t, on_progress=seen.append)
    assert len(seen) == 1
    assert seen[0].waiter == "SslApplied"
    assert "SSL_MODIFYING" in seen[0].status and "setting" in seen[0].status
    assert seen[0].elapsed == 0.0
    assert seen[0].next_delay == t.sleeps[0]


def test_acl_applied_needs_the_acl_read_back() -> None:
    observe, calls = scripted([obs(acl=AclMode.PREFER), obs(acl=AclMode.CERT)])
    result = run(acl_applied(AclMode.CERT), observe, FakeTime())
    assert result.ssl is not None and result.ssl.acl is AclMode.CERT
    assert calls[0] == 2


def test_instance_ready_with_require_transition_ignores_the_first_running() -> None:
    observe, calls = scripted([obs(), obs("SSL_MODIFYING", "setting"), obs()])
    run(instance_ready(require_transition=True), observe, FakeTime())
    assert calls[0] == 3


def test_instance_ready_waits_for_unlock_and_not_setting() -> None:
    locked = Observation(replace(INFO, lock_mode="ManualLock"), SSL, None, 0.0)
    observe, calls = scripted([obs("Running", "setting"), locked, obs()])
    run(instance_ready(), observe, FakeTime())
    assert calls[0] == 3


# ------------------------------------------------------------------ the schedule


class EdgeRandom(random.Random):
    """Jitter pinned to one edge (0.0: -10 %, 0.999: +10 %)."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def ready_at(t: FakeTime, ready: float) -> Callable[[], Observation]:
    """The instance restarts until `ready` seconds, then reads back the new config."""

    def observe() -> Observation:
        if t.now < ready:
            return obs("SSL_MODIFYING", "setting")
        return obs(ca=NEW_CA)

    return observe


def polls_until(ready: float, rng: random.Random) -> tuple[int, float]:
    t = FakeTime()
    base = ready_at(t, ready)
    calls = [0]

    def observe() -> Observation:
        calls[0] += 1
        return base()

    wait_until(ssl_applied(has_new_ca), observe, sleep=t.sleep, clock=t.clock, rng=rng)
    return calls[0], t.now


@pytest.mark.parametrize(
    "rng",
    [EdgeRandom(0.0), EdgeRandom(0.999), random.Random(1)],
    ids=["jitter-low", "jitter-high", "seeded"],
)
def test_a_three_minute_restart_costs_at_most_one_call_per_three_seconds(
    rng: random.Random,
) -> None:
    calls, returned = polls_until(180.0, rng)
    assert calls <= 60
    assert returned >= 180.0


@pytest.mark.parametrize("ready", [0.5, 1.5, 3.0, 5.0])
@pytest.mark.parametrize(
    "rng",
    [EdgeRandom(0.0), EdgeRandom(0.999), random.Random(2)],
    ids=["jitter-low", "jitter-high", "seeded"],
)
def test_a_short_wait_returns_within_two_seconds_of_ready(
    ready: float,
    rng: random.Random,
) -> None:
    _, returned = polls_until(ready, rng)
    assert ready <= returned <= ready + 2.0


def test_the_delay_grows_and_is_capped() -> None:
    spec = ssl_applied(has_new_ca)
    pinned = EdgeRandom(0.5)  # no jitter
    delays = [spec.delay_for(n, pinned) for n in range(1, 12)]
    assert delays[0] == pytest.approx(1.0)
    assert delays == sorted(delays)
    assert max(delays) == pytest.approx(5.0)
