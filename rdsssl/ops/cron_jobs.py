"""The cron jobs (`rdsssl cron renew|refresh-crl|check`) as library calls.

A job reads its configuration from environment variables (the same names the shell wrappers in
``scripts/cron/`` always read, documented in the README), optionally from an env file first
(``RDSSSL_ENV_FILE``), takes a lock so that two runs of one job never overlap, and runs one
rdsssl command in a child process (``python -m rdsssl --quiet ...``) whose exit code it passes
on. The child gets the configuration through its environment, never on its command line, so
the CA passphrase and cloud keys never show in ``ps``.

Both refuse what another user could have prepared (`ConfigError`, exit 3, saying the fix):

- the env file sets what runs and holds secrets, so it must belong to us or root and be
  writable by nobody else. It is parsed, never executed: ``VAR=value`` lines (``export`` and
  shell quotes accepted, ``#`` comments), the subset of systemd's ``EnvironmentFile=`` and of
  sh that the two agree on; a line that is not an assignment is refused by its number only
  (its text may be a secret);
- a lock file in a shared directory (``/tmp``, ``/run/lock``) can be pre-created or held by
  anyone, which stops every run. So the lock lives in a private directory (0700, ours, not a
  symbolic link), by default ``${RDSSSL_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/rdsssl}
  /locks``, created 0700 when missing (parents included); ``RDSSSL_LOCK_DIR`` overrides the
  place, not the checks. The lock is ``flock(2)`` on ``rdsssl-<job>.lock`` (the wrappers' file
  names, so a wrapper and a direct run exclude each other), held by this process and inherited
  by the child, so it is held as long as either lives.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from rdsssl.errors import ConfigError, LockHeld
from rdsssl.store.fsutil import make_private_dirs

__all__ = [
    "JOBS",
    "Job",
    "JobRun",
    "job_environment",
    "job_lock",
    "lock_dir",
    "parse_env",
    "read_env_file",
    "run_job",
]

ENV_FILE = "RDSSSL_ENV_FILE"
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True)
class Job:
    """One cron job: its lock name and how its rdsssl command lines are built from the
    environment (a `ConfigError` when something required is missing). Most jobs run one
    command; `renew` runs one per thing it renews (client certificates, then each instance's
    server certificate), in order, under the one lock."""

    name: str
    lock_name: str
    commands: Callable[[Mapping[str, str]], list[list[str]]]

    def argv(self, env: Mapping[str, str]) -> list[str]:
        """The first command line (the only one of most jobs)."""
        return self.commands(env)[0]


@dataclass(frozen=True)
class JobRun:
    """How the child ended: its exit code and its stdout (the JSON document with a JSON log,
    else the human table, which cron mails only when the exit code is not 0)."""

    exit_code: int
    stdout: str


# -- the env file ----------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of an env file that only we (or root) can write; `ConfigError` otherwise."""
    shown = f"{ENV_FILE}={path}"
    if not path.is_file():
        raise ConfigError(f"{shown} is not a readable file")
    real = Path(os.path.realpath(path))
    shown = f"{ENV_FILE}={real}"
    st = real.stat()
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise ConfigError(
            f"{shown} is owned by uid {st.st_uid}, not by you (uid {me}) or root, and it sets "
            f"what runs; fix it: chown {me} {real}"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise ConfigError(
            f"{shown} is writable by group or others (mode {mode:o}), and it sets what runs; "
            f"fix it: chmod go-w {real} (0600: it holds secrets)"
        )
    try:
        text = real.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {shown}: {type(exc).__name__}") from None
    return parse_env(text, source=shown)


def parse_env(text: str, *, source: str) -> dict[str, str]:
    """``VAR=value`` lines; errors name the line number, never its text (it may be a secret)."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        name, eq, raw = stripped.partition("=")
        if not eq or not name or name[0].isdigit() or not set(name) <= _NAME_CHARS:
            raise ConfigError(f"{source}: line {number} is not a VAR=value assignment")
        try:
            words = shlex.split(raw, comments=True)
        except ValueError:
            raise ConfigError(f"{source}: line {number}: unbalanced quotes in {name}") from None
        if len(words) > 1:
            raise ConfigError(
                f"{source}: line {number}: the value of {name} has spaces; quote it ({name}='...')"
            )
        found[name] = words[0] if words else ""
    return found


# -- the lock --------------------------------------------------------------------------------


def lock_dir(env: Mapping[str, str]) -> Path:
    """Where the job's lock file lives (see the module docstring)."""
    if env.get("RDSSSL_LOCK_DIR"):
        return Path(env["RDSSSL_LOCK_DIR"])
    if env.get("RDSSSL_STATE_DIR"):
        return Path(env["RDSSSL_STATE_DIR"]) / "locks"
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "rdsssl" / "locks"
    if env.get("HOME"):
        return Path(env["HOME"]) / ".local" / "state" / "rdsssl" / "locks"
    raise ConfigError("HOME is not set; set RDSSSL_STATE_DIR or RDSSSL_LOCK_DIR")


def _check_lock_dir(directory: Path) -> None:
    if not os.path.lexists(directory):
        try:
            make_private_dirs(directory)
        except OSError as exc:
            raise ConfigError(f"cannot create the lock directory {directory}: {exc}") from None
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(
            f"the lock directory {directory} is a symbolic link; point RDSSSL_LOCK_DIR at a "
            "real directory that only you can write to"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"the lock directory {directory} is not a directory")
    me, mode = os.geteuid(), stat.S_IMODE(st.st_mode)
    if st.st_uid != me:
        raise ConfigError(
            f"the lock directory {directory} is owned by uid {st.st_uid}, not by you (uid {me}); "
            f"fix it: chown {me} {directory} && chmod 700 {directory} (or set RDSSSL_LOCK_DIR)"
        )
    if mode & 0o077:
        raise ConfigError(
            f"the lock directory {directory} is open to other users (mode {mode:o}), who could "
            f"take or hold its lock; fix it: chmod 700 {directory}"
        )


@contextlib.contextmanager
def job_lock(directory: Path, name: str) -> Iterator[int]:
    """Hold ``flock(2)`` on ``directory/rdsssl-<name>.lock`` (the directory checked first);
    `LockHeld` (exit 7) when another run holds it. Yields the descriptor (for the child)."""
    _check_lock_dir(directory)
    path = directory / f"rdsssl-{name}.lock"
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot open the lock file {path}: {exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(f"{name}: another run holds the lock {path}; not starting") from None
        yield fd
    finally:
        os.close(fd)


# -- the jobs --------------------------------------------------------------------------------


def _words(env: Mapping[str, str], name: str) -> list[str]:
    return env.get(name, "").split()


def _opt(env: Mapping[str, str], name: str, flag: str) -> list[str]:
    value = env.get(name, "")
    return [flag, value] if value else []


def _selection(env: Mapping[str, str]) -> list[str]:
    args = [w for tag in _words(env, "RDSSSL_TAGS") for w in ("--tag", tag)]
    return args + _opt(env, "RDSSSL_CONFIG", "-f")


def _selects(env: Mapping[str, str]) -> bool:
    return bool(_words(env, "RDSSSL_INSTANCES") or _words(env, "RDSSSL_TAGS")) or bool(
        env.get("RDSSSL_CONFIG")
    )


def _renew_commands(env: Mapping[str, str]) -> list[list[str]]:
    """`cert renew` when RDSSSL_CA_DIR is set, then `instance renew-server-cert ID --if-due`
    for each of RDSSSL_SERVER_INSTANCES (cloud certificates, or custom ones from
    RDSSSL_SERVER_CA_DIR): the renew job renews whatever certificate is inside its window."""
    servers = _words(env, "RDSSSL_SERVER_INSTANCES")
    if not env.get("RDSSSL_CA_DIR") and not servers:
        raise ConfigError(
            "renew: set RDSSSL_CA_DIR to the CA store (client certificates) and/or "
            "RDSSSL_SERVER_INSTANCES (server certificates)"
        )
    commands = [_renew_argv(env)] if env.get("RDSSSL_CA_DIR") else []
    for instance_id in servers:
        args = ["instance", "renew-server-cert", instance_id, "--if-due", "--yes"]
        for name, flag in (
            ("RDSSSL_SERVER_CA_DIR", "--server-ca-dir"),
            ("RDSSSL_SERVER_RENEW_BEFORE", "--before"),
            ("RDSSSL_SERVER_DAYS", "--days"),
            ("RDSSSL_PASSPHRASE_FILE", "--passphrase-file"),
        ):
            args += _opt(env, name, flag)
        commands.append(args)
    return commands


def _renew_argv(env: Mapping[str, str]) -> list[str]:
    if not env.get("RDSSSL_OUT_ROOT"):
        raise ConfigError("renew: set RDSSSL_OUT_ROOT (client files go to OUT_ROOT/USER/)")
    args = ["cert", "renew", "--ca-dir", env["RDSSSL_CA_DIR"], "--out-root", env["RDSSSL_OUT_ROOT"]]
    for name, flag in (
        ("RDSSSL_RENEW_BEFORE", "--before"),
        ("RDSSSL_RENEW_AT", "--at"),
        ("RDSSSL_DAYS", "--days"),
        ("RDSSSL_FORMAT", "--format"),
        ("RDSSSL_PRE_HOOK", "--pre-hook"),
        ("RDSSSL_DEPLOY_HOOK", "--deploy-hook"),
        ("RDSSSL_POST_HOOK", "--post-hook"),
        ("RDSSSL_HOOKS_DIR", "--hooks-dir"),
        ("RDSSSL_PASSPHRASE_FILE", "--passphrase-file"),
    ):
        args += _opt(env, name, flag)
    return args


def _refresh_crl_argv(env: Mapping[str, str]) -> list[str]:
    if not _selects(env):
        raise ConfigError("refresh-crl: set RDSSSL_INSTANCES, RDSSSL_TAGS or RDSSSL_CONFIG")
    args = ["crl", "refresh", "--yes", *_selection(env)]
    for name, flag in (
        ("RDSSSL_CRL_MIN_REMAINING", "--min-remaining"),
        ("RDSSSL_CRL_DAYS", "--days"),
        ("RDSSSL_CRL_WINDOW", "--window"),
        ("RDSSSL_PASSPHRASE_FILE", "--passphrase-file"),
    ):
        args += _opt(env, name, flag)
    if env.get("RDSSSL_CRL_NOW", "0") == "1":
        args.append("--now")
    return [*args, "--", *_words(env, "RDSSSL_INSTANCES")]


def _check_argv(env: Mapping[str, str]) -> list[str]:
    if not _selects(env) and not env.get("RDSSSL_CA_DIR"):
        raise ConfigError(
            "check: set RDSSSL_INSTANCES, RDSSSL_TAGS, RDSSSL_CONFIG and/or RDSSSL_CA_DIR"
        )
    args = ["check", *_selection(env)]
    for name, flag in (
        ("RDSSSL_WARN_DAYS", "--warn-days"),
        ("RDSSSL_CRL_MIN_REMAINING", "--crl-min-remaining"),
        ("RDSSSL_PROMETHEUS_FILE", "--prometheus"),
    ):
        args += _opt(env, name, flag)
    return [*args, "--", *_words(env, "RDSSSL_INSTANCES")]


JOBS: dict[str, Job] = {
    "renew": Job("renew", "renew-client-certs", _renew_commands),
    "refresh-crl": Job("refresh-crl", "refresh-crl", lambda env: [_refresh_crl_argv(env)]),
    "check": Job("check", "check", lambda env: [_check_argv(env)]),
}


def job_environment(env_file: Path | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment with the env file's variables on top (as sourcing it would)."""
    env = dict(os.environ if base is None else base)
    if env_file is not None:
        env.update(read_env_file(env_file))
    return env


def worst(codes: list[int]) -> int:
    """The exit code of several commands, the fleet rule: any error beats "needs action" (10),
    which beats success; among errors the highest wins."""
    errors = [c for c in codes if c not in (0, 10)]
    return max(errors) if errors else max(codes, default=0)


def run_job(job: Job, env: Mapping[str, str], *, as_json: bool) -> JobRun:
    """Check the configuration, take the lock, run each child (`--quiet`, `--json-lines` when a
    JSON log is kept: one document per command and line) with ``env`` as its environment, one
    after the other; their stderr is ours (the cron mail), their stdout is returned, the exit
    code is the worst. SIGTERM is passed on to the child running, whose own handler reports."""
    commands = job.commands(env)
    flags = ["--quiet", *(["--json-lines"] if as_json else [])]
    runs: list[JobRun] = []
    with job_lock(lock_dir(env), job.lock_name) as fd:
        for argv in commands:
            runs.append(_child(flags, argv, env, fd))
    return JobRun(worst([r.exit_code for r in runs]), "".join(r.stdout for r in runs))


def _child(flags: list[str], argv: list[str], env: Mapping[str, str], fd: int) -> JobRun:
    """One `python -m rdsssl` child holding the job's lock (inherited `fd`)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "rdsssl", *flags, *argv],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        pass_fds=(fd,),
    )
    try:
        out, _ = child.communicate()
    except KeyboardInterrupt as exc:
        if type(exc).__name__ == "Terminated":
            child.send_signal(signal.SIGTERM)
        child.wait()
        raise
    return JobRun(child.returncode, out.decode("utf-8", errors="replace"))
