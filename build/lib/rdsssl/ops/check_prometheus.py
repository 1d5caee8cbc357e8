"""The node_exporter textfile of `rdsssl check --prometheus`: gauges with HELP and TYPE, one
sample per instance and per CA store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rdsssl.ops.check_findings import UNKNOWN_STATUS, InstanceReport, StoreReport

__all__ = ["prometheus_text"]

_METRICS: tuple[tuple[str, str], ...] = (
    ("rdsssl_check_status", "Worst finding per instance: 0 ok, 1 warning, 2 critical, 3 unknown."),
    ("rdsssl_client_ca_not_after_seconds", "Earliest notAfter of the instance's client CAs."),
    ("rdsssl_crl_next_update_seconds", "Earliest nextUpdate of the instance's CRLs (per CA)."),
    ("rdsssl_server_cert_not_after_seconds", "The instance's server certificate expiry."),
    ("rdsssl_local_revocations_pending", "Local revocations not yet on the instance's CRL."),
    ("rdsssl_ca_check_status", "Worst finding per local CA store (0 ok, 1 warning, 2 critical)."),
    ("rdsssl_ca_not_after_seconds", "notAfter of the local CA."),
    ("rdsssl_certificates_due_renewal", "Certificates of the local CA due for renewal."),
    ("rdsssl_check_timestamp_seconds", "When this check ran."),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _ts(value: datetime | None) -> str | None:
    return None if value is None else f"{value.timestamp():.0f}"


def _opt_int(value: int | None) -> str | None:
    return None if value is None else str(value)


def prometheus_text(
    instances: Sequence[tuple[str, InstanceReport | None]],
    stores: Sequence[StoreReport],
    *,
    now: datetime,
) -> str:
    """The node_exporter textfile: gauges with HELP and TYPE, one sample per instance (an
    instance that could not be checked, report None, gets only status 3)."""
    samples: dict[str, list[str]] = {name: [] for name, _ in _METRICS}
    for iid, report in instances:
        label = f'{{instance="{_label(iid)}"}}'
        status = UNKNOWN_STATUS if report is None else int(report.severity)
        samples["rdsssl_check_status"].append(f"{label} {status}")
        if report is None:
            continue
        for name, value in (
            ("rdsssl_client_ca_not_after_seconds", _ts(report.client_ca_not_after)),
            ("rdsssl_crl_next_update_seconds", _ts(report.crl_next_update)),
            ("rdsssl_server_cert_not_after_seconds", _ts(report.server_cert_not_after)),
            ("rdsssl_local_revocations_pending", _opt_int(report.pending_revocations)),
        ):
            if value is not None:
                samples[name].append(f"{label} {value}")
    for store in stores:
        label = f'{{ca_dir="{_label(str(store.ca_dir))}"}}'
        samples["rdsssl_ca_check_status"].append(f"{label} {int(store.severity)}")
        samples["rdsssl_ca_not_after_seconds"].append(f"{label} {_ts(store.ca_not_after)}")
        samples["rdsssl_certificates_due_renewal"].append(f"{label} {store.due_renewal}")
    samples["rdsssl_check_timestamp_seconds"].append(f" {_ts(now)}")
    lines: list[str] = []
    for name, help_text in _METRICS:
        if not samples[name]:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{sample}" for sample in samples[name]]
    return "\n".join(lines) + "\n"
