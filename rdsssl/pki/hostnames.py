"""Whether a server certificate names a host, as libpq's `sslmode=verify-full` decides it.

libpq compares the host it connected to with the certificate's subjectAltName entries (DNS
names, a `*` standing for exactly one whole left-most label; IP addresses), and looks at the
CN only when the certificate has no subjectAltName at all. A cloud certificate names the one
connection string it was issued for; a custom one every connection string it was issued for
(`rdsssl.pki.server_certs`). Pure: a certificate and a name in, a boolean out.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = ["dns_names", "names_host"]


def dns_names(cert: x509.Certificate) -> set[str]:
    """The DNS names a certificate's subjectAltName holds, lower-cased (what it was issued
    for; `names_host` is the question libpq asks of them)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {n.lower() for n in san.get_values_for_type(x509.DNSName)}


def names_host(cert: x509.Certificate, host: str) -> bool:
    """Whether `cert` names `host` as libpq's verify-full checks it: a subjectAltName DNS name
    (a wildcard stands for one left-most label) or IP address, else, without SANs, the CN."""
    host = host.strip().rstrip(".").lower()
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return any(_dns_match(str(attr.value), host) for attr in common)
    if any(_dns_match(name, host) for name in sans.get_values_for_type(x509.DNSName)):
        return True
    return any(str(ip) == host for ip in sans.get_values_for_type(x509.IPAddress))


def _dns_match(pattern: str, host: str) -> bool:
    pattern = pattern.strip().rstrip(".").lower()
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host
