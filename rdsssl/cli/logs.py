"""The command line's logging: the one place rdsssl configures `logging` (the library only logs).

Decisions:
- One handler, on the `rdsssl` logger only, installed for one invocation and removed after it
  (`uninstall` puts the levels it changed back), so a program or a test that runs commands
  in-process keeps its own logging setup. It writes through `click.echo(err=True)` at emit
  time, so it follows whatever stderr is then.
- `-v/-q` map to its level: WARNING by default (the commands print their own progress; the
  library's INFO/DEBUG records are detail), INFO at `-v`, DEBUG at `-vv`, ERROR at `-q`.
- The emulator's records (`rdsssl.emulator.*`) are left out: `rdsssl emulator serve` has its own
  handler, and an emulator running in the same process is not this command's story.
- The Alibaba Cloud SDK's loggers (`darabonba-core`, `alibabacloud-tea`, `credentials`) are set
  to WARNING, DEBUG only at `-vv`. With `DEBUG=sdk` in the environment the SDK prints each
  request line and its headers through its own handler; those carry every query parameter (an
  STS token, CreateAccount's password, the signature), so a filter on those loggers replaces the
  values of such parameters and headers with `***` before any handler sees them.
- When stderr is not a terminal (cron mail, a CI log), every line gets an ISO 8601 timestamp
  with the local UTC offset; on a terminal lines stay as they are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime

import click

__all__ = ["SDK_LOGGERS", "install", "level_for", "redact", "stamp", "stamped", "uninstall"]

SDK_LOGGERS = ("darabonba-core", "alibabacloud-tea", "credentials")
_SECRET_WORDS = r"(?:password|secret|token|signature|authorization|credential)"
# a query parameter (`&SecurityToken=...`, after `/`, `?`, `&` or a space) and a dumped header
# line (`> x-acs-security-token : ...`, as the SDK's debug dump writes them)
_QUERY = re.compile(rf"(?i)((?:^|[/?&\s])[^=&\s/?]*{_SECRET_WORDS}[^=&\s]*=)[^&\s]*")
_HEADER = re.compile(rf"(?im)^([<>] [^:\n]*{_SECRET_WORDS}[^:\n]* : ).*$")


def level_for(verbosity: int) -> int:
    """The `rdsssl` logger's level for `-v` minus `-q`."""
    if verbosity >= 2:
        return logging.DEBUG
    if verbosity == 1:
        return logging.INFO
    if verbosity == 0:
        return logging.WARNING
    return logging.ERROR


def stamp() -> str:
    """Now, ISO 8601 to the second with the local UTC offset (e.g. 2024-05-01T03:00:00+08:00)."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def stamped(text: str, now: Callable[[], str] = stamp) -> str:
    """`text` with the timestamp in front of each of its lines."""
    when = now()
    return "\n".join(f"{when} {line}" for line in text.split("\n"))


def redact(text: str) -> str:
    """`text` with the values of secret-looking query parameters and headers replaced."""
    return _HEADER.sub(r"\1***", _QUERY.sub(r"\1***", text))


class _Redact(logging.Filter):
    """Rewrites a record's message through `redact` (on the SDK's loggers, before handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class _NotEmulator(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("rdsssl.emulator")


class _ClickHandler(logging.Handler):
    """Writes each record to the current stderr through click, timestamped when not a TTY."""

    def __init__(self, level: int, *, timestamps: bool) -> None:
        super().__init__(level)
        self.timestamps = timestamps
        self.setFormatter(logging.Formatter("rdsssl: %(levelname)s: %(name)s: %(message)s"))
        self.addFilter(_NotEmulator())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            click.echo(stamped(text) if self.timestamps else text, err=True)
        except Exception:  # a logging failure must never become the command's failure
            self.handleError(record)


_redactor = _Redact()
_saved: list[tuple[logging.Logger, int]] = []
_installed: list[logging.Handler] = []


def install(verbosity: int, *, timestamps: bool) -> logging.Handler:
    """Install the command's handler on the `rdsssl` logger (replacing one a previous
    invocation left), set the SDK loggers' levels and their redaction filter."""
    uninstall()
    logger = logging.getLogger("rdsssl")
    level = level_for(verbosity)
    handler = _ClickHandler(level, timestamps=timestamps)
    sdk_level = logging.DEBUG if verbosity >= 2 else logging.WARNING
    changes = [(logger, level)] + [(logging.getLogger(n), sdk_level) for n in SDK_LOGGERS]
    for target, new_level in changes:
        _saved.append((target, target.level))
        target.setLevel(new_level)
    for name in SDK_LOGGERS:
        sdk = logging.getLogger(name)
        if _redactor not in sdk.filters:
            sdk.addFilter(_redactor)  # stays: a later DEBUG=sdk dump is redacted too
    logger.addHandler(handler)
    _installed.append(handler)
    return handler


def uninstall() -> None:
    """Remove the handler `install` added and restore the levels it changed."""
    logger = logging.getLogger("rdsssl")
    while _installed:
        logger.removeHandler(_installed.pop())
    while _saved:
        target, level = _saved.pop()
        target.setLevel(level)
