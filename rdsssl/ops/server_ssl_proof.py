"""Proof that the server serves what was asked for, after a server-side change.

On each connection string of the instance (its name kept as the host checked by verify-full,
its IP address used to connect, as `rdsssl.ops.probe.probe_target` does):

1. a TLS handshake (PostgreSQL's SSLRequest, then TLS without verification: stdlib `ssl`)
   shows which certificate the server presents; it must be the one the instance reads back
   (by SHA-256 fingerprint), i.e. the new one;
2. a libpq connection with `sslmode=verify-full` and `sslrootcert` = the server CA (the server
   CA store's `ca.crt`, or the cloud CA from ServerCAUrl) must get past the server's
   certificate: with the probe's credentials a login must succeed; without them, the refusal
   must come from authentication (a missing password or client certificate), which the server
   only sends after the certificate verified.

A cloud certificate covers the connection string it was requested for only, so the other
endpoints are reported (`covered=False`) but not required. An endpoint this host cannot reach
(a public address outside the instance's IP whitelist, say) can be skipped by name (`skip`):
it is reported as `skipped`, never as proven. Any other required endpoint that fails
makes the proof fail (`VerificationError`, exit 6, with what to do).
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path

from rdsssl.models import SslState
from rdsssl.ops.probe import ProbeOutcome, ProbeResult, ProbeTarget, probe
from rdsssl.pki import crypto
from rdsssl.pki.hostnames import names_host
from rdsssl.rds.protocol import RdsApi

__all__ = ["EndpointProof", "ServerProof", "presented_fingerprint", "prove_server"]

_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
# The server's certificate verified; what stopped the login (if anything) came after it.
_VERIFIED = frozenset(
    {
        ProbeOutcome.OK,
        ProbeOutcome.AUTH_FAILED,
        ProbeOutcome.NO_PASSWORD,
        ProbeOutcome.NO_CERTIFICATE,
        ProbeOutcome.CN_MISMATCH,
    }
)
DEFAULT_PROOF_USER = "rdsssl_tls_check"


def presented_fingerprint(target: ProbeTarget, *, timeout: float = 10.0) -> str:
    """SHA-256 of the certificate the PostgreSQL server at `target` presents (nothing is
    verified here: this only asks *which* certificate). OSError / ssl.SSLError on failure."""
    address = (target.hostaddr or target.host, target.port)
    with socket.create_connection(address, timeout=timeout) as raw:
        raw.sendall(_SSL_REQUEST)
        if raw.recv(1) != b"S":
            raise ssl.SSLError("the server refused SSL (SSL is off)")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(raw, server_hostname=target.host) as tls:
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class EndpointProof:
    """One connection string: what the handshake showed and what verify-full said."""

    connection_string: str
    covered: bool  # the certificate is meant to name it (required)
    presented: str | None  # fingerprint seen in the handshake
    handshake_error: str | None
    verify: ProbeResult | None
    expected: frozenset[str]
    skipped: bool = False  # named by the caller: not tried

    @property
    def presents_expected(self) -> bool:
        return self.presented is not None and self.presented in self.expected

    @property
    def verified(self) -> bool:
        return self.verify is not None and self.verify.outcome in _VERIFIED

    @property
    def ok(self) -> bool:
        return self.presents_expected and self.verified

    def problem(self) -> str:
        """Why this endpoint fails, for people ("" when it does not)."""
        if self.presented is None:
            return f"no TLS handshake ({self.handshake_error})"
        if not self.presents_expected:
            return (
                f"the server presents certificate {self.presented[:16]}, not the one the "
                "instance reads back: the change is not live on this endpoint yet"
            )
        if self.verify is not None and not self.verified:
            hint = f"; {self.verify.hint}" if self.verify.hint else ""
            return f"verify-full failed ({self.verify.outcome.value}: {self.verify.detail}{hint})"
        return ""

    def to_json(self) -> dict[str, object]:
        verify = self.verify
        return {
            "connection_string": self.connection_string,
            "covered": self.covered,
            "skipped": self.skipped,
            "presented_fingerprint": self.presented,
            "presents_expected": self.presents_expected,
            "verify_full": verify.outcome.value if verify else None,
            "verified": self.verified,
            "ok": self.ok,
            "problem": self.problem() or None,
        }


@dataclass(frozen=True)
class ServerProof:
    """Every endpoint's proof; `ok` when each covered one passed."""

    endpoints: tuple[EndpointProof, ...]
    root_cert: str

    @property
    def ok(self) -> bool:
        required = [e for e in self.endpoints if e.covered and not e.skipped]
        return bool(required) and all(e.ok for e in required)

    @property
    def all_skipped(self) -> bool:
        """Every endpoint the certificate names was skipped by the caller (nothing proven,
        nothing failed)."""
        covered = [e for e in self.endpoints if e.covered]
        return bool(covered) and all(e.skipped for e in covered)

    def failures(self) -> list[str]:
        return [
            f"{e.connection_string}: {e.problem()}"
            for e in self.endpoints
            if e.covered and not e.skipped and not e.ok
        ]

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "root_cert": self.root_cert,
            "endpoints": [e.to_json() for e in self.endpoints],
        }


def prove_server(
    api: RdsApi,
    instance_id: str,
    ssl_state: SslState,
    *,
    root_cert: Path,
    user: str = DEFAULT_PROOF_USER,
    cert: Path | None = None,
    key: Path | None = None,
    password: str | None = None,
    timeout: float = 10.0,
    skip: frozenset[str] = frozenset(),
) -> ServerProof:
    """Handshake and verify-full on every connection string against `ssl_state` (the read-back
    after the change); an endpoint counts as required when the served certificate names it."""
    expected = crypto.pem_fingerprints(ssl_state.server_cert_pem.encode(), source="ServerCert")
    served = crypto.load_certificates(
        ssl_state.server_cert_pem.encode(), source="the server certificate"
    )[0]
    endpoints: list[EndpointProof] = []
    for net in api.describe_net_info(instance_id):
        if net.connection_string_type != "Normal" or not net.connection_string:
            continue
        target = ProbeTarget(net.connection_string, net.port, net.ip_address or None)
        covered = names_host(served, net.connection_string)  # as verify-full decides
        if net.connection_string in skip:
            endpoints.append(
                EndpointProof(net.connection_string, covered, None, "skipped", None, expected, True)
            )
            continue
        presented: str | None = None
        error: str | None = None
        try:
            presented = presented_fingerprint(target, timeout=timeout)
        except (OSError, ssl.SSLError) as exc:
            error = str(exc) or type(exc).__name__
        verify = probe(
            target, user=user, cert=cert, key=key, root_cert=root_cert, password=password,
            sslmode="verify-full", timeout=timeout,
        )  # fmt: skip
        endpoints.append(
            EndpointProof(net.connection_string, covered, presented, error, verify, expected)
        )
    return ServerProof(tuple(endpoints), str(root_cert))
