"""`rdsssl_last_success_timestamp_seconds{job=...}`: when a cron job last succeeded, for the
node_exporter textfile collector, so one alert rule catches a job that stopped running or keeps
failing: `time() - rdsssl_last_success_timestamp_seconds{job="crl-refresh"} > 2 * 3600`.

One file per job, next to the textfile the user named (`--prometheus FILE` /
$RDSSSL_PROMETHEUS_FILE): `DIR/rdsssl.prom` gives `DIR/rdsssl-last-success-cert-renew.prom`,
`...-crl-refresh.prom`, `...-rotate.prom` and `...-check.prom`. A job writes only its own file,
so the jobs never race on one file, and a failed run writes nothing: the last success stays
what it was. `check` keeps FILE itself for its gauges. Each file is written by
`prometheus_client.write_to_textfile` (temp file + rename).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge

from rdsssl.errors import InputError
from rdsssl.ops.check_prometheus import write_prometheus

__all__ = ["JOBS", "METRIC", "last_success_file", "last_success_registry", "record_success"]

JOBS = ("cert-renew", "crl-refresh", "rotate", "check")
METRIC = "rdsssl_last_success_timestamp_seconds"


def last_success_file(base: Path, job: str) -> Path:
    """Where `job` records its last success, given the textfile `base` the user named."""
    if job not in JOBS:
        raise InputError(f"unknown job {job!r}: one of {', '.join(JOBS)}")
    return base.with_name(f"{base.stem}-last-success-{job}.prom")


def last_success_registry(job: str, *, now: datetime) -> CollectorRegistry:
    """A registry holding the one sample `METRIC{job=job} now`."""
    registry = CollectorRegistry(auto_describe=True)
    gauge = Gauge(
        METRIC,
        "When this rdsssl job last succeeded (Unix time); failed runs leave it unchanged.",
        ["job"],
        registry=registry,
    )
    gauge.labels(job).set(now.timestamp())
    return registry


def record_success(base: Path, job: str, *, now: datetime) -> Path:
    """Write `job`'s file (atomically) and return its path; InputError when it cannot be
    written."""
    path = last_success_file(base, job)
    write_prometheus(path, last_success_registry(job, now=now))
    return path
