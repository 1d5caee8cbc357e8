"""RDS ACL / ReplicationACL values -> pg_hba.conf lines (pure; no files, no PostgreSQL).

The mapping is the measured one from docs/postgres-client-cert-behaviour.md §2, with
`0.0.0.0/0` as the address (the emulator listens on 127.0.0.1 only, so nothing is widened).
Line 1 is the emulator's own admin access over its private Unix socket; line 2 is the ACL
line, so server-log references such as `pg_hba.conf:2` read the same as in the docs.
"""

from __future__ import annotations

__all__ = ["ACL_MODES", "ADMIN_LINE", "acl_line", "render_hba"]

ACL_MODES: tuple[str, ...] = ("cert", "prefer", "verify-ca", "verify-full")
ADMIN_LINE = "local all all trust"
_ADDRESS = "0.0.0.0/0"


def acl_line(acl: str | None, *, database: str = "all") -> str:
    """The pg_hba line for one ACL value.

    None means "no client CA": password over TCP with SSL optional, exactly what `prefer`
    gives, and no `cert` / `clientcert=` option, because such lines load fine but make every
    connection fail once `ssl_ca_file` is unset (docs §9). An unknown value is a ValueError:
    the emulator state must refuse it (InvalidACL.NotFound) before it reaches PostgreSQL.
    """
    if acl is None or acl == "prefer":
        return f"host {database} all {_ADDRESS} scram-sha-256"
    if acl == "cert":
        return f"hostssl {database} all {_ADDRESS} cert"
    if acl in ("verify-ca", "verify-full"):
        return f"hostssl {database} all {_ADDRESS} scram-sha-256 clientcert={acl}"
    raise ValueError(f"unknown ACL mode {acl!r}; expected one of {', '.join(ACL_MODES)}")


def render_hba(acl: str | None, replication_acl: str | None) -> str:
    """The whole pg_hba.conf: admin line, ACL line, replication line.

    The replication line uses the `replication` database keyword, which `all` does not match,
    so its position does not change what the ACL line allows.
    """
    lines = [
        ADMIN_LINE,
        acl_line(acl),
        acl_line(replication_acl, database="replication"),
        "# Written by the rdsssl emulator: line 1 = its admin socket, 2 = ACL, 3 = ReplicationACL.",
    ]
    return "\n".join(lines) + "\n"
