"""The server side of SSL through the official SDK: custom certificates, cloud certificates for
one connection string, SSL off and on, the expiry fields, renewal and the one-call setup.

State-only instances (backend "none") with the module's long delays and movable clock for the
API rules; one real PostgreSQL for what a client sees: the served certificate (a TLS
handshake) and verify-full logins against each connection string.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from alibabacloud_rds20140815 import models as rds
from alibabacloud_rds20140815.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from rdsssl.emulator.server import CLIENT_PENDING_KEYS, Emulator
from rdsssl.errors import ConfigError
from rdsssl.pki.server_certs import issue_server_cert
from rdsssl.rds.service_profile import parse as parse_client_profile
from tests.emulator.conftest import RESTART_SECONDS
from tests.emulator.sdk import control, make_client, modify, ssl_of, status_of, wait_applied
from tests.pgtls import KeyPair, make_ca, make_crl

DAY = 86400.0
PASSWORD = "Alice-ssl-pass-1"


def _code(exc: pytest.ExceptionInfo[ClientException]) -> tuple[str, int]:
    return exc.value.code, exc.value.status_code


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _dns_names(pem: str) -> set[str]:
    cert = x509.load_pem_x509_certificate(pem.encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(sans.get_values_for_type(x509.DNSName))


def _names(emu: Emulator, iid: str) -> tuple[str, str]:
    inst = emu.instance(iid)
    return inst.connection_string, inst.public_connection_string


def _custom(
    ca: KeyPair, names: list[str], *, days: int = 90
) -> tuple[x509.Certificate, str, str, ec.EllipticCurvePrivateKey]:
    """A custom server certificate from the user's own server CA, as rdsssl issues one:
    (cert, cert PEM, unencrypted key PEM, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    issued = issue_server_cert(ca.cert, ca.key, key.public_key(), names=names, now=now, days=days)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_pem = issued.cert.public_bytes(serialization.Encoding.PEM).decode()
    return issued.cert, cert_pem, key_pem, key


@pytest.fixture(scope="module")
def server_ca() -> KeyPair:
    """The user's own server CA (for CAType=custom)."""
    return make_ca("emulator-test-server-ca", days=400)


# -- CAType=custom: validation ------------------------------------------------------------------


def _bad_uploads(server_ca: KeyPair, names: list[str]) -> dict[str, tuple[dict[str, str], str]]:
    _, cert_pem, key_pem, key = _custom(server_ca, names)
    _, other_pem, other_key_pem, _ = _custom(server_ca, names)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret-passphrase"),
    ).decode()
    return {
        "key of another certificate": (
            {"server_cert": cert_pem, "server_key": other_key_pem},
            "the key does not match the certificate",
        ),
        "encrypted key": ({"server_cert": cert_pem, "server_key": encrypted}, "encrypted"),
        "not a PEM": ({"server_cert": "hello", "server_key": key_pem}, "no PEM block"),
        "truncated certificate": (
            {
                "server_cert": "\n".join([*cert_pem.splitlines()[:4], "-----END CERTIFICATE-----"]),
                "server_key": key_pem,
            },
            "ServerCert block 1 does not parse",
        ),
        "key pasted into ServerCert": (
            {"server_cert": cert_pem + key_pem, "server_key": key_pem},
            "block 2 is PRIVATE KEY, not CERTIFICATE",
        ),
        "garbage key": (
            {
                "server_cert": cert_pem,
                "server_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            },
            "ServerKey is not an unencrypted PEM private key",
        ),
        "no key": ({"server_cert": other_pem}, "ServerCert and ServerKey are required"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "key of another certificate",
        "encrypted key",
        "not a PEM",
        "truncated certificate",
        "key pasted into ServerCert",
        "garbage key",
        "no key",
    ],
)
def test_a_bad_custom_certificate_is_refused_and_changes_nothing(
    client: Client, emu: Emulator, iid: str, conn_str: str, server_ca: KeyPair, case: str
) -> None:
    fields, message = _bad_uploads(server_ca, list(_names(emu, iid)))[case]
    before = ssl_of(client, iid)
    with pytest.raises(ClientException) as exc:
        modify(client, iid, conn_str, sslenabled=1, catype="custom", **fields)
    assert _code(exc) == ("InvalidServerCertOrPrivateKey", 400)
    assert message in exc.value.message
    key_lines = [line for line in fields.get("server_key", "").splitlines() if len(line) > 16]
    assert not [line for line in key_lines if line in exc.value.message]  # never the key
    after = ssl_of(client, iid)
    assert (after.catype, after.server_cert, status_of(client, iid)) == (
        "aliyun",
        before.server_cert,
        "Running",
    )
    assert emu.restarts(iid) == 0


def test_an_expired_custom_certificate_is_refused_by_the_emulator_clock(
    client: Client, emu: Emulator, iid: str, conn_str: str, server_ca: KeyPair
) -> None:
    _, cert_pem, key_pem, _ = _custom(server_ca, list(_names(emu, iid)), days=10)
    control(emu, "clock", {"advance": 11 * DAY})
    with pytest.raises(ClientException) as exc:
        modify(
            client, iid, conn_str, sslenabled=1, catype="custom",
            server_cert=cert_pem, server_key=key_pem,
        )  # fmt: skip
    assert _code(exc) == ("InvalidServerCertOrPrivateKey", 400)
    assert "expired on" in exc.value.message


def test_a_custom_certificate_reads_back_with_its_own_expiry(
    client: Client, emu: Emulator, iid: str, conn_str: str, server_ca: KeyPair
) -> None:
    cert, cert_pem, key_pem, _ = _custom(server_ca, list(_names(emu, iid)), days=20)
    modify(
        client, iid, conn_str, sslenabled=1, catype="custom",
        server_cert=cert_pem, server_key=key_pem,
    )  # fmt: skip
    assert emu.requests[-1].params["ServerKey"] == "<redacted>"
    emu.clock.advance(RESTART_SECONDS)
    body = ssl_of(client, iid)
    assert (body.sslenabled, body.catype, body.connection_string) == ("on", "custom", conn_str)
    assert (body.server_cert, body.server_caurl, body.last_modify_status) == (
        cert_pem,
        "",
        "success",
    )
    assert _time(body.sslexpire_time) == cert.not_valid_after_utc
    # 20 days left: a cloud certificate would ask for an update; a custom one is the owner's
    assert (body.require_update, body.require_update_item) == ("0", "")
    assert emu.restarts(iid) == 1
    # a later client-CA change keeps the custom certificate
    ca = make_ca("custom-then-client-ca")
    modify(client, iid, conn_str, client_caenabled=1, client_cacert=ca.cert_pem.decode())
    emu.clock.advance(RESTART_SECONDS)
    assert (ssl_of(client, iid).catype, ssl_of(client, iid).server_cert) == ("custom", cert_pem)


# -- cloud certificates -------------------------------------------------------------------------


def test_a_cloud_certificate_names_only_the_connection_string_ssl_protects(
    client: Client, emu: Emulator, iid: str, conn_str: str
) -> None:
    internal, public = _names(emu, iid)
    first = ssl_of(client, iid).server_cert
    assert _dns_names(first) == {internal, "localhost"}
    modify(client, iid, public, sslenabled=1, catype="aliyun")
    emu.clock.advance(RESTART_SECONDS)
    body = ssl_of(client, iid)
    assert (body.connection_string, body.catype) == (public, "aliyun")
    assert _dns_names(body.server_cert) == {public, "localhost"}
    cert = x509.load_pem_x509_certificate(body.server_cert.encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(emu.server_ca_pem))


def test_require_update_and_renewal_follow_the_emulator_clock(
    client: Client, emu: Emulator, iid: str, conn_str: str
) -> None:
    body = ssl_of(client, iid)
    created, expires = _time(body.sslcreate_time), _time(body.sslexpire_time)
    assert timedelta(days=364) < expires - created <= timedelta(days=366)  # one year
    assert (body.require_update, body.require_update_item, body.require_update_reason) == (
        "0",
        "",
        "",
    )
    control(emu, "clock", {"advance": 334 * DAY})  # 31 days left
    assert ssl_of(client, iid).require_update == "0"
    control(emu, "clock", {"advance": 2 * DAY})  # 29 days left
    body = ssl_of(client, iid)
    assert (body.require_update, body.require_update_item) == ("1", "ServerCert")
    assert "within 30 days" in body.require_update_reason
    assert _time(body.sslexpire_time) == expires  # the certificate itself did not change
    control(emu, "clock", {"advance": 30 * DAY})
    body = ssl_of(client, iid)
    assert (body.require_update, body.require_update_reason) == (
        "1",
        f"the cloud certificate expired on {expires:%Y-%m-%dT%H:%M:%SZ}",
    )

    modify(client, iid, conn_str, sslenabled=1, catype="aliyun")  # the renewal
    emu.clock.advance(RESTART_SECONDS)
    body = ssl_of(client, iid)
    renewed = x509.load_pem_x509_certificate(body.server_cert.encode())
    emulated_now = datetime.fromtimestamp(emu.clock(), timezone.utc)
    assert (body.require_update, body.last_modify_status) == ("0", "success")
    assert abs(_time(body.sslexpire_time) - (emulated_now + timedelta(days=365))) < timedelta(
        minutes=10
    )
    # valid from the wall clock's now, so real clients (whose clock did not move) accept it
    assert renewed.not_valid_before_utc <= datetime.now(timezone.utc)
    assert _dns_names(body.server_cert) == {conn_str, "localhost"}


@pytest.mark.parametrize("renews", [True, False])
def test_resending_ssl_enabled_renews_the_cloud_certificate_per_switch(
    client: Client, emu: Emulator, iid: str, conn_str: str, renews: bool
) -> None:
    control(emu, "faults", {"switches": {"ssl_enable_renews": renews}})
    before = ssl_of(client, iid).server_cert
    modify(client, iid, conn_str, sslenabled=1, catype="aliyun")
    assert status_of(client, iid) == "SSL_MODIFYING"
    emu.clock.advance(RESTART_SECONDS)
    body = ssl_of(client, iid)
    assert body.last_modify_status == "success" and emu.restarts(iid) == 1
    assert (body.server_cert != before) is renews
    # a call without SSLEnabled never renews
    ca = make_ca("renewal-client-ca")
    modify(client, iid, conn_str, client_caenabled=1, client_cacert=ca.cert_pem.decode())
    emu.clock.advance(RESTART_SECONDS)
    assert ssl_of(client, iid).server_cert == body.server_cert


# -- SSL off and on through the API ---------------------------------------------------------------


def test_ssl_enabled_0_turns_ssl_off_and_clears_the_client_ca(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    modify(
        client, iid, conn_str, client_caenabled=1, client_cacert=client_ca.cert_pem.decode(),
        client_crl_enabled=1, client_cert_revocation_list=make_crl(client_ca, []).decode(),
        acl="cert",
    )  # fmt: skip
    emu.clock.advance(RESTART_SECONDS)
    old_cert = ssl_of(client, iid).server_cert
    with pytest.raises(ClientException) as exc:  # SSL off and a client CA: contradictory
        modify(client, iid, conn_str, sslenabled=0, client_caenabled=1,
               client_cacert=client_ca.cert_pem.decode())  # fmt: skip
    assert _code(exc) == ("IncorrectDBSslStatus", 400)

    modify(client, iid, conn_str, sslenabled=0)
    assert status_of(client, iid) == "SSL_MODIFYING"
    emu.clock.advance(RESTART_SECONDS)
    body = ssl_of(client, iid)
    assert (body.sslenabled, body.connection_string, body.server_cert, body.sslexpire_time) == (
        "off", "", "", "",
    )  # fmt: skip
    assert (body.client_cacert, body.client_cert_revocation_list, body.acl) == ("", "", "")
    backend_config = emu.instance(iid).applied
    assert backend_config is not None and backend_config.ssl_enabled is False
    assert backend_config.client_ca_pem is None and backend_config.crl_pem is None

    modify(client, iid, conn_str, sslenabled=1, catype="aliyun")
    emu.clock.advance(RESTART_SECONDS)
    body = ssl_of(client, iid)
    assert (body.sslenabled, body.catype, body.connection_string) == ("on", "aliyun", conn_str)
    assert (body.client_cacert, body.acl) == ("", "prefer")  # the client CA stays cleared
    assert body.server_cert != old_cert and _dns_names(body.server_cert) == {conn_str, "localhost"}
    assert (emu.restarts(iid), emu.reloads(iid)) == (3, 0)


def test_with_the_switch_ssl_off_keeps_the_client_ca_dormant(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    control(emu, "faults", {"switches": {"ssl_off_keeps_client_ca": True}})
    pem = client_ca.cert_pem.decode()
    modify(client, iid, conn_str, client_caenabled=1, client_cacert=pem, acl="cert")
    emu.clock.advance(RESTART_SECONDS)
    modify(client, iid, conn_str, sslenabled=0)
    emu.clock.advance(RESTART_SECONDS)
    body = ssl_of(client, iid)
    assert (body.sslenabled, body.client_cacert, body.acl) == ("off", pem, "cert")  # read back
    applied = emu.instance(iid).applied
    assert applied is not None and applied.ssl_enabled is False
    assert (applied.client_ca_pem, applied.acl) == (None, None)  # ... but not in force
    modify(client, iid, conn_str, sslenabled=1, catype="aliyun")
    emu.clock.advance(RESTART_SECONDS)
    body = ssl_of(client, iid)
    assert (body.sslenabled, body.client_cacert, body.acl) == ("on", pem, "cert")
    applied = emu.instance(iid).applied
    assert applied is not None and (applied.client_ca_pem, applied.acl) == (pem.encode(), "cert")


def _full_setup(client: Client, iid: str, cs: str, ca: KeyPair) -> None:
    modify(
        client, iid, cs, sslenabled=1, catype="aliyun",
        client_caenabled=1, client_cacert=ca.cert_pem.decode(),
        client_crl_enabled=1, client_cert_revocation_list=make_crl(ca, []).decode(),
        acl="cert", replication_acl="cert",
    )  # fmt: skip


def test_an_instance_created_with_ssl_off_takes_everything_in_one_call(
    client: Client, emu: Emulator, client_ca: KeyPair
) -> None:
    iid = emu.add_instance(ssl=False, region="cn-shenzhen")
    cs = emu.instance(iid).connection_string
    body = ssl_of(client, iid)
    assert (body.sslenabled, body.connection_string, body.server_cert, body.acl) == (
        "off", "", "", "",
    )  # fmt: skip
    _full_setup(client, iid, cs, client_ca)
    emu.clock.advance(RESTART_SECONDS)
    body = ssl_of(client, iid)
    assert (body.sslenabled, body.catype, body.acl, body.replication_acl) == (
        "on", "aliyun", "cert", "cert",
    )  # fmt: skip
    assert body.client_cacert == client_ca.cert_pem.decode() and body.client_cert_revocation_list
    assert _dns_names(body.server_cert) == {cs, "localhost"}
    assert (emu.restarts(iid), len([r for r in emu.requests if r.action == "ModifyDBInstanceSSL"]))\
        == (1, 1)  # fmt: skip
    emu.reset()  # back to how it was created: SSL off
    assert ssl_of(client, iid).sslenabled == "off"


def test_without_one_call_setup_ssl_comes_first_then_the_client_ca(
    client: Client, emu: Emulator, client_ca: KeyPair
) -> None:
    iid = emu.add_instance(ssl=False, region="cn-shenzhen")
    cs = emu.instance(iid).connection_string
    control(emu, "faults", {"switches": {"one_call_ssl_setup": False}})
    with pytest.raises(ClientException) as exc:
        _full_setup(client, iid, cs, client_ca)
    assert _code(exc) == ("IncorrectDBSslStatus", 400)
    assert "turn it on first" in exc.value.message
    assert ssl_of(client, iid).sslenabled == "off" and status_of(client, iid) == "Running"
    with pytest.raises(ClientException):  # an ACL alone in the turning-on call: refused too
        modify(client, iid, cs, sslenabled=1, catype="aliyun", acl="cert")
    modify(client, iid, cs, sslenabled=1, catype="aliyun")
    emu.clock.advance(RESTART_SECONDS)
    modify(
        client, iid, cs, client_caenabled=1, client_cacert=client_ca.cert_pem.decode(),
        acl="cert",
    )  # fmt: skip
    emu.clock.advance(RESTART_SECONDS)
    body = ssl_of(client, iid)
    assert (body.sslenabled, body.acl, body.last_modify_status) == ("on", "cert", "success")
    assert emu.restarts(iid) == 2


def test_an_emulator_created_with_ssl_off() -> None:
    with Emulator(instances=2, backend="none", ssl=False) as emu:
        client = make_client(emu)
        assert {ssl_of(client, i).sslenabled for i in emu.instance_ids} == {"off"}
        assert {i["SSLEnabled"] for i in control(emu, "instances")["instances"]} == {"off"}
        one = emu.add_instance()  # the default stays on
        assert ssl_of(client, one).sslenabled == "on"


# -- the profile file handed to clients ---------------------------------------------------------


def test_the_service_profile_file_carries_only_keys_the_client_reads(emu: Emulator) -> None:
    doc = emu.service_profile()
    assert not set(doc) & set(CLIENT_PENDING_KEYS)
    parse_client_profile(doc, source="emulator")  # every key written is one the client takes
    assert set(CLIENT_PENDING_KEYS) <= set(emu.profile.to_json())  # the emulator's format has them
    for key in CLIENT_PENDING_KEYS:
        # Fails once rdsssl/rds/service_profile.py reads the key: then remove it from
        # CLIENT_PENDING_KEYS (rdsssl/emulator/server.py), so clients get the recorded answer.
        with pytest.raises(ConfigError, match=f"unknown keys {key}"):
            parse_client_profile({"format": 1, key: False}, source="pending")


# -- what a client sees on a real PostgreSQL ----------------------------------------------------


@pytest.fixture(scope="module")
def pg_emu() -> Iterator[Emulator]:
    """One instance on a real PostgreSQL, 0.3 s restarts, with the account alice."""
    with Emulator(instances=1, backend="pg", restart_seconds=0.3, acl_lock_seconds=0.2) as emu:
        make_client(emu).create_account(
            rds.CreateAccountRequest(
                dbinstance_id=emu.instance_ids[0], account_name="alice", account_password=PASSWORD
            )
        )
        yield emu


@pytest.fixture
def pg(pg_emu: Emulator) -> Emulator:
    pg_emu.reset()
    return pg_emu


def _served(emu: Emulator, iid: str) -> x509.Certificate:
    """The certificate PostgreSQL presents: an SSLRequest, then a TLS handshake."""
    inst = emu.instance(iid)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # we only look
    with socket.create_connection((inst.host, inst.port), timeout=10) as sock:
        sock.sendall(struct.pack("!ii", 8, 80877103))
        assert sock.recv(1) == b"S", "PostgreSQL refused SSL"
        with context.wrap_socket(sock) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _login(emu: Emulator, iid: str, host: str, rootcert: Path, sslmode: str = "verify-full") -> str:
    """A password login as alice with `host` checked against the certificate; the TLS version."""
    inst = emu.instance(iid)
    with psycopg.connect(
        host=host, hostaddr=inst.host, port=inst.port, dbname="postgres", user="alice",
        password=PASSWORD, sslmode=sslmode, sslrootcert=str(rootcert), connect_timeout=10,
    ) as conn:  # fmt: skip
        row = conn.execute("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        return str(row.fetchone()[0])  # type: ignore[index]


def _refused(emu: Emulator, iid: str, host: str, rootcert: Path, sslmode: str) -> str:
    with pytest.raises(psycopg.OperationalError) as exc:
        _login(emu, iid, host, rootcert, sslmode)
    return str(exc.value)


def test_postgres_serves_the_custom_certificate_on_every_connection_string(
    pg: Emulator, server_ca: KeyPair, tmp_path: Path
) -> None:
    client, iid = make_client(pg), pg.instance_ids[0]
    internal, public = _names(pg, iid)
    cert, cert_pem, key_pem, _ = _custom(server_ca, [internal, public])
    modify(
        client, iid, internal, sslenabled=1, catype="custom",
        server_cert=cert_pem, server_key=key_pem,
    )  # fmt: skip
    assert wait_applied(client, iid).last_modify_status == "success"
    assert _served(pg, iid) == cert
    rootcert = tmp_path / "server-ca.crt"
    rootcert.write_bytes(server_ca.cert_pem)
    assert _login(pg, iid, internal, rootcert) == "TLSv1.2"
    assert _login(pg, iid, public, rootcert) == "TLSv1.2"
    cloud_root = tmp_path / "cloud-ca.crt"
    cloud_root.write_bytes(pg.server_ca_pem)
    assert "certificate verify failed" in _refused(pg, iid, internal, cloud_root, "verify-ca")


def test_a_cloud_certificate_fails_verify_full_on_the_other_connection_string(
    pg: Emulator, tmp_path: Path
) -> None:
    client, iid = make_client(pg), pg.instance_ids[0]
    internal, public = _names(pg, iid)
    rootcert = tmp_path / "cloud-ca.crt"
    rootcert.write_bytes(pg.server_ca_pem)
    assert _login(pg, iid, internal, rootcert)
    assert "does not match host name" in _refused(pg, iid, public, rootcert, "verify-full")
    assert _login(pg, iid, public, rootcert, "verify-ca")  # the chain itself is fine

    modify(client, iid, public, sslenabled=1, catype="aliyun")  # move SSL to the public one
    wait_applied(client, iid)
    assert (
        _served(pg, iid).public_bytes(serialization.Encoding.PEM).decode()
        == ssl_of(client, iid).server_cert
    )
    assert _login(pg, iid, public, rootcert)
    assert "does not match host name" in _refused(pg, iid, internal, rootcert, "verify-full")


def test_postgres_follows_ssl_off_and_on(pg: Emulator, tmp_path: Path) -> None:
    client, iid = make_client(pg), pg.instance_ids[0]
    internal = pg.instance(iid).connection_string
    rootcert = tmp_path / "cloud-ca.crt"
    rootcert.write_bytes(pg.server_ca_pem)
    modify(client, iid, internal, sslenabled=0)
    wait_applied(client, iid)
    assert "server does not support SSL" in _refused(pg, iid, internal, rootcert, "require")
    modify(client, iid, internal, sslenabled=1, catype="aliyun")
    wait_applied(client, iid)
    assert _login(pg, iid, internal, rootcert)
    assert pg.restarts(iid) == 2
