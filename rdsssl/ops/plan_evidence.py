"""What a change should read back as, and what counts as evidence that it did: the
secret-free identity of an instance's SSL configuration (`fingerprints`, and with the server
side `state_fingerprints`), the target a sent change leads to (`target_fingerprints`, kept in
its `sent` audit line so that a later run can confirm it), and the waiter's success test
(`read_back_matches`). Compared by parsed fingerprint, never as text. Split from
`rdsssl.ops.plan`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Callable

from rdsssl.models import SslModifyRequest, SslState
from rdsssl.ops.server_ssl_plan import server_fingerprints, server_matches, server_target
from rdsssl.pki import crypto

__all__ = [
    "differs",
    "fingerprints",
    "matches_target",
    "read_back_matches",
    "state_fingerprints",
    "target_fingerprints",
]


def _fps(pem: str | None, what: str) -> frozenset[str]:
    if not pem or not pem.strip():
        return frozenset()
    return crypto.pem_fingerprints(pem.encode(), source=what)


def fingerprints(ssl: SslState) -> dict[str, object]:
    """The secret-free identity of the client side of an SSL configuration, for JSON output
    and plan files (`state_fingerprints` adds the server side)."""
    return {
        "client_ca": sorted(_fps(ssl.client_ca_pem, "the instance's client CA")),
        "crl": sorted(_fps(ssl.crl_pem, "the instance's CRL")),
        "acl": ssl.acl.value if ssl.acl else None,
        "replication_acl": ssl.replication_acl.value if ssl.replication_acl else None,
    }


def state_fingerprints(ssl: SslState) -> dict[str, object]:
    """`fingerprints` and the server side (`server`): what audit lines and waits compare."""
    return {**fingerprints(ssl), "server": server_fingerprints(ssl)}


def matches_target(ssl: SslState, target: dict[str, object]) -> bool:
    """The read-back fits a `target_fingerprints` document on every key it has (an audit line
    written before the server side was recorded has no `server` key)."""
    now = state_fingerprints(ssl)
    for key, want in target.items():
        if key == "server":
            if not (isinstance(want, dict) and server_matches(ssl, want)):
                return False
        elif now.get(key) != want:
            return False
    return True


def differs(ssl: SslState, reference: dict[str, object]) -> bool:
    """The read-back is not the state `reference` (`state_fingerprints`, possibly of an older
    audit line with fewer keys) describes; True for an empty reference."""
    if not reference:
        return True
    now = state_fingerprints(ssl)
    return any(now.get(key) != value for key, value in reference.items())


def target_fingerprints(
    request: SslModifyRequest, before: SslState, retired: frozenset[str] = frozenset()
) -> dict[str, object]:
    """`fingerprints` of the state `request` leads to from `before` (what a sent change should
    read back as: kept in its `sent` audit line, so that a later run can confirm it), with a
    `server` part when the request changes the server side (`server_ssl_plan.server_target`)."""
    if request.ssl_enabled is False:
        return {"client_ca": [], "crl": [], "acl": None, "replication_acl": None} | {
            "server": server_target(request, retired)
        }
    if request.client_ca_enabled is False:
        return {"client_ca": [], "crl": [], "acl": None, "replication_acl": None}
    now = fingerprints(before)
    if request.ssl_enabled is not None:
        now["server"] = server_target(request, retired)
    if request.client_ca_pem is not None:
        now["client_ca"] = sorted(_fps(request.client_ca_pem, "the client CA sent"))
    if request.crl_pem is not None:
        now["crl"] = sorted(_fps(request.crl_pem, "the CRL sent"))
    if request.acl is not None:
        now["acl"] = request.acl.value
    if request.replication_acl is not None:
        now["replication_acl"] = request.replication_acl.value
    return now


def read_back_matches(
    request: SslModifyRequest, retired: frozenset[str] = frozenset()
) -> Callable[[SslState], bool]:
    """The waiter's success test: the read-back equals what was sent (by fingerprint); for the
    server side, `retired` certificates must be gone (a renewal's evidence)."""
    server = server_target(request, retired) if request.ssl_enabled is not None else None

    def matches(ssl: SslState) -> bool:
        if server is not None and not server_matches(ssl, server):
            return False
        if request.ssl_enabled is False:
            return True
        if request.client_ca_enabled is False:
            return not (ssl.client_ca_pem or "").strip()
        if request.client_ca_pem is not None and _fps(ssl.client_ca_pem, "ca") != _fps(
            request.client_ca_pem, "ca"
        ):
            return False
        if request.crl_pem is not None and _fps(ssl.crl_pem, "crl") != _fps(request.crl_pem, "crl"):
            return False
        if request.acl is not None and ssl.acl != request.acl:
            return False
        return request.replication_acl is None or ssl.replication_acl == request.replication_acl

    return matches
