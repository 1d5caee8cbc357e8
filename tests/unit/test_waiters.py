"""Waiters: scripted observations, a fake clock and an injected sleep; one behaviour per test.

Two kinds of observe: `scripted(...)`, a callable returning whole observations (the acceptor
tables), and `FakeRds` read through the real `change.observe` (the one-call-per-poll reads and
the schedule), which counts every Describe call as the API would see it.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import cast

import pytest

from rdsssl.errors import ApiError, ChangeFailed, InstanceNotFound, Throttled, WaiterTimeout
from rdsssl.models import AclMode, InstanceInfo, Observation, SslState
from rdsssl.ops.waiting import observe
from rdsssl.rds.acceptors import instance_ready, ssl_applied
from rdsssl.rds.protocol import RdsApi
from rdsssl.rds.waiters import Progress, WaiterSpec, wait_until

from .fakes import FakeApi, FakeTime

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
    seen_transition: bool = False,
) -> Observation:
    return wait_until(
        spec,
        observe,
        sleep=t.sleep,
        clock=t.clock,
        rng=random.Random(7),
        timeout=timeout,
        on_progress=on_progress,
        seen_transition=seen_transition,
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
    result = run(ssl_applied(has_new_ca), observe, FakeTime(), seen_transition=True)
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


def test_ssl_applied_after_an_acl_change_needs_the_acl_read_back() -> None:
    observe, calls = scripted([obs(acl=AclMode.PREFER), obs(acl=AclMode.CERT)])
    result = run(ssl_applied(lambda ssl: ssl.acl is AclMode.CERT, settle=0.0), observe, FakeTime())
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


SPECS_ON_NEW_CA = {
    "SslApplied": ssl_applied(has_new_ca),
    "SslApplied+acl": ssl_applied(lambda ssl: ssl.acl is AclMode.PREFER),
    "InstanceReady": instance_ready(),
    "InstanceReady+transition": instance_ready(require_transition=True, matches=has_new_ca),
}


@pytest.mark.parametrize("spec", SPECS_ON_NEW_CA.values(), ids=SPECS_ON_NEW_CA.keys())
def test_an_observation_without_the_instance_never_succeeds(spec: WaiterSpec) -> None:
    done = obs(ca=NEW_CA)
    ssl_only = replace(done, instance=None)  # everything else would say "done"
    observe, calls = scripted([obs("SSL_MODIFYING", "setting"), ssl_only])
    with pytest.raises(WaiterTimeout) as caught:
        run(spec, observe, FakeTime(), timeout=30)
    assert caught.value.last_observation is ssl_only
    assert calls[0] > 2


@pytest.mark.parametrize("spec", SPECS_ON_NEW_CA.values(), ids=SPECS_ON_NEW_CA.keys())
def test_an_observation_without_the_ssl_state_never_succeeds(spec: WaiterSpec) -> None:
    status_only = replace(obs(ca=NEW_CA), ssl=None)
    observe, _ = scripted([obs("SSL_MODIFYING", "setting"), status_only])
    with pytest.raises(WaiterTimeout):
        run(spec, observe, FakeTime(), timeout=30)


# ------------------------------------------------------------------ one API call per poll


class FakeRds(FakeApi):
    """The two Describe calls of one instance whose change completes at `ready` on the fake
    clock; before `race` it still reads Running with the old configuration (the post-call
    race). Every call is logged, in order, as the API would see it."""

    def __init__(
        self,
        t: FakeTime,
        ready: float,
        *,
        race: float = 0.0,
        outcome: str = "success",
        running_late: float = 0.0,
        gone_after: float | None = None,
    ) -> None:
        super().__init__(SSL, INFO)
        self.t, self.ready, self.race, self.outcome = t, ready, race, outcome
        self.running_late = running_late  # Running shows this long after LastModifyStatus
        self.gone_after = gone_after  # then InvalidDBInstanceId.NotFound
        self.calls: list[str] = []
        self.faults: dict[str, list[ApiError]] = {"ssl": [], "instance": []}

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.gone_after is not None and self.t.now > self.gone_after:
            raise InstanceNotFound("gone", code="InvalidDBInstanceId.NotFound")
        if self.faults[name]:
            raise self.faults[name].pop(0)

    def describe_ssl(self, instance_id: str) -> SslState:
        self._call("ssl")
        if self.t.now < self.race:
            return SSL
        if self.t.now < self.ready:
            return replace(SSL, client_ca_pem=NEW_CA, last_modify_status="setting")
        if self.outcome == "failed":
            return replace(SSL, last_modify_status="failed", modify_status_reason="bad CA")
        return replace(SSL, client_ca_pem=NEW_CA)

    def describe_instance(self, instance_id: str) -> InstanceInfo:
        self._call("instance")
        busy = self.race <= self.t.now < self.ready + self.running_late
        return replace(INFO, status="SSL_MODIFYING" if busy else "Running")

    def wait(
        self, spec: WaiterSpec, rng: random.Random | None = None, *, seen_transition: bool = False
    ) -> Observation:
        return wait_until(
            spec,
            observe(cast(RdsApi, self), "pgm-1"),
            sleep=self.t.sleep,
            clock=self.t.clock,
            rng=rng or random.Random(3),
            seen_transition=seen_transition,
        )


def test_while_in_progress_each_poll_is_one_describe_ssl_call() -> None:
    t = FakeTime()
    rds = FakeRds(t, ready=60.0)
    rds.wait(ssl_applied(has_new_ca))
    polls = len(t.sleeps) + 1
    assert rds.calls[:2] == ["ssl", "instance"]  # the first poll reads both
    assert rds.calls[2:-2] == ["ssl"] * (polls - 2)  # then the SSL state alone...
    assert rds.calls[-2:] == ["ssl", "instance"]  # ...until it reads back as sent


def test_instance_ready_through_the_reads_polls_ssl_alone_while_setting() -> None:
    t = FakeTime()
    rds = FakeRds(t, ready=20.0)
    result = rds.wait(instance_ready(require_transition=True))
    assert result.instance is not None and result.instance.status == "Running"
    assert rds.calls.count("instance") == 2  # the first poll and the one that saw it done
    assert rds.calls.count("ssl") == len(t.sleeps) + 1


def test_success_needs_running_read_after_the_ssl_success_in_the_same_poll() -> None:
    t = FakeTime()
    rds = FakeRds(t, ready=10.0, running_late=3.0)  # Running lags behind `success`
    result = rds.wait(ssl_applied(has_new_ca))
    assert result.instance is not None and result.instance.status == "Running"
    assert t.now >= 13.0
    assert rds.calls.count("instance") >= 3  # confirmed on every poll after `success`


def test_post_call_race_through_the_reads_is_not_success() -> None:
    t = FakeTime()
    rds = FakeRds(t, ready=12.0, race=2.0)  # old config, Running, `success` for 2 s
    result = rds.wait(ssl_applied(has_new_ca))
    assert result.ssl is not None and result.ssl.client_ca_pem == NEW_CA
    assert t.now >= 12.0
    # The race reads `success` but not the new CA: no attribute call needed to reject it.
    assert rds.calls.count("instance") == 2


def test_failed_through_the_reads_is_terminal_without_an_attribute_call() -> None:
    t = FakeTime()
    rds = FakeRds(t, ready=5.0, outcome="failed")
    with pytest.raises(ChangeFailed, match="bad CA"):
        rds.wait(ssl_applied(has_new_ca))
    assert rds.calls[-2:] == ["ssl", "ssl"]  # the `failed` poll read the SSL state alone


def test_a_failed_ssl_read_adds_the_attribute_read_and_never_succeeds() -> None:
    t = FakeTime()
    rds = FakeRds(t, ready=0.5)  # the attribute read of the first poll sees it in progress
    rds.faults["ssl"] = [Throttled("slow down", code="Throttling.User", retryable=True)]
    seen: list[Progress] = []
    wait_until(
        ssl_applied(has_new_ca),
        observe(cast(RdsApi, rds), "pgm-1"),
        sleep=t.sleep,
        clock=t.clock,
        on_progress=seen.append,
    )
    assert rds.calls == ["ssl", "instance", "ssl", "instance"]
    assert "Throttling.User" in seen[0].status  # the first poll was not a success


def test_a_failed_attribute_read_after_ssl_success_is_not_success() -> None:
    t = FakeTime()
    rds = FakeRds(t, ready=0.0)
    rds.faults["instance"] = [ApiError("oops", code="InternalError", retryable=True)]
    result = rds.wait(ssl_applied(has_new_ca), seen_transition=True)
    assert result.instance is not None
    assert rds.calls == ["ssl", "instance", "ssl", "instance"]


@pytest.mark.parametrize(("read", "calls"), [("ssl", ["ssl"]), ("instance", ["ssl", "instance"])])
def test_a_permanent_error_on_either_read_is_raised_at_once(read: str, calls: list[str]) -> None:
    t = FakeTime()
    rds = FakeRds(t, ready=60.0)  # `setting`: the status read must not hide the error
    rds.faults[read] = [ApiError("no", code="Forbidden.RAM")]
    with pytest.raises(ApiError, match=r"Forbidden\.RAM"):
        rds.wait(ssl_applied(has_new_ca))
    assert rds.calls == calls


def test_instance_not_found_on_the_ssl_read_is_terminal_without_an_attribute_call() -> None:
    t = FakeTime()
    rds = FakeRds(t, ready=60.0, gone_after=3.0)
    with pytest.raises(ChangeFailed) as caught:
        rds.wait(ssl_applied(has_new_ca))
    assert caught.value.last_observation.error_code == "InvalidDBInstanceId.NotFound"
    assert rds.calls[-2:] == ["ssl", "ssl"]


def test_a_spec_without_confirm_reads_both_on_every_poll() -> None:
    t = FakeTime()
    rds = FakeRds(t, ready=10.0)
    rds.wait(WaiterSpec("Custom", ssl_applied(has_new_ca).acceptors))
    assert rds.calls.count("ssl") == rds.calls.count("instance") == len(t.sleeps) + 1


# ------------------------------------------------------------------ the schedule


class EdgeRandom(random.Random):
    """Jitter pinned to one edge (0.0: -10 %, 0.999: +10 %)."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def restart(ready: float, seed: int | random.Random) -> tuple[float, int, float]:
    """A change done at `ready`: (lag after ready, API calls, calls per minute of waiting)."""
    t = FakeTime()
    rds = FakeRds(t, ready=ready)
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    rds.wait(ssl_applied(has_new_ca), rng)
    return t.now - ready, len(rds.calls), len(rds.calls) / t.now * 60


@pytest.mark.parametrize("seed", range(10))
def test_a_three_minute_restart_costs_at_most_twenty_api_calls_a_minute(seed: int) -> None:
    lag, calls, per_minute = restart(180.0, seed)
    assert per_minute <= 20.0
    assert calls <= 61
    assert 0.0 <= lag <= 3.4 * 1.1


def test_long_waits_average_at_most_one_call_per_three_seconds() -> None:
    rates = [restart(180.0 + i * 0.37, i)[2] for i in range(40)]  # readiness at every phase
    assert statistics.mean(rates) <= 20.0
    assert restart(1500.0, 0)[2] <= 18.0  # the rate tends to 60 / 3.4 = 17.6 a minute


@pytest.mark.parametrize("around", [5.0, 30.0])
def test_short_waits_return_on_average_within_two_seconds_of_ready(around: float) -> None:
    # Readiness spread over one polling interval around `around`, each with its own jitter.
    lags = [restart(around - 1.7 + i * 0.085, i)[0] for i in range(40)]
    assert statistics.mean(lags) <= 2.0
    assert min(lags) >= 0.0


@pytest.mark.parametrize("ready", [0.5, 1.5, 3.0, 5.0])
@pytest.mark.parametrize(
    "rng",
    [EdgeRandom(0.0), EdgeRandom(0.999), random.Random(2)],
    ids=["jitter-low", "jitter-high", "seeded"],
)
def test_a_change_done_within_five_seconds_is_seen_within_two(
    ready: float, rng: random.Random
) -> None:
    lag, _, _ = restart(ready, rng)
    assert 0.0 <= lag <= 2.0


def test_the_delay_grows_and_is_capped() -> None:
    spec = ssl_applied(has_new_ca)
    pinned = EdgeRandom(0.5)  # no jitter
    delays = [spec.delay_for(n, pinned) for n in range(1, 12)]
    assert delays[0] == pytest.approx(1.0)
    assert delays == sorted(delays)
    assert max(delays) == pytest.approx(3.4)
    assert delays[4] == pytest.approx(1.3**4)  # still growing at the fifth poll


def test_the_schedule_is_configurable_on_the_spec() -> None:
    slow = replace(ssl_applied(has_new_ca), delay=2.0, max_delay=10.0, jitter=0.0)
    t = FakeTime()
    FakeRds(t, ready=60.0).wait(slow)
    assert t.sleeps[0] == pytest.approx(2.0)
    assert max(t.sleeps) == pytest.approx(10.0)
