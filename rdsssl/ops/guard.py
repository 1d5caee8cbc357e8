"""The lockout guard: the one rule for every change that could lock database users out.

A change is a *tightening* when some client that logs in today might be refused after it:

- the ACL or the ReplicationACL becomes `cert`, `verify-ca` or `verify-full` (from anything
  else, or from one of them to another: each asks for something the others do not);
- the client CA bundle loses a CA: once a client CA is set, PostgreSQL refuses a client that
  presents a certificate of an untrusted CA in every mode, `prefer` included. CAs are compared
  by identity (`crypto.ca_identity`: subject, public key, key identifier), not by fingerprint:
  replacing a CA by its same-key renewal (`ca renew`) drops nothing, since every certificate
  of the old one chains to the new one;
- the client CA is switched off while an ACL needs certificates: certificate-only logins
  (`cert`) then need a password nobody may have;
- server SSL is switched off (`disable-ssl`) while a client CA or an ACL needing certificates
  is configured: they go with it, and every client that connects with a certificate (or
  `sslmode=verify-*`) is refused. No probe can prove that harmless: `--force` only.

A tightening is refused (`LockoutGuard`, exit 6, nothing sent) unless `--force` or a proof:
a probe certificate that will work under the *target* configuration. The proof is checked
locally first, before any call: a certificate and its key are given and match, the
certificate is valid now, chains to a CA of the target bundle, is not listed by the target CRL,
carries CN = the probe user where the target mode compares them (`cert`, `verify-full`), and
its key type is one the server can use. Then a live probe must succeed. A password-only or
wrong-CN probe is therefore refused before anything happens. Switching the client CA off while
an ACL needs certificates cannot be proven by a probe (the target mode is not in force yet):
set the ACL to `prefer` first, or pass `--force`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from rdsssl.errors import CryptoError, LockoutGuard
from rdsssl.models import AclMode, SslModifyRequest, SslState
from rdsssl.ops.probe import ProbeResult
from rdsssl.pki import crypto

__all__ = ["CERT_ACLS", "Need", "Proof", "Target", "need_for", "prove", "target_of"]

log = logging.getLogger(__name__)

CERT_ACLS = frozenset({AclMode.CERT, AclMode.VERIFY_CA, AclMode.VERIFY_FULL})
CN_ACLS = frozenset({AclMode.CERT, AclMode.VERIFY_FULL})  # the CN must equal the user


@dataclass(frozen=True)
class Target:
    """The instance's SSL configuration once the change is live (what a proof must fit)."""

    cas: tuple[x509.Certificate, ...]
    revoked: frozenset[int]  # serials the target CRL lists
    acl: AclMode | None
    replication_acl: AclMode | None
    client_ca_enabled: bool

    @property
    def cn_must_match(self) -> bool:
        """Some target mode compares the certificate's CN with the user name."""
        return self.acl in CN_ACLS or self.replication_acl in CN_ACLS


@dataclass(frozen=True)
class Need:
    """Why a change needs proof; `provable` is False when only --force can allow it."""

    codes: tuple[str, ...]
    reason: str
    provable: bool = True


@dataclass(frozen=True)
class Proof:
    """A certificate to prove access with, and the live probe that uses it."""

    user: str
    cert: Path | None
    key: Path | None
    probe: Callable[[], ProbeResult]


def _fps(certs: Iterable[x509.Certificate]) -> frozenset[str]:
    return frozenset(crypto.fingerprint(c) for c in certs)


def _certs(pem: str | None, source: str) -> tuple[x509.Certificate, ...]:
    if not pem or not pem.strip():
        return ()
    return tuple(crypto.load_certificates(pem.encode(), source=source))


def _listed(pem: str | None) -> frozenset[int]:
    if not pem or not pem.strip():
        return frozenset()
    crls = crypto.load_crls(pem.encode(), source="the CRL")
    return frozenset().union(*(crypto.inspect_crl(c).revoked_serials for c in crls))


def target_of(
    request: SslModifyRequest | None,
    before: SslState,
    *,
    fresh_crl_revoked: frozenset[int] | None = None,
) -> Target:
    """The configuration after `request` (None: unchanged). `fresh_crl_revoked`: the serials a
    CRL signed at apply time will list (a CRL requirement rather than a fixed PEM)."""
    if request is not None and (request.client_ca_enabled is False or request.ssl_enabled is False):
        return Target((), frozenset(), None, None, client_ca_enabled=False)
    ca_pem = before.client_ca_pem
    crl_pem = before.crl_pem
    acl, replication = before.acl, before.replication_acl
    if request is not None:
        ca_pem = request.client_ca_pem if request.client_ca_pem is not None else ca_pem
        crl_pem = request.crl_pem if request.crl_pem is not None else crl_pem
        acl = request.acl or acl
        replication = request.replication_acl or replication
    revoked = fresh_crl_revoked if fresh_crl_revoked is not None else _listed(crl_pem)
    cas = _certs(ca_pem, "the client CA bundle")
    return Target(cas, revoked, acl, replication, client_ca_enabled=bool(cas))


def need_for(request: SslModifyRequest | None, before: SslState, target: Target) -> Need | None:
    """Why this change could lock users out, or None when it cannot."""
    if request is None:
        return None
    if request.ssl_enabled is False:
        return _ssl_off_need(before)
    codes: list[str] = []
    reasons: list[str] = []
    for code, label, want, have in (
        ("acl-tightened", "ACL", request.acl, before.acl),
        (
            "replication-acl-tightened",
            "ReplicationACL",
            request.replication_acl,
            before.replication_acl,
        ),
    ):
        if want in CERT_ACLS and want != have:
            codes.append(code)
            reasons.append(
                f"{label} becomes {want.value}: clients without a certificate that fits it are "
                "refused"
            )
    if not target.client_ca_enabled:
        needing = [m for m in (before.acl, before.replication_acl) if m in CERT_ACLS]
        if before.client_ca_pem and needing:
            reason = (
                f"the client CA is switched off while the ACL needs certificates "
                f"({needing[0].value}): certificate-only logins stop working. Set the ACL to "
                "prefer first (rdsssl instance set-acl ID --acl prefer --replication-acl "
                "prefer), or pass --force"
            )
            return Need(("client-ca-disabled",), reason, provable=False)
        return None
    kept = {crypto.ca_identity(c) for c in target.cas}
    before_cas = _certs(before.client_ca_pem, "the instance's client CA")
    dropped = {crypto.ca_identity(c) for c in before_cas} - kept
    if dropped:
        codes.append("ca-dropped")
        reasons.append(
            f"the client CA change drops {len(dropped)} CA(s): every client presenting one of "
            "their certificates is refused, whatever the ACL"
        )
    if not codes:
        return None
    return Need(tuple(codes), "; ".join(reasons))


def _ssl_off_need(before: SslState) -> Need | None:
    """Switching SSL off while client certificates are in use (see the module docstring)."""
    needing = [m.value for m in (before.acl, before.replication_acl) if m in CERT_ACLS]
    if not before.client_ca_pem and not needing:
        return None
    what = "a client CA" if before.client_ca_pem else ""
    if needing:
        what += (" and " if what else "") + f"an ACL needing certificates ({needing[0]})"
    reason = (
        f"SSL is switched off while {what} is configured: they go with it and every "
        "certificate login is refused. Switch client certificates off first (rdsssl instance "
        "disable-client-ca ID, after moving clients to passwords), or pass --force"
    )
    return Need(("ssl-disabled",), reason, provable=False)


def _chains(
    cert: x509.Certificate, extra: list[x509.Certificate], cas: tuple[x509.Certificate, ...]
) -> bool:
    """True when `cert` leads to a CA of `cas` through the intermediates in `extra`."""
    anchors = _fps(cas)
    current, pool = cert, list(extra) + list(cas)
    for _ in range(len(pool) + 1):
        issuer = next((c for c in pool if _issued(current, c)), None)
        if issuer is None:
            return False
        if crypto.fingerprint(issuer) in anchors:
            return True
        current = issuer
    return False


def _issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_locally(proof: Proof, target: Target, *, now: datetime) -> None:
    """LockoutGuard unless the proof's certificate fits the target (see the module docstring).

    Runs before any call: nothing here touches the network."""
    who = f"the probe as {proof.user}"
    if proof.cert is None or proof.key is None:
        raise LockoutGuard(
            f"{who} has no certificate: a password-only probe proves nothing about certificate "
            "logins; pass --probe-cert and --probe-key"
        )
    try:
        certs = crypto.load_certificates(
            proof.cert.read_bytes(), source=str(proof.cert), what="a certificate file"
        )
        key = crypto.load_private_key(
            proof.key.read_bytes(), source=str(proof.key), passphrase=None
        )
        crypto.check_key_matches(certs[0], key, source=str(proof.key))
    except OSError as exc:
        raise LockoutGuard(f"{who}: cannot read {exc.filename}: {exc.strerror}") from None
    except CryptoError as exc:
        raise LockoutGuard(f"{who}: {exc}") from None
    leaf = certs[0]
    info = crypto.inspect_cert(leaf)
    problems: list[str] = []
    if not info.not_before <= now < info.not_after:
        problems.append(
            f"it is not valid now (valid {info.not_before:%Y-%m-%d} to {info.not_after:%Y-%m-%d})"
        )
    if not _chains(leaf, certs[1:], target.cas):
        names = ", ".join(crypto.name_of(c) for c in target.cas) or "no CA"
        problems.append(f"it is not issued by a CA the instance will trust ({names})")
    if leaf.serial_number in target.revoked:
        problems.append(f"its serial {info.serial_hex} is on the CRL the instance will hold")
    if target.cn_must_match and info.cn != proof.user:
        problems.append(
            f"its CN is {info.cn!r}, not the probe user {proof.user!r}, and the target mode "
            "compares them"
        )
    key_problem = crypto.client_key_problem(leaf.public_key())
    if key_problem:
        problems.append(key_problem)
    if problems:
        raise LockoutGuard(
            f"{who} cannot prove access after the change: its certificate {proof.cert}: "
            + "; ".join(problems)
        )


def prove(
    need: Need, proof: Proof | None, target: Target, *, instance_id: str, now: datetime
) -> ProbeResult:
    """The proof for `need`: local checks, then the live probe; LockoutGuard otherwise."""
    log.info("%s: lockout guard: proof needed (%s)", instance_id, ", ".join(need.codes))
    if not need.provable:
        log.info("%s: lockout guard: refused, no probe can prove this", instance_id)
        raise LockoutGuard(f"{instance_id}: {need.reason}")
    if proof is None:
        log.info("%s: lockout guard: refused, no proof given", instance_id)
        raise LockoutGuard(
            f"{instance_id}: {need.reason}. Prove a certificate works first "
            "(--probe-user/--probe-cert/--probe-key) or pass --force"
        )
    try:
        check_locally(proof, target, now=now)
    except LockoutGuard:
        log.info("%s: lockout guard: refused, the probe certificate does not fit", instance_id)
        raise
    result = proof.probe()
    log.info("%s: lockout guard: probe as %s: %s", instance_id, result.user, result.outcome.value)
    if not result.ok:
        hint = f"; {result.hint}" if result.hint else ""
        raise LockoutGuard(
            f"{instance_id}: {need.reason}, and the probe as {result.user} failed "
            f"({result.outcome.value}: {result.detail}{hint}); fix that or pass --force"
        )
    return result
