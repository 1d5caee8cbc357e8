"""The systemd units of the cron jobs (``rdsssl/systemd/*``, package data): rendered with the
rdsssl executable, the env file and the writable paths, printed or installed.

One oneshot service and one timer per job (``rdsssl-renew``, ``rdsssl-refresh-crl``,
``rdsssl-check``), hardened as certbot's and step's units are (``ProtectSystem=strict`` with
``ReadWritePaths=``, ``PrivateTmp=``, ``NoNewPrivileges=``, ...). The templates carry three
placeholders: ``@RDSSSL@`` (the executable), ``@ENV_FILE@`` and ``@READ_WRITE_PATHS@``.

Installing never overwrites a file rdsssl did not write: a file of the same name is replaced
only when its first line is our marker (an earlier install), and left alone when it already
has the new content. Every other file is refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rdsssl.errors import ConfigError
from rdsssl.store.fsutil import atomic_write

__all__ = [
    "DEFAULT_ENV_FILE",
    "DEFAULT_READ_WRITE",
    "MARKER",
    "UNIT_NAMES",
    "Installed",
    "install_units",
    "render_units",
    "systemd_quote",
]

UNIT_NAMES = tuple(
    f"rdsssl-{job}.{kind}"
    for job in ("renew", "refresh-crl", "check")
    for kind in ("service", "timer")
)
MARKER = "# Installed by rdsssl cron install"
DEFAULT_ENV_FILE = Path("/etc/rdsssl/cron.env")
# The README's example layout; "-": a missing path is ignored rather than failing the unit.
DEFAULT_READ_WRITE = (
    "-/srv/rdsssl",
    "-/srv/client-certs",
    "-/var/lib/node_exporter/textfile_collector",
)


def template(name: str) -> str:
    """The packaged template of one unit."""
    return (resources.files("rdsssl") / "systemd" / name).read_text(encoding="utf-8")


def systemd_quote(word: str) -> str:
    """One word of a systemd command line or path list: double-quoted when it needs it."""
    if word and not any(c in word for c in " \t\"\\'$%;"):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%")
    return f'"{escaped}"'


def render_units(
    executable: Sequence[str], *, env_file: Path, read_write: Sequence[str]
) -> dict[str, str]:
    """Every unit with its placeholders filled in (name -> text)."""
    if not read_write:
        raise ConfigError("give at least one --read-write PATH (the CA store, the client files)")
    for path in (*read_write, str(env_file)):
        if not path.lstrip("-").startswith("/"):
            raise ConfigError(f"{path}: systemd needs an absolute path")
    values = {
        "@RDSSSL@": " ".join(systemd_quote(w) for w in executable),
        "@ENV_FILE@": systemd_quote(str(env_file)),
        "@READ_WRITE_PATHS@": " ".join(systemd_quote(p) for p in read_write),
    }
    units: dict[str, str] = {}
    for name in UNIT_NAMES:
        text = template(name)
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        units[name] = text
    return units


@dataclass(frozen=True)
class Installed:
    """What installing one unit did: "created", "updated" or "unchanged"."""

    path: Path
    action: str


def install_units(directory: Path, units: Mapping[str, str]) -> list[Installed]:
    """Write the units into ``directory`` (0644, atomically); a file there that rdsssl did not
    write is refused (`ConfigError`) before any file is written."""
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory")
    plan: list[Installed] = []
    for name, text in units.items():
        path = directory / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise ConfigError(f"{path} exists and is not a regular file; not replacing it")
        if not path.exists():
            plan.append(Installed(path, "created"))
            continue
        current = path.read_text(encoding="utf-8", errors="replace")
        if current == text:
            plan.append(Installed(path, "unchanged"))
        elif current.startswith(MARKER):
            plan.append(Installed(path, "updated"))
        else:
            raise ConfigError(
                f"{path} exists and was not written by rdsssl cron install; not overwriting it "
                "(move it away, or print the units with --print and merge by hand)"
            )
    for item in plan:
        if item.action == "unchanged":
            continue
        data = units[item.path.name].encode()
        try:  # a file created since the check is not overwritten either (link(2) refuses)
            atomic_write(item.path, data, mode=0o644, overwrite=item.action == "updated")
        except FileExistsError:
            raise ConfigError(f"{item.path} appeared meanwhile; not overwriting it") from None
    return plan
