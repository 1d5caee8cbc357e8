"""probe.classify maps libpq's connection errors to outcomes by their stable substrings.

The messages are the ones measured in docs/postgres-client-cert-behaviour.md (psycopg with
OpenSSL 3.5 and psql with OpenSSL 3.0 word some of them differently); the real-server
counterparts run in the end-to-end tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rdsssl.ops.probe import ProbeOutcome, ProbeTarget, classify, probe


@pytest.mark.parametrize(
    ("message", "outcome"),
    [
        ("connection failed: SSL error: ssl/tls alert certificate revoked", ProbeOutcome.REVOKED),
        ("SSL error: sslv3 alert certificate revoked", ProbeOutcome.REVOKED),
        ("SSL error: ssl/tls alert certificate expired", ProbeOutcome.EXPIRED),
        ("SSL error: tlsv1 alert unknown ca", ProbeOutcome.UNKNOWN_CA),
        ("SSL error: ssl/tls alert bad certificate", ProbeOutcome.NOT_YET_VALID),
        (
            "FATAL:  connection requires a valid client certificate",
            ProbeOutcome.NO_CERTIFICATE,
        ),
        (
            'FATAL:  certificate authentication failed for user "alice"',
            ProbeOutcome.CN_MISMATCH,
        ),
        (
            'FATAL:  password authentication failed for user "alice"',
            ProbeOutcome.AUTH_FAILED,
        ),
        ("fe_sendauth: no password supplied", ProbeOutcome.NO_PASSWORD),
        (
            'FATAL:  no pg_hba.conf entry for host "127.0.0.1", user "alice", database '
            '"postgres", no encryption',
            ProbeOutcome.NO_ENCRYPTION,
        ),
        (
            'private key file "/k" has group or world access; file must have permissions u=rw',
            ProbeOutcome.KEY_PERMISSIONS,
        ),
        (
            "SSL error: certificate verify failed",
            ProbeOutcome.SERVER_UNTRUSTED,
        ),
        (
            'connection to server at "127.0.0.1", port 1 failed: Connection refused',
            ProbeOutcome.UNREACHABLE,
        ),
        ("something nobody measured", ProbeOutcome.ERROR),
    ],
)
def test_classify(message: str, outcome: ProbeOutcome) -> None:
    assert classify(message) is outcome


def test_group_readable_key_is_reported_before_connecting(tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_text("not a key")
    os.chmod(key, 0o644)
    # Port 1 on loopback: if the probe tried to connect, the outcome would be UNREACHABLE.
    result = probe(ProbeTarget("127.0.0.1", 1), user="alice", cert=tmp_path / "c", key=key)
    assert result.outcome is ProbeOutcome.KEY_PERMISSIONS
    assert "chmod 600" in result.detail and not result.ok


def test_unreachable_and_password_never_in_detail(tmp_path: Path) -> None:
    result = probe(
        ProbeTarget("127.0.0.1", 1),
        user="alice",
        password="s3cret-pw",
        sslmode="disable",
        timeout=2,
    )
    assert result.outcome is ProbeOutcome.UNREACHABLE
    assert "s3cret-pw" not in result.detail
