"""Which CA key type x client key type pairs log in over TLS 1.2 (real handshakes).

The RDS PostgreSQL SSL page lists TLS 1.0, 1.1 and 1.2, so the emulator's servers cap at
TLSv1.2 (profile `documented`), with PostgreSQL's default `ssl_ecdh_curve = prime256v1`. Under
TLS 1.2 an ECDSA client key works only on the server's curve: every pair is tried with a real
connection, and `cert issue` refuses the key types that fail unless --force.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rdsssl.errors import ExitCode
from rdsssl.models import KeyType
from tests.cli.helpers import invoke
from tests.e2e.conftest import Cloud

CA_TYPES = [KeyType.EC_P256, KeyType.EC_P384, KeyType.RSA_2048, KeyType.ED25519]
CLIENT_TYPES = [KeyType.EC_P256, KeyType.EC_P384, KeyType.RSA_2048, KeyType.ED25519]
FAILS_OVER_TLS12 = {KeyType.EC_P384}


@pytest.mark.parametrize("ca_type", CA_TYPES, ids=lambda k: f"ca-{k.value}")
def test_every_pair_against_a_server_capped_at_tls_1_2(
    fresh: Cloud, tmp_path: Path, ca_type: KeyType
) -> None:
    ca = tmp_path / "ca"
    made = invoke("ca", "init", "--ca-dir", ca, "--key-type", ca_type.value, "--no-passphrase")
    assert made.exit_code == 0, made.stderr
    enabled = fresh.cli("instance", "enable-client-ca", fresh.iid, "--ca-dir", ca, "--yes")
    assert enabled.exit_code == 0, enabled.stderr
    outcomes: dict[KeyType, str] = {}
    for client_type in CLIENT_TYPES:
        out = tmp_path / client_type.value
        issued = invoke("cert", "issue", "--ca-dir", ca, "--user", "alice", "--out", out,
                        "--key-type", client_type.value, "--force")  # fmt: skip
        assert issued.exit_code == 0, issued.stderr
        probe = fresh.cli("--json", "probe", fresh.iid, "--user", "alice", "--cert",
                          out / "client.crt", "--key", out / "client.key",
                          "--password-env", "ALICE_PASSWORD")  # fmt: skip
        outcomes[client_type] = probe.json()["probe"]["outcome"]
    expected = {k: ("key-unusable" if k in FAILS_OVER_TLS12 else "ok") for k in CLIENT_TYPES}
    assert outcomes == expected


def test_issue_refuses_the_key_type_that_fails_unless_forced(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    assert invoke("ca", "init", "--ca-dir", ca, "--no-passphrase").exit_code == 0
    refused = invoke("cert", "issue", "--ca-dir", ca, "--user", "alice", "--out", tmp_path / "a",
                     "--key-type", "ec-p384")  # fmt: skip
    assert refused.exit_code == ExitCode.BAD_INPUT
    assert "fails over TLS 1.2" in refused.stderr and "ec-p256" in refused.stderr


def test_rotate_refuses_before_staging_a_user_whose_key_fails_over_tls_1_2(
    fresh: Cloud, tmp_path: Path
) -> None:
    old = fresh.new_ca(tmp_path / "old")
    new = fresh.new_ca(tmp_path / "new")
    assert (
        fresh.cli("instance", "enable-client-ca", fresh.iid, "--ca-dir", old, "--yes").exit_code
        == 0
    )
    issued = invoke("cert", "issue", "--ca-dir", old, "--user", "alice", "--out", tmp_path / "a",
                    "--key-type", "ec-p384", "--force")  # fmt: skip
    assert issued.exit_code == 0, issued.stderr
    before = len(fresh.calls("ModifyDBInstanceSSL"))
    result = fresh.cli("rotate", "ca", fresh.iid, "--ca-dir", old, "--new-ca-dir", new,
                       "--out-root", tmp_path / "out", "--yes")  # fmt: skip
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert "fails over TLS 1.2" in result.stderr and "No instance was changed" in result.stderr
    assert len(fresh.calls("ModifyDBInstanceSSL")) == before
    assert not (old / "rotation.json").exists()
