"""Is this store sound? ``check_current_ca`` decides whether ca.crt is the store's CA when the
store is opened; ``problems`` lists every inconsistency ``check`` reports (sqlite's integrity
check, each recorded certificate against its row, the CRL number against built CRLs).
"""

from __future__ import annotations

from cryptography import x509

from rdsssl.errors import StoreError
from rdsssl.pki import crypto
from rdsssl.store.crl_signing import next_crl_number
from rdsssl.store.db import Inventory

__all__ = ["check_current_ca", "problems"]


def check_current_ca(inv: Inventory, cert: x509.Certificate, source: str) -> None:
    """StoreError unless ``cert`` (ca.crt) is this store's CA: the certificate it was created
    with, one recorded by ``ca renew``, or a renewal whose record a kill prevented (see the
    ``rdsssl.store.ca_renewal`` docstring): self-signed, with the identity of a recorded
    certificate."""
    fp = crypto.fingerprint(cert)
    if fp == inv.get_meta("ca_fingerprint"):
        return
    recorded = [c for c, _ in inv.ca_certs()]
    if fp in {crypto.fingerprint(c) for c in recorded}:
        return
    identity = crypto.ca_identity(cert)
    if any(crypto.ca_identity(c) == identity for c in recorded) and crypto.is_self_signed(cert):
        return
    raise StoreError(
        f"{source} is not the CA this store was created with, nor a renewal of it (its "
        "inventory records other fingerprints); restore the original ca.crt"
    )


def problems(inv: Inventory, ca_cert: x509.Certificate) -> list[str]:
    """Every inconsistency found between ``inv`` and its current CA ``ca_cert`` (empty when the
    store is sound)."""
    found = inv.integrity_problems()
    recorded = [c for c, _ in inv.ca_certs()]
    identity = crypto.ca_identity(ca_cert)
    for cert in recorded:
        if crypto.ca_identity(cert) != identity:
            found.append(
                f"CA certificate {crypto.serial_hex(cert.serial_number)} in the inventory is "
                "not the CA of ca.crt (another subject, key or key identifier)"
            )
    ours = {crypto.fingerprint(ca_cert), inv.get_meta("ca_fingerprint")}
    ours |= {crypto.fingerprint(c) for c in recorded}
    for row in inv.all():
        if row.issuer_fingerprint not in ours:
            found.append(f"serial {row.serial_hex}: issued by another CA")
        if row.cert_der is None:
            continue
        info = crypto.inspect_cert(x509.load_der_x509_certificate(row.cert_der))
        if (info.serial, info.cn or "", info.fingerprint, info.not_after) != (
            row.serial,
            row.cn,
            row.fingerprint,
            row.not_after,
        ):
            found.append(f"serial {row.serial_hex}: row does not match its certificate")
    last = inv.last_crl()
    if last is not None and next_crl_number(inv) <= last.number:
        found.append(f"crl_number {next_crl_number(inv)} is not above CRL {last.number}")
    return found
