"""Deploy hooks' environment: an allow-list of ours, never a secret (unit level; the CLI tests
run real hooks that dump their environment)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from rdsssl.errors import ConfigError
from rdsssl.ops.hooks import HOOK_ENV_NAMES, check_hook, hook_environment

BASE = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/ops",
    "LC_ALL": "C.UTF-8",
    "RDSSSL_CA_DIR": "/srv/ca",
    "RDSSSL_CA_PASSPHRASE": "pp",
    "RDSSSL_USER": "inherited-not-ours",
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "id",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret",
    "ALIBABA_CLOUD_SECURITY_TOKEN": "sts",
    "LC_PASSWORD": "a secret-looking name under an allowed prefix",
    "PGPASSWORD": "pg",
    "EDITOR": "vi",
}


def test_only_allowed_names_pass_and_the_deployment_goes_on_top() -> None:
    env = hook_environment({"RDSSSL_USER": "alice", "RDSSSL_DRY_RUN": "0"}, base=BASE)
    assert env == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/ops",
        "LC_ALL": "C.UTF-8",
        "RDSSSL_CA_DIR": "/srv/ca",
        "RDSSSL_USER": "alice",
        "RDSSSL_DRY_RUN": "0",
    }


@pytest.mark.parametrize("word", ["PASSPHRASE", "PASSWORD", "SECRET", "TOKEN", "passphrase"])
def test_a_secret_word_wins_over_the_allow_list(word: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a name the list allows (here by widening it) is dropped when it names a secret."""
    monkeypatch.setattr("rdsssl.ops.hooks.HOOK_ENV_NAMES", HOOK_ENV_NAMES | {f"APP_{word}"})
    assert hook_environment(base={f"APP_{word}": "x", "PATH": "/bin"}) == {"PATH": "/bin"}


def test_the_p12_passphrase_variable_is_excluded_by_name() -> None:
    base = {"PATH": "/bin", "TMPDIR": "hunter2"}  # a user may name any variable
    assert hook_environment(base=base, exclude=["TMPDIR"]) == {"PATH": "/bin"}


def test_the_syntax_check_runs_without_our_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sh -n` is a child process too: it gets the hook's environment, not ours."""
    seen: list[dict[str, str]] = []
    real_run = subprocess.run

    def recording_run(*args: Any, **kwargs: Any) -> Any:
        seen.append(dict(kwargs["env"]))
        return real_run(*args, **kwargs)

    monkeypatch.setattr("rdsssl.ops.hooks.subprocess.run", recording_run)
    monkeypatch.setenv("RDSSSL_CA_PASSPHRASE", "pp")
    monkeypatch.setenv("P12_PW", "p12")
    check_hook("true", exclude=["P12_PW"])
    with pytest.raises(ConfigError, match="not a valid sh command"):
        check_hook("echo ok; fi")
    assert len(seen) == 2
    for env in seen:
        assert "RDSSSL_CA_PASSPHRASE" not in env and "P12_PW" not in env
        assert env["PATH"] == os.environ["PATH"]
