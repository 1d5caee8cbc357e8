"""Waits need evidence, and poll where it matters (rdsssl.rds.waiters).

SslApplied counts a change as applied only once it was seen in progress and then finished, or,
if progress was never seen, after the finished state held for the settle period: under a
status lag the change shows late, under early read-back its values show before the restart.
With an expected end (the service profile's timings), polls are sparse until shortly before it
and dense around it: within 2 s of the change going live there, at most ~20 calls a minute on
long restarts.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdsssl.models import InstanceInfo, Observation, SslState
from rdsssl.ops.waiting import observe
from rdsssl.rds.acceptors import ssl_applied
from rdsssl.rds.protocol import RdsApi
from rdsssl.rds.waiters import DENSE, wait_until

from .fakes import FakeApi, FakeTime
from .test_waiters import INFO, NEW_CA, SSL, has_new_ca


class Timeline(FakeApi):
    """An instance whose Describe answers follow a timeline on the fake clock: until `lag` the
    old configuration and Running; then until `lag + early` the NEW values with Running /
    success (early read-back); then `setting` until `live`; then done."""

    def __init__(self, t: FakeTime, *, lag: float, early: float, live: float) -> None:
        super().__init__(SSL, INFO)
        self.t, self.lag, self.early, self.live = t, lag, early, live
        self.timeline: list[tuple[str, float]] = []

    def describe_ssl(self, instance_id: str) -> SslState:
        self.timeline.append(("ssl", self.t.now))
        if self.t.now < self.lag:
            return SSL
        if self.t.now < self.live and self.t.now >= self.lag + self.early:
            return replace(SSL, client_ca_pem=NEW_CA, last_modify_status="setting")
        return replace(SSL, client_ca_pem=NEW_CA)

    def describe_instance(self, instance_id: str) -> InstanceInfo:
        self.timeline.append(("instance", self.t.now))
        restarting = self.lag + self.early <= self.t.now < self.live
        return replace(INFO, status="SSL_MODIFYING" if restarting else "Running")

    def wait(self, *, expected: float | None, settle: float = 10.0, seed: int = 5) -> Observation:
        return wait_until(
            ssl_applied(has_new_ca, expected=expected, settle=settle),
            observe(cast(RdsApi, self), "pgm-1"),
            sleep=self.t.sleep,
            clock=self.t.clock,
            rng=random.Random(seed),
        )


@pytest.mark.parametrize("expected", [None, 30.0])
def test_early_read_back_is_not_taken_for_done(expected: float | None) -> None:
    t = FakeTime()
    rds = Timeline(t, lag=0.0, early=4.0, live=30.0)
    result = rds.wait(expected=expected)
    assert result.at >= 30.0  # not during the 4 s of new values before the restart


@pytest.mark.parametrize("expected", [None, 33.0])
def test_a_change_that_shows_late_is_waited_for(expected: float | None) -> None:
    t = FakeTime()
    rds = Timeline(t, lag=3.0, early=0.0, live=33.0)
    result = rds.wait(expected=expected)
    assert result.at >= 33.0 and result.ssl is not None and result.ssl.client_ca_pem == NEW_CA


def test_a_change_never_seen_in_progress_needs_the_settle_period() -> None:
    t = FakeTime()
    rds = Timeline(t, lag=0.0, early=0.0, live=0.0)  # done before the first read
    result = rds.wait(expected=None, settle=10.0)
    assert 10.0 <= result.at < 15.0
    reads = [at for name, at in rds.timeline if name == "instance"]
    assert len(reads) >= 2  # "stable reads": several polls, each with the status


def test_the_settle_period_restarts_when_the_state_wobbles() -> None:
    t = FakeTime()
    rds = Timeline(t, lag=6.0, early=0.0, live=6.0)  # old values until 6 s, then done at once
    result = rds.wait(expected=None, settle=10.0)
    assert result.at >= 16.0  # stable only from 6 s on: the earlier reads do not count


def _poll_times(expected: float, live: float, seed: int) -> tuple[float, list[float]]:
    t = FakeTime()
    rds = Timeline(t, lag=0.0, early=0.0, live=live)
    result = rds.wait(expected=expected, seed=seed)
    return result.at, [at for name, at in rds.timeline if name == "ssl"]


@pytest.mark.parametrize("expected", [5.0, 20.0, 60.0, 180.0])
def test_returns_within_two_seconds_when_the_change_ends_near_the_expected_time(
    expected: float,
) -> None:
    for live in (expected - 1.5, expected, expected + 1.0, expected + 3.0):
        for seed in range(5):
            returned, _ = _poll_times(expected, live, seed)
            assert 0 <= returned - live <= 2.0, (expected, live, seed, returned)


@pytest.mark.parametrize(("expected", "per_minute"), [(60.0, 20.0), (180.0, 20.0)])
def test_long_restarts_cost_at_most_one_call_per_three_seconds(
    expected: float, per_minute: float
) -> None:
    t = FakeTime()
    rds = Timeline(t, lag=0.0, early=0.0, live=expected)
    rds.wait(expected=expected)
    assert len(rds.timeline) / (t.now / 60) <= per_minute
    assert rds.timeline[0][1] == pytest.approx(DENSE)  # no read right after the call


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    expected=st.floats(min_value=10.0, max_value=600.0),
    offset=st.floats(min_value=-DENSE, max_value=3 * DENSE),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_lag_stays_under_two_seconds_around_the_expected_end(
    expected: float, offset: float, seed: int
) -> None:
    live = expected + offset
    returned, times = _poll_times(expected, live, seed)
    assert returned - live <= 2.0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 8.0 * 1.1  # never sparser than the sparse cap (with jitter)


def test_a_change_much_later_than_expected_is_polled_at_the_cap() -> None:
    returned, _times = _poll_times(20.0, 120.0, seed=1)
    assert returned - 120.0 <= 3.4 * 1.1
