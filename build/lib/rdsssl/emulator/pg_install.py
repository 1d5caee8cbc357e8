"""Finding PostgreSQL's server binaries and the initdb'd template every emulated cluster copies."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from functools import cache
from pathlib import Path

from rdsssl.emulator.pg_backend import PgError, PgNotFound
from rdsssl.emulator.pg_os import OsUser, pg_env, process_base, run_as, tail

__all__ = ["INCLUDE_FILE", "INSTALL_HINT", "PG_LIB_ROOT", "find_pg_bin", "initdb_template",
           "major_version"]  # fmt: skip

INSTALL_HINT = (
    "install the PostgreSQL server binaries, e.g. 'apt-get install postgresql' "
    "(scripts/test installs it when run as root)"
)
PG_LIB_ROOT = Path("/usr/lib/postgresql")  # Debian/Ubuntu: one <major>/bin per version
INCLUDE_FILE = "rdsssl-emulator.conf"
_TEMPLATE_LOCK = threading.Lock()
_TEMPLATES: dict[Path, Path] = {}


def find_pg_bin() -> Path:
    """Directory holding initdb and pg_ctl: PATH, then the newest /usr/lib/postgresql/*/bin.

    PATH entries are often symlinks into the versioned directory (Debian), which also holds the
    `postgres` binary pg_ctl needs, so the symlink is resolved.
    """
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        real = Path(os.path.realpath(initdb)).parent
        if (real / "pg_ctl").is_file():
            return real
    candidates = [
        (int(d.parent.name), d)
        for d in PG_LIB_ROOT.glob("*/bin")
        if d.parent.name.isdigit() and (d / "initdb").is_file() and (d / "pg_ctl").is_file()
    ]
    if candidates:
        return max(candidates)[1]
    raise PgNotFound(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under "
        f"{PG_LIB_ROOT}/*/bin: {INSTALL_HINT}"
    )


@cache
def major_version(pg_bin: Path) -> int:
    out = subprocess.run(
        [str(pg_bin / "pg_ctl"), "--version"],
        env=pg_env(None),
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    m = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    if not m:
        raise PgError(f"cannot tell the PostgreSQL version from {pg_bin / 'pg_ctl'}: {out!r}")
    return int(m.group(1))


def initdb_template(pg_bin: Path, user: OsUser | None) -> Path:
    """An initdb'd data directory, made once per process and copied per cluster.

    initdb costs about 1 s; `cp -a` of its result 0.05 s on tmpfs (about 1 s on a VM disk).
    """
    with _TEMPLATE_LOCK:
        if pg_bin in _TEMPLATES:
            return _TEMPLATES[pg_bin]
        base = process_base(user)
        tdir = base / f"template-{major_version(pg_bin)}-{len(_TEMPLATES)}"
        cmd = [
            str(pg_bin / "initdb"), "-D", str(tdir), "-U", "postgres", "--auth-local=trust",
            "--auth-host=reject", "-E", "UTF8", "--no-locale", "--no-sync",
        ]  # fmt: skip
        if major_version(pg_bin) >= 11:
            cmd.append("--wal-segsize=1")  # 1 MB WAL segments: a smaller template to copy
        if major_version(pg_bin) >= 14:
            cmd.append("--no-instructions")
        r = run_as(cmd, user=user, cwd=base)
        if r.returncode != 0:
            raise PgError(f"initdb failed (exit {r.returncode}): {tail(r)}")
        conf = tdir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as f:
            f.write(f"\n# rdsssl emulator settings\ninclude '{INCLUDE_FILE}'\n")
        _TEMPLATES[pg_bin] = tdir
        return tdir
