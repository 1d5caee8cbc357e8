"""A server-side command from its plan to its proof (`ServerChange`), for the command line.

The one-instance change (`rdsssl.ops.instance_change.InstanceChange`) does the plan, the guard,
the one call and the wait; this adds what the server side needs around it: an earlier
unconfirmed change confirmed BEFORE the desired state is built (the refusals, like "SSL is
already on", must judge the instance as it is), and afterwards the proof on every connection
string (`rdsssl.ops.server_ssl_proof`), whose failure becomes the outcome's error (exit 6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rdsssl.errors import CryptoError, VerificationError
from rdsssl.models import SslState
from rdsssl.ops.instance_change import InstanceChange, InstanceOutcome
from rdsssl.ops.plan import DesiredSsl
from rdsssl.ops.probe import server_ca_file
from rdsssl.ops.probe_options import ProbeOptions
from rdsssl.ops.server_ssl_proof import DEFAULT_PROOF_USER, ServerProof, prove_server
from rdsssl.pki import crypto
from rdsssl.pki.hostnames import dns_names
from rdsssl.rds.protocol import RdsApi

__all__ = ["ServerChange", "ServerOutcome", "final_state", "prove_change", "server_summary"]


def server_summary(ssl: SslState) -> dict[str, object]:
    """The server side of a read-back, secret-free (for JSON output and messages)."""
    doc: dict[str, object] = {
        "ssl_enabled": ssl.ssl_enabled,
        "ca_type": ssl.ca_type or None,
        "connection_string": ssl.connection_string or None,
        "fingerprint": None,
        "not_after": None,
        "names": [],
    }
    if ssl.ssl_enabled and ssl.server_cert_pem.strip():
        try:
            cert = crypto.load_certificates(ssl.server_cert_pem.encode(), source="ServerCert")[0]
        except CryptoError:
            return doc
        info = crypto.inspect_cert(cert)
        doc.update(
            fingerprint=info.fingerprint,
            not_after=info.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            names=sorted(dns_names(cert)),
        )
    return doc


def final_state(outcome: InstanceOutcome) -> SslState | None:
    """What the instance holds after the command: the read-back after the wait, or, when
    nothing was to be done, what the plan was made against (None: unknown, e.g. --no-wait)."""
    if outcome.result is not None:
        return outcome.result.final
    if outcome.preview is not None and outcome.preview.plan.noop:
        return outcome.preview.final
    return None


def prove_change(
    api: RdsApi,
    outcome: InstanceOutcome,
    *,
    root_cert: Path | None,
    probe: ProbeOptions | None = None,
    skip: frozenset[str] = frozenset(),
) -> ServerProof | None:
    """After a server-side command: with SSL on, the handshake and verify-full on every
    connection string (`rdsssl.ops.server_ssl_proof`) against `root_cert` (the server CA
    store's ca.crt; None: the cloud CA from ServerCAUrl). A failure becomes the outcome's
    `VerificationError` (exit 6). `skip`: connection strings not to try (unreachable from
    here); skipping all of them is not a failure. None when there is nothing to prove (an
    error before, a dry run, --no-wait, SSL off)."""
    ssl = final_state(outcome)
    if outcome.error is not None or outcome.dry_run or ssl is None or not ssl.ssl_enabled:
        return None
    iid = outcome.instance_id
    user = (probe.user if probe is not None else None) or DEFAULT_PROOF_USER
    password = probe.password() if probe is not None else None
    cert = probe.cert if probe is not None else None
    key = probe.key if probe is not None else None
    with server_ca_file(api, iid, root_cert) as root:
        proof = prove_server(
            api, iid, ssl, root_cert=root, user=user, cert=cert, key=key, password=password,
            skip=skip,
        )  # fmt: skip
    if not proof.ok and not proof.all_skipped:
        where = str(root_cert) if root_cert is not None else "the CA from ServerCAUrl"
        outcome.error = VerificationError(
            f"{iid}: the server side reads back as asked, but the proof failed: "
            + "; ".join(proof.failures() or ["no endpoint is covered by the certificate"])
            + f". verify-full clients with sslrootcert={where} fail there: check that this CA "
            "issued the certificate (during a CA change give clients `rdsssl server-ca bundle`), "
            "and that the endpoint is reachable from here (one that is not: --skip-proof NAME), "
            "then prove again with `rdsssl probe`"
        )
    return proof


@dataclass
class ServerOutcome:
    """One server-side command: the one-instance outcome and the proof (None: nothing to
    prove)."""

    outcome: InstanceOutcome
    proof: ServerProof | None = None

    def to_json(self) -> dict[str, Any]:
        """The instance's usual document, with `server` and `server_proof` (no key)."""
        final = final_state(self.outcome)
        doc = self.outcome.to_json()
        doc["server"] = server_summary(final) if final is not None else None
        doc["server_proof"] = self.proof.to_json() if self.proof is not None else None
        if self.outcome.error is not None:
            doc["ok"] = False
        return doc


@dataclass(frozen=True)
class ServerChange:
    """A server-side command under `change`'s options. `proof_probe`: credentials for the proof
    (None: it stops at authentication, after the certificate verified). `root_cert`: the server
    CA the proof trusts (None: the cloud CA from ServerCAUrl). `skip_proof`: connection
    strings this host cannot reach, not tried."""

    change: InstanceChange
    root_cert: Path | None = None
    proof_probe: ProbeOptions | None = None
    skip_proof: frozenset[str] = frozenset()

    def prepare(
        self, api: RdsApi, instance_id: str, desired_for: Callable[[SslState], DesiredSsl]
    ) -> ServerOutcome:
        """Confirm an earlier change (not on a dry run), build the desired state from the SSL
        state as it is now (refusals raise here, nothing sent), then the plan to show."""
        if self.proof_probe is not None and self.proof_probe.given:
            self.proof_probe.password()  # a missing variable stops now, not after the change
        if not self.change.options.dry_run:
            self.change.confirm_earlier(api, instance_id)
        desired = desired_for(api.describe_ssl(instance_id))
        outcome = InstanceOutcome(instance_id, "command line", desired)
        return ServerOutcome(self.change.preview(api, outcome))

    def complete(self, api: RdsApi, server: ServerOutcome) -> ServerOutcome:
        """After the caller's confirmation: the change, then the proof."""
        self.change.complete(api, server.outcome)
        probe = (
            self.proof_probe if self.proof_probe is not None and self.proof_probe.given else None
        )
        server.proof = prove_change(
            api, server.outcome, root_cert=self.root_cert, probe=probe, skip=self.skip_proof
        )
        return server
