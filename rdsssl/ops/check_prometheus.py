"""The node_exporter textfile of `rdsssl check --prometheus`, built with `prometheus_client`
(a `CollectorRegistry` of gauges, `write_to_textfile`: HELP and TYPE lines, escaping, a temp
file renamed over the old one), so the format is the library's, not ours.

Naming follows node_exporter and cert-manager: a point in time is a `*_timestamp_seconds` gauge
(alert on `... - time() < 14 * 86400`); a status is one-hot, one sample per `state` with 1 for
the current state and 0 for the others, so a rule reads `rdsssl_check_status{state="critical"}
== 1` without knowing an encoding. Instances are labelled `rds_instance` and `region`, never
`instance`: Prometheus sets `instance` to the scrape target and would rename ours to
`exported_instance`. CA stores are labelled by their resolved directory (`ca_dir`, and `ca` on
the per-certificate gauge), which the caller has already de-duplicated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest, write_to_textfile

from rdsssl.errors import InputError
from rdsssl.ops.check_findings import InstanceReport, Severity, StoreReport

__all__ = [
    "STATES",
    "InstanceSample",
    "StoreSample",
    "check_registry",
    "prometheus_text",
    "write_prometheus",
]

STATES = ("ok", "warning", "critical", "unknown")  # the one-hot `state` label, in this order

_INSTANCE = ("rds_instance", "region")


@dataclass(frozen=True)
class InstanceSample:
    """One selected instance: its report, or None when it could not be checked (state
    "unknown"). `region` is the fallback label when there is no report to take it from."""

    instance_id: str
    region: str
    report: InstanceReport | None


@dataclass(frozen=True)
class StoreSample:
    """One CA store: its report, or None when it could not be checked (state "unknown")."""

    ca_dir: Path
    report: StoreReport | None


def _state(severity: Severity | None) -> str:
    return "unknown" if severity is None else severity.name.lower()


def _one_hot(gauge: Gauge, labels: Sequence[str], state: str) -> None:
    for candidate in STATES:
        gauge.labels(*labels, candidate).set(1 if candidate == state else 0)


def _set_time(gauge: Gauge, labels: Sequence[str], value: datetime | None) -> None:
    if value is not None:
        gauge.labels(*labels).set(value.timestamp())


def _instances(registry: CollectorRegistry, instances: Sequence[InstanceSample]) -> None:
    status = Gauge(
        "rdsssl_check_status",
        "Worst finding per RDS instance, one-hot: 1 for the current state (unknown: not checked).",
        [*_INSTANCE, "state"],
        registry=registry,
    )
    client_ca = Gauge(
        "rdsssl_client_ca_expiration_timestamp_seconds",
        "Earliest notAfter of the instance's client CAs (Unix time).",
        _INSTANCE,
        registry=registry,
    )
    crl = Gauge(
        "rdsssl_crl_next_update_timestamp_seconds",
        "Earliest nextUpdate of the instance's CRLs (Unix time).",
        _INSTANCE,
        registry=registry,
    )
    server = Gauge(
        "rdsssl_server_certificate_expiration_timestamp_seconds",
        "notAfter of the instance's server certificate (Unix time).",
        _INSTANCE,
        registry=registry,
    )
    pending = Gauge(
        "rdsssl_local_revocations_pending",
        "Local revocations not yet on the instance's CRL.",
        _INSTANCE,
        registry=registry,
    )
    for sample in instances:
        report = sample.report
        labels = (sample.instance_id, (report.region if report else "") or sample.region)
        _one_hot(status, labels, _state(report.severity if report else None))
        if report is None:
            continue
        _set_time(client_ca, labels, report.client_ca_not_after)
        _set_time(crl, labels, report.crl_next_update)
        _set_time(server, labels, report.server_cert_not_after)
        if report.pending_revocations is not None:
            pending.labels(*labels).set(report.pending_revocations)


def _stores(registry: CollectorRegistry, stores: Sequence[StoreSample]) -> None:
    status = Gauge(
        "rdsssl_ca_check_status",
        "Worst finding per local CA store, one-hot: 1 for the current state.",
        ["ca_dir", "state"],
        registry=registry,
    )
    ca = Gauge(
        "rdsssl_ca_expiration_timestamp_seconds",
        "notAfter of the local CA (Unix time).",
        ["ca_dir"],
        registry=registry,
    )
    due = Gauge(
        "rdsssl_certificates_due_renewal",
        "Certificates of the local CA due for renewal.",
        ["ca_dir"],
        registry=registry,
    )
    certs = Gauge(
        "rdsssl_certificate_expiration_timestamp_seconds",
        "notAfter of each valid (unrevoked, unexpired) client certificate (Unix time).",
        ["ca", "user", "serial"],
        registry=registry,
    )
    for sample in stores:
        where = str(sample.ca_dir)
        report = sample.report
        _one_hot(status, (where,), _state(report.severity if report else None))
        if report is None:
            continue
        ca.labels(where).set(report.ca_not_after.timestamp())
        due.labels(where).set(report.due_renewal)
        for cert in report.certificates:
            certs.labels(where, cert.user, cert.serial).set(cert.not_after.timestamp())


def check_registry(
    instances: Sequence[InstanceSample], stores: Sequence[StoreSample], *, now: datetime
) -> CollectorRegistry:
    """A fresh registry (never the global one) holding every gauge of one check run."""
    registry = CollectorRegistry(auto_describe=True)
    _instances(registry, instances)
    _stores(registry, stores)
    Gauge(
        "rdsssl_check_timestamp_seconds",
        "When this check ran (Unix time); alert when it gets old.",
        registry=registry,
    ).set(now.timestamp())
    return registry


def prometheus_text(
    instances: Sequence[InstanceSample], stores: Sequence[StoreSample], *, now: datetime
) -> str:
    """The textfile's content (the text exposition format)."""
    return generate_latest(check_registry(instances, stores, now=now)).decode()


def write_prometheus(path: Path, registry: CollectorRegistry) -> None:
    """`write_to_textfile`: a temp file next to `path`, renamed over it, so node_exporter never
    reads half a file; then mode 0644 whatever the umask (node_exporter runs as another user,
    and the file holds no secret). InputError (exit 3) when it cannot be written."""
    try:
        write_to_textfile(str(path), registry)
        path.chmod(0o644)
    except OSError as exc:
        raise InputError(f"cannot write the Prometheus file {path}: {exc.strerror}") from None
