"""``rdsssl crl build | show``: certificate revocation lists (local)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rdsssl.cli.common import (
    ca_dir_option,
    check_days,
    get_app,
    iso,
    json_option,
    open_store,
    passphrase_file_option,
    read_input,
    restart_margin_option,
    unlock,
    wait_lock_option,
)
from rdsssl.pki import crypto
from rdsssl.rds import service_profile

if TYPE_CHECKING:
    from rdsssl.cli.app import App
    from rdsssl.cli.cloud import MutatingOptions
    from rdsssl.cli.fleet_opts import FleetOptions
    from rdsssl.ops.crl_refresh import RefreshResult

__all__ = ["crl"]


def _entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


@click.group()
def crl() -> None:
    """Build and show certificate revocation lists (local, no cloud access)."""


@crl.command("build")
@ca_dir_option
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the CRL (PEM) here, atomically.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=crypto.DEFAULT_CRL_DAYS,
    show_default=True,
    callback=check_days("CRL"),
    help="Days until nextUpdate (each upload restarts the instance).",
)
@click.option(
    "--size-budget",
    type=click.IntRange(min=1),
    default=service_profile.CRL_SIZE_BUDGET,
    show_default=True,
    metavar="BYTES",
    help="Warn when the CRL is larger than this.",
)
@restart_margin_option
@passphrase_file_option
@wait_lock_option
@json_option
def build(
    ca_dir: Path,
    out_file: Path,
    days: int,
    size_budget: int,
    restart_margin: timedelta,
    passphrase_file: Path | None,
    wait_lock: float,
) -> None:
    """Sign a CRL of every revoked certificate, with the next CRL number.

    \b
    Example:
      rdsssl crl build --ca-dir ./ca --out crl.pem --days 180
    """
    app = get_app()
    with open_store(ca_dir, wait_lock=wait_lock) as store:
        unlock(app, store, passphrase_file)
        built = store.build_crl(
            now=app.now(), days=days, out=out_file, restart_margin=restart_margin
        )
    size = len(built.pem)
    over = size > size_budget
    app.result(
        {
            "out": str(out_file),
            "number": built.number,
            "entries": built.entries,
            "last_update": iso(built.last_update),
            "next_update": iso(built.next_update),
            "size": size,
            "size_budget": size_budget,
            "over_budget": over,
            "fingerprint": crypto.fingerprint(built.crl),
        }
    )
    app.info(
        f"wrote {out_file}: CRL number {built.number}, {_entries(built.entries)}, "
        f"next update {iso(built.next_update)}, {size} bytes"
    )
    if over:
        app.warn(
            f"the CRL is {size} bytes, above the {size_budget}-byte budget: the RDS API "
            "may refuse it; entries of long-expired certificates are dropped automatically"
        )


@crl.command("show")
@click.argument("crl_file", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False))
@json_option
def show(crl_file: Path) -> None:
    """Show a CRL file: issuer, number, last/next update, revoked serials.

    \b
    Example:
      rdsssl crl show crl.pem
    """
    app = get_app()
    crls = crypto.load_crls(read_input(crl_file, "a CRL file"), source=str(crl_file))
    infos = [crypto.inspect_crl(c) for c in crls]
    app.result(
        {
            "file": str(crl_file),
            "crls": [
                {
                    "issuer": i.issuer,
                    "number": i.number,
                    "last_update": iso(i.last_update),
                    "next_update": iso(i.next_update),
                    "entries": len(i.revoked_serials),
                    "revoked_serials": [crypto.serial_hex(s) for s in i.revoked_serials],
                    "fingerprint": i.fingerprint,
                    "signature_hash": i.signature_hash,
                }
                for i in infos
            ],
        }
    )
    for n, info in enumerate(infos, start=1):
        if len(infos) > 1:
            app.out(f"CRL {n} of {len(infos)}")
        app.out(f"Issuer:       {info.issuer}")
        app.out(f"CRL number:   {'none' if info.number is None else info.number}")
        app.out(f"Last update:  {iso(info.last_update)}")
        app.out(f"Next update:  {iso(info.next_update) or 'none'}")
        app.out(f"Fingerprint:  SHA-256 {info.fingerprint}")
        app.out(f"Entries:      {len(info.revoked_serials)}")
        for serial in info.revoked_serials:
            app.out(f"  {crypto.serial_hex(serial)}")


# ------------------------------------------------------------------ crl refresh (cloud)
# Built on first use: `crl build` / `crl show` must not pay for the cloud modules' imports.


class _LazyCommand(click.Command):
    """A placeholder listed in `crl --help` that builds the real command when invoked."""

    def __init__(self, name: str, build: Callable[[], click.Command], short_help: str) -> None:
        super().__init__(name, short_help=short_help, add_help_option=False)
        self._build = build
        self._real: click.Command | None = None

    def real(self) -> click.Command:
        """The command itself (built once)."""
        if self._real is None:
            self._real = self._build()
        return self._real

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        return self.real().make_context(info_name, args, parent=parent, **extra)


def _refresh_command() -> click.Command:
    from rdsssl.cli.cloud import mutating_options, take_mutating
    from rdsssl.cli.common import Duration
    from rdsssl.cli.fleet_opts import fleet_options, take_fleet
    from rdsssl.ops import crl_refresh

    @click.command("refresh")
    @fleet_options
    @click.option(
        "--ca-dir",
        "ca_dirs",
        multiple=True,
        envvar="RDSSSL_CA_DIR",
        type=click.Path(path_type=Path, file_okay=False),
        help="CA store that signs the CRL (repeatable, e.g. both stores during a CA "
        "rotation; env RDSSSL_CA_DIR). Default with -f: each entry's ca_dir.",
    )
    @click.option(
        "--min-remaining",
        type=Duration(),
        default="30d",
        show_default=True,
        help="Refresh when the instance's CRL reaches nextUpdate within this.",
    )
    @click.option(
        "--days",
        type=click.IntRange(min=1),
        default=crl_refresh.DEFAULT_CRL_DAYS,
        show_default=True,
        help="Validity of a new CRL in days (months: each upload restarts the instance).",
    )
    @click.option(
        "--window",
        metavar="HH:MM-HH:MM",
        help="Maintenance window in local time (may wrap midnight); outside it a due "
        "refresh is deferred (exit 0).",
    )
    @click.option("--now", "ignore_window", is_flag=True, help="Ignore --window: restart now.")
    @click.option(
        "--max-size",
        type=click.IntRange(min=1),
        default=service_profile.CRL_SIZE_BUDGET,
        show_default=True,
        metavar="BYTES",
        help="Warn when the uploaded CRL is larger than this.",
    )
    @passphrase_file_option
    @wait_lock_option
    @mutating_options
    @json_option
    def refresh(**kwargs: Any) -> int:
        """Upload a fresh CRL where one is due; otherwise do nothing (exit 0).

        Due: the instance's CRL reaches nextUpdate within --min-remaining, a revocation in
        the CA store is not on it yet, or it does not cover every CA of the instance's
        bundle. Each upload RESTARTS the instance (~3 min), hence --window.

        Exit codes: 0 done or nothing due (also when deferred by --window), 3 bad input,
        4 API error, 5 the change failed or timed out, 7 CA store locked.

        \b
        Examples:
          rdsssl crl refresh pgm-bp1example --ca-dir ./ca --window 02:00-04:00
          rdsssl crl refresh --tag env=prod --ca-dir ./ca --yes --now
          rdsssl crl refresh -f rdsssl.toml --dry-run
        """
        mutating = take_mutating(kwargs)
        opts = take_fleet(kwargs)
        return _run_refresh(get_app(), opts, mutating, **kwargs)

    return refresh


_MESSAGES = {
    "current": "the CRL is current; nothing to do",
    "refreshed": "uploaded a fresh CRL ({entries}, {size} bytes); the instance restarted: {reason}",
    "sent": "uploaded a fresh CRL ({entries}, {size} bytes), not waiting (--no-wait): {reason}",
    "would-refresh": "would upload a fresh CRL ({entries}) and RESTART the instance: {reason}",
    "deferred": "due but outside the window {window}: {reason}; it runs inside the window, "
    "or now with --now",
    "skipped": "{reason}",
}


def _describe(result: RefreshResult, window: object) -> str:
    return _MESSAGES[result.status].format(
        entries=_entries(result.entries),
        size=result.size,
        reason=result.reason,
        window=window,
    )


def _confirming(app: App, mutating: MutatingOptions) -> bool:
    """Ask before restarting: on a terminal, unless --yes or --dry-run (cron never asks)."""
    return app.interactive and not (mutating.yes or mutating.dry_run)


def _run_refresh(
    app: App,
    opts: FleetOptions,
    mutating: MutatingOptions,
    *,
    ca_dirs: tuple[Path, ...],
    min_remaining: timedelta,
    days: int,
    window: str | None,
    ignore_window: bool,
    max_size: int,
    passphrase_file: Path | None,
    wait_lock: float,
) -> int:
    """`crl refresh` over the selected instances (see rdsssl.ops.crl_refresh)."""
    import threading

    from rdsssl.cli.cloud import plan_lines
    from rdsssl.cli.fleet_opts import (
        error_json,
        error_text,
        outcome_json,
        print_results,
        progress_for,
        summary_line,
    )
    from rdsssl.errors import UsageError
    from rdsssl.ops import crl_refresh, fleet
    from rdsssl.ops.desired import DesiredBuilder

    if timedelta(days=days) <= min_remaining:
        raise UsageError(
            f"--days {days} must be longer than --min-remaining, or every run would upload again"
        )
    win = crl_refresh.Window.parse(window) if window else None
    if not (ca_dirs or opts.desired_file):
        raise UsageError("crl refresh needs the CA store that signs: --ca-dir DIR (or -f FILE)")
    now = app.now()
    builder = DesiredBuilder(
        now=now,
        unlock=lambda store: unlock(app, store, passphrase_file),
        crl_days=days,
        min_remaining=min_remaining,
        wait_lock=wait_lock,
    )
    api = opts.api(app)
    items = opts.select(app, api)
    many = len(items) > 1
    cancel = threading.Event()

    def one(item: fleet.Item, *, dry_run: bool) -> RefreshResult:
        iid = fleet.instance_id_of(item)
        dirs: tuple[Path, ...] = ca_dirs
        if not dirs and not isinstance(item, str):  # -f without --ca-dir: the entry's store
            spec = item[1]
            if not spec.crl or spec.ca_dir is None:
                why = f"skipped: {spec.source} sets no crl = true"
                return crl_refresh.RefreshResult(iid, "skipped", why, 0, None, (), None)
            dirs = (spec.ca_dir,)
        return crl_refresh.refresh(
            api,
            iid,
            [crl_refresh.store_crl(builder, d) for d in dirs],
            now=now,
            min_remaining=min_remaining,
            window=win,
            ignore_window=ignore_window,
            max_size=max_size,
            dry_run=dry_run,
            wait=not mutating.no_wait,
            timeout=mutating.timeout,
            on_progress=progress_for(app, iid, many=many),
            sleep=fleet.sleeper(cancel),
            audit=mutating.audit,
            restart_margin=mutating.restart_margin,
            profile=app.service_profile(),
        )

    def report(outcome: fleet.Outcome[RefreshResult]) -> None:
        """As each instance finishes (a fleet of restarts takes a while); in a fleet, the
        instances with nothing to do are listed only at -v and in the final table."""
        result, iid = outcome.result, outcome.instance_id
        if result is None:
            app.warn(f"{iid}: " + (error_text(outcome.error) if outcome.error else "interrupted"))
            return
        if result.status == "would-refresh" and result.applied is not None:
            for line in plan_lines(result.applied.plan):
                app.info(line)
        say = app.debug if many and result.status in ("current", "skipped") else app.info
        say(f"{iid}: {_describe(result, win)}")
        for warning in result.warnings:
            app.warn(f"{iid}: {warning}")

    def run(batch: list[fleet.Item], dry_run: bool) -> list[fleet.Outcome[RefreshResult]]:
        return fleet.run(
            batch,
            lambda item: one(item, dry_run=dry_run),
            concurrency=opts.concurrency,
            on_done=report,
            cancel=cancel,
        )

    outcomes = run(items, mutating.dry_run or _confirming(app, mutating))
    due = [n for n, o in enumerate(outcomes) if o.result and o.result.status == "would-refresh"]
    if _confirming(app, mutating) and due:  # a terminal: the plans are shown, now ask once
        question = f"Upload a fresh CRL to {len(due)} instance(s)? Each one restarts."
        if not click.confirm(question, default=False, err=True):
            app.info("nothing changed")
            return 0
        for n, outcome in zip(due, run([items[n] for n in due], False), strict=True):
            outcomes[n] = outcome
    code = fleet.worst_exit_code(outcomes)
    counts: dict[str, int] = {}
    for o in outcomes:
        if o.result is not None:
            counts[o.result.status] = counts.get(o.result.status, 0) + 1
    app.result(
        {
            "ok": code == 0,
            "exit_code": code,
            "summary": counts,
            "instances": [outcome_json(o, lambda r: r.to_dict()) for o in outcomes],
        }
    )
    if many:
        rows = [
            (
                o.instance_id,
                o.result.status if o.result else "error",
                _describe(o.result, win) if o.result else error_json(o.error, 0)["message"],
            )
            for o in outcomes
        ]
        print_results(app, ("INSTANCE", "RESULT", "DETAIL"), rows)
    app.info(summary_line(outcomes, counts))
    return code


crl.add_command(
    _LazyCommand("refresh", _refresh_command, "Upload a fresh CRL where one is due (cloud).")
)
