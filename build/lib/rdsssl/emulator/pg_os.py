"""OS plumbing for the emulator's PostgreSQL clusters: the OS user, files, ports.

Kept apart from pg.py so the cluster logic reads on its own. Nothing here knows PostgreSQL
beyond "it refuses to run as root": as root, its tools run as an unprivileged user that must own
its files and be able to traverse every directory above them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "FALLBACK_USER",
    "OWNER_FILE",
    "OsUser",
    "free_port",
    "make_scratch_dir",
    "mkdir_owned",
    "pg_env",
    "pg_user",
    "process_base",
    "remove_process_base",
    "run_as",
    "scratch_parent",
    "sweep_stale",
    "tail",
    "traversable",
    "write_atomic",
]

FALLBACK_USER = "rdsssl-pg"  # created when running as root and no `postgres` user exists
_PORT_LOCK = threading.Lock()
_PORTS_GIVEN: set[int] = set()
_BASE_LOCK = threading.Lock()
_BASE: Path | None = None
_SWEEP_LOCK = threading.Lock()
_SWEPT = False
OWNER_FILE = ".rdsssl-owner"


@dataclass(frozen=True)
class OsUser:
    """The unprivileged account PostgreSQL runs as when we are root."""

    name: str
    uid: int
    gid: int


@lru_cache(maxsize=1)
def pg_user() -> OsUser | None:
    """None when not root (PostgreSQL then runs as us); else `postgres`, or a created user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_USER):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return OsUser(name, pw.pw_uid, pw.pw_gid)
    r = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", FALLBACK_USER],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if r.returncode != 0:
        raise OSError(
            f"PostgreSQL refuses to run as root and creating the system user {FALLBACK_USER} "
            f"failed ({tail(r)}); create an unprivileged 'postgres' user and retry"
        )
    pw = pwd.getpwnam(FALLBACK_USER)
    return OsUser(FALLBACK_USER, pw.pw_uid, pw.pw_gid)


_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def pg_env(user: OsUser | None) -> dict[str, str]:
    """The whole environment of PostgreSQL's tools and servers: nothing of the caller's.

    The emulator runs inside rdsssl's tests and inside operators' shells, whose environments
    hold cloud credentials and CA passphrases; a postmaster keeps its environment for its
    lifetime (readable in /proc as its owner) and hands it to every backend, so it starts from
    an empty one: PATH, LANG/LC_ALL=C (English messages, which the log scanning relies on),
    the caller's TZ if set, and HOME of the OS user it runs as. No PG* variable: every path
    is given on the command line, so the caller's environment cannot point the tools elsewhere.
    """
    try:
        home = pwd.getpwuid(os.geteuid() if user is None else user.uid).pw_dir
    except KeyError:  # a uid without a passwd entry (some containers)
        home = "/"
    env = {
        "PATH": os.environ.get("PATH") or _DEFAULT_PATH,
        "LANG": "C",
        "LC_ALL": "C",
        "HOME": home,
    }
    if os.environ.get("TZ"):
        env["TZ"] = os.environ["TZ"]
    return env


def run_as(
    cmd: list[str], *, user: OsUser | None, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as `user` (no shell, no preexec_fn: safe in threaded servers), in
    the environment of `pg_env` (a server started by `pg_ctl start` inherits it)."""
    env = pg_env(user)
    kwargs: dict[str, Any] = {}
    if user is not None:
        kwargs = {"user": user.uid, "group": user.gid, "extra_groups": []}
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
        check=False, stdin=subprocess.DEVNULL, umask=0o077, **kwargs,
    )  # fmt: skip


def _chown(path: Path, user: OsUser | None) -> None:
    if user is not None:
        os.chown(path, user.uid, user.gid)


def mkdir_owned(path: Path, mode: int, user: OsUser | None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    _chown(path, user)
    return path


def write_atomic(path: Path, data: bytes, *, mode: int, user: OsUser | None) -> None:
    """Temp file (created 0600, so keys are never exposed) + fsync + rename, owner set first."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if user is not None:
            os.fchown(fd, user.uid, user.gid)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def traversable(path: Path, user: OsUser | None) -> bool:
    """Can `user` reach `path` (x on every ancestor)? pytest's tmp dirs are 0700 root."""
    if user is None:
        return os.access(path, os.X_OK)
    for p in (path, *path.parents):
        st = p.stat()
        if st.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def free_port() -> int:
    """A port nobody listens on now; start() retries if someone takes it meanwhile."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with _PORT_LOCK:
            if port not in _PORTS_GIVEN:
                _PORTS_GIVEN.add(port)
                return port
    raise OSError("could not find a free TCP port on 127.0.0.1")


def scratch_parent() -> Path:
    """Where throwaway clusters should live: /dev/shm when it is a roomy tmpfs, else /tmp.

    On a VM disk, copying a 28 MB data directory takes about 1 s; on tmpfs 0.05 s. Docker's
    default /dev/shm is only 64 MB, hence the free-space test. Not TMPDIR: root's may be private.
    """
    shm = Path("/dev/shm")
    try:
        st = os.statvfs(shm)
        if os.access(shm, os.W_OK | os.X_OK) and st.f_bavail * st.f_frsize >= 2 << 30:
            return shm
    except OSError:
        pass
    return Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())


def process_base(user: OsUser | None) -> Path:
    """Per-process directory every PostgreSQL user can traverse: template + relocated clusters.

    Removed at exit.
    """
    global _BASE
    with _BASE_LOCK:
        if _BASE is None:
            _BASE = make_scratch_dir("rdsssl-pg-", user)
        return _BASE


def make_scratch_dir(prefix: str, user: OsUser | None) -> Path:
    """A 0711 directory under `scratch_parent()` marked with our pid, for `sweep_stale`.

    `prefix` must start with "rdsssl-pg" for the sweep to find it.
    """
    sweep_stale()
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_parent()))
    (path / OWNER_FILE).write_text(f"{os.getpid()}\n")
    return mkdir_owned(path, 0o711, user)


def sweep_stale() -> None:
    """Stop servers left by rdsssl processes that died without cleanup, remove their dirs.

    atexit does not run after SIGKILL. Only directories whose owner process is gone are
    touched, so concurrent test runs leave each other alone; a postmaster is signalled only
    when its working directory (PostgreSQL chdirs into its data dir) is the pid file's dir.
    Runs once per process.
    """
    global _SWEPT
    with _SWEEP_LOCK:
        if _SWEPT:
            return
        _SWEPT = True
    for base in scratch_parent().glob("rdsssl-pg*"):
        try:
            owner = int((base / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if owner == os.getpid() or _pid_alive(owner):
            continue
        for pid_file in base.glob("**/postmaster.pid"):
            _quit_postmaster(pid_file)
        shutil.rmtree(base, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _quit_postmaster(pid_file: Path) -> None:
    """SIGQUIT (immediate shutdown) to the postmaster of `pid_file`, if it is still that."""
    try:
        pid = int(pid_file.read_text().split()[0])
        if Path(os.readlink(f"/proc/{pid}/cwd")) != pid_file.parent.resolve():
            return
        os.kill(pid, signal.SIGQUIT)
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + 5
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def remove_process_base() -> None:
    """Delete the per-process directory (at exit, once every cluster in it has stopped)."""
    global _BASE
    with _BASE_LOCK:
        if _BASE is not None:
            shutil.rmtree(_BASE, ignore_errors=True)
            _BASE = None


def tail(r: subprocess.CompletedProcess[str], n: int = 3) -> str:
    """The last lines a tool printed, on one line, for error messages."""
    lines = [ln.strip() for ln in (r.stderr + "\n" + r.stdout).splitlines() if ln.strip()]
    return " / ".join(lines[-n:]) or "no output"
