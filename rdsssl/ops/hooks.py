"""Hooks for ``cert renew``: ``--pre-hook``, ``--deploy-hook``, ``--post-hook`` and
``--hooks-dir`` (certbot's hooks and its ``renewal-hooks`` directory layout).

A pre hook runs once before the first renewal of a run and a post hook once after all of them
(both only when something is renewed: 50 users renewed = one reload), a deploy hook once per
renewed user. ``--hooks-dir DIR`` adds the executables of ``DIR/pre``, ``DIR/deploy`` and
``DIR/post`` (`dir_hooks`), run in lexical order before the command-line hook of the same stage
(certbot's order); a file that is not executable is skipped with a warning. The directory, its
subdirectories and every hook in them must belong to us or root and be writable by nobody
else: whoever can write there runs code as us.

The rest of this docstring is about the deploy hook; pre and post hooks get the same
environment allow-list, with ``RDSSSL_OUT_ROOT`` and ``RDSSSL_DRY_RUN`` (`stage_env`), and the
post hook also ``RDSSSL_RENEWED_USERS`` (space-separated).

A hook is one shell command, run with ``/bin/sh -c`` once per renewed user, that puts the new
files where they are used (copy them into an application, a secret store, reload a service).
It learns what happened from environment variables, never from arguments, so a command line
stays readable in a crontab::

    RDSSSL_USER            database user (the certificate CN)
    RDSSSL_SERIAL          serial of the new certificate (hex; empty under --dry-run)
    RDSSSL_OLD_SERIAL      serial of the certificate it replaces (hex; empty when unknown and
                           under --dry-run, so that a hook revoking it cannot do so by mistake)
    RDSSSL_CERT_PATH       OUT_ROOT/USER/client.crt   (stable names: they follow `current`)
    RDSSSL_KEY_PATH        OUT_ROOT/USER/client.key
    RDSSSL_ROOT_CERT_PATH  OUT_ROOT/USER/root.crt
    RDSSSL_OUT_DIR         OUT_ROOT/USER
    RDSSSL_DRY_RUN         1 under --dry-run (nothing was issued or written), else 0

As in certbot, a hook is checked before any work: a command that ``sh -n`` cannot parse, or
whose program is neither a shell builtin nor an executable file, is refused up front instead
of after the certificates were already re-issued.

Hooks tend to log their environment, and a cron job's environment holds the CA passphrase and
cloud credentials, so a hook does not inherit ours minus a deny-list (a new secret variable
would leak by default) but gets an allow-list (``hook_environment``): the process basics
(``PATH``, ``HOME``, ``USER``, ``LOGNAME``, ``SHELL``, ``LANG``, ``LC_*``, ``TZ``, ``TMPDIR``,
``PWD``), the variables above, and the non-secret settings a hook needs to call rdsssl again
(``RDSSSL_CA_DIR``, ``RDSSSL_AUDIT_LOG``, ``RDSSSL_STATE_DIR``, ``RDSSSL_ENDPOINT``,
``ALIBABA_CLOUD_REGION_ID``).
Never a name containing PASSPHRASE, PASSWORD, SECRET or TOKEN, an ``ALIBABA_CLOUD_ACCESS_KEY_*``,
nor the variable named by ``--p12-passphrase-env``, even if a later edit widens the list.
``sh -n`` (the syntax check) gets the same environment.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rdsssl.errors import ConfigError

__all__ = [
    "HOOK_ENV_NAMES",
    "STAGES",
    "Deployment",
    "Hook",
    "HookResult",
    "check_hook",
    "deploy_env",
    "dir_hooks",
    "hook_environment",
    "run_hook",
    "stage_env",
]

SHELL = "/bin/sh"
# What a hook inherits from our environment (besides LC_*); everything else is dropped.
HOOK_ENV_NAMES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR", "PWD",
     "RDSSSL_CA_DIR", "RDSSSL_AUDIT_LOG", "RDSSSL_STATE_DIR", "RDSSSL_ENDPOINT",
     "ALIBABA_CLOUD_REGION_ID"}
)  # fmt: skip
_HOOK_ENV_PREFIXES = ("LC_",)
_SECRET_WORDS = ("PASSPHRASE", "PASSWORD", "SECRET", "TOKEN")
_SECRET_PREFIXES = ("ALIBABA_CLOUD_ACCESS_KEY_",)
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.DOTALL)
# Builtins a hook may reasonably start with (`exit 3` in a test, `cd /srv && ...`).
_BUILTINS = frozenset(
    {":", ".", "[", "cd", "command", "echo", "eval", "exec", "exit", "export", "false",
     "printf", "set", "test", "true", "umask", "unset"}
)  # fmt: skip


@dataclass(frozen=True)
class Deployment:
    """One run of the hook: a user's new version (under --dry-run, where it would go)."""

    user: str
    serial: str  # "" under --dry-run: nothing was issued
    old_serial: str | None
    out_dir: Path
    version_dir: Path


@dataclass(frozen=True)
class HookResult:
    """How one run of the hook ended; ``output`` is its stdout and stderr, interleaved."""

    command: str
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        """True when the hook exited 0."""
        return self.returncode == 0


def _is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(w in upper for w in _SECRET_WORDS) or upper.startswith(_SECRET_PREFIXES)


def hook_environment(
    deployment: Mapping[str, str] | None = None,
    *,
    exclude: Iterable[str] = (),
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of a hook: the allow-listed part of ``base`` (default: ours)
    without secrets or ``exclude`` (the --p12-passphrase-env variable), then ``deployment``
    (``deploy_env``) on top."""
    source = os.environ if base is None else base
    dropped = set(exclude)
    env = {
        k: v
        for k, v in source.items()
        if (k in HOOK_ENV_NAMES or k.startswith(_HOOK_ENV_PREFIXES))
        and not _is_secret_name(k)
        and k not in dropped
    }
    env.update(deployment or {})
    return env


def check_hook(command: str, *, option: str = "--deploy-hook", exclude: Iterable[str] = ()) -> None:
    """ConfigError unless ``command`` parses and its program can be run (before any work)."""
    if not command.strip():
        raise ConfigError(f"{option}: the command is empty")
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"{option} {command!r}: cannot parse it ({exc})") from None
    syntax = subprocess.run(
        [SHELL, "-n", "-c", command],
        env=hook_environment(exclude=exclude),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if syntax.returncode != 0:
        detail = " ".join(syntax.stderr.split()) or f"exit {syntax.returncode}"
        raise ConfigError(f"{option} {command!r}: not a valid sh command ({detail})")
    program = next((w for w in words if not _ASSIGNMENT.fullmatch(w)), None)
    if program is None:
        raise ConfigError(f"{option} {command!r}: names no program to run")
    if program in _BUILTINS:
        return
    if "/" in program:
        path = Path(program)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(
                f"{option}: {program} is not an executable file; fix it: chmod +x {program}"
            )
    elif shutil.which(program) is None:
        raise ConfigError(f"{option}: {program!r} is not found on PATH ({os.environ.get('PATH')})")


def deploy_env(dep: Deployment, *, dry_run: bool) -> dict[str, str]:
    """The hook's variables (absolute paths, so that a hook may change directory). Under
    ``dry_run`` both serials are empty: nothing was issued, and nothing is to be revoked."""
    base = Path(os.path.abspath(dep.out_dir))
    return {
        "RDSSSL_USER": dep.user,
        "RDSSSL_SERIAL": "" if dry_run else dep.serial,
        "RDSSSL_OLD_SERIAL": "" if dry_run else dep.old_serial or "",
        "RDSSSL_CERT_PATH": str(base / "client.crt"),
        "RDSSSL_KEY_PATH": str(base / "client.key"),
        "RDSSSL_ROOT_CERT_PATH": str(base / "root.crt"),
        "RDSSSL_OUT_DIR": str(base),
        "RDSSSL_DRY_RUN": "1" if dry_run else "0",
    }


def run_hook(command: str, env: Mapping[str, str], *, exclude: Iterable[str] = ()) -> HookResult:
    """Run ``command`` with ``sh -c`` in ``hook_environment(env, exclude=exclude)`` (stdin
    closed, output kept, so that ``--json`` stdout stays one document: the caller relays the
    output to stderr)."""
    done = subprocess.run(
        [SHELL, "-c", command],
        env=hook_environment(env, exclude=exclude),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    return HookResult(command, done.returncode, done.stdout.decode("utf-8", errors="replace"))


# --- pre and post hooks, and the hooks directory ------------------------------------------------

STAGES = ("pre", "deploy", "post")


@dataclass(frozen=True)
class Hook:
    """One hook of a stage: ``label`` names it (the command, or the file of a hooks directory),
    ``command`` is what ``sh -c`` runs."""

    stage: str
    label: str
    command: str

    @classmethod
    def of_file(cls, stage: str, path: Path) -> Hook:
        return cls(stage, str(path), shlex.quote(str(path)))


def stage_env(
    *, out_root: Path, dry_run: bool, renewed: Iterable[str] | None = None
) -> dict[str, str]:
    """The variables of a pre hook, and with ``renewed`` of a post hook."""
    env = {
        "RDSSSL_OUT_ROOT": os.path.abspath(out_root),
        "RDSSSL_DRY_RUN": "1" if dry_run else "0",
    }
    if renewed is not None:
        env["RDSSSL_RENEWED_USERS"] = " ".join(renewed)
    return env


def _check_private(path: Path, what: str) -> os.stat_result:
    """`ConfigError` unless ``path`` belongs to us or root and nobody else can write to it."""
    st = path.stat()
    me, mode = os.geteuid(), stat.S_IMODE(st.st_mode)
    if st.st_uid not in (me, 0):
        raise ConfigError(
            f"--hooks-dir: {what} {path} is owned by uid {st.st_uid}, not by you (uid {me}) or "
            f"root, and its hooks would run as you; fix it: chown {me} {path}"
        )
    if mode & 0o022:
        raise ConfigError(
            f"--hooks-dir: {what} {path} is writable by group or others (mode {mode:o}), and "
            f"its hooks would run as you; fix it: chmod go-w {path}"
        )
    return st


def dir_hooks(directory: Path, warn: Callable[[str], None]) -> dict[str, list[Hook]]:
    """The executables of ``directory/{pre,deploy,post}`` in lexical order (a missing
    subdirectory has none); non-executables are skipped with a warning. `ConfigError` for a
    directory or hook someone else could write to, before any hook runs."""
    if not directory.is_dir():
        raise ConfigError(f"--hooks-dir: {directory} is not a directory")
    _check_private(directory, "the directory")
    found: dict[str, list[Hook]] = {stage: [] for stage in STAGES}
    for stage in STAGES:
        sub = directory / stage
        if not sub.exists():
            continue
        if not sub.is_dir():
            raise ConfigError(f"--hooks-dir: {sub} is not a directory")
        _check_private(sub, "the directory")
        for path in sorted(sub.iterdir(), key=lambda p: p.name):
            if not path.is_file():
                warn(f"--hooks-dir: skipping {path}: not a regular file")
                continue
            st = _check_private(path, "the hook")
            if not (st.st_mode & stat.S_IXUSR and os.access(path, os.X_OK)):
                warn(f"--hooks-dir: skipping {path}: not executable (chmod +x to run it)")
                continue
            found[stage].append(Hook.of_file(stage, path))
    return found
