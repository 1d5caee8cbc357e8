"""`ssl = "cloud" | "custom"` in rdsssl.toml, end to end: from an instance with SSL off, ONE
`apply` brings SSL, the client CA, the CRL and the ACL in ONE ModifyDBInstanceSSL call (one
restart), after which a certificate-only `sslmode=verify-full` login works (cloud: on the
connection string the certificate protects; custom: on every connection string, verified with
the server CA). With a service profile that says the service refuses that combination
(`one_call_ssl_setup: false`) the same file takes two calls, SSL first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdsssl.ops.probe import ProbeOutcome, ProbeTarget, probe
from tests.cli.helpers import invoke
from tests.e2e.conftest import Cloud

pytestmark = pytest.mark.e2e

MODIFY = "ModifyDBInstanceSSL"


def _toml(path: Path, iid: str, ca: Path, **extra: str) -> Path:
    lines = [f'[[instances]]\nid = "{iid}"\nca_dir = "{ca}"\ncrl = true\nacl = "cert"']
    lines += [f'{key} = "{value}"' for key, value in extra.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _ssl_off_with_alice(cloud: Cloud, tmp_path: Path) -> tuple[Path, list[str]]:
    """SSL off on the instance (as a new instance is), a client CA store and alice's files."""
    cloud.emu.set_ssl_enabled(cloud.iid, False)
    assert not cloud.api().describe_ssl(cloud.iid).ssl_enabled
    ca = cloud.new_ca(tmp_path / "ca")
    _, crt, _, pem = cloud.issue(ca, tmp_path / "alice")
    probe = ["--probe-user", "alice", "--probe-cert", crt, "--probe-key", pem]
    return ca, [*probe, "--probe-password-env", "ALICE_PASSWORD"]  # the guard's live probe


def _verify_full(cloud: Cloud, host: str, root: Path, tmp_path: Path) -> ProbeOutcome:
    """A certificate-only login as alice on the connection string `host` (no password)."""
    net = {n.connection_string: n for n in cloud.api().describe_net_info(cloud.iid)}[host]
    target = ProbeTarget(host=host, port=net.port, hostaddr=net.ip_address)
    alice = tmp_path / "alice"
    result = probe(
        target,
        user="alice",
        cert=alice / "client.crt",
        key=alice / "client.key",
        root_cert=root,
        sslmode="verify-full",
    )
    return result.outcome


def _endpoints(cloud: Cloud) -> list[str]:
    return [n.connection_string for n in cloud.api().describe_net_info(cloud.iid)]


def test_cloud_ssl_client_ca_crl_and_acl_in_one_call(fresh: Cloud, tmp_path: Path) -> None:
    iid = fresh.iid
    ca, alice = _ssl_off_with_alice(fresh, tmp_path)
    toml = _toml(tmp_path / "rdsssl.toml", iid, ca, ssl="cloud")
    plan = fresh.cli("--json", "plan", "-f", toml)
    assert plan.exit_code == 0, plan.stderr
    (planned,) = plan.json()["instances"]
    fields = [c["field"] for c in planned["plan"]["changes"]]
    assert fields[0] == "ssl" and {"client_ca", "crl", "acl"} <= set(fields)
    internal, public = _endpoints(fresh)
    assert "cloud-certificate-one-endpoint" in planned["plan"]["warning_codes"]
    assert fresh.mutating() == []  # plan only reads

    result = fresh.cli("--json", "apply", "-f", toml, "--yes", *alice)
    assert result.exit_code == 0, result.stderr
    (call,) = fresh.calls(MODIFY)  # ONE call: one restart
    params = call.params
    assert params["SSLEnabled"] == "1" and params["CAType"] == "aliyun"
    assert params["ConnectionString"] == internal  # the internal one by default
    assert params["ClientCAEnabled"] == "1" and params["ClientCrlEnabled"] == "1"
    assert params["ACL"] == "cert"
    (done,) = result.json()["instances"]
    assert done["status"] == "changed" and done["verification"]["outcome"] == "ok"
    assert f"covers {internal} only" in result.stderr and public in result.stderr
    ssl = fresh.api().describe_ssl(iid)
    assert ssl.ssl_enabled and ssl.ca_type == "aliyun" and ssl.connection_string == internal
    proof = done["server_proof"]  # the handshake and verify-full, by rdsssl itself
    assert proof["ok"] is True
    covered = {e["connection_string"]: e["covered"] for e in proof["endpoints"]}
    assert covered == {internal: True, public: False}  # a cloud certificate covers one

    server_ca = tmp_path / "cloud-ca.pem"
    got = fresh.cli("instance", "server-ca", iid, "--out", server_ca)
    assert got.exit_code == 0, got.stderr
    assert _verify_full(fresh, internal, server_ca, tmp_path) is ProbeOutcome.OK

    again = fresh.cli("--json", "apply", "-f", toml, "--yes")
    assert again.exit_code == 0 and again.json()["instances"][0]["status"] == "up-to-date"
    assert len(fresh.calls(MODIFY)) == 1  # a re-run sends nothing (no renewal by accident)


def test_custom_ssl_in_one_call_verifies_on_every_connection_string(
    fresh: Cloud, tmp_path: Path
) -> None:
    iid = fresh.iid
    ca, alice = _ssl_off_with_alice(fresh, tmp_path)
    server_ca = tmp_path / "server-ca"
    made = invoke("ca", "init", "--ca-dir", server_ca, "--cn", "my-db-server-ca", "--no-passphrase")
    assert made.exit_code == 0, made.stderr
    toml = _toml(tmp_path / "rdsssl.toml", iid, ca, ssl="custom", server_ca_dir=str(server_ca))
    planned = fresh.cli("--json", "plan", "-f", toml)
    assert planned.exit_code == 0, planned.stderr
    history = server_ca / "server-history"
    assert not history.exists() or not any(history.iterdir())  # a plan issues nothing

    result = fresh.cli("--json", "apply", "-f", toml, "--yes", *alice)
    assert result.exit_code == 0, result.stderr
    (call,) = fresh.calls(MODIFY)
    params = call.params
    assert params["SSLEnabled"] == "1" and params["CAType"] == "custom"
    assert params["ServerCert"] and params["ServerKey"]
    assert params["ClientCAEnabled"] == "1" and params["ClientCrlEnabled"] == "1"
    assert params["ACL"] == "cert"
    (done,) = result.json()["instances"]
    assert done["verification"]["outcome"] == "ok"  # verified with server-ca/ca.crt
    proof = done["server_proof"]
    assert proof["ok"] is True and proof["root_cert"] == str(server_ca / "ca.crt")
    assert {e["connection_string"] for e in proof["endpoints"] if e["ok"]} == set(_endpoints(fresh))
    key_pem = params["ServerKey"].strip()
    for text in (result.stdout, result.stderr, (fresh.work / "audit.jsonl").read_text()):
        assert key_pem not in text and "PRIVATE KEY" not in text  # the key is never shown
    assert len(list(history.glob("*.key"))) == 1  # issued once, kept in the store
    for host in _endpoints(fresh):
        outcome = _verify_full(fresh, host, server_ca / "ca.crt", tmp_path)
        assert outcome is ProbeOutcome.OK, host

    again = fresh.cli("--json", "apply", "-f", toml, "--yes")
    assert again.exit_code == 0 and again.json()["instances"][0]["status"] == "up-to-date"
    assert len(fresh.calls(MODIFY)) == 1  # the served certificate is current: kept


def test_a_profile_without_one_call_setup_takes_two_calls_ssl_first(
    fresh: Cloud, tmp_path: Path
) -> None:
    iid = fresh.iid
    ca, alice = _ssl_off_with_alice(fresh, tmp_path)
    toml = _toml(tmp_path / "rdsssl.toml", iid, ca, ssl="cloud")
    fresh.emu.faults.switches.one_call_ssl_setup = False  # this service refuses one call
    profile = json.loads(fresh.emu.service_profile_file.read_text())
    profile["one_call_ssl_setup"] = False
    recorded = tmp_path / "profile.json"
    recorded.write_text(json.dumps(profile), encoding="utf-8")
    env = {"RDSSSL_SERVICE_PROFILE": str(recorded)}
    plan = fresh.cli("plan", "-f", toml, env=env)
    assert plan.exit_code == 0, plan.stderr
    assert "two ModifyDBInstanceSSL calls" in plan.stdout

    result = fresh.cli("--json", "apply", "-f", toml, "--yes", *alice, env=env)
    assert result.exit_code == 0, result.stderr
    first, second = fresh.calls(MODIFY)
    assert first.params["SSLEnabled"] == "1" and first.params["CAType"] == "aliyun"
    assert not {"ClientCAEnabled", "ACL", "ClientCrlEnabled"} & set(first.params)
    assert "SSLEnabled" not in second.params  # never re-sent: it may renew the certificate
    assert second.params["ClientCAEnabled"] == "1" and second.params["ACL"] == "cert"
    (done,) = result.json()["instances"]
    assert done["first_call"]["status"] == "changed"
    assert done["first_call"]["server_proof"]["ok"] is True  # its own wait and proof
    assert done["first_call"]["request_id"] == first.request_id
    assert done["request_id"] == second.request_id
    assert done["status"] == "changed" and done["verification"]["outcome"] == "ok"
    assert "two-calls" in done["plan"]["warning_codes"]


def test_a_service_refusing_one_call_without_the_profile_saying_so_changes_nothing(
    fresh: Cloud, tmp_path: Path
) -> None:
    """The documented answer (one call) meets a service that refuses it: the call fails as a
    whole, nothing changes, and the error names the service's answer."""
    ca, alice = _ssl_off_with_alice(fresh, tmp_path)
    fresh.emu.faults.switches.one_call_ssl_setup = False
    toml = _toml(tmp_path / "rdsssl.toml", fresh.iid, ca, ssl="cloud")
    result = fresh.cli("apply", "-f", toml, "--yes", *alice)
    assert result.exit_code == 4, result.stderr
    assert "IncorrectDBSslStatus" in result.stderr
    assert '"one_call_ssl_setup": false' in result.stderr  # how to record it
    assert not fresh.api().describe_ssl(fresh.iid).ssl_enabled


def test_ssl_off_without_ssl_in_the_file_is_refused_saying_how(
    fresh: Cloud, tmp_path: Path
) -> None:
    ca, _ = _ssl_off_with_alice(fresh, tmp_path)
    toml = _toml(tmp_path / "rdsssl.toml", fresh.iid, ca)
    result = fresh.cli("apply", "-f", toml, "--yes")
    assert result.exit_code == 3, result.stderr
    assert 'ssl = "cloud"' in result.stderr and "nothing was sent" in result.stderr
    assert fresh.mutating() == []


def test_an_endpoint_unreachable_from_here_is_skipped_not_proven(
    fresh: Cloud, tmp_path: Path
) -> None:
    ca, alice = _ssl_off_with_alice(fresh, tmp_path)
    server_ca = tmp_path / "server-ca"
    made = invoke("ca", "init", "--ca-dir", server_ca, "--cn", "my-db-server-ca", "--no-passphrase")
    assert made.exit_code == 0, made.stderr
    toml = _toml(
        tmp_path / "rdsssl.toml", fresh.iid, ca, ssl="custom", server_ca_dir=str(server_ca)
    )
    internal, public = _endpoints(fresh)
    result = fresh.cli("--json", "apply", "-f", toml, "--yes", *alice, "--skip-proof", public)
    assert result.exit_code == 0, result.stderr
    (done,) = result.json()["instances"]
    by_name = {e["connection_string"]: e for e in done["server_proof"]["endpoints"]}
    assert by_name[public]["skipped"] is True and by_name[public]["ok"] is False
    assert by_name[internal]["ok"] is True and done["server_proof"]["ok"] is True


def test_a_missing_probe_password_variable_stops_before_anything_is_sent(
    fresh: Cloud, tmp_path: Path
) -> None:
    ca, alice = _ssl_off_with_alice(fresh, tmp_path)
    toml = tmp_path / "rdsssl.toml"  # no ACL: no tightening, so no guard probe before
    toml.write_text(f'[[instances]]\nid = "{fresh.iid}"\nca_dir = "{ca}"\nssl = "cloud"\n')
    probe = [a if a != "ALICE_PASSWORD" else "NO_SUCH_VARIABLE" for a in alice]
    result = fresh.cli("apply", "-f", toml, "--yes", *probe)
    assert result.exit_code == 3, result.stderr
    assert "NO_SUCH_VARIABLE" in result.stderr
    assert fresh.mutating() == []
