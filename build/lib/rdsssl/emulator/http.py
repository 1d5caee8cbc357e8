"""The RPC wire format on stdlib `http.server`, and the unsigned control routes.

API calls: POST (or GET) `/`; the action and version from the `x-acs-action` /
`x-acs-version` headers or the `Action` / `Version` parameters; parameters from the query
string and an urlencoded form body (the query wins on a conflict). The order of checks is
the gateway's: URL length (HTML 414), action and version, signature, injected faults,
then the action. Control routes live under `/_emulator/` and answer loopback clients only.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from rdsssl.emulator.actions import HANDLERS, ActionContext
from rdsssl.emulator.errors import EmulatorError, api_error
from rdsssl.emulator.faults import FAULT_KINDS, Fault, Faults
from rdsssl.emulator.instances import OffsetClock
from rdsssl.emulator.requestlog import LoggedRequest, RequestLog, redact
from rdsssl.emulator.signature import NonceCache, SignedRequest, verify
from rdsssl.emulator.state import EmulatorState

__all__ = ["API_VERSION", "EmulatorApp", "EmulatorHTTPServer", "Response"]

API_VERSION = "2014-08-15"
JSON_TYPE = "application/json;charset=utf-8"
CONTROL_PREFIX = "/_emulator/"
log = logging.getLogger("rdsssl.emulator.http")

_HTML = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>Tengine</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Response:
    """An HTTP answer, independent of the server that sends it."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: Mapping[str, str] = field(default_factory=dict)


def _html(status: int, reason: str) -> Response:
    body = _HTML.format(status=status, reason=reason).encode()
    return Response(status, body, "text/html")


def _json(status: int, doc: Any, request_id: str = "") -> Response:
    headers = {"x-acs-request-id": request_id} if request_id else {}
    return Response(status, json.dumps(doc).encode(), JSON_TYPE, headers)


def _error_body(err: EmulatorError, request_id: str) -> dict[str, str]:
    return {
        "RequestId": request_id,
        "HostId": "rds.aliyuncs.com",
        "Code": err.code,
        "Message": err.message,
        "Recommend": f"https://api.aliyun.com/troubleshoot?q={err.code}&product=Rds"
        f"&requestId={request_id}",
    }


def _params(query: str, body: bytes, content_type: str) -> dict[str, str]:
    params: dict[str, str] = {}
    if content_type.startswith("application/x-www-form-urlencoded") and body:
        params.update({k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()})
    params.update({k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()})
    return params


@dataclass
class EmulatorApp:
    """Routes requests to the actions and the control routes; owns the wire-level state."""

    state: EmulatorState
    faults: Faults
    keys: dict[str, str]
    server_ca_pem: bytes
    log: RequestLog = field(default_factory=RequestLog)
    nonces: NonceCache = field(default_factory=NonceCache)
    server_ca_url: str = ""
    on_reset: Callable[[], None] | None = None
    sleep: Callable[[float], None] = time.sleep

    # -- the API ---------------------------------------------------------------------------------

    def handle_api(
        self, method: str, target: str, headers: Mapping[str, list[str]], body: bytes
    ) -> Response:
        """Answer one API call and record it in the request log."""
        request_id = str(uuid.uuid4()).upper()
        path, _, query = target.partition("?")
        params = _params(query, body, (headers.get("content-type") or [""])[0])
        action = (headers.get("x-acs-action") or [params.get("Action", "")])[0]
        outcome, fault_kind, response = "ok", None, None
        try:
            if self.faults.url_limit is not None and len(target) > self.faults.url_limit:
                response, outcome = _html(414, "Request-URI Too Large"), "HTTP414"
                return response
            version = (headers.get("x-acs-version") or [params.get("Version", "")])[0]
            handler = HANDLERS.get(action)
            if handler is None:
                raise api_error("InvalidAction.NotFound", action or "no action given")
            if version != API_VERSION:
                raise api_error("InvalidVersion", f"{version!r}; this API is {API_VERSION}")
            verify(
                SignedRequest(method, path, query, headers, body),
                keys=self.keys,
                nonces=self.nonces,
            )
            fault = self.faults.draw(action)
            fault_kind = fault.kind if fault else None
            delay = self.faults.latency + (fault.latency if fault else 0.0)
            if delay > 0:
                self.sleep(delay)
            if fault and fault.kind != "latency" and not fault.after:
                response = self._fault_response(fault, request_id)
                return response
            ctx = ActionContext(self.state, self.faults.switches, self.server_ca_url)
            result = handler(ctx, params)
            if fault and fault.kind != "latency":
                response = self._fault_response(fault, request_id)
                return response
            response = _json(200, {"RequestId": request_id, **result}, request_id)
            return response
        except EmulatorError as e:
            response = _json(e.status, _error_body(e, request_id), request_id)
            return response
        except Exception:  # a bug here must still answer like the service: InternalError
            log.exception("%s failed", action)
            response = _json(500, _error_body(api_error("InternalError"), request_id), request_id)
            return response
        finally:
            if response is not None:
                if response.status >= 400:
                    outcome = self._outcome(response)
                self.log.append(
                    LoggedRequest(
                        time=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                        request_id=request_id,
                        action=action,
                        instance_id=params.get("DBInstanceId", ""),
                        params=redact(
                            {k: v for k, v in params.items() if k not in ("Action", "Version")}
                        ),
                        outcome=outcome,
                        status=response.status,
                        fault=fault_kind,
                    )
                )

    @staticmethod
    def _outcome(response: Response) -> str:
        if response.content_type == JSON_TYPE:
            return str(json.loads(response.body).get("Code", f"HTTP{response.status}"))
        return f"HTTP{response.status}"

    @staticmethod
    def _fault_response(fault: Fault, request_id: str) -> Response:
        status, code = FAULT_KINDS[fault.kind]
        if code is None:
            return _html(502, "Bad Gateway")
        err = api_error(code)
        resp = _json(status, _error_body(err, request_id), request_id)
        if fault.retry_after_ms:
            resp = Response(
                resp.status,
                resp.body,
                resp.content_type,
                {**resp.headers, "x-acs-retry-after": str(fault.retry_after_ms)},
            )
        return resp

    # -- control routes --------------------------------------------------------------------------

    def handle_control(self, method: str, target: str, body: bytes) -> Response:
        """The unsigned `/_emulator/...` routes (loopback only; checked by the handler)."""
        path = target.partition("?")[0][len(CONTROL_PREFIX) :].strip("/")
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            return _json(400, {"error": "the body is not JSON"})
        try:
            return self._control(method, path, doc)
        except (ValueError, TypeError, KeyError) as e:
            return _json(400, {"error": str(e)})
        except EmulatorError as e:
            return _json(e.status, {"error": e.message, "code": e.code})

    def _control(self, method: str, path: str, doc: Any) -> Response:
        if path == "server-ca.pem":
            return Response(200, self.server_ca_pem, "application/x-pem-file")
        if path == "requests":
            return _json(200, {"requests": [e.to_json() for e in self.log.entries()]})
        if path == "faults":
            if method == "POST":
                self.faults.configure(doc)
            return _json(200, self.faults.snapshot())
        if path == "clock":
            clock = self.state.clock
            if method == "POST":
                if not isinstance(clock, OffsetClock):
                    raise ValueError("this emulator's clock cannot be moved")
                clock.advance(float(doc.get("advance", 0)))
                self.state.tick()
            return _json(200, {"now": clock(), "offset": getattr(clock, "offset", 0.0)})
        if path == "instances":
            return _json(
                200, {"instances": [self._instance_json(i) for i in self.state.instance_ids]}
            )
        if path.startswith("instances/") and method == "POST":
            instance_id = path.split("/", 1)[1]
            unknown = sorted(set(doc) - {"LockMode", "LockReason", "SSLEnabled"})
            if unknown:
                raise ValueError(f"unknown keys: {', '.join(unknown)}")
            ssl_enabled = doc.get("SSLEnabled")
            if ssl_enabled is not None and ssl_enabled not in ("on", "off"):
                raise ValueError(f"SSLEnabled must be on or off, not {ssl_enabled!r}")
            if ssl_enabled is not None:  # first: a locked instance refuses it
                self.state.set_ssl_enabled(instance_id, ssl_enabled == "on")
            if "LockMode" in doc:
                self.state.set_lock_mode(
                    instance_id, str(doc["LockMode"]), str(doc.get("LockReason", ""))
                )
            return _json(200, self._instance_json(instance_id))
        if path == "reset" and method == "POST":
            if self.on_reset:
                self.on_reset()
            return _json(200, {"reset": True})
        return _json(404, {"error": f"no control route {method} /_emulator/{path}"})

    def _instance_json(self, instance_id: str) -> dict[str, Any]:
        inst = self.state.get(instance_id)
        return {
            "DBInstanceId": inst.id,
            "host": inst.host,
            "port": inst.port,
            "ConnectionString": inst.connection_string,
            "EngineVersion": inst.engine_version,
            "DBInstanceStatus": inst.status,
            "LockMode": inst.lock_mode,
            "SSLEnabled": "on" if inst.ssl.enabled else "off",
            "LastModifyStatus": inst.last_modify_status,
            "restarts": inst.restarts,
            "reloads": inst.reloads,
            "tags": inst.tags,
        }


class _Handler(BaseHTTPRequestHandler):
    server: EmulatorHTTPServer
    server_version = "rdsssl-emulator"
    sys_version = ""
    # Keep-alive, as the real gateway: the SDK reuses its connections, so a fleet run does not
    # pay a TCP handshake and a new server thread per call. Every answer carries a
    # Content-Length (HTTP/1.1 needs it); idle connections are closed after `timeout` seconds.
    protocol_version = "HTTP/1.1"
    timeout = 30

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        app = self.server.app
        if self.path.startswith(CONTROL_PREFIX):
            if self.client_address[0] not in ("127.0.0.1", "::1"):
                resp = _json(403, {"error": "control routes answer loopback clients only"})
            else:
                resp = app.handle_control(self.command, self.path, body)
        else:
            headers: dict[str, list[str]] = {}
            for name, value in self.headers.items():
                headers.setdefault(name.lower(), []).append(value)
            resp = app.handle_api(self.command, self.path, headers, body)
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(resp.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one `EmulatorApp`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: EmulatorApp) -> None:
        super().__init__(address, _Handler)
        self.app = app
