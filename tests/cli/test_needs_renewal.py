"""`rdsssl cert needs-renewal FILE`: step's rule and exit codes (0 needs renewal, 1 not yet,
3 not a certificate), for hosts that hold only the client files."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509

from rdsssl.models import KeyType
from rdsssl.ops.renewal_plan import needs_renewal
from rdsssl.pki import crypto
from tests.cli.helpers import invoke

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
CA_KEY = crypto.generate_key(KeyType.EC_P256)
CA = crypto.make_ca(CA_KEY, cn="root-ca1", now=NOW - timedelta(days=400), days=3650)


def _leaf(issued: datetime, days: int) -> x509.Certificate:
    key = crypto.generate_key(KeyType.EC_P256).public_key()
    return crypto.issue_client_cert(CA, CA_KEY, key, user="alice", now=issued, days=days).cert


@pytest.mark.parametrize(
    ("age_days", "before", "at", "needed"),
    [
        (50, None, None, False),  # 50 of 90 days: under 2/3
        (61, None, None, True),  # over 2/3 of 90 days
        (61, None, 0.75, False),
        (70, None, 0.75, True),
        (50, timedelta(days=30), None, False),  # expires in 40 days
        (61, timedelta(days=30), None, True),  # expires in 29 days
        (95, timedelta(days=1), 0.99, True),  # expired: always
    ],
)
def test_the_rule_follows_step(
    age_days: int, before: timedelta | None, at: float | None, needed: bool
) -> None:
    cert = _leaf(NOW - timedelta(days=age_days), 90)
    need = needs_renewal(cert, now=NOW, before=before, at=at)
    assert need.needed is needed, need.reason
    assert need.not_after == cert.not_valid_after_utc
    assert (need.threshold <= NOW) is needed or need.not_after <= NOW


def _write(tmp_path: Path, cert: x509.Certificate) -> Path:
    path = tmp_path / "client.crt"
    path.write_bytes(crypto.cert_pem(cert))
    return path


def test_exit_0_when_due_1_when_not_with_json(tmp_path: Path) -> None:
    due = _write(tmp_path, _leaf(datetime.now(timezone.utc) - timedelta(days=80), 90))
    result = invoke("--json", "cert", "needs-renewal", due)
    assert result.exit_code == 0, result.stderr
    assert result.json()["needs_renewal"] is True and result.json()["file"] == str(due)
    fresh = _write(tmp_path, _leaf(datetime.now(timezone.utc) - timedelta(days=1), 90))
    result = invoke("cert", "needs-renewal", fresh, "--before", "30d")
    assert result.exit_code == 1 and "does not need renewal" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("--at", "150%"), 2, "between 1% and 100%"),
        (("--at", "soon"), 2, "percentage"),
        (("--at", "50%", "--before", "3d"), 2, "not both"),
    ],
)
def test_bad_options_are_usage_errors(
    tmp_path: Path, args: tuple[str, ...], code: int, text: str
) -> None:
    path = _write(tmp_path, _leaf(NOW, 90))
    result = invoke("cert", "needs-renewal", path, *args)
    assert result.exit_code == code and text in result.stderr


def test_a_file_that_is_not_a_certificate_is_exit_3(tmp_path: Path) -> None:
    path = tmp_path / "client.key"
    path.write_bytes(crypto.key_pem(crypto.generate_key(KeyType.EC_P256), None))
    result = invoke("cert", "needs-renewal", path)
    assert result.exit_code == 3 and "client.key" in result.stderr
    assert invoke("cert", "needs-renewal", tmp_path / "missing.crt").exit_code == 3
