"""rdsssl.ops.fleet: isolation of failures, exit-code aggregation, real concurrency (proved with
barriers, never with timings), the rate limiter on a fake clock, and instance selection."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

from rdsssl.errors import (
    ApiError,
    ConfigError,
    ExitCode,
    InstanceNotFound,
    NotFoundError,
    UsageError,
    WaiterTimeout,
)
from rdsssl.models import InstanceInfo, NetInfo, SslModifyRequest, SslState
from rdsssl.ops import fleet

from .fakes import FakeApi, instance_info, ssl_state


def _outcome(code: int) -> fleet.Outcome[None]:
    return fleet.Outcome("pgm-x", code in (0, 10), None, None, code, 0.0)


# ------------------------------------------------------------------ run


def test_one_failure_never_stops_the_others() -> None:
    def work(item: fleet.Item) -> str:
        iid = fleet.instance_id_of(item)
        if iid == "pgm-api":
            raise InstanceNotFound("not found", code="InvalidDBInstanceId.NotFound")
        if iid == "pgm-bug":
            raise ZeroDivisionError("boom")
        return iid.upper()

    items: list[fleet.Item] = ["pgm-a", "pgm-api", "pgm-b", "pgm-bug", "pgm-c"]
    outcomes = fleet.run(items, work, concurrency=2)
    assert [o.instance_id for o in outcomes] == items  # input order, whatever finished first
    assert [o.ok for o in outcomes] == [True, False, True, False, True]
    assert [o.result for o in outcomes if o.ok] == ["PGM-A", "PGM-B", "PGM-C"]
    assert isinstance(outcomes[1].error, InstanceNotFound)
    assert outcomes[1].exit_code == ExitCode.API_ERROR
    assert isinstance(outcomes[3].error, ZeroDivisionError)
    assert outcomes[3].exit_code == ExitCode.UNEXPECTED
    assert fleet.worst_exit_code(outcomes) == ExitCode.API_ERROR


def test_items_with_desired_entries_and_exit_code_of_results() -> None:
    seen: list[str] = []
    outcomes = fleet.run(
        ["pgm-a", "pgm-b"],
        lambda item: fleet.instance_id_of(item) == "pgm-b",
        exit_code_of=lambda needs: int(ExitCode.NEEDS_ACTION if needs else ExitCode.OK),
        on_done=lambda o: seen.append(o.instance_id),
    )
    assert [o.exit_code for o in outcomes] == [0, 10]
    assert all(o.ok for o in outcomes)
    assert sorted(seen) == ["pgm-a", "pgm-b"]
    assert fleet.worst_exit_code(outcomes) == ExitCode.NEEDS_ACTION
    assert fleet.run([], lambda item: None) == []


@pytest.mark.parametrize(
    ("codes", "worst"),
    [
        ([], 0),
        ([0, 0], 0),
        ([0, 10, 0], 10),
        ([10, 4, 0], 4),
        ([3, 5], 5),
        ([4, 130, 10], 130),
        ([1, 10], 1),
    ],
)
def test_worst_exit_code_errors_beat_needs_action(codes: list[int], worst: int) -> None:
    assert fleet.worst_exit_code([_outcome(c) for c in codes]) == worst


def test_workers_really_run_at_the_same_time_and_never_more_than_asked() -> None:
    # With concurrency 2, pairs meet at a 2-party barrier: that proves two run at once
    # (sequential workers would break the barrier at its timeout), and the active count
    # proves no third runs beside them.
    barrier = threading.Barrier(2, timeout=10)
    lock = threading.Lock()
    active = [0]
    peak = [0]

    def work(item: fleet.Item) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            barrier.wait()
        finally:
            with lock:
                active[0] -= 1

    outcomes = fleet.run([f"pgm-{n}" for n in range(6)], work, concurrency=2)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert peak[0] == 2


def test_all_items_start_together_when_concurrency_allows() -> None:
    started = [threading.Event() for _ in range(5)]

    def work(item: fleet.Item) -> int:
        n = int(fleet.instance_id_of(item))
        started[n].set()
        return sum(e.wait(10) for e in started)  # each waits for all the others

    outcomes = fleet.run([str(n) for n in range(5)], work, concurrency=5)
    assert [o.result for o in outcomes] == [5] * 5


def test_concurrency_below_one_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        fleet.run(["pgm-a"], lambda item: None, concurrency=0)


def test_sleeper_ends_waits_once_cancelled() -> None:
    cancel = threading.Event()
    sleep = fleet.sleeper(cancel)
    sleep(0)  # not cancelled: returns
    cancel.set()
    with pytest.raises(fleet.Interrupted):
        sleep(3600)  # returns at once, raising, instead of sleeping an hour
    outcomes = fleet.run(["pgm-a"], lambda item: sleep(3600))
    assert outcomes[0].exit_code == ExitCode.INTERRUPTED and not outcomes[0].ok


def test_wait_errors_keep_their_exit_code() -> None:
    def work(item: fleet.Item) -> None:
        raise WaiterTimeout("not done", waiter="SslApplied")

    assert fleet.run(["pgm-a"], work)[0].exit_code == ExitCode.WAIT_FAILED


# ------------------------------------------------------------------ rate limiter


class FakeClock:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def test_rate_limiter_spaces_calls_by_one_over_the_rate() -> None:
    clock = FakeClock()
    limiter = fleet.RateLimiter(10, clock=clock, sleep=clock.sleep)
    waits = [round(limiter.acquire(), 6) for _ in range(4)]
    assert waits == [0.0, 0.1, 0.1, 0.1]
    assert clock.now == pytest.approx(0.3)
    clock.now += 5.0  # idle: no debt carried over, and no burst saved up beyond `burst`
    assert [round(limiter.acquire(), 6) for _ in range(2)] == [0.0, 0.1]


def test_rate_limiter_allows_a_burst_then_paces() -> None:
    clock = FakeClock()
    limiter = fleet.RateLimiter(2, burst=3, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire() == pytest.approx(0.5)


def test_rate_limiter_gives_each_thread_its_own_slot() -> None:
    clock = FakeClock()  # never advances: sleeps are only recorded
    limiter = fleet.RateLimiter(10, clock=clock, sleep=lambda s: None)
    waits: list[float] = []
    lock = threading.Lock()

    def grab() -> None:
        wait = limiter.acquire()
        with lock:
            waits.append(round(wait, 6))

    threads = [threading.Thread(target=grab) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == [round(n * 0.1, 6) for n in range(40)]


def test_rate_limiter_refuses_nonsense() -> None:
    with pytest.raises(UsageError):
        fleet.RateLimiter(0)
    with pytest.raises(UsageError):
        fleet.RateLimiter(1, burst=0)


# ------------------------------------------------------------------ the limited API and selection


class ListingApi(FakeApi):
    """Answers DescribeDBInstances from a table of instances with tags (AND semantics, as the
    adapter implements them) and counts every call."""

    def __init__(self, tagged: Mapping[str, Mapping[str, str]]) -> None:
        super().__init__(ssl_state())
        self.tagged = tagged
        self.calls: list[str] = []

    def _info(self, iid: str) -> InstanceInfo:
        return instance_info(instance_id=iid, connection_string=f"{iid}.pg")

    def describe_instance(self, instance_id: str) -> InstanceInfo:
        self.calls.append("describe_instance")
        return self._info(instance_id)

    def describe_ssl(self, instance_id: str) -> SslState:
        raise AssertionError("not used")

    def describe_net_info(self, instance_id: str) -> list[NetInfo]:
        self.calls.append("describe_net_info")
        return []

    def list_instances(
        self, *, region: str, tags: Mapping[str, str] | None = None, engine: str = "PostgreSQL"
    ) -> list[InstanceInfo]:
        self.calls.append(f"list_instances:{region}")
        wanted = dict(tags or {})
        return [
            self._info(iid)
            for iid, have in self.tagged.items()
            if all(have.get(k) == v for k, v in wanted.items())
        ]

    def modify_ssl(self, request: SslModifyRequest) -> str:
        self.calls.append("modify_ssl")
        return "req"

    def create_account(self, instance_id: str, name: str, password: str) -> str:
        self.calls.append("create_account")
        return "req"

    def server_ca_pem(self, url: str) -> bytes:
        self.calls.append("server_ca_pem")
        return b""


TAGGED = {
    "pgm-a": {"env": "prod", "team": "db"},
    "pgm-b": {"env": "prod", "team": "web"},
    "pgm-c": {"env": "dev", "team": "db"},
}


def test_limited_api_takes_a_slot_per_call() -> None:
    clock = FakeClock()
    inner = ListingApi(TAGGED)
    api = fleet.limited(inner, fleet.RateLimiter(4, clock=clock, sleep=clock.sleep))
    api.describe_instance("pgm-a")
    api.describe_net_info("pgm-a")
    api.list_instances(region="cn-hangzhou")
    api.modify_ssl(SslModifyRequest("pgm-a", "pgm-a.pg", acl=None))
    api.server_ca_pem("http://x")
    api.create_account("pgm-a", "bob", "Secret-123")
    assert len(inner.calls) == 6
    assert clock.sleeps == [0.25] * 5  # 6 calls at 4/s: five waits of a quarter second
    assert fleet.limited(inner, None) is inner


def test_select_by_ids_keeps_order_and_drops_repeats() -> None:
    api = ListingApi(TAGGED)
    assert fleet.select_instances(api, ids=["pgm-b", "pgm-a", "pgm-b"]) == ["pgm-b", "pgm-a"]
    assert api.calls == []  # ids need no API call


def test_select_by_tags_needs_every_tag() -> None:
    api = ListingApi(TAGGED)
    found = fleet.select_instances(api, tags={"env": "prod", "team": "db"}, region="cn-hangzhou")
    assert found == ["pgm-a"]
    assert fleet.select_instances(api, tags={"team": "db"}, region="cn-hangzhou") == [
        "pgm-a",
        "pgm-c",
    ]
    with pytest.raises(NotFoundError, match="env=qa"):
        fleet.select_instances(api, tags={"env": "qa"}, region="cn-hangzhou")
    with pytest.raises(ConfigError, match="region"):
        fleet.select_instances(api, tags={"env": "prod"})


def test_select_needs_exactly_one_way() -> None:
    api = ListingApi(TAGGED)
    with pytest.raises(UsageError, match="got none"):
        fleet.select_instances(api)
    with pytest.raises(UsageError, match="ID, --tag"):
        fleet.select_instances(api, ids=["pgm-a"], tags={"env": "prod"}, region="r")


def test_select_from_a_desired_state_file(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    path = tmp_path / "rdsssl.toml"
    path.write_text(
        '[defaults]\nca_dir = "ca"\nregion = "cn-hangzhou"\n'
        '[[instances]]\nid = "pgm-c"\nacl = "cert"\n'
        '[[instances]]\ntags = { env = "prod" }\n'
    )
    items = fleet.select_instances(ListingApi(TAGGED), desired_file=path)
    assert [fleet.instance_id_of(i) for i in items] == ["pgm-c", "pgm-a", "pgm-b"]
    first = items[0]
    assert not isinstance(first, str) and first[1].id == "pgm-c"


def test_api_error_in_a_worker_is_data_not_a_crash() -> None:
    def work(item: fleet.Item) -> None:
        raise ApiError("Throttled", code="Throttling.User", retryable=True)

    outcome = fleet.run(["pgm-a"], work)[0]
    assert not outcome.ok and outcome.exit_code == ExitCode.API_ERROR
    assert isinstance(outcome.error, ApiError) and outcome.error.code == "Throttling.User"
