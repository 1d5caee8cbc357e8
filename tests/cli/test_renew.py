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

from rdsssl.ops import crashpoints
from rdsssl.pki import crypto
from tests.cli.helpers import Result, invoke, issue, mode, rewrite_cn, snapshot

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
    """The RDSSSL_* variables a hook saw (but the state directory the test session sets)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs if k.startswith("RDSSSL_") and k != "RDSSSL_STATE_DIR"}


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


# --- names and directories that cannot be used -----------------------------------------------


def test_a_bad_name_in_an_old_store_is_skipped_and_everyone_else_renewed(
    ca_dir: Path, tmp_path: Path
) -> None:
    out_root = tmp_path / "out"
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    evil = issue(ca_dir, "mallory", tmp_path / "m", "--days", "5")["serial"]
    dots = issue(ca_dir, "trudy", tmp_path / "t", "--days", "5")["serial"]
    issue(ca_dir, "bob", tmp_path / "b", "--days", "5")
    rewrite_cn(ca_dir, evil, "mal\x1b[2Jlory")
    rewrite_cn(ca_dir, dots, "../trudy")
    result = renew(ca_dir, out_root)
    assert result.exit_code == 3
    doc = result.json()
    assert doc["ok"] is False and sorted(r["user"] for r in doc["renewed"]) == ["alice", "bob"]
    assert sorted(s["serial"] for s in doc["skipped"]) == sorted([evil, dots])
    new = {r["user"]: r["certificate"]["serial"] for r in doc["renewed"]}
    assert {u: assert_pair(out_root / u) for u in ("alice", "bob")} == new
    assert sorted(p.name for p in out_root.iterdir()) == [".rdsssl-renew.lock", "alice", "bob"]
    assert not (tmp_path / "trudy").exists()
    assert f"skipped certificate {evil} ('mal\\x1b[2Jlory')" in result.stderr
    assert "\x1b" not in result.stderr  # escaped, never raw
    assert f"skipped certificate {dots} ('../trudy')" in result.stderr
    assert f"rdsssl cert revoke --serial {evil}" in result.stderr
    assert "2 certificate(s) skipped" in result.stderr

    for serial in (evil, dots):  # revoking them is the fix: the next run is clean
        assert invoke("cert", "revoke", "--ca-dir", ca_dir, "--serial", serial).exit_code == 0
    again = renew(ca_dir, out_root)
    assert again.exit_code == 0, again.stderr
    assert again.json()["skipped"] == [] and again.json()["renewed"] == []


def test_a_symlinked_user_directory_is_skipped_and_written_nowhere(
    ca_dir: Path, tmp_path: Path
) -> None:
    out_root = tmp_path / "out"
    out_root.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out_root / "alice").symlink_to(elsewhere)
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    issue(ca_dir, "bob", tmp_path / "b", "--days", "5")
    result = renew(ca_dir, out_root)
    assert result.exit_code == 3
    assert [r["user"] for r in result.json()["renewed"]] == ["bob"]
    assert f"{out_root / 'alice'} is a symbolic link" in result.stderr
    assert list(elsewhere.iterdir()) == [] and len(valid_serials(ca_dir, "alice")) == 1


def test_a_planted_link_in_a_user_directory_is_skipped(ca_dir: Path, tmp_path: Path) -> None:
    out_root = tmp_path / "out"
    issue(ca_dir, "alice", out_root / "alice", "--days", "5")
    assert renew(ca_dir, out_root).exit_code == 0  # a managed directory: links into current/
    (out_root / "alice" / "client.pk8").symlink_to(tmp_path / "where-the-attacker-reads")
    result = renew(ca_dir, out_root, clock=at(400))
    assert result.exit_code == 3 and result.json()["renewed"] == []
    assert "client.pk8 is a dangling symbolic link" in result.stderr
    assert not (tmp_path / "where-the-attacker-reads").exists()
    (out_root / "alice" / "client.pk8").unlink()
    fixed = renew(ca_dir, out_root, clock=at(400))
    assert fixed.exit_code == 0 and [r["user"] for r in fixed.json()["renewed"]] == ["alice"]


def test_renew_creates_out_root_0700_and_warns_about_a_shared_user_dir(
    ca_dir: Path, tmp_path: Path
) -> None:
    out_root = tmp_path / "srv" / "client-certs"
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    old = os.umask(0o022)
    try:
        first = renew(ca_dir, out_root)
    finally:
        os.umask(old)
    assert first.exit_code == 0, first.stderr
    for path in (tmp_path / "srv", out_root, out_root / "alice"):
        assert mode(path) == 0o700, path
    (out_root / "alice").chmod(0o750)
    again = renew(ca_dir, out_root, clock=at(400))
    assert again.exit_code == 0, again.stderr
    assert f"{out_root / 'alice'} is accessible to other users (mode 0750)" in again.stderr


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
    assert result.json()["hooks"] == [
        {
            "stage": "deploy",
            "hook": hook,
            "user": "alice",
            "serial": new,
            "exit_code": 0,
            "ok": True,
        }
    ]


SECRETS = {
    "RDSSSL_CA_PASSPHRASE": "correct horse",
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-hook-test-id-1",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "hook-test-ak-secret-2",
    "ALIBABA_CLOUD_SECURITY_TOKEN": "hook-test-sts-token-3",
    "MYAPP_DB_PASSWORD": "hook-test-password-4",
    "GITHUB_TOKEN": "hook-test-token-5",
    "some_secret_thing": "hook-test-secret-6",
    "P12_PW": "hook-test-p12-7",
    "UNRELATED_SETTING": "hook-test-unlisted-8",
}


def test_the_hook_environment_is_an_allow_list(enc_ca_dir: Path, tmp_path: Path) -> None:
    settings = {
        "RDSSSL_CA_DIR": str(enc_ca_dir),
        "RDSSSL_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "RDSSSL_ENDPOINT": "http://127.0.0.1:9",
        "ALIBABA_CLOUD_REGION_ID": "cn-hangzhou",
        "LC_TIME": "C",
        "TZ": "UTC",
    }
    env = {**SECRETS, **settings}
    issued = invoke("cert", "issue", "--ca-dir", enc_ca_dir, "--user", "alice",
                    "--out", tmp_path / "a", "--days", "5", env=env)  # fmt: skip
    assert issued.exit_code == 0, issued.stderr
    dump = tmp_path / "hook.env"
    result = renew(enc_ca_dir, tmp_path / "out", "--deploy-hook", f"env > {dump}",
                   "--format", "p12", "--p12-passphrase-env", "P12_PW", env=env)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    text = dump.read_text()
    names = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line}
    for name, value in SECRETS.items():
        assert name not in names and value not in text, name
    for name, value in settings.items():
        assert f"{name}={value}" in text.splitlines(), name
    allowed = {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "TZ",
        "TMPDIR",
        "PWD",
        "SHLVL",
        "_",
        *settings,
    }  # fmt: skip  (SHLVL, _ and PWD: set by sh itself)
    extra = {n for n in names if not n.startswith(("RDSSSL_", "LC_")) and n not in allowed}
    assert extra == set()


def test_dry_run_does_not_run_the_hook_unless_asked(ca_dir: Path, tmp_path: Path) -> None:
    """A hook is written for real renewals (the README's revokes $RDSSSL_OLD_SERIAL), so a dry
    run skips it; --run-deploy-hooks runs it with RDSSSL_DRY_RUN=1 and no serial to act on."""
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    before = snapshot(ca_dir)
    hook = f"env > {tmp_path}/hook.env"
    quiet = renew(ca_dir, tmp_path / "out", "--deploy-hook", hook, "--dry-run")
    assert quiet.exit_code == 0, quiet.stderr
    doc = quiet.json()
    assert doc["dry_run"] is True and [c["cn"] for c in doc["due"]] == ["alice"]
    assert doc["hooks_ran"] is False and doc["hooks"] == []
    assert "the deploy hook is not run" in quiet.stderr
    assert not (tmp_path / "hook.env").exists()

    result = renew(
        ca_dir, tmp_path / "out", "--deploy-hook", hook, "--dry-run", "--run-deploy-hooks"
    )
    assert result.exit_code == 0, result.stderr
    assert result.json()["renewed"] == [] and result.json()["dry_run"] is True
    assert result.json()["hooks_ran"] is True and result.json()["hooks"][0]["user"] == "alice"
    seen = read_env(tmp_path / "hook.env")
    assert seen["RDSSSL_DRY_RUN"] == "1" and seen["RDSSSL_SERIAL"] == ""
    assert seen["RDSSSL_OLD_SERIAL"] == ""  # nothing a hook could revoke by mistake
    assert seen["RDSSSL_CERT_PATH"] == str(tmp_path / "out" / "alice" / "client.crt")
    assert not (tmp_path / "out").exists() and snapshot(ca_dir) == before


def test_the_readme_hook_revokes_nothing_in_a_dry_run(ca_dir: Path, tmp_path: Path) -> None:
    """The README's example hook, guarded by RDSSSL_DRY_RUN, run by a dry run on request."""
    old = issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    hook = (
        f'[ "$RDSSSL_DRY_RUN" = 1 ] || {sys.executable} -m rdsssl -q cert revoke '
        f'--ca-dir {ca_dir} --serial "$RDSSSL_OLD_SERIAL" --reason superseded'
    )
    dry = renew(ca_dir, tmp_path / "out", "--deploy-hook", hook, "--dry-run", "--run-deploy-hooks")
    assert dry.exit_code == 0, dry.stderr
    assert dry.json()["hooks"][0]["ok"] is True
    assert valid_serials(ca_dir, "alice") == [old["serial"]]
    real = renew(ca_dir, tmp_path / "out", "--deploy-hook", hook)
    assert real.exit_code == 0, real.stderr
    assert old["serial"] not in valid_serials(ca_dir, "alice")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--run-deploy-hooks", "--deploy-hook", "true"], "goes with --dry-run"),
        (["--run-deploy-hooks", "--dry-run"], "needs --deploy-hook"),
    ],
)
def test_run_deploy_hooks_needs_a_dry_run_and_a_hook(
    ca_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    result = renew(ca_dir, tmp_path / "out", *args)
    assert result.exit_code == 2 and message in result.stderr
    assert len(valid_serials(ca_dir, "alice")) == 1


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

# The process SIGKILLs itself at a named crash point (rdsssl/ops/crashpoints.py):
# before-sign: key staged, not certified; after-sign: certified, files not written; before-publish:
# files written, not live; mid-relink: the fourth link switch (current, root.crt, client.crt
# relinked; client.key still plain).
CRASH_AT = {
    "before-sign": "renew.key-staged",
    "after-sign": "renew.signed",
    "before-publish": "versions.publish",
    "mid-relink": "versions.link:4",
}


@pytest.mark.parametrize("point", ["before-sign", "after-sign", "before-publish", "mid-relink"])
def test_sigkill_mid_renewal_is_finished_by_the_next_run(
    ca_dir: Path, tmp_path: Path, point: str
) -> None:
    out_root = tmp_path / "out"
    alice = out_root / "alice"
    old = issue(ca_dir, "alice", alice, "--days", "5")  # plain files: relinking is exercised
    args = ["cert", "renew", "--ca-dir", str(ca_dir), "--out-root", str(out_root)]
    env = {**os.environ, crashpoints.ENV: CRASH_AT[point]}
    killed = subprocess.run([sys.executable, "-m", "rdsssl", *args], capture_output=True, env=env)
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
    from rdsssl.ops import rotation_file
    from rdsssl.ops.rotation_state import Phase
    from rdsssl.store.castore import CaStore

    new_dir = tmp_path / "new-ca"
    assert (
        invoke("ca", "init", "--ca-dir", new_dir, "--cn", "root-ca2", "--no-passphrase").exit_code
        == 0
    )
    issue(ca_dir, "alice", tmp_path / "a", "--days", "10")
    out_root = tmp_path / "client-certs"
    with CaStore.open(ca_dir) as old, CaStore.open(new_dir) as new:
        state = rotation_file.prepare(
            None, old=old, new=new, instances=["pgm-x"], out_root=out_root, now=NOW
        )
    rotation_file.save(rotation_file.state_path(ca_dir), state)  # phase "new": not started
    assert renew(ca_dir, out_root, "--dry-run").exit_code == 0
    state.phase = Phase.STAGED
    rotation_file.save(rotation_file.state_path(ca_dir), state)
    before = snapshot(ca_dir)
    refused = renew(ca_dir, out_root)
    assert refused.exit_code == 3
    assert "rotation" in refused.stderr and str(new_dir) in refused.stderr
    assert snapshot(ca_dir) == before and not (out_root / "alice").exists()
    elsewhere = renew(ca_dir, tmp_path / "other-root")  # another out-root is not in the way
    assert elsewhere.exit_code == 0 and elsewhere.json()["renewed"]
