"""Service errors in the API's own language: a code, an HTTP status and the service's message.

The models never speak HTTP; they raise `EmulatorError` and `http.py` renders the envelope.
The catalogue keeps the (code, status, message) triples from docs/aliyun-rds-ssl-api.md §4
in one place, so a code cannot drift to a second spelling or status somewhere else.
"""

from __future__ import annotations

__all__ = ["CATALOGUE", "EmulatorError", "api_error"]

# code -> (HTTP status, the service's message)
CATALOGUE: dict[str, tuple[int, str]] = {
    # gateway: signature, version, action
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "SignatureDoesNotMatch": (400, "Specified signature is not matched with our calculation."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "InvalidAction.NotFound": (
        404,
        "Specified api is not found, please check your url and method.",
    ),
    "InvalidVersion": (404, "Specified parameter Version is not valid."),
    # transient (fault injection)
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "InternalError": (
        500,
        "The request processing has failed due to some unknown error, exception or failure.",
    ),
    # instance
    # 400 on the ModifyDBInstanceSSL reference (one older page says 404; a switch can say so)
    "InvalidDBInstanceId.NotFound": (400, "The specified instance is not found."),
    "IncorrectDBInstanceLockMode": (
        403,
        "Current DB instance lock mode does not support this operation.",
    ),
    # busy: three codes are documented for a Modify while the instance is busy (a switch)
    "IncorrectDBInstanceState": (403, "Current DB instance state does not support this operation."),
    "InvalideStatus.Format": (400, "The instance status does not support this operation."),
    "OperationDenied.DBInstanceStatus": (
        403,
        "The operation is not permitted due to status of instance.",
    ),
    "IncorrectDBInstanceType": (403, "Current DB instance type does not support this operation."),
    "IncorrectEngineVersion": (403, "Current engine version does not support this operation."),
    "InvalidConnectionString.NotFound": (404, "The specified connection string is not found."),
    # SSL parameters
    "InvalidCAType.NotFound": (400, "The specified CAType is not found."),
    "InvalidACL.NotFound": (400, "The specified ACL is not found."),
    "InvalidACL.Permission": (403, "The ACL can only be set when the client CA is enabled."),
    "InvalidClientCrl.Permission": (
        403,
        "The client CRL can only be set when the client CA is enabled.",
    ),
    "InvalidClientCACert": (400, "Specify client ca certificate is invalid."),
    "InvalidClientCrl": (400, "Specify client certificate revocation list is invalid."),
    "InvalidServerCertOrPrivateKey": (400, "Specify server certificate or private key is invalid."),
    "IncorrectDBSslStatus": (
        400,
        "Current DB instance SSL status does not support this operation.",
    ),
    # accounts
    "InvalidAccountName.Malformed": (400, "Specified account name is not valid."),
    "InvalidAccountName.Duplicate": (400, "Specified account name already exists."),
    "InvalidAccountPassword.Malformed": (400, "Specified account password is not valid."),
    # generic parameters
    "InvalidParameter": (400, "The specified parameter is not valid."),
}


class EmulatorError(Exception):
    """A service error: what the real API would answer, as (code, message, HTTP status)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def api_error(
    code: str,
    detail: str | None = None,
    *,
    status: int | None = None,
    fallback: str | None = None,
) -> EmulatorError:
    """The catalogued error for `code`; `detail` is appended to help people debug.

    `Missing<Param>` codes (MissingDBInstanceId, ...) are generated, as the service does.
    `status` overrides the catalogued HTTP status (a profile recorded another one); a code
    missing from the catalogue (recorded on a real account) needs a `fallback` message and is
    answered with HTTP 400 unless `status` says otherwise.
    """
    if code.startswith("Missing") and code not in CATALOGUE:
        param = code[len("Missing") :]
        default, message = 400, f"{param} is mandatory for this action."
    elif code not in CATALOGUE and fallback is not None:
        default, message = 400, fallback
    else:
        default, message = CATALOGUE[code]
    status = default if status is None else status
    if detail:
        message = f"{message.rstrip('.')}: {detail}"
    return EmulatorError(code, message, status)
