"""Two-phase CA rotation end to end: the real SDK over HTTP against the emulator, real
PostgreSQL behind it, clients connecting with their certificate files.

One emulator for the module (two instances, restarts of 0.3 s), reset before each test; each
test makes its own CA stores and configures the instance(s) with the old CA, CRL and ACL
verify-full first, so certificates and passwords both matter.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from rdsssl.emulator.server import Emulator
from rdsssl.models import CertStatus
from rdsssl.ops import crashpoints, rotation
from rdsssl.ops.rotation_context import Event, Options
from rdsssl.ops.rotation_file import load, prepare
from rdsssl.ops.rotation_state import Step
from rdsssl.rds.api import AliyunRdsApi
from rdsssl.store.castore import CaStore
from tests.cli.helpers import rewrite_cn
from tests.e2e.rotation_helpers import (
    NEW_PASSPHRASE,
    OK,
    PASSWORDS,
    PW_VAR,
    UNKNOWN_CA,
    Pki,
    ca_fingerprint,
    cli_env,
    client_ca_fingerprints,
    client_outcome,
    configure_old_ca,
    kill_when,
    later_args,
    make_api,
    make_pki,
    modify_calls,
    rdsssl,
    read_state,
    serial_of,
    start_args,
)


@pytest.fixture(scope="module")
def rot_emu() -> Iterator[Emulator]:
    """Two real-PostgreSQL instances, each with the accounts alice and bob."""
    with Emulator(instances=2, backend="pg", restart_seconds=0.3, acl_lock_seconds=0.2) as emu:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", emu.access_key_id)
            mp.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", emu.access_key_secret)
            api = make_api(emu)
            for iid in emu.instance_ids:
                for user, password in PASSWORDS.items():
                    api.create_account(iid, user, password)
        yield emu


@dataclass(frozen=True)
class Case:
    emu: Emulator
    api: AliyunRdsApi
    pki: Pki
    env: dict[str, str]
    root: Path  # the server CA, for clients' sslmode=verify-full
    iid: str

    def outcome(self, client: str | Path, iid: str | None = None) -> str:
        folder = client if isinstance(client, Path) else self.pki.client(client)
        return client_outcome(self.emu, iid or self.iid, folder, self.root)

    def rotate(self, *args: str | Path) -> Any:
        return rdsssl(self.env, "rotate", *args)


def _case(emu: Emulator, tmp: Path, monkeypatch: pytest.MonkeyPatch, **pki_kw: Any) -> Case:
    emu.reset()
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", emu.access_key_id)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", emu.access_key_secret)
    api = make_api(emu)
    pki = make_pki(tmp, **pki_kw)
    root = tmp / "server-ca.pem"
    root.write_bytes(emu.server_ca_pem)
    return Case(emu, api, pki, cli_env(emu, tmp), root, emu.instance_ids[0])


@pytest.fixture
def case(rot_emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    """The first instance on the old CA (verify-full), and fresh stores."""
    c = _case(rot_emu, tmp_path, monkeypatch)
    configure_old_ca(c.api, c.iid, c.pki)
    return c


def _restarts_and_calls(c: Case, iid: str | None = None) -> tuple[int, int]:
    iid = iid or c.iid
    return c.emu.restarts(iid), modify_calls(c.emu, iid)


# ------------------------------------------------------------------ the rotation, phase by phase


def test_old_and_new_clients_before_and_after_every_phase(case: Case) -> None:
    c = case
    old, early, reissued = "old-alice", "new-alice", c.pki.out / "alice"
    base_restarts, base_calls = _restarts_and_calls(c)
    assert (c.outcome(old), c.outcome(early)) == (OK, UNKNOWN_CA)

    r = c.rotate("ca", *start_args(c.pki, c.iid), "--phase", "stage")
    assert r.exit_code == 0, r.stderr
    assert "RESTARTS" in r.stderr
    assert (c.outcome(old), c.outcome(early)) == (OK, OK)
    assert client_ca_fingerprints(c.api, c.iid) == {
        ca_fingerprint(c.pki.old),
        ca_fingerprint(c.pki.new),
    }

    r = c.rotate("ca", "--ca-dir", c.pki.old, "--phase", "reissue", "--yes")
    assert r.exit_code == 0, r.stderr
    assert {p.name for p in c.pki.out.iterdir()} == {"alice", "bob"}
    assert (c.outcome(old), c.outcome(early), c.outcome(reissued)) == (OK, OK, OK)

    r = c.rotate("ca", *later_args(c.pki), "--phase", "verify")
    assert r.exit_code == 0, r.stderr
    assert (c.outcome(old), c.outcome(early), c.outcome(reissued)) == (OK, OK, OK)
    assert _restarts_and_calls(c) == (base_restarts + 1, base_calls + 1)  # stage only

    r = c.rotate("ca", *later_args(c.pki), "--retire")
    assert r.exit_code == 0, r.stderr
    assert (c.outcome(old), c.outcome(early), c.outcome(reissued)) == (UNKNOWN_CA, OK, OK)
    assert client_ca_fingerprints(c.api, c.iid) == {ca_fingerprint(c.pki.new)}
    assert _restarts_and_calls(c) == (base_restarts + 2, base_calls + 2)
    assert read_state(c.pki)["phase"] == "retired"

    again = c.rotate("ca", "--ca-dir", c.pki.old, "--retire", "--yes", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["completed"] == [] and "nothing to do" in again.stderr
    assert _restarts_and_calls(c) == (base_restarts + 2, base_calls + 2)


def test_one_run_goes_to_verified_and_stops_for_the_overlap(case: Case) -> None:
    c = case
    r = c.rotate("ca", *start_args(c.pki, c.iid), "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert (doc["phase"], doc["completed"]) == ("verified", ["stage", "reissue", "verify"])
    assert "--retire" in doc["next"]
    verify = [e for e in doc["events"] if e["step"] == "verify" and e["instance"]]
    assert [(e["instance"], e["outcome"]) for e in verify] == [(c.iid, "ok")]
    assert c.outcome("old-alice") == OK  # the overlap: old clients still work


# ------------------------------------------------------------------ killed and resumed


def test_a_run_killed_in_each_phase_is_finished_by_the_next(
    rot_emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = _case(rot_emu, tmp_path, monkeypatch, slow_users=("carol", "dave"))
    ids = rot_emu.instance_ids[:2]
    for iid in ids:
        configure_old_ca(c.api, iid, c.pki)
    base = {iid: _restarts_and_calls(c, iid) for iid in ids}
    args = ["rotate", "ca", *start_args(c.pki, *ids)]
    env = c.env

    def calls() -> int:
        return sum(modify_calls(rot_emu, iid) - base[iid][1] for iid in ids)

    def users_done() -> int:
        return sum(1 for u in read_state(c.pki).get("users", {}).values() if u["new_serial"])

    long_restart = 30.0  # on the emulator's clock: the killed run is surely still waiting
    rot_emu.state.restart_seconds = long_restart
    try:
        kill_when(env, args, lambda: calls() == 1)  # stage: first instance restarting
        rot_emu.clock.advance(long_restart)
        assert read_state(c.pki)["phase"] == "new"
        rot_emu.state.restart_seconds = 0.3
        kill_when(env, args, lambda: users_done() >= 1)  # reissue: RSA keys take a while
        assert read_state(c.pki)["phase"] == "staged" and users_done() < 4
        rot_emu.faults.push("latency", action="DescribeDBInstanceNetInfo", latency=3.0)
        kill_when(env, args, lambda: read_state(c.pki)["phase"] == "reissued")  # verify
        rot_emu.state.restart_seconds = long_restart
        kill_when(env, [*args, "--retire"], lambda: calls() == 3)  # retire: first instance
        rot_emu.clock.advance(long_restart)
    finally:
        rot_emu.state.restart_seconds = 0.3
    final = rdsssl(env, *args, "--retire")
    assert final.exit_code == 0, final.stderr

    state = read_state(c.pki)
    assert state["phase"] == "retired"
    for iid in ids:  # exactly one stage and one retire per instance, despite four kills
        restarts, modifies = _restarts_and_calls(c, iid)
        assert (restarts - base[iid][0], modifies - base[iid][1]) == (2, 2), iid
        assert c.outcome("old-alice", iid) == UNKNOWN_CA
        assert c.outcome(c.pki.out / "alice", iid) == OK
    assert sorted(state["users"]) == ["alice", "bob", "carol", "dave"]
    early = serial_of(c.pki.client("new-alice"))  # issued before the rotation
    with CaStore.open(c.pki.new) as new:
        for user, record in state["users"].items():
            valid = [
                r.serial_hex
                for r in new.certificates(user=user)
                if r.status is CertStatus.VALID and r.serial != early
            ]
            assert valid == [record["new_serial"]], user
            assert serial_of(c.pki.out / user) == int(record["new_serial"], 16)
            assert not (c.pki.out / user / ".pending").exists()


def _reissue_run(c: Case, report: Callable[[Event], None]) -> rotation.Rotation:
    """A library run whose state is at phase staged, for reissue only (no instance needed)."""
    old, new = CaStore.open(c.pki.old), CaStore.open(c.pki.new)
    new.unlock(NEW_PASSPHRASE.encode())
    path = c.pki.old / "rotation.json"
    now = datetime.now(timezone.utc)
    state = load(path) or prepare(
        None, old=old, new=new, instances=[c.iid], out_root=c.pki.out, now=now
    )
    state.complete(Step.STAGE, at="2025-01-01T00:00:00Z")  # a no-op once staged
    return rotation.Rotation(
        c.api,
        old=old,
        new=new,
        state=state,
        path=path,
        options=Options(),
        clock=lambda: datetime.now(timezone.utc),
        report=report,
    )


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ("renew.key-staged", "reissued"),  # key staged in .pending, never certified
        ("renew.signed", "adopted"),  # certified, not published yet
        ("reissue.live", "adopted"),  # live, not recorded yet
    ],
)
def test_reissue_killed_at_each_point_never_makes_a_second_certificate(
    case: Case, point: str, expected: str
) -> None:
    c = case
    calls: list[str] = []

    def dies_at_bob() -> None:
        calls.append(point)
        if len(calls) == 2:  # alice went through; the process dies during bob's reissue
            raise KeyboardInterrupt

    run = _reissue_run(c, lambda e: None)
    with crashpoints.at(point, dies_at_bob), pytest.raises(KeyboardInterrupt):
        run.run([Step.REISSUE])
    run.old.close()
    run.new.close()
    assert read_state(c.pki)["users"]["bob"]["new_serial"] is None

    events: list[Event] = []
    again = _reissue_run(c, events.append)
    assert again.run([Step.REISSUE]) == [Step.REISSUE]
    assert {e.user: e.outcome for e in events if e.user} == {"alice": "unchanged", "bob": expected}
    recorded = read_state(c.pki)["users"]["bob"]["new_serial"]
    valid = [
        r.serial_hex for r in again.new.certificates(user="bob") if r.status is CertStatus.VALID
    ]
    again.old.close()
    again.new.close()
    assert valid == [recorded]
    assert serial_of(c.pki.out / "bob") == int(recorded, 16)
    assert not (c.pki.out / "bob" / ".pending").exists()


# ------------------------------------------------------------------ rollback


def test_rollback_before_retire_restores_the_old_ca_and_a_new_run_stages_again(
    case: Case,
) -> None:
    c = case
    base_restarts, base_calls = _restarts_and_calls(c)
    r = c.rotate("ca", *start_args(c.pki, c.iid), "--phase", "stage")
    assert r.exit_code == 0, r.stderr
    r = c.rotate("ca", "--ca-dir", c.pki.old, "--phase", "reissue", "--yes")
    assert r.exit_code == 0, r.stderr
    old = c.pki.client("old-alice")
    r = c.rotate(
        "ca",
        "--ca-dir",
        c.pki.old,
        "--rollback",
        "--yes",
        "--probe-user",
        "alice",
        "--probe-cert",
        old / "client.crt",
        "--probe-key",
        old / "client.key",
        "--probe-password-env",
        PW_VAR,
    )
    assert r.exit_code == 0, r.stderr
    assert "stay issued" in r.stderr
    assert client_ca_fingerprints(c.api, c.iid) == {ca_fingerprint(c.pki.old)}
    assert (c.outcome("old-alice"), c.outcome("new-alice")) == (OK, UNKNOWN_CA)
    assert read_state(c.pki)["phase"] == "rolled-back"
    assert _restarts_and_calls(c) == (base_restarts + 2, base_calls + 2)
    serials = {u: rec["new_serial"] for u, rec in read_state(c.pki)["users"].items()}

    r = c.rotate("ca", *later_args(c.pki))
    assert r.exit_code == 0, r.stderr
    state = read_state(c.pki)
    assert state["phase"] == "verified"
    assert {u: rec["new_serial"] for u, rec in state["users"].items()} == serials  # reused
    assert (c.outcome("old-alice"), c.outcome(c.pki.out / "alice")) == (OK, OK)


def test_rollback_after_retire_is_refused(case: Case) -> None:
    c = case
    r = c.rotate("ca", *start_args(c.pki, c.iid), "--retire")
    assert r.exit_code == 0, r.stderr
    calls = modify_calls(c.emu, c.iid)
    r = c.rotate("ca", "--ca-dir", c.pki.old, "--rollback", "--force", "--yes")
    assert r.exit_code == 2
    assert "rollback is no longer possible" in r.stderr
    assert modify_calls(c.emu, c.iid) == calls
    assert client_ca_fingerprints(c.api, c.iid) == {ca_fingerprint(c.pki.new)}


# ------------------------------------------------------------------ refusals and status


def test_a_refused_multi_ca_bundle_stops_before_any_change(case: Case) -> None:
    c = case
    base_restarts, base_calls = _restarts_and_calls(c)
    c.emu.faults.switches.multi_ca_bundle = False
    r = c.rotate("ca", *start_args(c.pki, c.iid), "--json")
    assert r.exit_code == 4
    assert "refused a client CA bundle" in r.stderr and "changed nothing" in r.stderr
    assert r.json()["error"]["type"] == "BundleRefused"
    assert modify_calls(c.emu, c.iid, outcome="InvalidClientCACert") == 1
    assert _restarts_and_calls(c) == (base_restarts, base_calls)
    assert client_ca_fingerprints(c.api, c.iid) == {ca_fingerprint(c.pki.old)}
    state = read_state(c.pki)
    assert (state["phase"], state["instances"], state["users"]) == ("new", {c.iid: {}}, {})
    assert not c.pki.out.exists()  # nothing reissued either


def test_dry_run_then_status_json_and_a_private_state_file(case: Case) -> None:
    c = case
    base = _restarts_and_calls(c)
    dry = c.rotate("ca", *start_args(c.pki, c.iid), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    doc = dry.json()
    assert (doc["dry_run"], doc["phase"], doc["completed"]) == (True, "new", [])
    steps = [(e["step"], e["outcome"]) for e in doc["events"]]
    assert steps[:2] == [("stage", "would-change"), ("stage", "done")]
    assert ("reissue", "would-reissue") in steps and ("verify", "would-probe") in steps
    assert not (c.pki.old / "rotation.json").exists() and not c.pki.out.exists()
    assert _restarts_and_calls(c) == base

    none = c.rotate("status", "--ca-dir", c.pki.old, "--json")
    assert none.exit_code == 0 and none.json()["phase"] is None

    r = c.rotate("ca", *start_args(c.pki, c.iid), "--phase", "stage")
    assert r.exit_code == 0, r.stderr
    status = c.rotate("status", "--ca-dir", c.pki.old, "--json")
    assert status.exit_code == 0, status.stderr
    doc = status.json()
    assert set(status.body()) == {"state_file", "phase", "rollback_possible", "next", "rotation"}
    assert (doc["phase"], doc["rollback_possible"]) == ("staged", True)
    assert "reissue" in doc["next"]
    rot = doc["rotation"]
    assert rot["old_ca"]["fingerprint"] == ca_fingerprint(c.pki.old)
    assert rot["new_ca"]["dir"] == str(c.pki.new.absolute())
    stage = rot["instances"][c.iid]["stage"]
    assert stage["outcome"] == "changed" and stage["request_id"]
    assert rot["users"] == {} and [h["phase"] for h in rot["history"]] == ["new", "staged"]
    path = Path(doc["state_file"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert NEW_PASSPHRASE not in path.read_text() and "PRIVATE KEY" not in path.read_text()
    human = c.rotate("status", "--ca-dir", c.pki.old)
    assert "phase staged" in human.stdout and c.iid in human.stdout


def test_refusals_and_a_failed_verify_leave_the_phase_where_it_was(case: Case) -> None:
    c = case
    r = c.rotate("ca", *start_args(c.pki, c.iid), "--phase", "stage")
    assert r.exit_code == 0, r.stderr
    other = c.emu.instance_ids[1]
    r = c.rotate("ca", other, "--ca-dir", c.pki.old, "--yes")
    assert r.exit_code == 2 and "name the same instances" in r.stderr
    r = c.rotate("ca", "--ca-dir", c.pki.old, "--phase", "retire", "--yes")
    assert r.exit_code == 2 and "retire needs verify first" in r.stderr
    r = c.rotate("ca", "--ca-dir", c.pki.old, "--no-wait", "--yes")
    assert r.exit_code == 2 and "--no-wait needs --phase" in r.stderr
    assert read_state(c.pki)["phase"] == "staged"

    c.env["WRONG_PW"] = "not-the-password-1"
    probe = ["--probe-user", "alice", "--probe-password-env", "WRONG_PW"]
    r = c.rotate("ca", "--ca-dir", c.pki.old, *probe, "--yes", "--json")
    assert r.exit_code == 6, r.stderr
    assert "auth-failed" in r.stderr and "Nothing was retired" in r.stderr
    assert r.json()["error"]["type"] == "VerificationError"
    state = read_state(c.pki)
    assert state["phase"] == "reissued"
    assert state["instances"][c.iid]["verify"]["outcome"] == "failed"
    r = c.rotate("ca", *later_args(c.pki))  # the right password: verify passes on a re-run
    assert r.exit_code == 0, r.stderr
    assert read_state(c.pki)["instances"][c.iid]["verify"]["outcome"] == "ok"


# ------------------------------------------------------------------ user names


def _old_serial(c: Case, user: str) -> str:
    doc = rdsssl(c.env, "--json", "cert", "list", "--ca-dir", c.pki.old, "--user", user).json()
    serials: list[str] = [x["serial"] for x in doc["certificates"] if x["status"] == "valid"]
    assert len(serials) == 1
    return serials[0]


def test_a_bad_user_name_is_refused_before_staging_restarts_anything(case: Case) -> None:
    c = case
    bob = _old_serial(c, "bob")
    rewrite_cn(c.pki.old, bob, "bob\x1b[2J/../x")  # as an old store could hold it
    restarts, calls = _restarts_and_calls(c)
    r = c.rotate("ca", *start_args(c.pki, c.iid))
    assert r.exit_code == 3, r.stderr
    assert f"certificate {bob}" in r.stderr and "\x1b" not in r.stderr
    assert f"rdsssl cert revoke --ca-dir {c.pki.old} --serial {bob}" in r.stderr
    assert "No instance was changed" in r.stderr
    assert _restarts_and_calls(c) == (restarts, calls) and read_state(c.pki) == {}
    assert not c.pki.out.exists()

    revoked = rdsssl(c.env, "cert", "revoke", "--ca-dir", c.pki.old, "--serial", bob)
    assert revoked.exit_code == 0, revoked.stderr
    r = c.rotate("ca", *start_args(c.pki, c.iid), "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["phase"] == "verified" and sorted(read_state(c.pki)["users"]) == ["alice"]


def test_reissue_after_staging_skips_a_bad_name_and_reissues_everyone_else(case: Case) -> None:
    c = case
    r = c.rotate("ca", *start_args(c.pki, c.iid), "--phase", "stage")
    assert r.exit_code == 0, r.stderr
    bob = _old_serial(c, "bob")
    rewrite_cn(c.pki.old, bob, "bo\x85b")  # a C1 control character
    r = c.rotate("ca", *later_args(c.pki), "--phase", "reissue")
    assert r.exit_code == 3, r.stderr
    assert f"warning: reissue: refused (certificate {bob} is not reissued" in r.stderr
    assert "'bo\\x85b'" in r.stderr and "\x85" not in r.stderr
    assert "every other user was reissued" in r.stderr
    state = read_state(c.pki)
    assert state["phase"] == "staged" and sorted(state["users"]) == ["alice"]
    assert serial_of(c.pki.out / "alice") == int(state["users"]["alice"]["new_serial"], 16)

    assert rdsssl(c.env, "cert", "revoke", "--ca-dir", c.pki.old, "--serial", bob).exit_code == 0
    r = c.rotate("ca", *later_args(c.pki), "--phase", "reissue")
    assert r.exit_code == 0, r.stderr
    assert "reissue: alice: unchanged" in r.stderr and read_state(c.pki)["phase"] == "reissued"
