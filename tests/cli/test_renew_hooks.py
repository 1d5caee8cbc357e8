"""`cert renew --pre-hook / --post-hook / --hooks-dir`: once per run, only when something is
renewed, in order with the deploy hooks, the same environment allow-list, dry runs, and a
hooks directory that only we can write to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.helpers import invoke, issue, snapshot
from tests.cli.test_renew import read_env, renew, valid_serials


def log_hook(log: Path, text: str) -> str:
    """A hook command appending one line (with the variables it was given) to `log`."""
    return f'echo "{text}" >> {log}'


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_pre_and_post_run_once_per_run_around_every_deploy(ca_dir: Path, tmp_path: Path) -> None:
    for user in ("alice", "bob"):
        issue(ca_dir, user, tmp_path / user, "--days", "5")
    log = tmp_path / "hooks.log"
    args = [
        "--pre-hook", log_hook(log, "pre $RDSSSL_DRY_RUN"),
        "--deploy-hook", log_hook(log, "deploy $RDSSSL_USER"),
        "--post-hook", log_hook(log, "post $RDSSSL_RENEWED_USERS"),
    ]  # fmt: skip
    result = renew(ca_dir, tmp_path / "out", *args)
    assert result.exit_code == 0, result.stderr
    assert lines(log) == ["pre 0", "deploy alice", "deploy bob", "post alice bob"]
    stages = [(h["stage"], h["user"]) for h in result.json()["hooks"]]
    assert stages == [("pre", ""), ("deploy", "alice"), ("deploy", "bob"), ("post", "")]

    again = renew(ca_dir, tmp_path / "out", *args)  # nothing due: no hook at all
    assert again.exit_code == 0 and again.json()["hooks"] == []
    assert len(lines(log)) == 4


def test_pre_and_post_hooks_get_the_allow_list_not_the_secrets(
    ca_dir: Path, tmp_path: Path
) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    env = {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s3cret", "MY_DB_PASSWORD": "s3cret"}
    result = renew(
        ca_dir, tmp_path / "out",
        "--pre-hook", f"env > {tmp_path}/pre.env", "--post-hook", f"env > {tmp_path}/post.env",
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    out_root = str(tmp_path / "out")
    assert read_env(tmp_path / "pre.env") == {"RDSSSL_OUT_ROOT": out_root, "RDSSSL_DRY_RUN": "0"}
    assert read_env(tmp_path / "post.env") == {
        "RDSSSL_OUT_ROOT": out_root,
        "RDSSSL_DRY_RUN": "0",
        "RDSSSL_RENEWED_USERS": "alice",
    }
    for name in ("pre.env", "post.env"):
        assert "s3cret" not in (tmp_path / name).read_text()


def test_a_failed_pre_hook_renews_nothing_and_skips_the_post_hook(
    ca_dir: Path, tmp_path: Path
) -> None:
    old = issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    before = snapshot(ca_dir)
    result = renew(
        ca_dir, tmp_path / "out", "--pre-hook", "echo stop failed; exit 4",
        "--post-hook", f"touch {tmp_path}/post",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "pre hook: stop failed" in result.stderr
    assert "the pre hook 'echo stop failed; exit 4' (exit 4) failed: nothing was renewed" in (
        result.stderr
    )
    assert valid_serials(ca_dir, "alice") == [old["serial"]] and snapshot(ca_dir) == before
    assert not (tmp_path / "post").exists()


def test_a_failed_post_hook_exits_1_with_the_renewals_done(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    result = renew(ca_dir, tmp_path / "out", "--post-hook", "exit 5")
    assert result.exit_code == 1
    assert "the post hook 'exit 5' (exit 5) failed (the renewals are done)" in result.stderr
    doc = result.json()
    assert doc["ok"] is False and [r["user"] for r in doc["renewed"]] == ["alice"]
    assert len(valid_serials(ca_dir, "alice")) == 2


def test_a_dry_run_runs_pre_and_post_only_when_asked(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    log = tmp_path / "hooks.log"
    args = [
        "--dry-run",
        "--pre-hook", log_hook(log, "pre $RDSSSL_DRY_RUN"),
        "--post-hook", log_hook(log, "post $RDSSSL_DRY_RUN $RDSSSL_RENEWED_USERS"),
    ]  # fmt: skip
    quiet = renew(ca_dir, tmp_path / "out", *args)
    assert quiet.exit_code == 0 and lines(log) == []
    assert "the pre, post hooks are not run" in quiet.stderr
    asked = renew(ca_dir, tmp_path / "out", *args, "--run-deploy-hooks")
    assert asked.exit_code == 0, asked.stderr
    assert lines(log) == ["pre 1", "post 1 alice"]
    assert len(valid_serials(ca_dir, "alice")) == 1 and not (tmp_path / "out").exists()


# --- --hooks-dir ---------------------------------------------------------------------------------


def hooks_dir(tmp_path: Path, log: Path) -> Path:
    """DIR/{pre,deploy,post} with two executables each (listed out of order) and a README."""
    root = tmp_path / "renewal-hooks"
    for stage in ("pre", "deploy", "post"):
        (root / stage).mkdir(parents=True, mode=0o755)
        for name in ("20-second", "10-first"):
            hook = root / stage / name
            hook.write_text(f'#!/bin/sh\necho "{stage} {name} $RDSSSL_USER" >> {log}\n')
            hook.chmod(0o755)
    (root / "deploy" / "README").write_text("not a hook\n")
    root.chmod(0o755)
    return root


def test_the_hooks_dir_runs_executables_in_order_before_the_command_line_hook(
    ca_dir: Path, tmp_path: Path
) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    log = tmp_path / "hooks.log"
    root = hooks_dir(tmp_path, log)
    result = renew(
        ca_dir, tmp_path / "out", "--hooks-dir", str(root),
        "--deploy-hook", log_hook(log, "deploy cli $RDSSSL_USER"),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert lines(log) == [
        "pre 10-first ",
        "pre 20-second ",
        "deploy 10-first alice",
        "deploy 20-second alice",
        "deploy cli alice",
        "post 10-first ",
        "post 20-second ",
    ]
    assert f"skipping {root / 'deploy' / 'README'}: not executable" in result.stderr
    hooks = result.json()["hooks"]
    assert hooks[0]["hook"] == str(root / "pre" / "10-first")


@pytest.mark.parametrize(
    "setup,message",
    [
        ("dir-group-writable", "is writable by group or others (mode 775)"),
        ("subdir-world-writable", "is writable by group or others (mode 757)"),
        ("hook-group-writable", "the hook"),
        ("dir-foreign", "is owned by uid 65534"),
        ("hook-foreign", "is owned by uid 65534"),
    ],
)
def test_a_hooks_dir_others_could_write_to_is_refused_before_any_work(
    ca_dir: Path, tmp_path: Path, setup: str, message: str
) -> None:
    old = issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    log = tmp_path / "hooks.log"
    root = hooks_dir(tmp_path, log)
    hook = root / "post" / "10-first"
    if setup == "dir-group-writable":
        root.chmod(0o775)
    elif setup == "subdir-world-writable":
        (root / "deploy").chmod(0o757)
    elif setup == "hook-group-writable":
        hook.chmod(0o775)
    elif setup == "dir-foreign":
        os.chown(root, 65534, 65534)
    else:
        os.chown(hook, 65534, 65534)
    result = renew(ca_dir, tmp_path / "out", "--hooks-dir", str(root))
    assert result.exit_code == 3, result.stderr
    assert "--hooks-dir" in result.stderr and message in result.stderr
    assert lines(log) == [] and valid_serials(ca_dir, "alice") == [old["serial"]]


def test_the_post_hook_starts_again_what_the_pre_hook_stopped_when_renewing_fails(
    enc_ca_dir: Path, tmp_path: Path
) -> None:
    good = {"RDSSSL_CA_PASSPHRASE": "correct horse"}
    issued = invoke("cert", "issue", "--ca-dir", enc_ca_dir, "--user", "alice",
                    "--out", tmp_path / "a", "--days", "5", env=good)  # fmt: skip
    assert issued.exit_code == 0, issued.stderr
    log = tmp_path / "hooks.log"
    result = renew(
        enc_ca_dir, tmp_path / "out",
        "--pre-hook", log_hook(log, "stop"), "--post-hook", log_hook(log, "start"),
        env={"RDSSSL_CA_PASSPHRASE": "wrong"},
    )  # fmt: skip
    assert result.exit_code == 3, result.stderr  # the passphrase, found after the pre hook
    assert lines(log) == ["stop", "start"]
    assert len(valid_serials(enc_ca_dir, "alice")) == 1
