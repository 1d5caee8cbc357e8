"""``rdsssl instance show | enable-client-ca | upload-crl | set-acl | disable-client-ca |
server-ca | wait``: one instance's SSL settings (cloud).

Each mutating command is a `DesiredSsl` handed to the same use case as `rdsssl apply`
(`rdsssl.ops.instance_change.InstanceChange`: `prepare`, then `complete`): validate locally,
show the plan and whether it restarts the instance, confirm on a terminal unless --yes, then at
most one ModifyDBInstanceSSL call and a wait until the read-back equals what was sent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from rdsssl.cli.app import App
from rdsssl.cli.apply import change_for, finish
from rdsssl.cli.cloud import (
    MutatingOptions,
    confirm_plan,
    make_api,
    mutating_options,
    probe_options,
    progress_reporter,
    take_mutating,
    take_probe,
)
from rdsssl.cli.common import (
    get_app,
    iso,
    json_option,
    passphrase_file_option,
    read_input,
    unlock,
    wait_lock_option,
)
from rdsssl.cli.instance_show import show_json, show_lines
from rdsssl.errors import (
    ChangeFailed,
    CryptoError,
    InputError,
    UsageError,
    WaiterTimeout,
)
from rdsssl.models import MODIFY_FAILED, AclMode
from rdsssl.ops.desired import DesiredBuilder
from rdsssl.ops.instance_change import InstanceOutcome
from rdsssl.ops.plan import CrlFromStore, DesiredSsl, fingerprints
from rdsssl.ops.probe_options import ProbeOptions
from rdsssl.ops.waiting import observe
from rdsssl.pki import crypto
from rdsssl.rds.acceptors import instance_ready
from rdsssl.rds.observations import describe
from rdsssl.rds.waiters import wait_until
from rdsssl.store.castore import CaStore
from rdsssl.store.fsutil import atomic_write

__all__ = ["instance"]

_ACLS = [m.value for m in AclMode]
_FILE = click.Path(path_type=Path, dir_okay=False)


@click.group()
def instance() -> None:
    """Show and change one instance's client CA, CRL and ACLs (cloud)."""


def _id(f: click.decorators.FC) -> click.decorators.FC:
    return click.argument("instance_id", metavar="ID")(f)


# ------------------------------------------------------------------ show


@instance.command("show")
@_id
@json_option
def show(instance_id: str) -> None:
    """SSL state, status, client CA, CRL, ACLs and the last change of an instance.

    \b
    Example:
      rdsssl instance show pgm-bp1example
    """
    app = get_app()
    api = make_api(app)
    doc = show_json(api.describe_instance(instance_id), api.describe_ssl(instance_id))
    for line in show_lines(doc):
        app.out(line)
    app.result(doc)


# ------------------------------------------------------------------ changes


def _change(
    app: App,
    instance_id: str,
    desired: DesiredSsl,
    kwargs: dict[str, Any],
    *,
    revoked: ProbeOptions | None = None,
) -> int:
    """The one path of every mutating instance command (see the module docstring).
    `revoked`: a revoked certificate that must be refused once the change is live."""
    opts, probe = take_mutating(kwargs), take_probe(kwargs)
    if revoked is not None and opts.no_wait:
        raise UsageError("--expect-revoked-cert needs the wait: drop --no-wait")
    api = make_api(app)
    change = change_for(app, opts, probe)
    outcome = change.prepare(api, instance_id, desired)
    assert outcome.preview is not None
    if not confirm_plan(app, outcome.preview.plan, opts):
        raise click.Abort()
    if outcome.guard and not outcome.preview.plan.noop:
        app.info(f"  lockout guard: {outcome.guard}; {_guard_note(opts, probe)}")
    change.complete(api, outcome, revoked=revoked)
    _report(app, outcome)
    return finish(app, outcome.to_json(), outcome.error)


def _guard_note(opts: MutatingOptions, probe: ProbeOptions) -> str:
    """What happens about the lockout guard (shown with the plan)."""
    if opts.force:
        return "skipped (--force)"
    if opts.dry_run:
        return "the real run needs a successful --probe-* or --force"
    return f"a probe as {probe.user} runs first" if probe.given else "refused without one"


def _report(app: App, outcome: InstanceOutcome) -> None:
    """The sentences after a change: sent or applied, and the probes that passed."""
    result, iid = outcome.result, outcome.instance_id
    verified = outcome.verification
    if result is None or (verified is not None and not verified.ok):
        return
    if result.final is None:
        app.info(
            f"{iid}: sent (RequestId {result.request_id}); not waiting: "
            f"`rdsssl instance wait {iid}` follows it"
        )
    else:
        app.info(
            f"{iid}: applied in {result.elapsed:.0f}s (RequestId {result.request_id}); "
            "the read-back matches"
        )
    if verified is not None:
        app.info(f"{iid}: probe as {verified.user} after the change: ok")
    if outcome.revoked is not None and outcome.error is None:
        app.info(f"{iid}: the revoked certificate of {outcome.revoked.user} is refused: ok")


def _revoked_probe(cert: Path | None, key: Path | None) -> ProbeOptions | None:
    """The probe of a revoked certificate: its CN is the user (revocation is checked in the
    handshake, before any login), no password."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UsageError("--expect-revoked-cert and --expect-revoked-key go together")
    certs = crypto.load_certificates(
        read_input(cert, "a certificate file"), source=str(cert), what="a certificate file"
    )
    user = crypto.cn_of(certs[0].subject)
    if not user:
        raise InputError(f"{cert}: the certificate has no CN to probe as")
    return ProbeOptions(user=user, cert=cert, key=key, root_cert=None, password_env=None)


@instance.command("enable-client-ca")
@_id
@click.option("--ca-cert", type=_FILE, help="PEM file of the client CA certificate(s).")
@click.option(
    "--ca-dir", type=click.Path(path_type=Path, file_okay=False), help="A CA store (its CA)."
)
@mutating_options
@probe_options()
@json_option
def enable_client_ca(
    instance_id: str, ca_cert: Path | None, ca_dir: Path | None, **kwargs: Any
) -> int:
    """Upload a client CA (ClientCACert): RESTARTS the instance.

    \b
    Examples:
      rdsssl instance enable-client-ca pgm-bp1example --ca-dir ./ca
      rdsssl instance enable-client-ca pgm-bp1example --ca-cert ca1.crt --yes
    """
    app = get_app()
    if (ca_cert is None) == (ca_dir is None):
        raise UsageError("give exactly one of --ca-cert FILE or --ca-dir DIR")
    if ca_cert is not None:
        pem = read_input(ca_cert, "a CA certificate file").decode("utf-8", errors="replace")
    else:
        assert ca_dir is not None
        pem = DesiredBuilder(now=app.now()).ca_pem(ca_dir)
    return _change(app, instance_id, DesiredSsl(client_ca_pem=pem), kwargs)


@instance.command("upload-crl")
@_id
@click.option("--crl", "crl_file", type=_FILE, help="PEM file of the CRL(s).")
@click.option(
    "--ca-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Build the CRL from this CA store, only when the instance's one is not current.",
)
@click.option(
    "--expect-revoked-cert",
    type=_FILE,
    help="A revoked client certificate: once the CRL is live, a connection with it must be "
    "refused as revoked, else exit 6 (its CN is the user; with --expect-revoked-key).",
)
@click.option("--expect-revoked-key", type=_FILE, help="The private key of that certificate.")
@passphrase_file_option
@wait_lock_option
@mutating_options
@probe_options()
@json_option
def upload_crl(
    instance_id: str,
    crl_file: Path | None,
    ca_dir: Path | None,
    expect_revoked_cert: Path | None,
    expect_revoked_key: Path | None,
    passphrase_file: Path | None,
    wait_lock: float,
    **kwargs: Any,
) -> int:
    """Upload a CRL (ClientCrlEnabled=1): RESTARTS the instance.

    The CRL must cover every CA of the instance's client CA bundle and stay valid for more
    than a day (an expired CRL locks out every certificate user).

    \b
    Examples:
      rdsssl crl build --ca-dir ./ca --out crl.pem
      rdsssl instance upload-crl pgm-bp1example --crl crl.pem
      rdsssl instance upload-crl pgm-bp1example --ca-dir ./ca   # builds one if needed
    """
    app = get_app()
    if (crl_file is None) == (ca_dir is None):
        raise UsageError("give exactly one of --crl FILE or --ca-dir DIR")
    revoked = _revoked_probe(expect_revoked_cert, expect_revoked_key)
    crl: str | CrlFromStore
    if crl_file is not None:
        crl = read_input(crl_file, "a CRL file").decode("utf-8", errors="replace")
    else:
        assert ca_dir is not None

        def unlock_store(store: CaStore) -> None:
            unlock(app, store, passphrase_file)

        builder = DesiredBuilder(now=app.now(), unlock=unlock_store, wait_lock=wait_lock)
        crl = builder.crl_from_store(ca_dir)
    return _change(app, instance_id, DesiredSsl(crl=crl), kwargs, revoked=revoked)


@instance.command("set-acl")
@_id
@click.option("--acl", type=click.Choice(_ACLS), help="ACL for client connections.")
@click.option("--replication-acl", type=click.Choice(_ACLS), help="ACL for replication.")
@mutating_options
@probe_options()
@json_option
def set_acl(instance_id: str, acl: str | None, replication_acl: str | None, **kwargs: Any) -> int:
    """Set the ACL (and/or ReplicationACL): locks the instance for ~1 min, no restart.

    Tightening to cert / verify-ca / verify-full is refused unless a probe with a current
    certificate succeeds first (--probe-user/--probe-cert/--probe-key), or --force.

    \b
    Example:
      rdsssl instance set-acl pgm-bp1example --acl cert --yes \\
          --probe-user alice --probe-cert alice/client.crt --probe-key alice/client.key \\
          --probe-password-env ALICE_PASSWORD
    """
    app = get_app()
    if acl is None and replication_acl is None:
        raise UsageError("give --acl and/or --replication-acl")
    desired = DesiredSsl(
        acl=AclMode(acl) if acl else None,
        replication_acl=AclMode(replication_acl) if replication_acl else None,
    )
    return _change(app, instance_id, desired, kwargs)


@instance.command("disable-client-ca")
@_id
@mutating_options
@probe_options()
@json_option
def disable_client_ca(instance_id: str, **kwargs: Any) -> int:
    """Switch client certificates off (ClientCAEnabled=0; the CRL and ACLs go with it):
    RESTARTS the instance.

    \b
    Example:
      rdsssl instance disable-client-ca pgm-bp1example
    """
    return _change(get_app(), instance_id, DesiredSsl(disable_client_ca=True), kwargs)


# ------------------------------------------------------------------ server CA and waiting


@instance.command("server-ca")
@_id
@click.option("--out", "out_file", required=True, type=_FILE, help="Write the PEM here.")
@json_option
def server_ca(instance_id: str, out_file: Path) -> None:
    """Download the server CA a client needs for sslmode=verify-full (its sslrootcert).

    \b
    Example:
      rdsssl instance server-ca pgm-bp1example --out server-ca.pem
    """
    app = get_app()
    api = make_api(app)
    ssl = api.describe_ssl(instance_id)
    if not ssl.server_ca_url and ssl.ssl_enabled and ssl.ca_type == "custom":
        raise CryptoError(
            f"{instance_id} serves a custom certificate, so the service has no CA to give: "
            "clients trust your server CA (its ca.crt, or `rdsssl server-ca bundle`)"
        )
    if not ssl.server_ca_url:
        raise CryptoError(f"{instance_id} reports no ServerCAUrl (is SSL enabled?)")
    pem = api.server_ca_pem(ssl.server_ca_url)
    certs = crypto.load_certificates(pem, source=ssl.server_ca_url, what="the server CA")
    atomic_write(out_file, pem, mode=0o644)
    infos = [crypto.inspect_cert(c) for c in certs]
    for info in infos:
        app.info(f"{info.subject}, expires {iso(info.not_after)}, sha256 {info.fingerprint}")
    app.info(f"wrote {out_file}")
    app.result(
        {
            "instance": instance_id,
            "file": str(out_file),
            "certificates": [
                {"subject": i.subject, "not_after": iso(i.not_after), "fingerprint": i.fingerprint}
                for i in infos
            ],
        }
    )


@instance.command("wait")
@_id
@click.option(
    "--timeout", type=click.FloatRange(min=0), default=1800.0, show_default=True, help="Seconds."
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Right after a --no-wait call the change may not show yet: watch this long for it "
    "before taking a quiet instance as ready.",
)
@json_option
def wait(instance_id: str, timeout: float, grace: float) -> None:
    """Wait until the instance is ready: Running, unlocked, no SSL change in progress.

    Meant after `--no-wait`: exits 5 when the last SSL change failed (with its reason) or
    the timeout passes.

    \b
    Example:
      rdsssl instance set-acl pgm-bp1example --acl prefer --yes --no-wait
      rdsssl instance wait pgm-bp1example
    """
    app = get_app()
    api = make_api(app)
    progress = progress_reporter(app)
    started = time.monotonic()

    poll = observe(api, instance_id)
    try:  # a change that has not shown yet must not pass as "ready"
        obs = wait_until(
            instance_ready(require_transition=True),
            poll,
            timeout=min(grace, timeout),
            on_progress=progress,
        )
    except WaiterTimeout:
        remaining = timeout - (time.monotonic() - started)
        obs = wait_until(instance_ready(), poll, timeout=max(remaining, 0.0), on_progress=progress)
    elapsed = time.monotonic() - started
    ssl = obs.ssl
    if ssl is not None and ssl.last_modify_status == MODIFY_FAILED:
        raise ChangeFailed(
            f"{instance_id}: the last SSL change failed: {ssl.modify_status_reason or 'no reason'}",
            waiter="InstanceReady",
            last_observation=obs,
            elapsed=elapsed,
        )
    app.info(f"{instance_id}: ready after {elapsed:.0f}s ({describe(obs)})")
    app.result(
        {
            "instance": instance_id,
            "status": obs.instance.status if obs.instance else None,
            "last_modify_status": ssl.last_modify_status if ssl else None,
            "fingerprints": fingerprints(ssl) if ssl else None,
            "elapsed": round(elapsed, 1),
        }
    )


# The server side (enable-ssl, disable-ssl, set-server-cert, renew-server-cert) registers itself.
from rdsssl.cli import instance_server  # noqa: E402, F401
