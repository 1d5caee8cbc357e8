"""``rdsssl instance enable-ssl | disable-ssl | set-server-cert | renew-server-cert``: the
server side of one instance (registered on the `instance` group by `rdsssl.cli.instance`).

Each is a `DesiredSsl` with a server part (`rdsssl.ops.server_ssl`) through the same
one-instance change as the client-side commands (plan shown, confirmation unless --yes, the
lockout guard, one ModifyDBInstanceSSL call, the wait), then the server proof: the handshake
presents the certificate the instance reads back, and `sslmode=verify-full` against the server
CA gets past the certificate on every connection string it names (exit 6 otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from rdsssl.cli.app import App
from rdsssl.cli.apply import finish
from rdsssl.cli.cloud import (
    confirm_plan,
    make_api,
    mutating_options,
    probe_options,
    progress_reporter,
    skip_proof_option,
    take_mutating,
    take_probe,
)
from rdsssl.cli.common import (
    Duration,
    get_app,
    json_option,
    passphrase_file_option,
    unlock,
    wait_lock_option,
)
from rdsssl.cli.instance import _id, _report, instance
from rdsssl.errors import UsageError
from rdsssl.models import KeyType, SslState
from rdsssl.ops import server_ssl
from rdsssl.ops.instance_change import InstanceChange
from rdsssl.ops.plan import DesiredSsl
from rdsssl.ops.server_ssl_change import ServerChange, server_summary
from rdsssl.ops.server_ssl_plan import DEFAULT_SERVER_RENEW_BEFORE, ServerCertFromStore
from rdsssl.rds.protocol import RdsApi
from rdsssl.store.castore import CaStore

__all__ = ["disable_ssl", "enable_ssl", "renew_server_cert", "set_server_cert"]

_DIR = click.Path(path_type=Path, file_okay=False)
_SERVER_KEYS = [k.value for k in server_ssl.SERVER_KEY_TYPES]


def _server_change(
    app: App,
    instance_id: str,
    desired_for: Callable[[RdsApi, SslState], DesiredSsl],
    kwargs: dict[str, Any],
    *,
    root_cert: Path | None,
    next_step: str | None = None,
) -> int:
    """Plan, confirm, change, prove (`rdsssl.ops.server_ssl_change.ServerChange`), render;
    `next_step`: a sentence for people once the change is live and proven."""
    opts = take_mutating(kwargs)
    skip = frozenset(kwargs.pop("skip_proof", ()))
    probe = take_probe(kwargs) if "probe_user" in kwargs else None
    api = make_api(app)
    change = InstanceChange(
        opts.apply_options(app.service_profile()),
        probe=None,  # the proof afterwards uses the probe options (ServerChange)
        on_progress=progress_reporter(app),
        on_note=app.info,
    )
    runner = ServerChange(change, root_cert=root_cert, proof_probe=probe, skip_proof=skip)
    server = runner.prepare(api, instance_id, lambda ssl: desired_for(api, ssl))
    preview = server.outcome.preview
    assert preview is not None
    if not confirm_plan(app, preview.plan, opts):
        raise click.Abort()
    if server.outcome.guard and not preview.plan.noop:
        note = "skipped (--force)" if opts.force else "refused without --force"
        app.info(f"  lockout guard: {server.outcome.guard}; {note}")
    runner.complete(api, server)
    _report(app, server.outcome)
    if server.proof is not None:
        for endpoint in server.proof.endpoints:
            word = "ok" if endpoint.ok else ("not covered" if not endpoint.covered else "FAILED")
            word = "skipped" if endpoint.skipped else word
            app.info(f"{instance_id}: {endpoint.connection_string}: verify-full {word}")
    if next_step and server.proof is not None and server.outcome.error is None:
        app.info(f"{instance_id}: {next_step}")
    return finish(app, server.to_json(), server.outcome.error)


def _open_server_ca(
    app: App, ca_dir: Path, passphrase_file: Path | None, wait_lock: float
) -> CaStore:
    store = CaStore.open(ca_dir, wait_lock=wait_lock)
    unlock(app, store, passphrase_file)
    return store


def _server_cert_options(f: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--days",
                type=click.IntRange(min=1),
                default=server_ssl.DEFAULT_SERVER_DAYS,
                show_default=True,
                help="Validity of a new server certificate (never beyond the CA's).",
            ),
            click.option(
                "--key-type",
                type=click.Choice(_SERVER_KEYS),
                default=KeyType.EC_P256.value,
                show_default=True,
                help="Key algorithm of a new server certificate.",
            ),
            passphrase_file_option,
            wait_lock_option,
        ]
    ):
        f = option(f)
    return f


@instance.command("enable-ssl")
@_id
@click.option(
    "--connection-string",
    help="The endpoint the cloud certificate protects (default: the internal one).",
)
@skip_proof_option
@mutating_options
@probe_options()
@json_option
def enable_ssl(instance_id: str, connection_string: str | None, **kwargs: Any) -> int:
    """Switch SSL on with the cloud certificate (SSLEnabled=1, CAType=aliyun): RESTARTS the
    instance. Refused when SSL is on (use renew-server-cert). A cloud certificate covers ONE
    connection string; set-server-cert covers every one.

    \b
    Example:
      rdsssl instance enable-ssl pgm-bp1example --yes
      rdsssl instance server-ca pgm-bp1example --out server-ca.pem
    """

    def desired(api: RdsApi, ssl: SslState) -> DesiredSsl:
        server_ssl.refuse_ssl_on(ssl, instance_id)  # before any other read
        if connection_string is None:
            cs = server_ssl.internal_connection_string(api, instance_id)
        else:
            cs = server_ssl.check_connection_string(api, instance_id, connection_string)
        return server_ssl.desired_enable(ssl, instance_id, cs)

    hint = f"clients get the server CA with: rdsssl instance server-ca {instance_id} --out FILE"
    return _server_change(get_app(), instance_id, desired, kwargs, root_cert=None, next_step=hint)


@instance.command("disable-ssl")
@_id
@mutating_options
@json_option
def disable_ssl(instance_id: str, **kwargs: Any) -> int:
    """Switch SSL off (SSLEnabled=0): RESTARTS the instance; the client CA, CRL and ACLs go
    with it. Refused while a client CA or an ACL needing certificates is configured, unless
    --force.

    \b
    Example:
      rdsssl instance disable-ssl pgm-bp1example
    """
    return _server_change(
        get_app(), instance_id, lambda api, ssl: server_ssl.desired_disable(), kwargs,
        root_cert=None,
    )  # fmt: skip


@instance.command("set-server-cert")
@_id
@click.option("--server-ca-dir", type=_DIR, required=True, help="The server CA store.")
@_server_cert_options
@skip_proof_option
@mutating_options
@probe_options()
@json_option
def set_server_cert(
    instance_id: str,
    server_ca_dir: Path,
    days: int,
    key_type: str,
    passphrase_file: Path | None,
    wait_lock: float,
    **kwargs: Any,
) -> int:
    """Serve a certificate of your server CA (CAType=custom) naming every connection string:
    RESTARTS the instance. Kept as it is when the one served is already current (from this CA,
    every name, not inside 30 days of expiry).

    \b
    Example:
      rdsssl ca init --ca-dir server-ca --cn my-db-server-ca
      rdsssl instance set-server-cert pgm-bp1example --server-ca-dir server-ca --yes
      # clients: sslmode=verify-full sslrootcert=server-ca/ca.crt
    """
    app = get_app()
    store = _open_server_ca(app, server_ca_dir, passphrase_file, wait_lock)

    def desired(api: RdsApi, ssl: SslState) -> DesiredSsl:
        requirement = server_ssl.custom_cert_requirement(
            api, instance_id, store, days=days, now=app.now(), key_type=KeyType(key_type)
        )
        cs = ssl.connection_string or requirement.names[0]
        return server_ssl.desired_set_cert(requirement, cs)

    with store:
        return _server_change(app, instance_id, desired, kwargs, root_cert=server_ca_dir / "ca.crt")


@instance.command("renew-server-cert")
@_id
@click.option(
    "--server-ca-dir",
    type=_DIR,
    help="The server CA store, for an instance that serves a custom certificate.",
)
@click.option(
    "--if-due",
    is_flag=True,
    help="Only when the certificate is inside the renewal window (--before) or the service "
    "says RequireUpdate; otherwise exit 0 without a change (for cron).",
)
@click.option(
    "--before",
    type=Duration(),
    default="30d",
    show_default=True,
    help="The renewal window of --if-due.",
)
@_server_cert_options
@skip_proof_option
@mutating_options
@probe_options()
@json_option
def renew_server_cert(
    instance_id: str,
    server_ca_dir: Path | None,
    if_due: bool,
    before: timedelta,
    days: int,
    key_type: str,
    passphrase_file: Path | None,
    wait_lock: float,
    **kwargs: Any,
) -> int:
    """Renew the server certificate: RESTARTS the instance. Cloud: SSLEnabled=1 and
    CAType=aliyun re-sent (the documented renewal); custom: a new certificate from
    --server-ca-dir. The new certificate must differ from the old one (evidence).

    \b
    Examples:
      rdsssl instance renew-server-cert pgm-bp1example --yes
      rdsssl instance renew-server-cert pgm-bp1example --server-ca-dir server-ca --if-due --yes
    """
    app = get_app()
    if if_due:
        api = make_api(app)
        ssl = api.describe_ssl(instance_id)
        verdict = server_ssl.due(ssl, now=app.now(), before=before)
        if ssl.ssl_enabled and not verdict.due:
            app.info(f"{instance_id}: the server certificate is not due ({verdict.reason})")
            app.result(
                {
                    "instance": instance_id,
                    "status": "not-due",
                    "due": False,
                    "reason": verdict.reason,
                    "server": server_summary(ssl),
                }
            )
            return 0
    store = (
        _open_server_ca(app, server_ca_dir, passphrase_file, wait_lock)
        if server_ca_dir is not None
        else None
    )

    def desired(api: RdsApi, ssl: SslState) -> DesiredSsl:
        requirement: ServerCertFromStore | None = None
        if store is not None and ssl.ca_type == "custom":
            requirement = server_ssl.custom_cert_requirement(
                api, instance_id, store, days=days, now=app.now(), key_type=KeyType(key_type),
                renew_before=DEFAULT_SERVER_RENEW_BEFORE,
            )  # fmt: skip
        elif store is not None and ssl.ssl_enabled:
            raise UsageError(
                f"{instance_id} serves the cloud certificate: renew it without "
                f"--server-ca-dir, or switch with rdsssl instance set-server-cert {instance_id}"
            )
        return server_ssl.desired_renew(ssl, instance_id, requirement)

    root = server_ca_dir / "ca.crt" if server_ca_dir is not None else None
    try:
        return _server_change(app, instance_id, desired, kwargs, root_cert=root)
    finally:
        if store is not None:
            store.close()
