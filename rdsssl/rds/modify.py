"""What one ModifyDBInstanceSSL sends: DBInstanceId, ConnectionString and only the fields the
`SslModifyRequest` sets. SSLEnabled / CAType / ServerCert / ServerKey are sent only when the
request sets them (the server-side commands); a client-CA / CRL / ACL change never does, because
re-sending them may renew the cloud server certificate that clients pin
(docs/aliyun-rds-ssl-api.md §1.3).
Pure (no SDK): `rdsssl.rds.api` passes these keyword arguments to the SDK's request model.
"""

from __future__ import annotations

from typing import Any

from rdsssl.models import SslModifyRequest

__all__ = ["modify_ssl_params"]


def modify_ssl_params(request: SslModifyRequest) -> dict[str, Any]:
    """The SDK's ModifyDBInstanceSSLRequest keyword arguments for ``request``."""
    params: dict[str, Any] = {
        "dbinstance_id": request.instance_id,
        "connection_string": request.connection_string,
    }
    if request.ssl_enabled is not None:
        params["sslenabled"] = int(request.ssl_enabled)
    if request.ca_type is not None:
        params["catype"] = request.ca_type
    if request.server_cert_pem is not None:
        params["server_cert"] = request.server_cert_pem
    if request.server_key_pem is not None:
        params["server_key"] = request.server_key_pem
    if request.client_ca_enabled is not None:
        params["client_caenabled"] = int(request.client_ca_enabled)
    if request.client_ca_pem is not None:
        params["client_cacert"] = request.client_ca_pem
    if request.crl_enabled is not None:
        params["client_crl_enabled"] = int(request.crl_enabled)
    if request.crl_pem is not None:
        params["client_cert_revocation_list"] = request.crl_pem
    if request.acl is not None:
        params["acl"] = request.acl.value
    if request.replication_acl is not None:
        params["replication_acl"] = request.replication_acl.value
    return params
