"""The application object every command receives: output, verbosity, clock, and the one door
through which errors leave.

Rules it enforces (hatch's terminal, httpie's environment): data a user asked for goes to
stdout; messages, warnings and errors go to stderr and respect ``-v/-q``; with ``--json`` stdout
carries exactly one JSON document and nothing else, success or failure (``--json-lines``: the
same document compact on one line, for logs). Every document has the envelope of
``rdsssl.cli.jsondoc`` (``schema_version``, ``generated_at``, ``command``, ``ok``,
``exit_code``), written once the exit code is known: a command hands its data to ``result`` and
``run`` calls ``finish`` with the code. When stderr is not a
terminal (cron mail, CI logs) each message line starts with an ISO 8601 timestamp
(``rdsssl.cli.logs.stamped``); the final ``rdsssl: error: ...`` line does not, so scripts can
match it. Tests build an ``App`` with their own clock and TTY answers instead of patching
globals.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rdsssl.cli import jsondoc
from rdsssl.cli.logs import stamped
from rdsssl.errors import ExitCode, RdsSslError
from rdsssl.ops import audit

if TYPE_CHECKING:
    from rdsssl.cli.progress import ProgressBoard
    from rdsssl.rds.service_profile import ServiceProfile

__all__ = ["App"]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class App:
    """Global state of one rdsssl invocation (``ctx.obj``)."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = _utcnow,
        interactive: bool | None = None,
        stderr_tty: bool | None = None,
    ) -> None:
        self.json = False
        self.json_lines = False
        self.verbosity = 0
        self.region: str | None = None
        self.endpoint: str | None = None
        self.profile: str | None = None
        self.service_profile_path: Path | None = None
        self._service_profile: ServiceProfile | None = None
        self._clock = clock
        self._interactive = interactive
        self._stderr_tty = stderr_tty
        self._emitted = False
        self._pending: dict[str, Any] | None = None
        self.command = "rdsssl"  # the running command's path, for its JSON document
        self._board: ProgressBoard | None = None

    # -- environment ------------------------------------------------------------------------

    def now(self) -> datetime:
        """The current time, timezone-aware UTC (the one clock read of a command)."""
        return self._clock()

    @property
    def interactive(self) -> bool:
        """True when we may prompt: stdin is a terminal (tests can say so explicitly)."""
        if self._interactive is not None:
            return self._interactive
        return sys.stdin.isatty()

    @property
    def timestamps(self) -> bool:
        """True when stderr lines get a timestamp: stderr is not a terminal."""
        tty = self._stderr_tty if self._stderr_tty is not None else sys.stderr.isatty()
        return not tty

    def _say(self, message: str) -> None:
        if self._board is not None and self._board.live:
            self._board.say(message)  # above the live progress lines, never inside one
            return
        click.echo(stamped(message) if self.timestamps else message, err=True)

    def progress_board(self) -> ProgressBoard:
        """The live progress lines of this command (created on first use; a terminal only)."""
        if self._board is None:
            from rdsssl.cli.progress import ProgressBoard

            self._board = ProgressBoard()
        return self._board

    def end_progress(self) -> None:
        """Stop redrawing progress lines and erase them."""
        if self._board is not None:
            self._board.close()

    def service_profile(self) -> ServiceProfile:
        """What the service is known to do (`--service-profile` / $RDSSSL_SERVICE_PROFILE, else
        the documented timings); read once per command."""
        if self._service_profile is None:
            from rdsssl.rds import service_profile

            self._service_profile = service_profile.load(self.service_profile_path)
        return self._service_profile

    # -- messages (stderr) ------------------------------------------------------------------

    def info(self, message: str) -> None:
        """A progress or result message; hidden by -q."""
        if self.verbosity >= 0:
            self._say(message)

    def debug(self, message: str) -> None:
        """Detail shown with -v."""
        if self.verbosity >= 1:
            self._say(message)

    def warn(self, message: str) -> None:
        """Something the user should know even in a cron mail; hidden only by -qq."""
        if self.verbosity >= -1:
            self._say(f"rdsssl: warning: {message}")

    # -- results (stdout) -------------------------------------------------------------------

    def out(self, text: str = "") -> None:
        """Human-readable data on stdout; suppressed under --json (the document carries it)."""
        if not self.json:
            click.echo(text)

    def result(self, data: dict[str, Any]) -> None:
        """The command's result data: with --json, the body of the one document, written with
        its envelope when the command ends (`finish`). `ok` / `exit_code` are the envelope's:
        a command says how it ended by its exit code, not in its data."""
        if not self.json:
            return
        if self._pending is not None or self._emitted:  # a bug: two documents break parsers
            raise RuntimeError("a command tried to print a second JSON document")
        clash = jsondoc.ENVELOPE_KEYS & data.keys()
        if clash:
            raise RuntimeError(f"result data must not set envelope keys: {sorted(clash)}")
        self._pending = data
        self.command = _command_path()

    def stream_result(self, data: dict[str, Any], key: str, items: Iterable[dict[str, Any]]) -> int:
        """Under --json, write the document now with `items` as the list under `key`, streamed
        (a listing of 100,000 certificates is never held in memory); returns how many. Call it
        only once everything that could fail before the first item has passed: the document
        says exit code 0, and an error while streaming leaves it cut short (not valid JSON)
        with the error on stderr and a non-zero exit. The text is what `--json` /
        `--json-lines` print for the same document built whole."""
        if not self.json:
            return 0
        if self._pending is not None or self._emitted:
            raise RuntimeError("a command tried to print a second JSON document")
        self._emitted = True
        self.command = _command_path()
        head = jsondoc.envelope(data, exit_code=0, now=self.now(), command=self.command)
        return jsondoc.stream(head, key, items, compact=self.json_lines, write=_stdout_write)

    def emit_now(self, data: dict[str, Any]) -> None:
        """Write the document at once, for a command that runs on after it (`emulator serve`
        announces itself, then serves until stopped); exit code 0 so far."""
        if self.json:
            self.command = _command_path()
            self._emit(data, exit_code=0)

    def finish(self, exit_code: int) -> int:
        """The command ended with `exit_code`: write its document (under --json every command
        writes one, even with no data) and return the code."""
        self.end_progress()
        if self.json and not self._emitted:
            self._emit(self._pending or {}, exit_code=exit_code)
        return exit_code

    def _emit(self, data: dict[str, Any], *, exit_code: int) -> None:
        if self._emitted:  # a bug, not a user error: two documents would break every parser
            raise RuntimeError("a command tried to print a second JSON document")
        self._emitted = True
        document = jsondoc.envelope(data, exit_code=exit_code, now=self.now(), command=self.command)
        click.echo(jsondoc.dumps(document, compact=self.json_lines))

    # -- the one door out ---------------------------------------------------------------------

    def fail(self, exc: BaseException, *, code: int | None = None, message: str = "") -> int:
        """Report ``exc`` (one line on stderr; a JSON document under --json) and return the
        exit code. Known errors print their message; anything else a short line, with the
        traceback only at -vv. Never prints more than the exception's message."""
        self.end_progress()
        if isinstance(exc, RdsSslError):
            exit_code = int(exc.exit_code)
            text = str(exc)
        else:
            exit_code = int(ExitCode.UNEXPECTED) if code is None else code
            text = message or f"unexpected {type(exc).__name__}: {exc}"
            if code is None and self.verbosity >= 2:
                traceback.print_exception(exc, file=sys.stderr)
            elif code is None:
                text += " (run again with -vv for the traceback)"
        text = " ".join(text.split("\n"))
        click.echo(f"rdsssl: error: {text}", err=True)
        if self.json and not self._emitted:
            error = {"type": type(exc).__name__, "message": text, "exit_code": exit_code}
            self._emit({**(self._pending or {}), "error": error}, exit_code=exit_code)
        return exit_code

    def interrupted(self, exc: BaseException) -> int:
        """Ctrl-C (130) or SIGTERM (143): one message, and under --json one document, saying
        which changes were sent and not yet confirmed (their `sent` audit lines are on disk):
        running the same command again re-reads the instances and confirms them."""
        self.end_progress()
        terminated = type(exc).__name__ == "Terminated"
        code = int(ExitCode.TERMINATED if terminated else ExitCode.INTERRUPTED)
        pending = audit.unconfirmed()
        text = "terminated" if terminated else "interrupted"
        if pending:
            sent = ", ".join(
                f"{iid} (RequestId {rid})" if rid else f"{iid} (interrupted during the call)"
                for iid, rid in sorted(pending.items())
            )
            text += (
                f"; change sent to {sent}, not yet confirmed: re-run the same command to confirm"
            )
        click.echo(f"rdsssl: {text}", err=True)
        if self.json and not self._emitted:
            error = {
                "type": "Terminated" if terminated else "Interrupted",
                "message": text,
                "exit_code": code,
            }
            unconfirmed = [
                {"instance": i, "request_id": r or None} for i, r in sorted(pending.items())
            ]
            body = {**(self._pending or {}), "error": error, "unconfirmed": unconfirmed}
            self._emit(body, exit_code=code)
        return code

    def fail_usage(self, exc: click.ClickException) -> int:
        """A click usage error: click's own usage hint on stderr, exit 2 (and JSON if asked)."""
        exc.show()
        if self.json and not self._emitted:
            error = {
                "type": "UsageError" if isinstance(exc, click.UsageError) else type(exc).__name__,
                "message": exc.format_message(),
                "exit_code": exc.exit_code,
            }
            self._emit({"error": error}, exit_code=exc.exit_code)
        return exc.exit_code


def _stdout_write(text: str) -> None:
    click.echo(text, nl=False)


def _command_path() -> str:
    """`rdsssl cert list`: the command that is running (for documents in a shared log)."""
    ctx = click.get_current_context(silent=True)
    return ctx.command_path if ctx is not None else "rdsssl"


def command_from_args(group: click.Group, args: list[str]) -> str:
    """The command path `args` name (`rdsssl cert list`), known before parsing so that even a
    failure during parsing has it; a word that is no sub-command ends the search."""
    path, command = ["rdsssl"], group
    ctx = click.Context(group, info_name="rdsssl")
    for arg in args:
        if arg == "--":
            break
        if arg.startswith("-") or not isinstance(command, click.Group):
            continue
        if arg not in command.list_commands(ctx):
            continue
        path.append(arg)
        sub = command.get_command(ctx, arg)
        if sub is None:
            break
        command = sub  # type: ignore[assignment]
    return " ".join(path)
