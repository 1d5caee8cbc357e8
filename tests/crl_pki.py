"""CAs, leaves and CRLs made with cryptography's builders, for the CRL policy tests.

Everything is dated around a fixed `NOW` (certificates valid ten years either side, so only the
CRLs' times matter) and signed with EC P-256 keys made once per session: key generation is the
only slow part. The CRL builder takes every knob the policy looks at (times, entries, a critical
CRL number, the authority key identifier, a forging key, extra extensions).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
_WIDE = timedelta(days=3650)
_KEYS: dict[str, ec.EllipticCurvePrivateKey] = {}


def key(label: str) -> ec.EllipticCurvePrivateKey:
    """One EC P-256 key per label for the whole session."""
    if label not in _KEYS:
        _KEYS[label] = ec.generate_private_key(ec.SECP256R1())
    return _KEYS[label]


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(*, ca: bool, crl_sign: bool = True) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca and crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class Ca:
    """A CA certificate and its key; `crl()` and `leaf()` sign with it."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    def child(self, cn: str, *, serial: int, key_label: str | None = None) -> Ca:
        """An intermediate CA issued by this one."""
        return make_ca(cn, serial=serial, key_label=key_label, issuer=self)

    def leaf(self, cn: str = "alice", *, serial: int = 0x5EAF) -> x509.Certificate:
        """A client certificate issued by this CA."""
        public = key(f"leaf-{cn}").public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(serial)
            .not_valid_before(NOW - _WIDE)
            .not_valid_after(NOW + _WIDE)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(ca=False), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        return builder.sign(self.key, hashes.SHA256())

    def crl(
        self,
        *,
        last: datetime = NOW - timedelta(hours=1),
        next: datetime = NOW + timedelta(days=1),
        serials: Iterable[int] = (),
        critical_number: bool = False,
        aki: bool = True,
        signer: ec.EllipticCurvePrivateKey | None = None,
        extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
        entry_extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
        number: int = 1,
    ) -> x509.CertificateRevocationList:
        """A CRL naming this CA as issuer, signed by its key unless `signer` forges it."""
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(last)
            .next_update(next)
            .add_extension(x509.CRLNumber(number), critical=critical_number)
        )
        if aki:
            ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        for serial in sorted(set(serials)):
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(NOW - timedelta(days=2))
            )
            for extension, critical in entry_extensions:
                entry = entry.add_extension(extension, critical=critical)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(signer or self.key, hashes.SHA256())


def make_ca(
    cn: str,
    *,
    serial: int,
    key_label: str | None = None,
    issuer: Ca | None = None,
    crl_sign: bool = True,
) -> Ca:
    """A CA valid ten years either side of NOW: self-signed, or issued by `issuer`."""
    own = key(key_label or cn)
    signer = issuer.key if issuer else own
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(issuer.cert.subject if issuer else name(cn))
        .public_key(own.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - _WIDE)
        .not_valid_after(NOW + _WIDE)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(ca=True, crl_sign=crl_sign), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(own.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    )
    return Ca(builder.sign(signer, hashes.SHA256()), own)


def pem(*objects: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return b"".join(o.public_bytes(serialization.Encoding.PEM) for o in objects)
