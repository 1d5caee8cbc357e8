"""The server side end to end: `instance enable-ssl | disable-ssl | set-server-cert |
renew-server-cert` and `server-ca bundle`, through the CLI against the emulator (real SDK over
HTTP, real PostgreSQL), with every refusal and the server key kept out of every output."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rdsssl.errors import ExitCode
from rdsssl.ops.apply import ApplyResult
from rdsssl.ops.instance_change import InstanceOutcome
from rdsssl.ops.plan import Plan
from rdsssl.ops.probe import ProbeOutcome, ProbeTarget, probe
from rdsssl.ops.server_ssl_change import prove_change
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from tests.cli.helpers import Result, invoke
from tests.e2e.conftest import ALICE_PASSWORD, Cloud


def _server_ca(path: Path, cn: str = "my-db-server-ca") -> Path:
    result = invoke("ca", "init", "--ca-dir", path, "--cn", cn, "--no-passphrase")
    assert result.exit_code == 0, result.stderr
    return path


@pytest.fixture
def ssl_off(fresh: Cloud) -> Iterator[Cloud]:
    fresh.emu.set_ssl_enabled(fresh.iid, False)
    yield fresh
    fresh.emu.reset()


def _endpoints(cloud: Cloud) -> list[ProbeTarget]:
    nets = cloud.api().describe_net_info(cloud.iid)
    return [ProbeTarget(n.connection_string, n.port, n.ip_address) for n in nets]


def _login(target: ProbeTarget, root: Path) -> ProbeOutcome:
    """A verify-full login as alice (password) against `root`."""
    return probe(
        target, user="alice", root_cert=root, password=ALICE_PASSWORD, sslmode="verify-full"
    ).outcome


def _no_key(result: Result, *files: Path) -> None:
    """No private key in stdout, stderr or any file given (audit log, ...)."""
    for text in (result.stdout, result.stderr, *(f.read_text() for f in files if f.exists())):
        assert "PRIVATE KEY" not in text


def _fp_of(pem: str) -> frozenset[str]:
    return crypto.pem_fingerprints(pem.encode(), source="read-back")


def _modify_params(cloud: Cloud) -> list[dict[str, str]]:
    return [dict(r.params) for r in cloud.calls("ModifyDBInstanceSSL")]


# ------------------------------------------------------------------ enable-ssl / disable-ssl


def test_enable_ssl_from_off_protects_the_internal_endpoint(ssl_off: Cloud) -> None:
    cloud = ssl_off
    internal = _endpoints(cloud)[0].host
    result = cloud.cli("--json", "instance", "enable-ssl", cloud.iid, "--yes")
    assert result.exit_code == 0, result.stderr
    (params,) = _modify_params(cloud)
    assert (params["SSLEnabled"], params["CAType"]) == ("1", "aliyun")
    assert params["ConnectionString"] == internal
    assert "ServerKey" not in params and "ClientCAEnabled" not in params
    doc = result.json()
    assert doc["server"]["ssl_enabled"] is True and doc["server"]["ca_type"] == "aliyun"
    assert f"rdsssl instance server-ca {cloud.iid}" in result.stderr
    proof = doc["server_proof"]
    assert proof["ok"] is True
    (internal_proof,) = [e for e in proof["endpoints"] if e["connection_string"] == internal]
    assert internal_proof["presents_expected"] and internal_proof["verified"]
    (public_proof,) = [e for e in proof["endpoints"] if e["connection_string"] != internal]
    assert public_proof["covered"] is False  # a cloud certificate names one endpoint
    ssl = cloud.api().describe_ssl(cloud.iid)
    assert ssl.ssl_enabled and ssl.connection_string == internal
    assert doc["server"]["fingerprint"] in crypto.pem_fingerprints(
        ssl.server_cert_pem.encode(), source="read-back"
    )


def test_enable_ssl_on_a_chosen_endpoint_and_a_wrong_one(ssl_off: Cloud) -> None:
    cloud = ssl_off
    public = _endpoints(cloud)[1].host
    wrong = cloud.cli("instance", "enable-ssl", cloud.iid, "--connection-string", "nope.example",
                      "--yes")  # fmt: skip
    assert wrong.exit_code == ExitCode.BAD_INPUT and public in wrong.stderr
    assert cloud.mutating() == []
    result = cloud.cli("--json", "instance", "enable-ssl", cloud.iid, "--connection-string",
                       public, "--yes")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert _modify_params(cloud)[0]["ConnectionString"] == public
    covered = [e["connection_string"] for e in result.json()["server_proof"]["endpoints"]
               if e["covered"]]  # fmt: skip
    assert covered == [public]


def test_enable_ssl_is_refused_when_ssl_is_on(fresh: Cloud) -> None:
    result = fresh.cli("instance", "enable-ssl", fresh.iid, "--yes")
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert "already on" in result.stderr and "renew-server-cert" in result.stderr
    assert fresh.mutating() == []


def test_disable_ssl_is_refused_while_a_client_ca_is_configured(
    fresh: Cloud, tmp_path: Path
) -> None:
    ca = fresh.new_ca(tmp_path / "ca")
    assert (
        fresh.cli("instance", "enable-client-ca", fresh.iid, "--ca-dir", ca, "--yes").exit_code == 0
    )
    before = len(fresh.mutating())
    refused = fresh.cli("--json", "instance", "disable-ssl", fresh.iid, "--yes")
    assert refused.exit_code == ExitCode.VERIFICATION_FAILED, refused.stderr
    assert "client CA" in refused.stderr and "--force" in refused.stderr
    assert len(fresh.mutating()) == before  # nothing sent
    assert fresh.api().describe_ssl(fresh.iid).ssl_enabled
    forced = fresh.cli("--json", "instance", "disable-ssl", fresh.iid, "--yes", "--force")
    assert forced.exit_code == 0, forced.stderr
    ssl = fresh.api().describe_ssl(fresh.iid)
    assert not ssl.ssl_enabled and ssl.client_ca_pem is None
    assert _modify_params(fresh)[-1]["SSLEnabled"] == "0"
    assert forced.json()["server_proof"] is None  # nothing to prove with SSL off
    target = _endpoints(fresh)[0]
    assert probe(target, user="alice", password=ALICE_PASSWORD, sslmode="require").outcome in (
        ProbeOutcome.NO_ENCRYPTION,
        ProbeOutcome.ERROR,
    )


def test_disable_ssl_without_client_certificates_then_enable_again(fresh: Cloud) -> None:
    off = fresh.cli("instance", "disable-ssl", fresh.iid, "--yes")
    assert off.exit_code == 0, off.stderr
    assert not fresh.api().describe_ssl(fresh.iid).ssl_enabled
    again = fresh.cli("instance", "disable-ssl", fresh.iid, "--yes")
    assert again.exit_code == 0 and "up to date" in again.stderr  # nothing sent twice
    assert len(_modify_params(fresh)) == 1
    on = fresh.cli("instance", "enable-ssl", fresh.iid, "--yes")
    assert on.exit_code == 0, on.stderr
    assert fresh.api().describe_ssl(fresh.iid).ssl_enabled


def test_client_commands_on_ssl_off_point_to_enable_ssl(ssl_off: Cloud, tmp_path: Path) -> None:
    ca = ssl_off.new_ca(tmp_path / "ca")
    result = ssl_off.cli("instance", "enable-client-ca", ssl_off.iid, "--ca-dir", ca, "--yes")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert f"rdsssl instance enable-ssl {ssl_off.iid}" in result.stderr
    assert ssl_off.mutating() == []


# ------------------------------------------------------------------ custom certificates


def test_set_server_cert_covers_every_connection_string(fresh: Cloud, tmp_path: Path) -> None:
    server_ca = _server_ca(tmp_path / "server-ca")
    result = fresh.cli(
        "--json", "instance", "set-server-cert", fresh.iid, "--server-ca-dir", server_ca, "--yes"
    )
    assert result.exit_code == 0, result.stderr
    (params,) = _modify_params(fresh)
    assert (params["SSLEnabled"], params["CAType"]) == ("1", "custom")
    assert params["ServerKey"] == "<redacted>"  # sent (the emulator's log hides it)
    doc = result.json()
    endpoints = doc["server_proof"]["endpoints"]
    assert len(endpoints) == 2 and all(e["covered"] and e["ok"] for e in endpoints)
    with CaStore.open(server_ca) as store:
        (record,) = store.server_certs(instance_id=fresh.iid)
    assert doc["server"]["fingerprint"] == record.fingerprint
    assert sorted(record.names) == sorted(t.host for t in _endpoints(fresh))
    key_file = server_ca / "server-history" / f"{record.serial_hex}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    served = crypto.load_certificates(
        fresh.api().describe_ssl(fresh.iid).server_cert_pem.encode(), source="read-back"
    )[0]
    key = crypto.load_private_key(key_file.read_bytes(), source="key", passphrase=None)
    crypto.check_key_matches(served, key, source=str(key_file))  # the key kept is the one served
    _no_key(result, fresh.work / "audit.jsonl")
    for target in _endpoints(fresh):  # a verify-full client of each name, with the CA only
        assert _login(target, server_ca / "ca.crt") is ProbeOutcome.OK, target.host
    rerun = fresh.cli(
        "instance", "set-server-cert", fresh.iid, "--server-ca-dir", server_ca, "--yes"
    )
    assert rerun.exit_code == 0 and "up to date" in rerun.stderr
    assert len(_modify_params(fresh)) == 1  # the current certificate is kept


def test_a_certificate_the_service_refuses_leaks_no_key(fresh: Cloud, tmp_path: Path) -> None:
    """The emulator's clock is past the new certificate's expiry, so the service refuses it
    (InvalidServerCertOrPrivateKey): the error, the debug log and the audit log hold no key."""
    server_ca = _server_ca(tmp_path / "server-ca")
    fresh.emu.clock.offset = 400 * 86400.0
    result = fresh.cli("-vv", "--json", "instance", "set-server-cert", fresh.iid,
                       "--server-ca-dir", server_ca, "--yes")  # fmt: skip
    assert result.exit_code == ExitCode.API_ERROR, result.stderr
    assert "InvalidServerCertOrPrivateKey" in result.stderr
    assert result.json()["ok"] is False
    _no_key(result, fresh.work / "audit.jsonl")
    assert fresh.api().describe_ssl(fresh.iid).ca_type != "custom"


def test_the_proof_logs_in_with_the_probe_options(fresh: Cloud, tmp_path: Path) -> None:
    server_ca = _server_ca(tmp_path / "server-ca")
    unset = fresh.cli(
        "instance", "set-server-cert", fresh.iid, "--server-ca-dir", server_ca, "--yes",
        "--probe-user", "alice", "--probe-password-env", "NO_SUCH_VARIABLE",
    )  # fmt: skip
    assert unset.exit_code == ExitCode.BAD_INPUT and "NO_SUCH_VARIABLE" in unset.stderr
    assert fresh.mutating() == []  # refused before anything was sent
    result = fresh.cli(
        "--json", "instance", "set-server-cert", fresh.iid, "--server-ca-dir", server_ca, "--yes",
        "--probe-user", "alice", "--probe-password-env", "ALICE_PASSWORD",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    endpoints = result.json()["server_proof"]["endpoints"]
    assert [e["verify_full"] for e in endpoints] == ["ok", "ok"]
    assert ALICE_PASSWORD not in result.stdout + result.stderr


def test_a_failed_proof_is_exit_6_and_unreachable_endpoints_can_be_skipped(
    fresh: Cloud, tmp_path: Path
) -> None:
    server_ca = _server_ca(tmp_path / "server-ca")
    public = _endpoints(fresh)[1].host
    result = fresh.cli("--json", "instance", "set-server-cert", fresh.iid, "--server-ca-dir",
                       server_ca, "--yes", "--skip-proof", public)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    by_name = {e["connection_string"]: e for e in result.json()["server_proof"]["endpoints"]}
    assert by_name[public]["skipped"] and by_name[public]["presented_fingerprint"] is None
    assert f"{public}: verify-full skipped" in result.stderr
    # the proof against a CA that did not issue the certificate: exit 6, saying what to do
    other = _server_ca(tmp_path / "other-ca", "other-ca")
    api = fresh.api()
    ssl = api.describe_ssl(fresh.iid)
    done = ApplyResult(Plan(fresh.iid, (), None), False, False, final=ssl, before=ssl)
    outcome = InstanceOutcome(fresh.iid, "test", preview=done)
    proof = prove_change(api, outcome, root_cert=other / "ca.crt")
    assert proof is not None and not proof.ok
    assert all(e.presents_expected and e.verify is not None for e in proof.endpoints)
    assert {e.verify.outcome for e in proof.endpoints if e.verify} == {
        ProbeOutcome.SERVER_UNTRUSTED
    }
    assert outcome.exit_code == ExitCode.VERIFICATION_FAILED
    assert "server-ca bundle" in str(outcome.error) and "--skip-proof" in str(outcome.error)
    everything = frozenset(t.host for t in _endpoints(fresh))
    outcome = InstanceOutcome(fresh.iid, "test", preview=done)
    skipped = prove_change(api, outcome, root_cert=other / "ca.crt", skip=everything)
    assert skipped is not None and skipped.all_skipped and outcome.error is None


def test_set_server_cert_from_ssl_off_in_one_call(ssl_off: Cloud, tmp_path: Path) -> None:
    server_ca = _server_ca(tmp_path / "server-ca")
    result = ssl_off.cli(
        "instance", "set-server-cert", ssl_off.iid, "--server-ca-dir", server_ca, "--yes"
    )
    assert result.exit_code == 0, result.stderr
    assert len(_modify_params(ssl_off)) == 1
    for target in _endpoints(ssl_off):
        assert _login(target, server_ca / "ca.crt") is ProbeOutcome.OK


def test_set_server_cert_refusals(fresh: Cloud, tmp_path: Path) -> None:
    missing = fresh.cli(
        "instance", "set-server-cert", fresh.iid, "--server-ca-dir", tmp_path / "nope", "--yes"
    )
    assert missing.exit_code == ExitCode.BAD_INPUT and "not a CA store" in missing.stderr
    server_ca = _server_ca(tmp_path / "server-ca")
    bad_key = fresh.cli(
        "instance", "set-server-cert", fresh.iid, "--server-ca-dir", server_ca,
        "--key-type", "ed25519", "--yes",
    )  # fmt: skip
    assert bad_key.exit_code == ExitCode.USAGE  # not a choice for a server key
    locked = tmp_path / "locked-ca"
    made = invoke("ca", "init", "--ca-dir", locked, "--cn", "locked-ca",
                  env={"RDSSSL_CA_PASSPHRASE": "a long passphrase 1"})  # fmt: skip
    assert made.exit_code == 0, made.stderr
    no_passphrase = fresh.cli(
        "instance", "set-server-cert", fresh.iid, "--server-ca-dir", locked, "--yes"
    )
    assert no_passphrase.exit_code == ExitCode.BAD_INPUT, no_passphrase.stderr
    assert fresh.mutating() == []
    unlocked = fresh.cli(
        "instance", "set-server-cert", fresh.iid, "--server-ca-dir", locked, "--yes",
        env={"RDSSSL_CA_PASSPHRASE": "a long passphrase 1"},
    )  # fmt: skip
    assert unlocked.exit_code == 0, unlocked.stderr
    assert "a long passphrase 1" not in unlocked.stdout + unlocked.stderr


def test_dry_run_and_no_wait_then_a_rerun_confirms_it(fresh: Cloud, tmp_path: Path) -> None:
    server_ca = _server_ca(tmp_path / "server-ca")
    args = ("instance", "set-server-cert", fresh.iid, "--server-ca-dir", str(server_ca), "--yes")
    dry = fresh.cli(*args, "--dry-run")
    assert dry.exit_code == 0 and "dry run" in dry.stderr
    assert fresh.mutating() == []
    with CaStore.open(server_ca) as store:
        assert store.server_certs() == []  # a dry run issues nothing
    sent = fresh.cli(*args, "--no-wait")
    assert sent.exit_code == 0, sent.stderr
    rerun = fresh.cli(*args)  # confirms the earlier change from its audit line, sends nothing
    assert rerun.exit_code == 0, rerun.stderr
    assert "not confirmed yet" in rerun.stderr and "up to date" in rerun.stderr
    assert len(_modify_params(fresh)) == 1
    lines = [json.loads(x) for x in (fresh.work / "audit.jsonl").read_text().splitlines()]
    assert [line["outcome"] for line in lines] == ["sent", "ok"]
    assert lines[0]["target"]["server"]["ca_type"] == "custom"


def test_renew_custom_server_cert(fresh: Cloud, tmp_path: Path) -> None:
    server_ca = _server_ca(tmp_path / "server-ca")
    args = ("--server-ca-dir", str(server_ca), "--yes")
    assert fresh.cli("instance", "set-server-cert", fresh.iid, *args).exit_code == 0
    first = fresh.api().describe_ssl(fresh.iid).server_cert_pem
    not_due = fresh.cli("--json", "instance", "renew-server-cert", fresh.iid, *args, "--if-due")
    assert not_due.exit_code == 0, not_due.stderr
    assert not_due.json()["status"] == "not-due"
    assert len(_modify_params(fresh)) == 1
    due = fresh.cli(
        "--json", "instance", "renew-server-cert", fresh.iid, *args, "--if-due", "--before", "400d"
    )
    assert due.exit_code == 0, due.stderr
    second = fresh.api().describe_ssl(fresh.iid).server_cert_pem
    assert crypto.pem_fingerprints(first.encode(), source="a") != crypto.pem_fingerprints(
        second.encode(), source="b"
    )
    assert due.json()["server_proof"]["ok"] is True
    _no_key(due, fresh.work / "audit.jsonl")
    with CaStore.open(server_ca) as store:
        assert len(store.server_certs(instance_id=fresh.iid)) == 2


def test_renew_refusals(fresh: Cloud, tmp_path: Path) -> None:
    server_ca = _server_ca(tmp_path / "server-ca")
    cloud_with_ca = fresh.cli(
        "instance", "renew-server-cert", fresh.iid, "--server-ca-dir", server_ca, "--yes"
    )
    assert cloud_with_ca.exit_code == ExitCode.USAGE and "set-server-cert" in cloud_with_ca.stderr
    assert fresh.cli("instance", "set-server-cert", fresh.iid, "--server-ca-dir", server_ca,
                     "--yes").exit_code == 0  # fmt: skip
    custom_without = fresh.cli("instance", "renew-server-cert", fresh.iid, "--yes")
    assert custom_without.exit_code == ExitCode.USAGE
    assert "--server-ca-dir" in custom_without.stderr
    assert len(fresh.mutating()) == 1
    fresh.emu.set_ssl_enabled(fresh.iid, False)
    off = fresh.cli("instance", "renew-server-cert", fresh.iid, "--yes")
    assert off.exit_code == ExitCode.BAD_INPUT and "enable-ssl" in off.stderr
    assert len(fresh.mutating()) == 1


def test_renew_cloud_if_due_is_a_no_op_outside_the_window(fresh: Cloud) -> None:
    result = fresh.cli("--json", "instance", "renew-server-cert", fresh.iid, "--if-due", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.json()["due"] is False and fresh.mutating() == []


def test_renew_cloud_server_cert(fresh: Cloud) -> None:
    before = fresh.api().describe_ssl(fresh.iid).server_cert_pem
    result = fresh.cli("--json", "instance", "renew-server-cert", fresh.iid, "--yes")
    assert result.exit_code == 0, result.stderr
    (params,) = _modify_params(fresh)
    assert (params["SSLEnabled"], params["CAType"]) == ("1", "aliyun")
    after = fresh.api().describe_ssl(fresh.iid).server_cert_pem
    assert _fp_of(after) != _fp_of(before)
    assert result.json()["server_proof"]["ok"] is True
    assert result.json()["plan"]["changes"][0]["code"] == "renew-requested"


def test_a_cloud_renewal_the_service_ignores_is_not_taken_as_done(fresh: Cloud) -> None:
    """Whether re-sending SSLEnabled=1 renews is undocumented: when the certificate stays the
    same once the change finished, it failed (exit 5, said at once, not at the timeout)."""
    fresh.emu.faults.switches.ssl_enable_renews = False
    started = time.monotonic()
    result = fresh.cli("instance", "renew-server-cert", fresh.iid, "--yes", "--timeout", "120")
    assert result.exit_code == ExitCode.WAIT_FAILED, result.stderr
    assert "did not renew" in result.stderr
    assert time.monotonic() - started < 60
    assert len(_modify_params(fresh)) == 1


# ------------------------------------------------------------------ server CA rotation


def test_server_ca_rotation_with_an_overlap_bundle(fresh: Cloud, tmp_path: Path) -> None:
    """Clients first get old + new CA, then the instance serves the new CA's certificate: a
    verify-full client with the bundle works before, during and after."""
    old = _server_ca(tmp_path / "server-ca-1", "server-ca-1")
    new = _server_ca(tmp_path / "server-ca-2", "server-ca-2")
    assert fresh.cli("instance", "set-server-cert", fresh.iid, "--server-ca-dir", old,
                     "--yes").exit_code == 0  # fmt: skip
    bundle = tmp_path / "root.crt"
    made = fresh.cli("--json", "server-ca", "bundle", "--ca-dir", old, "--ca-dir", new,
                     "--out", bundle)  # fmt: skip
    assert made.exit_code == 0, made.stderr
    assert len(made.json()["certificates"]) == 2
    assert len(crypto.load_certificates(bundle.read_bytes(), source="bundle")) == 2
    for target in _endpoints(fresh):
        assert _login(target, bundle) is ProbeOutcome.OK
    rotated = fresh.cli("instance", "set-server-cert", fresh.iid, "--server-ca-dir", new, "--yes")
    assert rotated.exit_code == 0, rotated.stderr
    assert "another CA than today" in rotated.stderr  # the plan says: clients first
    for target in _endpoints(fresh):
        assert _login(target, bundle) is ProbeOutcome.OK
        assert _login(target, old / "ca.crt") is ProbeOutcome.SERVER_UNTRUSTED


def test_server_ca_bundle_after_ca_renew_and_refusals(tmp_path: Path) -> None:
    store = _server_ca(tmp_path / "server-ca")
    renewed = invoke("ca", "renew", "--ca-dir", store, "--days", "3650")
    assert renewed.exit_code == 0, renewed.stderr
    out = tmp_path / "root.crt"
    result = invoke("--json", "server-ca", "bundle", "--ca-dir", store, "--out", out)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [c["current"] for c in doc["certificates"]] == [False, True]
    assert len(crypto.load_certificates(out.read_bytes(), source="bundle")) == 2
    directory = tmp_path / "a-dir"
    directory.mkdir()
    refused = invoke("server-ca", "bundle", "--ca-dir", store, "--out", directory)
    assert refused.exit_code == ExitCode.BAD_INPUT and "not a regular file" in refused.stderr
    missing = invoke("server-ca", "bundle", "--ca-dir", tmp_path / "nope", "--out", out)
    assert missing.exit_code == ExitCode.BAD_INPUT
    later = datetime.now(timezone.utc) + timedelta(days=4000)  # past both CA certificates
    expired = invoke("server-ca", "bundle", "--ca-dir", store, "--out", tmp_path / "x.crt",
                     clock=lambda: later)  # fmt: skip
    assert expired.exit_code == ExitCode.BAD_INPUT and "expired" in expired.stderr
    assert not (tmp_path / "x.crt").exists()
