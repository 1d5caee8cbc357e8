"""``rdsssl instance show | enable-client-ca | upload-crl | set-acl | disable-client-ca |
server-ca | wait``: one instance's SSL settings (cloud).

Each mutating command is a `DesiredSsl` handed to the same path as `rdsssl apply`
(`rdsssl.cli.apply.preview_one` / `apply_one`): validate locally, show the plan and whether it
restarts the instance, confirm on a terminal unless --yes, then at most one ModifyDBInstanceSSL
call and a wait until the read-back equals what was sent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from rdsssl.cli.app import App
from rdsssl.cli.apply import Outcome, apply_one, finish, outcome_json, preview_one
from rdsssl.cli.cloud import (
    ProbeOptions,
    confirm_plan,
    make_api,
    mutating_options,
    probe_options,
    progress_reporter,
    run_probe,
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
from rdsssl.errors import (
    ChangeFailed,
    CryptoError,
    InputError,
    UsageError,
    VerificationError,
    WaiterTimeout,
)
from rdsssl.models import MODIFY_FAILED, AclMode, InstanceInfo, SslState
from rdsssl.ops.change import CrlFromStore, DesiredSsl, confirm_earlier, fingerprints, observe
from rdsssl.ops.desired import DesiredBuilder
from rdsssl.ops.probe import ProbeOutcome
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


def _certs_json(pem: str | None, what: str) -> list[dict[str, Any]] | dict[str, str]:
    if not pem:
        return []
    try:
        certs = crypto.load_certificates(pem.encode(), source=what, what=what)
    except CryptoError as exc:
        return {"error": str(exc)}
    out = []
    for cert in certs:
        info = crypto.inspect_cert(cert)
        out.append(
            {
                "subject": info.subject,
                "not_after": iso(info.not_after),
                "fingerprint": info.fingerprint,
            }
        )
    return out


def _crls_json(pem: str | None) -> list[dict[str, Any]] | dict[str, str]:
    if not pem:
        return []
    try:
        crls = crypto.load_crls(pem.encode(), source="the instance's CRL")
    except CryptoError as exc:
        return {"error": str(exc)}
    out = []
    for crl in crls:
        info = crypto.inspect_crl(crl)
        out.append(
            {
                "issuer": info.issuer,
                "number": info.number,
                "last_update": iso(info.last_update),
                "next_update": iso(info.next_update),
                "entries": len(info.revoked_serials),
                "fingerprint": info.fingerprint,
            }
        )
    return out


def show_json(info: InstanceInfo, ssl: SslState) -> dict[str, Any]:
    """Everything `instance show` reports; PEMs only as subjects, dates and fingerprints, and
    never the server key (SslState does not even hold it)."""
    return {
        "instance": {
            "id": info.instance_id,
            "region": info.region,
            "status": info.status,
            "lock_mode": info.lock_mode,
            "engine": info.engine,
            "engine_version": info.engine_version,
            "connection_string": info.connection_string,
            "port": info.port,
        },
        "ssl": {
            "enabled": ssl.ssl_enabled,
            "ca_type": ssl.ca_type,
            "server_cert_expires": iso(ssl.ssl_expire_time),
            "require_update": ssl.require_update,
            "server_ca_url": ssl.server_ca_url,
            "client_ca": _certs_json(ssl.client_ca_pem, "the instance's client CA"),
            "crl": _crls_json(ssl.crl_pem),
            "acl": ssl.acl.value if ssl.acl else None,
            "replication_acl": ssl.replication_acl.value if ssl.replication_acl else None,
            "last_modify_status": ssl.last_modify_status,
            "modify_status_reason": ssl.modify_status_reason,
        },
    }


def _show_lines(doc: dict[str, Any]) -> list[str]:
    inst, ssl = doc["instance"], doc["ssl"]
    lines = [
        f"{inst['id']}: {inst['status']}, lock {inst['lock_mode'] or '-'}, "
        f"{inst['engine']} {inst['engine_version']} ({inst['region']})",
        f"  endpoint:          {inst['connection_string']}:{inst['port']}",
        f"  server SSL:        {'on' if ssl['enabled'] else 'off'} ({ssl['ca_type'] or '-'}), "
        f"certificate expires {ssl['server_cert_expires'] or '-'}"
        + (", RequireUpdate: renew it" if ssl["require_update"] else ""),
    ]
    for label, items, fmt in (
        ("client CA", ssl["client_ca"], "{subject}, expires {not_after}, sha256 {fp}"),
        ("CRL", ssl["crl"], "issuer {issuer}, nextUpdate {next_update}, {entries} entries, #{n}"),
    ):
        if isinstance(items, dict):
            lines.append(f"  {label + ':':<18} unreadable: {items['error']}")
        elif not items:
            lines.append(f"  {label + ':':<18} (none)")
        for item in items if isinstance(items, list) else []:
            text = fmt.format(fp=item["fingerprint"][:16], n=item.get("number"), **item)
            lines.append(f"  {label + ':':<18} {text}")
    lines.append(f"  ACL:               {ssl['acl'] or '-'}")
    lines.append(f"  replication ACL:   {ssl['replication_acl'] or '-'}")
    last = ssl["last_modify_status"] or "-"
    if ssl["modify_status_reason"]:
        last += f" ({ssl['modify_status_reason']})"
    lines.append(f"  last SSL change:   {last}")
    return lines


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
    for line in _show_lines(doc):
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
    earlier = opts.audit.pending(instance_id) if not opts.dry_run else None
    if earlier is not None:  # plan against what the instance will be, not what it still shows
        app.info(
            f"{instance_id}: a change sent earlier (RequestId {earlier.get('request_id', '?')}) "
            "is not confirmed yet: confirming it first"
        )
        confirm_earlier(
            api,
            instance_id,
            opts.audit,
            timeout=opts.timeout,
            settle=opts.settle,
            profile=app.service_profile(),
            on_progress=progress_reporter(app),
        )
    outcome = preview_one(api, Outcome(instance_id, "command line", desired), opts.audit)
    assert outcome.preview is not None
    the_plan = outcome.preview.plan
    if not confirm_plan(app, the_plan, opts):
        raise click.Abort()
    if outcome.guard and not the_plan.noop:
        proof = f"a probe as {probe.user} runs first" if probe.given else "refused without one"
        if opts.dry_run:
            proof = "the real run needs a successful --probe-* or --force"
        note = "skipped (--force)" if opts.force else proof
        app.info(f"  lockout guard: {outcome.guard}; {note}")
    if (the_plan.noop and not outcome.needs_run) or opts.dry_run:
        if opts.dry_run and not the_plan.noop:
            app.info(f"{instance_id}: dry run, nothing sent")
        return finish(app, {**outcome_json(outcome), "dry_run": opts.dry_run}, None)
    try:
        apply_one(app, api, outcome, opts, probe)
    except VerificationError as exc:
        if outcome.result is None:  # the guard refused: nothing was sent
            raise
        return finish(app, {**outcome_json(outcome), "dry_run": False}, exc)
    result = outcome.result
    assert result is not None
    if result.final is None:
        app.info(
            f"{instance_id}: sent (RequestId {result.request_id}); not waiting: "
            f"`rdsssl instance wait {instance_id}` follows it"
        )
    else:
        app.info(
            f"{instance_id}: applied in {result.elapsed:.0f}s (RequestId {result.request_id}); "
            "the read-back matches"
        )
    if outcome.verification is not None:
        app.info(f"{instance_id}: probe as {outcome.verification.user} after the change: ok")
    doc = {**outcome_json(outcome), "dry_run": False}
    if revoked is not None and result.final is not None:
        refused = run_probe(api, instance_id, revoked)
        doc["revoked_probe"] = {"user": refused.user, "outcome": refused.outcome.value}
        if refused.outcome is not ProbeOutcome.REVOKED:
            failure = VerificationError(
                f"{instance_id}: the CRL is live, but the revoked certificate of "
                f"{refused.user} was not refused as revoked ({refused.outcome.value}: "
                f"{refused.detail}); check that the CRL lists it (rdsssl crl show)"
            )
            return finish(app, doc, failure)
        app.info(f"{instance_id}: the revoked certificate of {refused.user} is refused: ok")
    return finish(app, doc, None)


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
