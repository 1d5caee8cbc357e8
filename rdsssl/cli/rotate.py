"""``rdsssl rotate ca | status``: two-phase client CA rotation, a thin layer over
``rdsssl.ops.rotation`` (which documents the design).

Which steps a run performs: by default everything up to and including ``verify``, then it
stops, because old-certificate clients need overlap time to move to their new certificates
before the old CA goes away; ``--retire`` goes on to retire the old CA; ``--phase STEP`` runs
exactly one step (it must be the next one); ``--rollback`` returns to the old CA. ``--no-wait``
is accepted only with ``--phase`` or ``--rollback``: a multi-step run cannot continue past a
change it has not seen finish (the next run confirms it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rdsssl.cli.app import App
from rdsssl.cli.cloud import (
    MutatingOptions,
    make_api,
    mutating_options,
    plan_lines,
    probe_options,
    progress_reporter,
    take_mutating,
    take_probe,
)
from rdsssl.cli.common import (
    NEW_PASSPHRASE_ENV,
    PASSPHRASE_ENV,
    ca_dir_option,
    check_days,
    get_app,
    json_option,
    open_store,
    passphrase_file_option,
    unlock,
    wait_lock_option,
)
from rdsssl.cli.last_success import last_success
from rdsssl.errors import UsageError
from rdsssl.ops.probe import ProbeResult
from rdsssl.ops.probe_options import ProbeOptions, run_probe
from rdsssl.ops.rotation_context import Event, Options
from rdsssl.ops.rotation_file import load, state_path
from rdsssl.ops.rotation_run import RotationRequest, RotationRun, open_rotation
from rdsssl.ops.rotation_state import FORWARD, Phase, RotationState, Step, next_action
from rdsssl.pki import crypto

__all__ = ["rotate"]


_STEP_TEXT = {
    Step.STAGE: "trust old + new CA, with a CRL for each: one change, RESTARTS each instance",
    Step.REISSUE: "issue a new-CA certificate to every user holding a valid old one (local)",
    Step.VERIFY: "probe every instance with a new certificate",
    Step.RETIRE: "trust the new CA only: RESTARTS each instance; old certificates stop working",
    Step.ROLLBACK: "trust the old CA only again: RESTARTS each instance; new certificates stop",
}


@click.group()
def rotate() -> None:
    """Rotate the client CA of instances in two phases, with overlap and rollback."""


def _confirm(app: App, state: RotationState, steps: list[Step], yes: bool, dry: bool) -> bool:
    head = "dry run: would run" if dry else "will run"
    app.info(
        f"rotation {state.old.subject} -> {state.new.subject} on {', '.join(state.instances)} "
        f"(phase {state.phase.value}); {head}:"
    )
    for step in steps:
        app.info(f"  {step.value}: {_STEP_TEXT[step]}")
    if dry or yes or not app.interactive:
        return True
    return click.confirm("Proceed?", default=False, err=True)


def _show(app: App, event: Event) -> None:
    if event.plan is not None and event.outcome in ("changing", "would-change"):
        for line in plan_lines(event.plan):
            app.info(line)
        if event.outcome == "changing":
            return
    who = event.instance or event.user
    text = f"{event.step.value}: {who + ': ' if who else ''}{event.outcome}"
    if event.detail:
        text += f" ({event.detail})"
    if event.request_id:
        text += f", request {event.request_id}"
    if event.outcome == "sent":
        text += "; not waited for: run again to confirm it"
    if event.outcome == "refused":
        app.warn(text)
        return
    app.info(text)


@rotate.command("ca")
@last_success("rotate")
@click.argument("instance_ids", nargs=-1, metavar="[ID]...")
@ca_dir_option
@click.option(
    "--new-ca-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="The new CA store (rdsssl ca init). Needed to start; later runs read it from the state.",
)
@click.option("--retire", is_flag=True, help="Go on to retire the old CA (second restart).")
@click.option("--rollback", is_flag=True, help="Return every instance to the old CA (one restart).")
@click.option(
    "--phase",
    type=click.Choice([s.value for s in FORWARD]),
    help="Run exactly this step (it must be the next one).",
)
@click.option(
    "--out-root",
    type=click.Path(path_type=Path, file_okay=False),
    help="Reissued files go to OUT_ROOT/USER/ (replaced atomically); default: the current "
    "directory of the first run, recorded in the state.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=crypto.DEFAULT_LEAF_DAYS,
    show_default=True,
    callback=check_days("certificate"),
    help="Validity of reissued certificates (never beyond the new CA).",
)
@click.option(
    "--crl-days",
    type=click.IntRange(min=1),
    default=crypto.DEFAULT_CRL_DAYS,
    show_default=True,
    callback=check_days("CRL"),
    help="Validity (nextUpdate) of the CRLs uploaded.",
)
@probe_options()
@passphrase_file_option
@click.option(
    "--new-passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"The new CA key's passphrase (first line); else ${NEW_PASSPHRASE_ENV}, else the "
    "old store's sources.",
)
@wait_lock_option
@mutating_options
@json_option
def rotate_ca(
    instance_ids: tuple[str, ...],
    ca_dir: Path,
    new_ca_dir: Path | None,
    retire: bool,
    rollback: bool,
    phase: str | None,
    out_root: Path | None,
    days: int,
    crl_days: int,
    passphrase_file: Path | None,
    new_passphrase_file: Path | None,
    wait_lock: float,
    **kwargs: Any,
) -> None:
    """Rotate the client CA: stage, reissue, verify; then retire (--retire) or roll back.

    Resumable: the state is kept in CA_DIR/rotation.json; run the same command again after a
    failure or a kill and it continues without repeating anything. Exit 0 when nothing is due.

    \b
    Examples:
      rdsssl rotate ca pgm-1 pgm-2 --ca-dir /srv/ca --new-ca-dir /srv/ca2 \\
          --out-root /srv/client-certs --probe-user app --probe-password-env APP_PW --yes
      rdsssl rotate ca --ca-dir /srv/ca --retire --probe-user app --probe-password-env APP_PW
      rdsssl rotate ca --ca-dir /srv/ca --rollback --force
    """
    app, opts, probe = get_app(), take_mutating(kwargs), take_probe(kwargs)
    if opts.no_wait and phase is None and not rollback:
        raise UsageError("--no-wait needs --phase or --rollback: later steps need the change done")
    request = RotationRequest(
        ca_dir=ca_dir, new_ca_dir=new_ca_dir, instances=instance_ids, out_root=out_root,
        retire=retire, rollback=rollback, phase=phase, wait_lock=wait_lock,
    )  # fmt: skip
    with open_rotation(
        request, now=app.now(), dry_run=opts.dry_run, allow_tls13_only=opts.force
    ) as run:
        if run.state is None:
            app.info(f"no rotation recorded in {ca_dir}: nothing to roll back")
            app.result(run.to_json())
            return
        if not run.steps:
            app.info(f"nothing to do: the rotation is at phase {run.state.phase.value}")
        else:
            if not _confirm(app, run.state, run.steps, opts.yes, opts.dry_run):
                raise click.exceptions.Abort()
            if run.needs_old_key:  # on this thread, before anything changes
                unlock(app, run.old, passphrase_file)
            if run.needs_new_key and run.new is not None:
                # --new-passphrase-file, $RDSSSL_NEW_CA_PASSPHRASE, then the old store's sources
                envs = (NEW_PASSPHRASE_ENV, PASSPHRASE_ENV)
                unlock(app, run.new, new_passphrase_file, envs=envs)
            api = make_api(app)

            def prober(iid: str, user: str, cert: Path, key: Path) -> ProbeResult:
                given = ProbeOptions(user, cert, key, probe.root_cert, probe.password_env)
                return run_probe(api, iid, given)

            options = _options(app, opts, probe, days=days, crl_days=crl_days)
            run.run(api, options, clock=app.now, report=lambda e: _show(app, e), prober=prober)
    _render(app, run)


def _options(
    app: App, opts: MutatingOptions, probe: ProbeOptions, *, days: int, crl_days: int
) -> Options:
    return Options(
        dry_run=opts.dry_run, wait=not opts.no_wait, force=opts.force, timeout=opts.timeout,
        audit=opts.audit, days=days, crl_days=crl_days, probe_user=probe.user,
        probe_cert=probe.cert, probe_key=probe.key, on_progress=progress_reporter(app),
        restart_margin=opts.restart_margin, profile=app.service_profile(), settle=opts.settle,
    )  # fmt: skip


def _render(app: App, run: RotationRun) -> None:
    assert run.state is not None
    phase = run.phase
    assert phase is not None
    if not run.dry_run:
        app.info(f"phase: {phase.value}; next: {next_action(run.state)}")
    if phase is Phase.ROLLED_BACK and run.completed:
        app.info("the new CA's certificates stay issued; rotate ca stages the rotation again")
    app.result(run.to_json())


@rotate.command("status")
@ca_dir_option
@json_option
def rotate_status(ca_dir: Path) -> None:
    """Show a rotation's phase, per-instance progress, reissued users and the next step.

    \b
    Example:
      rdsssl rotate status --ca-dir /srv/ca --json
    """
    app = get_app()
    with open_store(ca_dir):
        pass  # the same ownership and mode checks as every command reading the store
    path = state_path(ca_dir)
    state = load(path)
    if state is None:
        app.out(f"no rotation recorded in {ca_dir}")
        app.result({"state_file": str(path), "phase": None, "next": None, "rotation": None})
        return
    nxt = next_action(state)
    app.out(f"rotation {state.old.subject} -> {state.new.subject}: phase {state.phase.value}")
    app.out(f"  old CA {state.old.fingerprint[:16]} in {state.old.dir}")
    app.out(f"  new CA {state.new.fingerprint[:16]} in {state.new.dir}")
    for iid, steps in state.instances.items():
        done = ", ".join(f"{s.value} {r.outcome} {r.at}" for s, r in steps.items()) or "-"
        app.out(f"  instance {iid}: {done}")
    for user, rec in sorted(state.users.items()):
        what = f"serial {rec.new_serial} at {rec.at}" if rec.done else "interrupted, resumes"
        app.out(f"  user {user}: {what}")
    app.out(f"  certificates in {state.out_root}")
    app.out(f"next: {nxt}")
    app.result(
        {
            "state_file": str(path),
            "phase": state.phase.value,
            "rollback_possible": state.phase not in (Phase.RETIRED, Phase.ROLLED_BACK),
            "next": nxt,
            "rotation": state.to_json(),
        }
    )
