"""``rdsssl cert needs-renewal FILE``: for application hosts that only hold the client files,
like `step certificate needs-renewal`: exit 0 when the certificate needs renewal, 1 when not,
3 when the file is not a certificate."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click

from rdsssl.cli.common import Duration, get_app, json_option, read_input
from rdsssl.errors import UsageError
from rdsssl.ops.renewal_plan import needs_renewal
from rdsssl.pki import crypto

__all__ = ["needs_renewal_cmd"]

NOT_NEEDED = 1


def _fraction(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip().removesuffix("%")
    try:
        fraction = float(text) / 100
    except ValueError:
        raise UsageError(f"--at {value!r}: give a percentage of the lifetime, e.g. 66%") from None
    if not 0 < fraction <= 1:
        raise UsageError(f"--at {value!r}: between 1% and 100%")
    return fraction


@click.command("needs-renewal")
@click.argument("cert_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--before", type=Duration(), help="Due when it expires within this (e.g. 30d).")
@click.option("--at", "at_text", metavar="PERCENT", help="Due once this much of its lifetime "
              "has passed (default 66%).")  # fmt: skip
@json_option
def needs_renewal_cmd(cert_file: Path, before: timedelta | None, at_text: str | None) -> int:
    """Exit 0 when CERT_FILE needs renewal, 1 when it does not (as `step certificate
    needs-renewal`); 3 when it is not a certificate.

    \b
    Examples:
      rdsssl cert needs-renewal alice/client.crt && rdsssl cert renew --ca-dir ./ca --user alice
      rdsssl cert needs-renewal alice/client.crt --before 30d
    """
    if before is not None and at_text is not None:
        raise UsageError("give --before or --at, not both")
    app = get_app()
    data = read_input(cert_file, "a certificate file")
    cert = crypto.load_certificates(data, source=str(cert_file), what="a certificate file")[0]
    need = needs_renewal(cert, now=app.now(), before=before, at=_fraction(at_text))
    app.result({"file": str(cert_file), **need.to_json()})
    word = "needs renewal" if need.needed else "does not need renewal"
    app.info(f"{cert_file}: {word} ({need.reason})")
    return 0 if need.needed else NOT_NEEDED
