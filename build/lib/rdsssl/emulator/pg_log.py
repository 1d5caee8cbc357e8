"""Reading a cluster's server log: what an attempt to start, restart or reload wrote, without
prefixes and connection chatter, and the lines that say why it failed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from rdsssl.emulator.pg_os import tail

__all__ = ["RELOAD_FAILURES", "failure_reason", "log_since", "log_size"]

# Log lines that say a reload did not take (docs §3.1); everything else is just context.
RELOAD_FAILURES = (
    "SSL configuration was not reloaded",
    "pg_hba.conf was not reloaded",
    "pg_ident.conf was not reloaded",
    "contains errors",
)
_LOG_NOISE = re.compile(
    r"connection (received|authorized|authenticated)|disconnection:|received SIGHUP"
    r"|parameter \".*\" (changed to|removed from)"
)
_LOG_PREFIX = re.compile(r"^\S+ \S+ \S+ \[\d+\] (?:[A-Z]+:\s+)?")


def log_size(log_file: Path) -> int:
    try:
        return log_file.stat().st_size
    except FileNotFoundError:
        return 0


def log_since(log_file: Path, offset: int) -> list[str]:
    """Log lines written after `offset`, without prefixes and connection chatter."""
    try:
        with log_file.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    lines = (_LOG_PREFIX.sub("", ln).strip() for ln in text.splitlines())
    return [ln for ln in lines if ln and not _LOG_NOISE.search(ln)]


def failure_reason(log_file: Path, offset: int, r: subprocess.CompletedProcess[str]) -> str:
    """The server's own FATAL/could-not lines from this attempt, else pg_ctl's output."""
    pattern = re.compile(r"^(FATAL|PANIC|ERROR|DETAIL|HINT)|could not|invalid")
    lines = [ln for ln in log_since(log_file, offset) if pattern.search(ln)]
    return "; ".join(dict.fromkeys(lines)) or tail(r)
