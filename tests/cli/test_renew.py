"""`rdsssl cert renew`: the window, the atomic swap, the deploy hook, re-runs and SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from rdsssl import crypto
from tests.cli.helpers import Result, invoke, issue, mode, snapshot

NOW = datetime.now(timezone.utc)


def at(days: float) -> Callable[[], datetime]:
    """A clock `days` from now (the window is tested by moving time, not by waiting)."""
    return lambda: NOW + timedelta(days=days)


def renew(ca_dir: Path, out_root: Path, *args: str, **kwargs: Any) -> Result:
    return invoke("--json", "cert", "renew", "--ca-dir", ca_dir, "--out-root", out_root, *args,
                  **kwargs)  # fmt: skip


def valid_serials(ca_dir: Path, user: str) -> list[str]:
    rows = invoke("--json", "cert", "list", "--ca-dir", ca_dir, "--user", user).json()
    return [c["serial"] for c in rows["certificates"] if c["status"] == "valid"]


def assert_pair(out_dir: Path) -> str:
    """client.crt and client.key belong together; returns the certificate's serial."""
    cert = x509.load_pem_x509_certificate((out_dir / "client.crt").read_bytes())
    key = crypto.load_private_key(
        (out_dir / "client.key").read_bytes(), source="k", passphrase=None
    )
    crypto.check_key_matches(cert, key, source=str(out_dir / "client.key"))
    return format(cert.serial_number, "x")


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs if k.startswith("RDSSSL_")}


# --- the window -----------------------------------------------------------------------------------


def test_nothing_due_is_a_noop_that_changes_nothing(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "300")
    before = snapshot(ca_dir)
    result = renew(ca_dir, tmp_path / "out", "--deploy-hook", f"touch {tmp_path}/ran")
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["ok"] is True and doc["due"] == [] and doc["renewed"] == [] and doc["hooks"] == []
    assert "nothing to renew" in result.stderr
    assert snapshot(ca_dir) == before
    assert not (tmp_path / "out" / "alice").exists() and not (tmp_path / "ran").exists()


def test_before_window(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "60")
    assert renew(ca_dir, tmp_path / "o", "--before", "30d", "--dry-run").json()["due"] == []
    inside = renew(ca_dir, tmp_path / "o", "--before", "30d", "--dry-run", clock=at(31)).json()
    assert [c["cn"] for c in inside["due"]] == ["alice"]


def test_at_percent_window(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "90")
    early = renew(ca_dir, tmp_path / "o", "--at", "66%", "--dry-run", clock=at(50)).json()
    assert early["due"] == []  # 55 % elapsed
    late = renew(ca_dir, tmp_path / "o", "--at", "66%", "--dry-run", clock=at(60)).json()
    assert [c["cn"] for c in late["due"]] == ["alice"]  # 66.7 % elapsed
    half = renew(ca_dir, tmp_path / "o", "--at", "50", "--dry-run", clock=at(46)).json()
    assert [c["cn"] for c in half["due"]] == ["alice"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--before", "30d", "--at", "66%"], "contradict each other"),
        (["--at", "0%"], "above 0 and at most 100"),
        (["--at", "most"], "not a percentage"),
    ],
)
def test_bad_windows_are_usage_errors(
    ca_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = renew(ca_dir, tmp_path / "o", *args)
    assert result.exit_code == 2 and message in result.stderr


def test_a_validity_inside_the_window_is_refused(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    result = renew(ca_dir, tmp_path / "o", "--before", "30d", "--days", "20")
    assert result.exit_code == 3
    assert "would be due again at once" in result.stderr
    assert len(valid_serials(ca_dir, "alice")) == 1


# --- the swap -------------------------------------------------------------------------------------


def test_renewal_swaps_plain_files_for_a_new_version(ca_dir: Path, tmp_path: Path) -> None:
    out_root = tmp_path / "out"
    old = issue(ca_dir, "alice", out_root / "alice", "--days", "5")  # plain files, as `issue`
    result = renew(ca_dir, out_root)
    assert result.exit_code == 0, result.stderr
    (done,) = result.json()["renewed"]
    new_serial = done["certificate"]["serial"]
    assert done["old_serial"] == old["serial"] and new_serial != old["serial"]
    alice = out_root / "alice"
    assert assert_pair(alice) == new_serial
    assert mode(alice / "client.key") == 0o600 and mode(alice / "current") == 0o700
    assert (alice / "root.crt").read_bytes() == (ca_dir / "ca.crt").read_bytes()
    for name in ("client.crt", "client.key", "root.crt"):
        assert os.readlink(alice / name) == f"current/{name}"
    assert os.readlink(alice / "current") == new_serial
    # the plain files were kept as the previous version (a manual rollback is one ln -sfn)
    assert assert_pair(alice / old["serial"]) == old["serial"]
    assert sorted(done["files"]) == sorted(str(alice / n) for n in ("client.crt", "client.key",
                                                                    "root.crt"))  # fmt: skip

    # the next renewal replaces the version again and prunes all but the previous one
    again = renew(ca_dir, out_root, clock=at(400))
    assert again.exit_code == 0, again.stderr
    third = again.json()["renewed"][0]["certificate"]["serial"]
    assert assert_pair(alice) == third
    versions = sorted(p.name for p in alice.iterdir() if p.is_dir() and not p.is_symlink())
    assert versions == sorted([new_serial, third])


def test_formats_and_key_type(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    result = renew(ca_dir, tmp_path / "out", "--format", "pk8", "--key-type", "rsa-2048")
    assert result.exit_code == 0, result.stderr
    assert result.json()["renewed"][0]["certificate"]["key_type"] == "rsa-2048"
    alice = tmp_path / "out" / "alice"
    assert mode(alice / "client.pk8") == 0o600 and os.readlink(alice / "client.pk8")
    # back to pem: the pk8 name leaves with the version that had it
    assert renew(ca_dir, tmp_path / "out", clock=at(400)).exit_code == 0
    assert not os.path.lexists(alice / "client.pk8")
    assert_pair(alice)


# --- re-runs, users -------------------------------------------------------------------------------


def test_rerun_right_after_a_renewal_renews_nothing(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    assert renew(ca_dir, tmp_path / "out").exit_code == 0
    state = snapshot(tmp_path / "out")
    rerun = renew(ca_dir, tmp_path / "out")
    assert rerun.exit_code == 0 and rerun.json()["renewed"] == [] and rerun.json()["due"] == []
    assert snapshot(tmp_path / "out") == state
    assert len(valid_serials(ca_dir, "alice")) == 2  # the old one stays valid


def test_user_filter(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    issue(ca_dir, "bob", tmp_path / "b", "--days", "5")
    result = renew(ca_dir, tmp_path / "out", "--user", "bob")
    assert [r["user"] for r in result.json()["renewed"]] == ["bob"]
    assert not (tmp_path / "out" / "alice").exists()
    assert len(valid_serials(ca_dir, "alice")) == 1


# --- the deploy hook ------------------------------------------------------------------------------


def test_hook_gets_the_renewal_in_its_environment(enc_ca_dir: Path, tmp_path: Path) -> None:
    env = {"RDSSSL_CA_PASSPHRASE": "correct horse"}
    issued = invoke("--json", "cert", "issue", "--ca-dir", enc_ca_dir, "--user", "alice",
                    "--out", tmp_path / "a", "--days", "5", env=env)  # fmt: skip
    old = issued.json()["certificate"]
    hook = f"env > {tmp_path}/hook-$RDSSSL_USER.env"
    result = renew(enc_ca_dir, tmp_path / "out", "--deploy-hook", hook, env=env)
    assert result.exit_code == 0, result.stderr
    new = result.json()["renewed"][0]["certificate"]["serial"]
    seen = read_env(tmp_path / "hook-alice.env")
    alice = tmp_path / "out" / "alice"
    assert seen == {
        "RDSSSL_USER": "alice",
        "RDSSSL_SERIAL": new,
        "RDSSSL_OLD_SERIAL": old["serial"],
        "RDSSSL_CERT_PATH": str(alice / "client.crt"),
        "RDSSSL_KEY_PATH": str(alice / "client.key"),
        "RDSSSL_ROOT_CERT_PATH": str(alice / "root.crt"),
        "RDSSSL_OUT_DIR": str(alice),
        "RDSSSL_DRY_RUN": "0",
    }  # and no RDSSSL_CA_PASSPHRASE: the hook has no business with the CA key
    assert result.json()["hooks"] == [{"user": "alice", "serial": new, "exit_code": 0, "ok": True}]


def test_dry_run_runs_the_hook_and_writes_nothing(ca_dir: Path, tmp_path: Path) -> None:
    old = issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    before = snapshot(ca_dir)
    hook = f"env > {tmp_path}/hook.env"
    result = renew(ca_dir, tmp_path / "out", "--deploy-hook", hook, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.json()["renewed"] == [] and result.json()["dry_run"] is True
    seen = read_env(tmp_path / "hook.env")
    assert seen["RDSSSL_DRY_RUN"] == "1" and seen["RDSSSL_SERIAL"] == ""
    assert seen["RDSSSL_OLD_SERIAL"] == old["serial"]
    assert seen["RDSSSL_CERT_PATH"] == str(tmp_path / "out" / "alice" / "client.crt")
    assert not (tmp_path / "out").exists() and snapshot(ca_dir) == before


def test_hook_failure_exits_1_keeps_the_renewal_and_retries(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    failed = renew(ca_dir, tmp_path / "out", "--deploy-hook", "echo boom; exit 3")
    assert failed.exit_code == 1
    doc = failed.json()
    assert doc["ok"] is False and doc["hooks"][0]["exit_code"] == 3
    assert "deploy hook (alice): boom" in failed.stderr
    assert "the deploy hook failed for alice (exit 3)" in failed.stderr
    serial = doc["renewed"][0]["certificate"]["serial"]
    assert assert_pair(tmp_path / "out" / "alice") == serial  # the renewal stays done

    retry = renew(ca_dir, tmp_path / "out", "--deploy-hook", f"touch {tmp_path}/deployed")
    assert retry.exit_code == 0, retry.stderr
    assert retry.json()["renewed"] == [] and retry.json()["hooks"][0]["serial"] == serial
    assert (tmp_path / "deployed").exists()
    (tmp_path / "deployed").unlink()
    assert renew(ca_dir, tmp_path / "out", "--deploy-hook", "true").json()["hooks"] == []


@pytest.mark.parametrize(
    "hook,message",
    [
        ("/nonexistent/deploy", "is not an executable file"),
        ("no-such-program-xyz --now", "is not found on PATH"),
        ('echo "unterminated', "cannot parse it"),
        ("echo ok; fi", "not a valid sh command"),
    ],
)
def test_a_bad_hook_is_refused_before_any_work(
    ca_dir: Path, tmp_path: Path, hook: str, message: str
) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    result = renew(ca_dir, tmp_path / "out", "--deploy-hook", hook)
    assert result.exit_code == 3 and message in result.stderr
    assert len(valid_serials(ca_dir, "alice")) == 1


def test_a_hook_may_use_the_same_store(ca_dir: Path, tmp_path: Path) -> None:
    """Hooks run after the CA store lock is released: revoking the old serial works."""
    old = issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    hook = (
        f"{sys.executable} -m rdsssl -q cert revoke --ca-dir {ca_dir} "
        "--serial $RDSSSL_OLD_SERIAL --reason superseded"
    )
    result = renew(ca_dir, tmp_path / "out", "--deploy-hook", hook)
    assert result.exit_code == 0, result.stderr
    rows = invoke("--json", "cert", "list", "--ca-dir", ca_dir).json()["certificates"]
    states = {c["serial"]: (c["status"], c["reason"]) for c in rows}
    assert states[old["serial"]] == ("revoked", "superseded")


# --- SIGKILL in the middle ------------------------------------------------------------------------

KILLER = """
import os, signal, sys
import rdsssl.store_renew as m
point, args = sys.argv[1], sys.argv[2:]
calls = {"n": 0}

def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)

def die_on_fourth(*a, **k):
    calls["n"] += 1
    if calls["n"] == 4:  # current, root.crt, client.crt relinked; client.key still plain
        die()
    return point_orig(*a, **k)

if point == "before-sign":
    m._csr = die
elif point == "after-sign":
    m.write_client_files = die
elif point == "before-publish":
    m._publish = die
elif point == "mid-relink":
    point_orig = m._point
    m._point = die_on_fourth
from rdsssl.cli import main
main(args)
"""


@pytest.mark.parametrize("point", ["before-sign", "after-sign", "before-publish", "mid-relink"])
def test_sigkill_mid_renewal_is_finished_by_the_next_run(
    ca_dir: Path, tmp_path: Path, point: str
) -> None:
    out_root = tmp_path / "out"
    alice = out_root / "alice"
    old = issue(ca_dir, "alice", alice, "--days", "5")  # plain files: relinking is exercised
    args = ["cert", "renew", "--ca-dir", str(ca_dir), "--out-root", str(out_root)]
    killed = subprocess.run([sys.executable, "-c", KILLER, point, *args], capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert assert_pair(alice) == old["serial"]  # what clients read is still one whole pair

    result = renew(ca_dir, out_root)
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    serials = valid_serials(ca_dir, "alice")
    assert len(serials) == 2, "at most one new certificate per renewal"
    new = next(s for s in serials if s != old["serial"])
    assert assert_pair(alice) == new
    assert [r["certificate"]["serial"] for r in doc["resumed"] + doc["renewed"]] == [new]
    assert not (alice / ".pending").exists()
    assert renew(ca_dir, out_root).json()["renewed"] == []


# --- during a CA rotation ----------------------------------------------------------------------


def test_renewing_from_the_old_ca_into_a_rotations_out_root_is_refused(
    ca_dir: Path, tmp_path: Path
) -> None:
    from rdsssl import rotation_state
    from rdsssl.rotation_state import Phase
    from rdsssl.store import CaStore

    new_dir = tmp_path / "new-ca"
    assert (
        invoke("ca", "init", "--ca-dir", new_dir, "--cn", "root-ca2", "--no-passphrase").exit_code
        == 0
    )
    issue(ca_dir, "alice", tmp_path / "a", "--days", "10")
    out_root = tmp_path / "client-certs"
    with CaStore.open(ca_dir) as old, CaStore.open(new_dir) as new:
        state = rotation_state.prepare(
            None, old=old, new=new, instances=["pgm-x"], out_root=out_root, now=NOW
        )
    rotation_state.save(rotation_state.state_path(ca_dir), state)  # phase "new": not started
    assert renew(ca_dir, out_root, "--dry-run").exit_code == 0
    state.phase = Phase.STAGED
    rotation_state.save(rotation_state.state_path(ca_dir), state)
    before = snapshot(ca_dir)
    refused = renew(ca_dir, out_root)
    assert refused.exit_code == 3
    assert "rotation" in refused.stderr and str(new_dir) in refused.stderr
    assert snapshot(ca_dir) == before and not (out_root / "alice").exists()
    elsewhere = renew(ca_dir, tmp_path / "other-root")  # another out-root is not in the way
    assert elsewhere.exit_code == 0 and elsewhere.json()["renewed"]
