"""The pki layer's one import for the layers above: every public name of `rdsssl.pki`'s modules.

The functions live in modules named for what they hold: `keys` (key types, making keys, which
client keys work), `ca` (the client CA), `certs` (client certificates, CSRs), `crls` (signing
CRLs), `pem` (reading PEM bundles), `export` (writing PEM, .pk8, PKCS#12), `pkcs8` (the CA key
at rest), `inspection` (names, fingerprints, summaries), `serials`, `names` (role names) and
`validity` (times and periods). Inside `rdsssl.pki`, and in new code, import from those
modules directly; this facade stays because the store, the use cases and the CLI call
`crypto.<name>` in some forty files.

Nothing in `rdsssl.pki` touches files, the network or the clock: `now` is always a parameter.
"""

from __future__ import annotations

from rdsssl.pki.ca import (
    CaIdentity,
    akid_fits,
    ca_identity,
    is_self_signed,
    make_ca,
    renew_ca,
)
from rdsssl.pki.certs import (
    Issued,
    issue_client_cert,
    sign_csr,
)
from rdsssl.pki.crls import (
    Revocation,
    build_crl,
    reason_to_x509,
)
from rdsssl.pki.export import (
    cert_pem,
    crl_pem,
    key_pem,
    key_pk8_der,
    pkcs12,
)
from rdsssl.pki.inspection import (
    CertInfo,
    CrlInfo,
    cn_of,
    fingerprint,
    inspect_cert,
    inspect_crl,
    is_ca,
    key_type_of,
    name_of,
)
from rdsssl.pki.keys import (
    PrivateKey,
    PublicKey,
    check_ca_key,
    client_key_problem,
    generate_key,
    hash_for,
    tls12_key_problem,
)
from rdsssl.pki.names import (
    unsafe_name_problem,
    validate_role_name,
)
from rdsssl.pki.pem import (
    BlockKind,
    PemBlock,
    check_csr_signature,
    check_key_matches,
    crl_signed_by,
    load_ca_certificates,
    load_certificates,
    load_crls,
    load_csr,
    load_private_key,
    parse_pem_bundle,
    pem_fingerprints,
)
from rdsssl.pki.pkcs8 import (
    KDF_ROUNDS,
    KeyProtection,
    ca_key_pem,
    key_protection,
)
from rdsssl.pki.serials import (
    new_serial,
    parse_serial,
    serial_hex,
)
from rdsssl.pki.validity import (
    CLOCK_SKEW,
    DEFAULT_CA_DAYS,
    DEFAULT_CRL_DAYS,
    DEFAULT_CRL_EXPIRED_GRACE,
    DEFAULT_LEAF_DAYS,
    LATEST_TIME,
    check_days,
    max_days,
)

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_CA_DAYS",
    "DEFAULT_CRL_DAYS",
    "DEFAULT_CRL_EXPIRED_GRACE",
    "DEFAULT_LEAF_DAYS",
    "KDF_ROUNDS",
    "LATEST_TIME",
    "BlockKind",
    "CaIdentity",
    "CertInfo",
    "CrlInfo",
    "Issued",
    "KeyProtection",
    "PemBlock",
    "PrivateKey",
    "PublicKey",
    "Revocation",
    "akid_fits",
    "build_crl",
    "ca_identity",
    "ca_key_pem",
    "cert_pem",
    "check_ca_key",
    "check_csr_signature",
    "check_days",
    "check_key_matches",
    "client_key_problem",
    "cn_of",
    "crl_pem",
    "crl_signed_by",
    "fingerprint",
    "generate_key",
    "hash_for",
    "inspect_cert",
    "inspect_crl",
    "is_ca",
    "is_self_signed",
    "issue_client_cert",
    "key_pem",
    "key_pk8_der",
    "key_protection",
    "key_type_of",
    "load_ca_certificates",
    "load_certificates",
    "load_crls",
    "load_csr",
    "load_private_key",
    "make_ca",
    "max_days",
    "name_of",
    "new_serial",
    "parse_pem_bundle",
    "parse_serial",
    "pem_fingerprints",
    "pkcs12",
    "reason_to_x509",
    "renew_ca",
    "serial_hex",
    "sign_csr",
    "tls12_key_problem",
    "unsafe_name_problem",
    "validate_role_name",
]
