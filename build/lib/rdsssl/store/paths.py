"""Where rdsssl keeps its own state: the audit log and the per-instance locks.

`state_dir()` is `$RDSSSL_STATE_DIR`, else `$XDG_STATE_HOME/rdsssl`, else
`~/.local/state/rdsssl` (the XDG base directory rule, as certbot and pipx do). It is created
0700 and must belong to us: a lock or log directory another user can write to would let them
pre-empt our locks or forge audit lines.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from rdsssl.errors import ConfigError
from rdsssl.store.fsutil import make_private_dirs
from rdsssl.store.lock import FileLock, current_command

__all__ = ["ENV_STATE_DIR", "instance_lock", "private_state_dir", "state_dir"]

ENV_STATE_DIR = "RDSSSL_STATE_DIR"
DEFAULT_INSTANCE_LOCK_WAIT = 60.0  # another run holds it only while it reads and sends
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def state_dir() -> Path:
    """The state directory (not created)."""
    explicit = os.environ.get(ENV_STATE_DIR)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rdsssl"


def private_state_dir(*parts: str) -> Path:
    """`state_dir()/parts...`, created 0700 and checked: ours, and writable by nobody else."""
    path = state_dir().joinpath(*parts)
    make_private_dirs(path)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise ConfigError(
            f"{path} must be a directory owned by you and writable by nobody else "
            f"(mode {stat.S_IMODE(st.st_mode):04o}, uid {st.st_uid}); fix it: chown "
            f"{os.geteuid()} {path} && chmod 700 {path}, or set {ENV_STATE_DIR}"
        )
    return path


def instance_lock(instance_id: str, *, wait: float = DEFAULT_INSTANCE_LOCK_WAIT) -> FileLock:
    """The lock one run holds on an instance while it reads, decides and sends a change, so two
    runs (two cron jobs, a person and a cron job) never both send one."""
    if not _SAFE_ID.fullmatch(instance_id):
        raise ConfigError(f"instance id {instance_id!r} is not a valid RDS instance id")
    path = private_state_dir("locks") / f"instance-{instance_id}.lock"
    return FileLock(path, command=current_command(), wait=wait, label=f"instance {instance_id}")
