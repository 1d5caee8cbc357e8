"""Value types shared across rdsssl: frozen dataclasses and enums, no behaviour beyond parsing."""

from __future__ import annotations

import enum


class KeyType(str, enum.Enum):
    """Private key algorithms rdsssl can generate. EC P-256 is the default: fast and small."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    ED25519 = "ed25519"


class AclMode(str, enum.Enum):
    """RDS client ACL modes (ACL / ReplicationACL of ModifyDBInstanceSSL)."""

    CERT = "cert"
    PREFER = "prefer"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


class CertStatus(str, enum.Enum):
    """Inventory status of an issued certificate. Expiry is derived from not_after, not stored."""

    VALID = "valid"
    REVOKED = "revoked"


class RevocationReason(str, enum.Enum):
    """CRL reason codes (RFC 5280) accepted by `cert revoke --reason`, with openssl's spelling."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    CA_COMPROMISE = "CACompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    CERTIFICATE_HOLD = "certificateHold"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"
