"""The request budget of a fleet run: which rate wins (--rate > the desired-state file's `rate`
> the service profile's `api_rate` > 10), how the file and the profile are validated, and the
cost counted from the limiter's slots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdsssl.errors import ConfigError
from rdsssl.ops.config import load_desired_state
from rdsssl.ops.fleet import DEFAULT_RATE, RateLimiter
from rdsssl.ops.rate import Rate, RateCost, choose_rate
from rdsssl.rds import service_profile
from rdsssl.rds.service_profile import ServiceProfile

BODY = '[defaults]\nca_bundle = "ca.pem"\n\n[[instances]]\nid = "pgm-1"\n'


def desired(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rdsssl.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_file_rate_is_read_at_the_top_level(tmp_path: Path) -> None:
    state = load_desired_state(desired(tmp_path, "rate = 25\n" + BODY))
    assert state.rate == 25.0
    assert load_desired_state(desired(tmp_path, BODY)).rate is None


@pytest.mark.parametrize("value", ["0", "0.05", "5000", '"fast"', "true", "[1]"])
def test_a_bad_file_rate_is_refused(tmp_path: Path, value: str) -> None:
    path = desired(tmp_path, f"rate = {value}\n" + BODY)
    with pytest.raises(ConfigError) as caught:
        load_desired_state(path)
    assert str(caught.value).startswith(f"{path}: rate must be API calls per second")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (BODY.replace("[defaults]\n", "[defaults]\nrate = 5\n"), "defaults"),
        (BODY + "rate = 5\n", "instances[1]"),
    ],
)  # fmt: skip
def test_a_rate_inside_a_table_says_where_it_belongs(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_desired_state(desired(tmp_path, text))
    message = str(caught.value)
    assert where in message and "set it at the top level, before [defaults]" in message


def test_the_service_profile_api_rate(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"format": 1, "name": "acct", "api_rate": 4}))
    assert service_profile.load(path).api_rate == 4
    for bad in (0, -1, "4", True, 1e6):
        path.write_text(json.dumps({"format": 1, "api_rate": bad}))
        with pytest.raises(ConfigError, match="api_rate must be API calls per second"):
            service_profile.load(path)


def test_precedence_flag_then_file_then_service_profile_then_default(tmp_path: Path) -> None:
    state = load_desired_state(desired(tmp_path, "rate = 25\n" + BODY))
    bare = load_desired_state(desired(tmp_path, BODY))
    profile = ServiceProfile(name="acct", api_rate=4.0)
    assert choose_rate(200.0, desired=state, profile=profile) == Rate(200.0, "--rate")
    assert choose_rate(None, desired=state, profile=profile) == Rate(25.0, str(state.path))
    assert choose_rate(None, desired=bare, profile=profile) == Rate(4.0, "service profile acct")
    assert choose_rate(None, desired=bare, profile=ServiceProfile()) == Rate(
        DEFAULT_RATE, "default"
    )
    assert choose_rate(None) == Rate(DEFAULT_RATE, "default")


def test_the_cost_counts_the_limiter_slots() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(10.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(901):  # 100 instances x 9 calls, plus a listing
        limiter.acquire()
    cost = RateCost.of(Rate(10.0, "default"), limiter, instances=100)
    assert cost.calls == limiter.acquired == 901
    assert cost.minimum_seconds == pytest.approx(90.0)
    assert now[0] == pytest.approx(cost.minimum_seconds)  # what the limiter really made us wait
    assert cost.to_json() == {
        "calls_per_second": 10.0,
        "source": "default",
        "instances": 100,
        "calls": 901,
        "minimum_seconds": 90.0,
    }
    assert cost.text().startswith(
        "rate limit 10 calls/s (default): 901 API call(s) for 100 instance(s) (9.0 per "
        "instance) take at least 90.0s at any concurrency"
    )


def test_no_calls_cost_nothing() -> None:
    cost = RateCost(Rate(10.0, "default"), instances=0, calls=0)
    assert cost.minimum_seconds == 0.0
    assert "0 API call(s) for 0 instance(s) take at least 0.0s" in cost.text()


def test_the_emulator_replays_a_profile_with_an_api_rate() -> None:
    from rdsssl.emulator.profiles import parse_profile

    assert parse_profile({"format": 1, "name": "acct", "api_rate": 5}).name == "acct"
