"""What fleet commands share: instance selection options, the API client with its request
budget, the per-instance results table and the JSON shape of one instance's outcome.

Selection: instance IDs as arguments, or `--tag KEY=VALUE` (repeatable; every
tag must match; DescribeDBInstances, every page), or `-f rdsssl.toml` (ids and tags entries of a
desired-state file). Exactly one of the three. `--concurrency N` bounds the instances handled at
once; `--rate N` bounds the API requests per second of the whole run (all workers share one
client and one `RateLimiter`, see `rdsssl.ops.fleet`). Without `--rate`, the desired-state
file's `rate`, the service profile's `api_rate` or 10 (`rdsssl.ops.rate.choose_rate`).

Module-level imports stay light (click and rdsssl.ops.fleet): `rdsssl crl` imports this module
only when `crl refresh` runs, but a cheap import keeps it safe to use anywhere.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from rdsssl.cli.app import App
from rdsssl.errors import RdsSslError
from rdsssl.ops import fleet
from rdsssl.ops.rate import Rate, choose_rate
from rdsssl.rds.service_profile import MAX_RATE, MIN_RATE

if TYPE_CHECKING:
    from rdsssl.rds.protocol import RdsApi
    from rdsssl.rds.waiters import Progress

__all__ = [
    "FleetOptions",
    "error_json",
    "error_text",
    "fleet_options",
    "outcome_json",
    "pacing_options",
    "print_results",
    "progress_for",
    "summary_line",
    "take_fleet",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class FleetOptions:
    """The selection and pacing options of a fleet command."""

    ids: tuple[str, ...]
    tags: dict[str, str]
    desired_file: Path | None
    concurrency: int
    rate: float | None  # --rate; None: `rdsssl.ops.rate.choose_rate` picks

    def api(self, app: App) -> RdsApi:
        """One SDK client for every worker, behind one limiter of the run's rate."""
        from rdsssl.cli.cloud import make_api

        rate = self.run_rate(app)
        app.debug(f"rate limit: {rate.calls_per_second:g} API calls/s ({rate.source})")
        return fleet.limited(make_api(app), fleet.RateLimiter(rate.calls_per_second))

    def run_rate(self, app: App) -> Rate:
        """--rate, else the -f file's `rate`, else the service profile's `api_rate`, else 10."""
        from rdsssl.ops.config import load_desired_state

        desired = None
        if self.rate is None and self.desired_file is not None:
            desired = load_desired_state(self.desired_file)
        return choose_rate(self.rate, desired=desired, profile=app.service_profile())

    def select(self, app: App, api: RdsApi) -> list[fleet.Item]:
        """The selected instances (ids, or (id, desired-state entry) with -f)."""
        items = fleet.select_instances(
            api,
            ids=self.ids,
            tags=self.tags or None,
            desired_file=self.desired_file,
            region=app.region,
        )
        app.debug(f"selected {len(items)} instance(s)")
        return items


def _parse_tags(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> dict[str, str]:
    tags: dict[str, str] = {}
    for value in values:
        key, sep, wanted = value.partition("=")
        key, wanted = key.strip(), wanted.strip()
        if not sep or not key or not wanted:
            raise click.BadParameter(f"{value!r}: use KEY=VALUE, e.g. --tag env=prod", ctx, param)
        if tags.get(key, wanted) != wanted:
            raise click.BadParameter(
                f"tag {key} is given twice with different values ({tags[key]}, {wanted}); "
                "every tag must match, so nothing could",
                ctx,
                param,
            )
        tags[key] = wanted
    return tags


def fleet_options(f: F) -> F:
    """[ID]... --tag KEY=VALUE -f FILE --concurrency N --rate N (collected by take_fleet)."""
    options = [
        click.argument("ids", nargs=-1, metavar="[ID]..."),
        click.option(
            "--tag",
            "tags",
            multiple=True,
            metavar="KEY=VALUE",
            callback=_parse_tags,
            help="Select instances by tag (repeatable; all must match).",
        ),
        click.option(
            "-f",
            "--file",
            "desired_file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Select the instances of a desired-state file (rdsssl.toml).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return pacing_options(f)


def pacing_options(f: F) -> F:
    """--concurrency N --rate N: how many instances at once, and one request budget for all
    (also used by `apply -f`, which selects with its own file option)."""
    f = click.option(
        "--rate",
        type=click.FloatRange(min=MIN_RATE, max=MAX_RATE),
        default=None,
        metavar="N",
        help="API requests per second, all instances together (default: the desired-state "
        f"file's rate, else the service profile's api_rate, else {fleet.DEFAULT_RATE:g}).",
    )(f)
    return click.option(
        "--concurrency",
        type=click.IntRange(min=1, max=256),
        default=fleet.DEFAULT_CONCURRENCY,
        show_default=True,
        help="Instances handled at once.",
    )(f)


def take_fleet(kwargs: dict[str, Any]) -> FleetOptions:
    """Pop the fleet options from a command's kwargs."""
    return FleetOptions(
        ids=tuple(kwargs.pop("ids")),
        tags=dict(kwargs.pop("tags")),
        desired_file=kwargs.pop("desired_file"),
        concurrency=kwargs.pop("concurrency"),
        rate=kwargs.pop("rate"),
    )


# ------------------------------------------------------------------ reporting


def error_json(exc: BaseException | None, exit_code: int) -> dict[str, Any]:
    """The JSON shape of a failure (the same keys `App.fail` uses)."""
    if exc is None:
        return {"type": "Interrupted", "message": "interrupted", "exit_code": exit_code}
    return {"type": type(exc).__name__, "message": error_text(exc), "exit_code": exit_code}


def error_text(exc: BaseException) -> str:
    """One line for an instance's failure; unknown exceptions are named, not dumped."""
    if isinstance(exc, RdsSslError):
        return " ".join(str(exc).split("\n"))
    return f"unexpected {type(exc).__name__}: {exc}"


def outcome_json(
    outcome: fleet.Outcome[Any], result_json: Callable[[Any], dict[str, Any]]
) -> dict[str, Any]:
    """One instance in a fleet command's JSON document."""
    data: dict[str, Any] = {
        "instance": outcome.instance_id,
        "ok": outcome.ok,
        "exit_code": outcome.exit_code,
        "elapsed": round(outcome.elapsed, 3),
    }
    if outcome.ok:
        data.update(result_json(outcome.result))
    else:
        data["error"] = error_json(outcome.error, outcome.exit_code)
    return data


def summary_line(outcomes: Sequence[fleet.Outcome[Any]], counts: Mapping[str, int]) -> str:
    """`5 instance(s): 3 refreshed, 1 current, 1 failed`."""
    parts = [f"{n} {label}" for label, n in counts.items() if n]
    failed = sum(1 for o in outcomes if not o.ok)
    if failed:
        parts.append(f"{failed} failed")
    return f"{len(outcomes)} instance(s): " + (", ".join(parts) or "nothing to report")


def print_results(app: App, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """The per-instance results on stdout: a rich table on a terminal, plain aligned columns
    otherwise (cron mail, pipes); nothing under --json (the document carries them)."""
    if app.json or not rows:
        return
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*headers, highlight=False)
        for row in rows:
            table.add_row(*row)
        Console(highlight=False, emoji=False).print(table)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        cells = [c.ljust(w) for c, w in zip(line[:-1], widths[:-1], strict=True)]
        app.out("  ".join([*cells, line[-1]]).rstrip())


def progress_for(app: App, instance_id: str, *, many: bool) -> Callable[[Progress], None]:
    """Waiting progress for one instance: on a terminal its own live line (one per instance);
    otherwise the usual log lines when it is the only one, else log lines at -v (a fleet's
    interleaved waits would flood a cron mail); every line names it."""
    from rdsssl.cli.cloud import progress_reporter

    if not many or sys.stderr.isatty():
        return progress_reporter(app, instance_id)

    def log(p: Progress) -> None:
        app.debug(f"{instance_id}: {p.waiter}: {p.status} (elapsed {p.elapsed:.0f}s)")

    return log
