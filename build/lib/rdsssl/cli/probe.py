"""``rdsssl probe ID``: connect to an instance with a client certificate and say what happened.

The outcome is classified (`rdsssl.ops.probe.ProbeOutcome`) so runbooks can assert the expected
failure too: ``--expect revoked`` after uploading a CRL, ``--sslmode disable --expect
no-encryption`` once the ACL refuses non-SSL clients. Exit 0 when the outcome is `ok` (or the
expected one), 6 otherwise. The password comes from an environment variable, never a flag.
"""

from __future__ import annotations

from pathlib import Path

import click

from rdsssl.cli.apply import finish
from rdsssl.cli.cloud import make_api
from rdsssl.cli.common import get_app, json_option
from rdsssl.errors import VerificationError
from rdsssl.ops.instance_change import probe_json
from rdsssl.ops.probe import ProbeOutcome
from rdsssl.ops.probe_options import ProbeOptions, run_probe

__all__ = ["probe_cmd"]

SSLMODES = ("verify-full", "verify-ca", "require", "disable")


@click.command("probe")
@click.argument("instance_id", metavar="ID")
@click.option("--user", required=True, help="Database user to connect as.")
@click.option(
    "--cert", type=click.Path(path_type=Path, dir_okay=False, exists=True), help="Client cert."
)
@click.option(
    "--key", type=click.Path(path_type=Path, dir_okay=False, exists=True), help="Client key."
)
@click.option(
    "--root-cert",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Server CA (default: downloaded from the instance's ServerCAUrl).",
)
@click.option(
    "--password-env", metavar="VAR", help="Environment variable holding the user's password."
)
@click.option(
    "--sslmode",
    type=click.Choice(SSLMODES),
    default="verify-full",
    show_default=True,
    help="libpq sslmode; `disable` shows what a client without SSL gets.",
)
@click.option(
    "--expect",
    type=click.Choice([o.value for o in ProbeOutcome]),
    help="Exit 0 if and only if the outcome is this one (e.g. revoked, no-encryption).",
)
@json_option
def probe_cmd(
    instance_id: str,
    user: str,
    cert: Path | None,
    key: Path | None,
    root_cert: Path | None,
    password_env: str | None,
    sslmode: str,
    expect: str | None,
) -> int:
    """Connect to an instance with a client certificate and classify the outcome.

    \b
    Examples:
      rdsssl probe pgm-bp1example --user alice --cert alice/client.crt \\
          --key alice/client.key --password-env ALICE_PASSWORD
      rdsssl probe pgm-bp1example --user alice --cert old/client.crt \\
          --key old/client.key --expect revoked
      rdsssl probe pgm-bp1example --user alice --sslmode disable --expect no-encryption
    """
    app = get_app()
    if (cert is None) != (key is None):
        raise click.UsageError("--cert and --key go together")
    opts = ProbeOptions(user, cert, key, root_cert, password_env)
    result = run_probe(make_api(app), instance_id, opts, sslmode=sslmode)
    wanted = ProbeOutcome(expect) if expect else ProbeOutcome.OK
    matched = result.outcome is wanted
    app.out(f"outcome: {result.outcome.value}")
    app.out(f"detail:  {result.detail}")
    if result.hint:
        app.out(f"hint:    {result.hint}")
    doc = {
        "instance": instance_id,
        "probe": probe_json(result),
        "expected": wanted.value,
        "matched": matched,
    }
    if matched and expect:
        app.info(f"{instance_id}: {user} got the expected outcome {wanted.value}")
    error = None
    if not matched:
        error = VerificationError(
            f"{instance_id}: probe as {user}: {result.outcome.value}, expected {wanted.value}"
            + (f" ({result.hint})" if result.hint else "")
        )
    return finish(app, doc, error)
