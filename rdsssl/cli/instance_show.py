"""What ``rdsssl instance show`` reports: the JSON document and its human lines.

PEMs appear only as subjects, dates and fingerprints; the server key never (`SslState` does not
even hold it). A client CA or CRL that does not parse is shown as such, not as an error: `show`
is what one runs to find out what is wrong.
"""

from __future__ import annotations

from typing import Any

from rdsssl.cli.common import iso
from rdsssl.errors import CryptoError
from rdsssl.models import InstanceInfo, SslState
from rdsssl.pki import crypto

__all__ = ["show_json", "show_lines"]


def _unreadable(exc: CryptoError) -> list[dict[str, Any]]:
    """A PEM on the instance that does not parse: one entry saying so (the key has one type,
    a list, whatever the instance holds)."""
    return [{"unreadable": " ".join(str(exc).split())}]


def _certs_json(pem: str | None, what: str) -> list[dict[str, Any]]:
    if not pem:
        return []
    try:
        certs = crypto.load_certificates(pem.encode(), source=what, what=what)
    except CryptoError as exc:
        return _unreadable(exc)
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


def _crls_json(pem: str | None) -> list[dict[str, Any]]:
    if not pem:
        return []
    try:
        crls = crypto.load_crls(pem.encode(), source="the instance's CRL")
    except CryptoError as exc:
        return _unreadable(exc)
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


def show_lines(doc: dict[str, Any]) -> list[str]:
    """The human rendering of `show_json`."""
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
        if not items:
            lines.append(f"  {label + ':':<18} (none)")
        for item in items:
            if "unreadable" in item:
                lines.append(f"  {label + ':':<18} unreadable: {item['unreadable']}")
                continue
            text = fmt.format(fp=item["fingerprint"][:16], n=item.get("number"), **item)
            lines.append(f"  {label + ':':<18} {text}")
    lines.append(f"  ACL:               {ssl['acl'] or '-'}")
    lines.append(f"  replication ACL:   {ssl['replication_acl'] or '-'}")
    last = ssl["last_modify_status"] or "-"
    if ssl["modify_status_reason"]:
        last += f" ({ssl['modify_status_reason']})"
    lines.append(f"  last SSL change:   {last}")
    return lines
