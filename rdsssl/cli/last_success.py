"""`@last_success(job)`: records `rdsssl_last_success_timestamp_seconds{job=...}` when a cron
command succeeds (`rdsssl.ops.last_success`), one decorator line per command.

It adds `--prometheus FILE` (env RDSSSL_PROMETHEUS_FILE; `check` has its own option of that
name, which it reuses) and, after the command returned an exit code in `success` and was not a
`--dry-run`, writes the job's file next to FILE. A command that raised (any error exit) writes
nothing. A file that cannot be written is a warning, not a failure: the work is done, and the
staleness alert on the metric is what then tells someone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rdsssl.cli.common import get_app
from rdsssl.errors import RdsSslError
from rdsssl.ops.last_success import last_success_file, record_success

__all__ = ["ENV", "last_success"]

ENV = "RDSSSL_PROMETHEUS_FILE"
F = TypeVar("F", bound=Callable[..., Any])


def last_success(
    job: str, *, success: tuple[int, ...] = (0,), own_option: bool = True
) -> Callable[[F], F]:
    """Decorate a click callback (below `@click.command`, above its options). With
    `own_option=False` the command already has `--prometheus` as `prometheus_file`."""
    last_success_file(Path("x.prom"), job)  # an unknown job fails at import, not at 3 a.m.
    name = "last_success_base" if own_option else "prometheus_file"

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            base: Path | None = kwargs.pop(name) if own_option else kwargs.get(name)
            rv = fn(*args, **kwargs)
            code = rv if isinstance(rv, int) else 0
            if base is not None and code in success and not kwargs.get("dry_run"):
                _record(base, job)
            return rv

        if own_option:
            click.option(
                "--prometheus",
                name,
                envvar=ENV,
                type=click.Path(path_type=Path, dir_okay=False),
                help=f"On success, record the time in FILE's sibling "
                f"STEM-last-success-{job}.prom, for node_exporter (env {ENV}).",
            )(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate


def _record(base: Path, job: str) -> None:
    app = get_app()
    try:
        path = record_success(base, job, now=app.now())
    except RdsSslError as exc:
        app.warn(f"the {job} run succeeded, but its last success was not recorded: {exc}")
        return
    app.debug(f"recorded the last success of {job} in {path}")
