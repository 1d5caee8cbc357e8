"""Saved plans through the CLI against the emulator (real SDK over HTTP, real PostgreSQL):
`plan --out` writes the plan and changes nothing, `apply PLAN_FILE` sends exactly the recorded
fields once, a change made in between makes apply refuse with nothing sent, and
`plan --detailed-exitcode` says whether changes are pending."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

from rdsssl.errors import ExitCode
from rdsssl.ops import audit
from rdsssl.pki import crypto
from tests.e2e.conftest import Cloud

# the parameters of ModifyDBInstanceSSL rdsssl may send (the rest are the API's common ones)
SSL_PARAMS = {
    "DBInstanceId",
    "ConnectionString",
    "ClientCAEnabled",
    "ClientCACert",
    "ClientCrlEnabled",
    "ClientCertRevocationList",
    "ACL",
    "ReplicationACL",
}


def _toml(path: Path, iid: str, **keys: str | bool) -> Path:
    lines = ["[defaults]", *(f"{k} = {json.dumps(v)}" for k, v in keys.items())]
    path.write_text("\n".join([*lines, "", "[[instances]]", f'id = "{iid}"', ""]))
    return path


def _pem_param(pem: str) -> str:
    """How the emulator's request log shows a PEM parameter (its blocks' SHA-256)."""
    return "pem:sha256=" + ",".join(sorted(crypto.pem_fingerprints(pem.encode(), source="t")))


def _sent(cloud: Cloud) -> list[dict[str, str]]:
    return [
        {k: v for k, v in r.params.items() if k in SSL_PARAMS}
        for r in cloud.calls("ModifyDBInstanceSSL")
    ]


def test_plan_out_then_apply_sends_exactly_the_planned_fields_once(
    fresh: Cloud, tmp_path: Path
) -> None:
    cloud, iid = fresh, fresh.iid
    ca = cloud.new_ca(tmp_path / "ca")
    alice = cloud.issue(ca, tmp_path / "alice")
    cloud.issue(ca, tmp_path / "bob", user="bob")
    assert cloud.cli("cert", "revoke", "--ca-dir", ca, "--user", "bob").exit_code == 0
    config = _toml(tmp_path / "rdsssl.toml", iid, ca_dir="ca", crl=True, acl="cert")
    out = tmp_path / "plan.json"

    planned = cloud.cli("--json", "plan", "-f", config, "--out", out, "--detailed-exitcode")
    assert planned.exit_code == 2, planned.stderr  # changes pending, as terraform plan
    assert planned.json()["changes_pending"] is True and planned.json()["plan_file"] == str(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert cloud.mutating() == []  # planning reads only
    assert cloud.cli("--json", "ca", "show", "--ca-dir", ca).json()["next_crl_number"] == 1
    text = out.read_text()
    assert "PRIVATE KEY" not in text
    doc = json.loads(text)
    assert (doc["format"], doc["version"]) == ("rdsssl-plan", 1)
    assert doc["source"]["sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert doc["checksum"].startswith("sha256:")
    (entry,) = doc["instances"]
    assert (entry["instance"], entry["effect"], entry["restarts"]) == (iid, "restart", True)
    assert [c["field"] for c in entry["changes"]] == ["client_ca", "crl", "acl"]
    assert entry["before"] == {
        "client_ca": [],
        "crl": [],
        "acl": "prefer",
        "replication_acl": "prefer",
    }
    assert entry["guard"].startswith("ACL becomes cert")
    request = entry["request"]
    assert (request["acl"], request["client_ca_enabled"], request["crl_pem"]) == (
        "cert",
        True,
        None,
    )
    ca_pem = (ca / "ca.crt").read_text()
    assert crypto.pem_fingerprints(request["client_ca_pem"].encode(), source="plan") == (
        crypto.pem_fingerprints(ca_pem.encode(), source="ca")
    )
    bob_serial = crypto.load_certificates(
        (tmp_path / "bob" / "client.crt").read_bytes(), source="bob"
    )[0].serial_number
    store_crl = entry["crl_from_store"]  # described, not signed
    assert store_crl["revoked"] == [format(bob_serial, "X")] and store_crl["days"] > 0

    probe = ["--probe-user", "alice", "--probe-cert", alice[1], "--probe-key", alice[3],
             "--probe-password-env", "ALICE_PASSWORD"]  # fmt: skip
    applied = cloud.cli("--json", "apply", out, *probe)  # no --yes: a saved plan is not re-asked
    assert applied.exit_code == 0, applied.stderr
    result = applied.json()
    assert result["plan_file"] == str(out) and result["summary"] == {"total": 1, "changed": 1}
    assert result["instances"][0]["guard_probe"]["outcome"] == "ok"
    (sent,) = _sent(cloud)  # one call, and exactly the recorded fields
    crl_pem = cloud.emu.instance(iid).ssl.crl_pem
    assert crl_pem is not None
    assert sent == {
        "DBInstanceId": iid,
        "ConnectionString": request["connection_string"],
        "ClientCAEnabled": "1",
        "ClientCACert": _pem_param(request["client_ca_pem"]),
        "ClientCrlEnabled": "1",
        "ClientCertRevocationList": _pem_param(crl_pem),
        "ACL": "cert",
    }
    listed = {r.serial_number for r in crypto.load_crls(crl_pem.encode(), source="crl")[0]}
    assert listed == {bob_serial}  # the CRL signed at apply time lists what the plan said
    assert cloud.cli("--json", "ca", "show", "--ca-dir", ca).json()["next_crl_number"] == 2
    lines = audit.read(cloud.work / "audit.jsonl")
    assert [(r["instance"], r["outcome"]) for r in lines] == [(iid, "sent"), (iid, "ok")]

    settled = cloud.cli("plan", "-f", config, "--detailed-exitcode")
    assert settled.exit_code == 0, settled.stderr  # nothing pending any more
    again = cloud.cli("apply", out)  # the same plan again: the instance is no longer "before"
    assert again.exit_code == ExitCode.VERIFICATION_FAILED
    assert "stale plan" in again.stderr and len(_sent(cloud)) == 1


def test_a_change_between_plan_and_apply_is_refused_with_nothing_sent(
    fresh: Cloud, tmp_path: Path
) -> None:
    cloud, iid = fresh, fresh.iid
    cloud.new_ca(tmp_path / "ca")
    other = tmp_path / "other"
    assert cloud.cli("ca", "init", "--ca-dir", other, "--cn", "other-ca",
                     "--no-passphrase").exit_code == 0  # fmt: skip
    config = _toml(tmp_path / "rdsssl.toml", iid, ca_dir="ca")
    out = tmp_path / "plan.json"
    assert cloud.cli("plan", "-f", config, "--out", out).exit_code == 0  # no flag: 0

    meddled = cloud.cli("instance", "enable-client-ca", iid, "--ca-dir", other, "--yes")
    assert meddled.exit_code == 0, meddled.stderr
    calls = len(cloud.calls("ModifyDBInstanceSSL"))
    refused = cloud.cli("--json", "apply", out)
    assert refused.exit_code == ExitCode.VERIFICATION_FAILED, refused.stderr
    assert "stale plan" in refused.stderr and "run rdsssl plan again" in refused.stderr
    assert refused.json()["instances"][0]["error"]["type"] == "StalePlan"
    assert len(cloud.calls("ModifyDBInstanceSSL")) == calls  # nothing sent
    held = cloud.emu.instance(iid).ssl.client_ca_pem
    assert held is not None and crypto.pem_fingerprints(held.encode(), source="i") == (
        crypto.pem_fingerprints((other / "ca.crt").read_bytes(), source="o")
    )


def test_a_revocation_after_the_plan_makes_its_crl_stale(fresh: Cloud, tmp_path: Path) -> None:
    cloud, iid = fresh, fresh.iid
    ca = cloud.new_ca(tmp_path / "ca")
    cloud.issue(ca, tmp_path / "bob", user="bob")
    config = _toml(tmp_path / "rdsssl.toml", iid, ca_dir="ca", crl=True)
    out = tmp_path / "plan.json"
    assert cloud.cli("plan", "-f", config, "--out", out).exit_code == 0
    assert cloud.cli("cert", "revoke", "--ca-dir", ca, "--user", "bob").exit_code == 0
    refused = cloud.cli("apply", out)
    assert refused.exit_code == ExitCode.VERIFICATION_FAILED, refused.stderr
    assert "revocations of the CA store" in refused.stderr and "stale plan" in refused.stderr
    assert cloud.mutating() == []
    assert cloud.cli("--json", "ca", "show", "--ca-dir", ca).json()["next_crl_number"] == 1


def test_a_tampered_or_garbled_plan_file_is_exit_3(fresh: Cloud, tmp_path: Path) -> None:
    cloud, iid = fresh, fresh.iid
    cloud.new_ca(tmp_path / "ca")
    config = _toml(tmp_path / "rdsssl.toml", iid, ca_dir="ca", acl="verify-ca")
    out = tmp_path / "plan.json"
    assert cloud.cli("plan", "-f", config, "--out", out).exit_code == 0
    doc = json.loads(out.read_text())
    doc["instances"][0]["request"]["acl"] = "cert"  # edited by hand, checksum left as it was
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc))
    garbled = tmp_path / "garbled.json"
    garbled.write_text(out.read_text()[:-40])
    runs = [cloud.cli("apply", tampered), cloud.cli("apply", garbled)]
    assert [r.exit_code for r in runs] == [ExitCode.BAD_INPUT] * 2, [r.stderr for r in runs]
    assert "checksum does not match" in runs[0].stderr and "bad JSON" in runs[1].stderr
    both = cloud.cli("apply", out, "-f", config)
    neither = cloud.cli("apply", "--yes")
    assert [both.exit_code, neither.exit_code] == [ExitCode.USAGE] * 2
    assert cloud.mutating() == []
    broken = _toml(tmp_path / "broken.toml", iid, ca_dir="nowhere")  # errors keep their codes
    failed = cloud.cli("plan", "-f", broken, "--out", tmp_path / "p2.json", "--detailed-exitcode")
    assert failed.exit_code == ExitCode.BAD_INPUT and not (tmp_path / "p2.json").exists()
