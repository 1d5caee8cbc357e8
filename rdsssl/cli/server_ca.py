"""``rdsssl server-ca bundle``: the server CA bundle clients use as `sslrootcert` while the
server CA changes (`rdsssl.ops.server_ssl_bundle` says why, and the order of a rotation)."""

from __future__ import annotations

from pathlib import Path

import click

from rdsssl.cli.common import get_app, iso, json_option
from rdsssl.ops.server_ssl_bundle import write_bundle

__all__ = ["server_ca"]


@click.group("server-ca")
def server_ca() -> None:
    """Server CA stores (`ca init --ca-dir server-ca`): what clients trust."""


@server_ca.command("bundle")
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Write the PEM bundle here (atomically; a non-regular file is refused).",
)
@click.option(
    "--ca-dir",
    "ca_dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="A server CA store; repeat for the old and the new CA (default: ./server-ca).",
)
@json_option
def bundle(out_file: Path, ca_dirs: tuple[Path, ...]) -> None:
    """Write every still-valid certificate of the server CA(s): the current one and earlier
    ones (ca renew), of each store given. Clients use it as sslrootcert during a rotation:
    first the bundle to every client, then the new server certificate.

    \b
    Examples:
      rdsssl server-ca bundle --ca-dir server-ca-2025 --ca-dir server-ca-2026 --out root.crt
      rdsssl server-ca bundle --ca-dir server-ca --out root.crt   # after ca renew
    """
    app = get_app()
    dirs = list(ca_dirs) or [Path("server-ca")]
    result = write_bundle(dirs, out_file, now=app.now())
    for entry in result.entries:
        mark = " (current)" if entry.current else ""
        app.info(
            f"{entry.subject}{mark}, expires {iso(entry.not_after)}, sha256 {entry.fingerprint}"
        )
    if result.expired:
        app.info(f"left out {len(result.expired)} expired CA certificate(s)")
    app.info(f"wrote {out_file} ({len(result.entries)} CA certificate(s))")
    app.result(
        {
            "file": str(out_file),
            "certificates": [e.to_json() for e in result.entries],
            "expired_left_out": list(result.expired),
        }
    )
