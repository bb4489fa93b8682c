"""The sandbox's HTTP side: a real server on loopback that answers like a Starweb shop's API v2.

Built on the standard library's ``ThreadingHTTPServer`` (not an ASGI server) because the
"dropped connection" fault must close the socket without sending a single byte.

Per API request, in this order: latency; the injected faults (on ``/token`` only ``echo_request_next``:
a client's token fetch is otherwise never the request a test meant to fail); bearer-token check (401
``invalid_token``); the per-client rate limit (``/token`` and refused requests do not count); routing
(501 for an operation of the spec the sandbox lacks); the handler; the listing faults. Every answer
carries a ``Date`` header (RFC 7231), which ``clock_skew_seconds`` can move.
Every API request is recorded (dropped ones with status 0). ``/_sandbox/*`` admin endpoints take
no latency, faults or auth and are not recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import logging
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from starmamut_devtools.sandbox import catalogue_api, orders_api
from starmamut_devtools.sandbox.demo_data import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, SEEDS
from starmamut_devtools.sandbox.errors import ApiError, bad_request, not_found
from starmamut_devtools.sandbox.router import ApiRequest, Router
from starmamut_devtools.sandbox.seeds import SandboxState
from starmamut_devtools.sandbox.spec_operations import SPEC_OPERATIONS
from starmamut_devtools.sandbox.validation import format_timestamp

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v2"
ADMIN_PREFIX = "/_sandbox"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_REDACTED = "<redacted>"
# The ``*_next`` fault counters in the order they are consumed (one fault per request), with the fault each gives.
_COUNTED_FAULTS = (
    ("drop_next", "drop"),
    ("fail_429_next", "429"),
    ("fail_500_next", "500"),
    ("fail_status_next", "status"),
    ("error_200_next", "error_200"),
    ("echo_request_next", "echo"),
)


@dataclass
class RecordedRequest:
    """One API request as received: path without ``/api/v2``, parsed body, the status answered.

    ``status`` is 0 for a request whose connection was dropped; ``body`` of ``/token`` has its
    ``client_secret`` redacted. ``content_type`` is the request's media type (for contract checks).
    """

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    client_id: str | None
    content_type: str | None = None


@dataclass
class Faults:
    """Knobs read on every request; tests and the admin endpoint change them while the server runs.

    The ``*_next`` counters apply to the next API requests other than ``/token``, one fault per
    request in the order drop, 429, 500, ``fail_status``, 200 with an error body, echo
    (``slow_next`` delays a request in addition). ``echo_request_next`` alone also applies to
    ``/token``: it answers 500 with the request (headers, raw body and parsed form) echoed, JSON
    encoded, into ``error_description``, as a careless server or proxy might, so tests can prove
    the client keeps secrets out of its errors and logs. With ``drop_after_write`` a dropped
    POST/PUT/PATCH/DELETE is carried out before the connection closes, like a response lost after
    the shop committed the write.

    Listing faults act on every paged listing (one with ``meta.pagination``): ``empty_page``
    answers that page number with ``data: []``, ``listing_short_by`` leaves that many items off
    the last page; ``meta`` is left as the shop computed it. ``clock_skew_seconds`` moves the
    ``Date`` header of every answer, like a shop whose clock is off.
    """

    latency_ms: float = 0
    rate_limit_per_minute: int | None = None
    fail_429_next: int = 0
    fail_500_next: int = 0
    drop_next: int = 0
    slow_next: int = 0
    slow_ms: float = 5000
    token_ttl_seconds: int = 3600
    drop_after_write: bool = False
    rate_limit_window_seconds: float = 60.0
    fail_status_next: int = 0
    fail_status: int = 503
    error_200_next: int = 0
    echo_request_next: int = 0
    empty_page: int | None = None
    listing_short_by: int = 0
    clock_skew_seconds: float = 0

    def update(self, settings: Any) -> None:
        """Set the given fields after checking every one (nothing is set if one is wrong)."""
        if not isinstance(settings, dict):
            raise bad_request("faults: expected a JSON object of Faults fields")
        known = {field.name for field in dataclasses.fields(self)}
        for name, value in settings.items():
            if name not in known:
                raise bad_request(f"faults: unknown field {name!r}; known: {', '.join(sorted(known))}")
            _check_fault_value(name, value)
        for name, value in settings.items():
            setattr(self, name, value)


def _check_fault_value(name: str, value: Any) -> None:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_number = is_int or isinstance(value, float)
    if name == "drop_after_write":
        valid = isinstance(value, bool)
    elif name == "rate_limit_per_minute":
        valid = value is None or (is_int and value >= 1)
    elif name in ("latency_ms", "slow_ms", "rate_limit_window_seconds"):
        valid = is_number and value >= 0
    elif name == "fail_status":
        valid = is_int and value in _ERROR_STATUSES
    elif name == "empty_page":
        valid = value is None or (is_int and value >= 1)
    elif name == "clock_skew_seconds":
        valid = is_number
    else:
        valid = is_int and value >= 0
    if not valid:
        raise bad_request(f"faults.{name}: invalid value {value!r}")


@dataclass(frozen=True)
class _Outcome:
    status: int
    body: Any = None
    drop: bool = False


_INJECTED_OUTCOMES: dict[str, _Outcome] = {
    "drop": _Outcome(0, drop=True),
    "429": _Outcome(
        429,
        {
            "error": "Too Many Requests",
            "error_description": "Too many requests (fault injected by the sandbox)",
        },
    ),
    "500": _Outcome(
        500,
        {
            "error": "server_error",
            "error_description": "Internal server error (fault injected by the sandbox)",
        },
    ),
    "error_200": _Outcome(
        200,
        {
            "error": "server_error",
            "error_description": "Internal server error, answered with HTTP 200 (fault injected by the sandbox)",
        },
    ),
}
_ERROR_STATUSES = frozenset(status.value for status in HTTPStatus if status >= 400)


@dataclass(frozen=True)
class _Token:
    client_id: str
    expires_at: float


def build_router() -> Router:
    """All API routes; a new resource module adds its ``register`` call here."""
    router = Router(SPEC_OPERATIONS)
    catalogue_api.register(router)
    orders_api.register(router)
    return router


class Sandbox:
    """A running sandbox shop. Use :func:`start_sandbox`; stop it with :meth:`stop` or ``with``."""

    def __init__(self, host: str, port: int, seed: str, *, per_page: int, faults: Faults) -> None:
        self.state = SandboxState(seed, per_page=per_page)
        self.faults = faults
        self.requests: list[RecordedRequest] = []
        self.client_id = DEMO_CLIENT_ID
        self.client_secret = DEMO_CLIENT_SECRET
        self._initial_faults = dataclasses.replace(faults)
        self._clients = {DEMO_CLIENT_ID: DEMO_CLIENT_SECRET}
        self._tokens: dict[str, _Token] = {}
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._router = build_router()
        self._server = _SandboxHTTPServer((host, port), self)
        bound_host, bound_port = self._server.server_address[:2]
        self.base_url = f"http://{bound_host}:{bound_port}{API_PREFIX}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="starweb-sandbox",
            daemon=True,
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"Sandbox(base_url={self.base_url!r}, client_id={self.client_id!r}, seed={self.state.seed!r})"

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def admin_url(self) -> str:
        """Base of the ``/_sandbox`` admin endpoints on this server."""
        return self.base_url.removesuffix(API_PREFIX) + ADMIN_PREFIX

    def stop(self) -> None:
        """Stop serving and close open keep-alive connections; idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.close_all_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def add_client(self, client_id: str, client_secret: str) -> None:
        """Accept another API user (its own rate-limit window), e.g. for multi-shop tests."""
        with self._lock:
            self._clients[client_id] = client_secret

    def expire_tokens(self) -> None:
        """Every token issued so far becomes invalid now: the next call with one gets 401 invalid_token."""
        with self._lock:
            self._tokens.clear()

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def write_requests(self) -> list[RecordedRequest]:
        """Recorded POST/PUT/PATCH/DELETE requests, leaving out ``/token``."""
        with self._lock:
            return [r for r in self.requests if r.method in WRITE_METHODS and r.path != "/token"]

    def reset(self, seed: str | None = None) -> None:
        """Reseed the shop (default: the current seed), restore the start-up faults, forget requests."""
        seed = self.state.seed if seed is None else seed
        if seed not in SEEDS:
            raise bad_request(f"seed: {seed!r} is not one of {', '.join(SEEDS)}")
        self.state.reset(seed)
        with self._lock:
            self.faults.update(asdict(self._initial_faults))
            self.requests.clear()
            self._hits.clear()

    # ------------------------------------------------------------------ API requests

    def handle_api(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        content_type: str | None,
        raw_body: bytes,
        headers: Message,
    ) -> _Outcome:
        """Answer one request under ``/api/v2`` (``path`` without the prefix)."""
        if self.faults.latency_ms > 0:
            time.sleep(self.faults.latency_ms / 1000)
        is_token = path == "/token"
        body, body_error = _parse_body(content_type, raw_body)
        fault = self._take_fault(method, is_token)
        client_id: str | None = None
        injected = self._injected_outcome(fault, method, path, headers, raw_body, body)
        if injected is not None:
            outcome = injected
        else:
            try:
                if is_token:
                    client_id = body.get("client_id") if isinstance(body, dict) else None
                    outcome = self._issue_token(method, content_type, body)
                else:
                    client_id = self._authenticate(headers.get("Authorization"))
                    self._count_against_rate_limit(client_id)
                    outcome = self._route(method, path, query, body, body_error, client_id)
            except ApiError as error:
                outcome = _Outcome(error.status, error.body())
            except Exception:
                logger.exception("sandbox handler for %s %s failed", method, path)
                outcome = _Outcome(500, {"error": "server_error", "error_description": "Internal sandbox error"})
            if fault == "drop_after_write":
                outcome = _Outcome(0, drop=True)
        recorded_body = _redact_secret(body) if is_token else body
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    method,
                    path,
                    dict(query),
                    recorded_body,
                    outcome.status,
                    client_id,
                    _media_type(content_type) if raw_body else None,
                )
            )
        return outcome

    def _route(
        self, method: str, path: str, query: dict[str, str], body: Any, body_error: str | None, client_id: str
    ) -> _Outcome:
        handler, params = self._router.resolve(method, path)
        if body_error is not None:
            raise bad_request(body_error)
        if method in ("POST", "PUT", "PATCH") and body is None:
            raise bad_request("request body: a JSON object is required")
        response = handler(self.state, ApiRequest(method, path, params, query, body, client_id))
        return _Outcome(response.status, self._apply_listing_faults(response.body))

    def _apply_listing_faults(self, body: Any) -> Any:
        """``empty_page`` and ``listing_short_by`` on a paged listing; any other body is returned as it is."""
        pagination = body.get("meta", {}).get("pagination") if isinstance(body, dict) else None
        if pagination is None:
            return body
        with self._lock:
            empty_page, short_by = self.faults.empty_page, self.faults.listing_short_by
        items = body["data"]
        if pagination["current_page"] == empty_page:
            items = []
        elif short_by and pagination["current_page"] >= pagination["total_pages"]:
            items = items[: max(0, len(items) - short_by)]
        return {**body, "data": items}

    def _injected_outcome(
        self, fault: str | None, method: str, path: str, headers: Message, raw_body: bytes, body: Any
    ) -> _Outcome | None:
        """The answer an injected fault gives instead of the handler's; None when the handler answers."""
        if fault in _INJECTED_OUTCOMES:
            return _INJECTED_OUTCOMES[fault]
        if fault == "status":
            status = HTTPStatus(self.faults.fail_status)
            error = status.phrase.lower().replace(" ", "_")
            description = f"{status.phrase} (fault injected by the sandbox)"
            return _Outcome(status.value, {"error": error, "error_description": description})
        if fault == "echo":
            request = {
                "method": method,
                "path": API_PREFIX + path,
                "headers": dict(headers.items()),
                "body": raw_body.decode("utf-8", errors="replace"),
                "parsed_body": body,
            }
            description = "Internal server error (fault injected by the sandbox); request: " + json.dumps(request)
            return _Outcome(500, {"error": "server_error", "error_description": description})
        return None

    def _take_fault(self, method: str, is_token: bool) -> str | None:
        """Consume one injected fault for this request, if any are pending (and sleep for slow_next)."""
        with self._lock:
            faults = self.faults
            if is_token:
                if faults.echo_request_next == 0:
                    return None
                faults.echo_request_next -= 1
                return "echo"
            slow_seconds = 0.0
            if faults.slow_next > 0:
                faults.slow_next -= 1
                slow_seconds = faults.slow_ms / 1000
            fault = None
            for counter, name in _COUNTED_FAULTS:
                if getattr(faults, counter) > 0:
                    setattr(faults, counter, getattr(faults, counter) - 1)
                    fault = name
                    break
            if fault == "drop" and faults.drop_after_write and method in WRITE_METHODS:
                fault = "drop_after_write"
        if slow_seconds:
            time.sleep(slow_seconds)
        return fault

    def _issue_token(self, method: str, content_type: str | None, body: Any) -> _Outcome:
        if method != "POST":
            raise ApiError(405, "method_not_allowed", f"{method} is not allowed on /token")
        if _media_type(content_type) != _FORM_CONTENT_TYPE or not isinstance(body, dict):
            raise ApiError(400, "invalid_request", f"send the client credentials as {_FORM_CONTENT_TYPE}")
        if body.get("grant_type") != "client_credentials":
            raise ApiError(400, "unsupported_grant_type", "only grant_type=client_credentials is allowed")
        client_id, client_secret = body.get("client_id", ""), body.get("client_secret", "")
        with self._lock:
            expected = self._clients.get(client_id)
            if expected is None or not hmac.compare_digest(expected.encode(), client_secret.encode()):
                raise ApiError(400, "invalid_client", "Client authentication failed")
            now = time.monotonic()
            for token in [token for token, entry in self._tokens.items() if entry.expires_at <= now]:
                del self._tokens[token]
            ttl = self.faults.token_ttl_seconds
            access_token = secrets.token_urlsafe(32)
            self._tokens[access_token] = _Token(client_id, now + ttl)
        return _Outcome(200, {"access_token": access_token, "scope": "", "expires_in": ttl})

    def _authenticate(self, authorization: str | None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "invalid_token", "A bearer access token is required")
        with self._lock:
            entry = self._tokens.get(token.strip())
        if entry is None or entry.expires_at <= time.monotonic():
            raise ApiError(401, "invalid_token", "The access token is invalid or has expired")
        return entry.client_id

    def _count_against_rate_limit(self, client_id: str) -> None:
        """Sliding window per API user; an over-limit request is refused and not counted."""
        with self._lock:
            limit = self.faults.rate_limit_per_minute
            if limit is None:
                return
            now = time.monotonic()
            window = self._hits.setdefault(client_id, deque())
            while window and window[0] <= now - self.faults.rate_limit_window_seconds:
                window.popleft()
            if len(window) >= limit:
                raise ApiError(429, "Too Many Requests", f"Rate limit of {limit} requests per minute exceeded")
            window.append(now)

    # ------------------------------------------------------------------ admin

    def handle_admin(self, method: str, path: str, content_type: str | None, raw_body: bytes) -> _Outcome:
        """``/_sandbox/*``: health, faults, reset, the request log and the order status-change log."""
        try:
            body, body_error = _parse_body(content_type, raw_body)
            if body_error is not None:
                raise bad_request(body_error)
            action = (method, path.removeprefix(ADMIN_PREFIX))
            if action == ("GET", "/health"):
                return _Outcome(
                    200, {"status": "ok", "seed": self.state.seed, "products": len(self.state.product_ids())}
                )
            if action == ("GET", "/faults"):
                return _Outcome(200, asdict(self.faults))
            if action == ("POST", "/faults"):
                with self._lock:
                    self.faults.update(body if body is not None else {})
                    return _Outcome(200, asdict(self.faults))
            if action == ("POST", "/reset"):
                if body is not None and not isinstance(body, dict):
                    raise bad_request('reset: expected a JSON object such as {"seed": "demo"}')
                self.reset((body or {}).get("seed"))
                return _Outcome(200, {"seed": self.state.seed})
            if action == ("GET", "/requests"):
                with self._lock:
                    return _Outcome(200, {"data": [asdict(recorded) for recorded in self.requests]})
            if action == ("DELETE", "/requests"):
                self.reset_requests()
                return _Outcome(204)
            if action == ("GET", "/status-changes"):
                changes = [
                    {**asdict(change), "at": format_timestamp(change.at)} for change in self.state.status_changes
                ]
                return _Outcome(200, {"data": changes})
            raise not_found(f"no admin endpoint {method} {path}")
        except ApiError as error:
            return _Outcome(error.status, error.body())


def _media_type(content_type: str | None) -> str | None:
    return None if content_type is None else content_type.split(";")[0].strip().lower()


def _parse_body(content_type: str | None, raw_body: bytes) -> tuple[Any, str | None]:
    """The body as JSON (or a form dict); on failure the raw text and the reason for a 400."""
    if not raw_body:
        return None, None
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError:
        return raw_body.decode("utf-8", errors="replace"), "request body: not valid UTF-8"
    media_type = _media_type(content_type)
    if media_type == _FORM_CONTENT_TYPE:
        return {name: values[-1] for name, values in parse_qs(text, keep_blank_values=True).items()}, None
    if media_type != "application/json":
        return text, f"request body: Content-Type must be application/json, got {content_type!r}"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as error:
        return text, f"request body: not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"


def _redact_secret(body: Any) -> Any:
    if isinstance(body, dict) and "client_secret" in body:
        return {**body, "client_secret": _REDACTED}
    return body


class _SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-response is routine here (timeouts, fault tests): log, don't print."""
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_all_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; without TCP_NODELAY, Nagle's algorithm and the client's
    # delayed ACK add ~40 ms to every small response on loopback, which would swamp any latency setting.
    disable_nagle_algorithm = True
    server_version = "StarwebSandbox/1.0"
    timeout = 60
    server: _SandboxHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.track(self.connection, open_=False)
        super().finish()

    def do_GET(self) -> None:  # noqa: N802 - the name BaseHTTPRequestHandler dispatches to
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        logger.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = {name: values[-1] for name, values in parse_qs(split.query, keep_blank_values=True).items()}
        raw_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = self.headers.get("Content-Type")
        sandbox = self.server.sandbox
        if path.startswith(ADMIN_PREFIX + "/"):
            outcome = sandbox.handle_admin(self.command, path, content_type, raw_body)
        elif path.startswith(API_PREFIX + "/"):
            outcome = sandbox.handle_api(
                self.command,
                path.removeprefix(API_PREFIX),
                query,
                content_type,
                raw_body,
                self.headers,
            )
        else:
            outcome = _Outcome(404, not_found(f"no resource at {path}; the API is under {API_PREFIX}").body())
        if outcome.drop:
            self._drop_connection()
        else:
            self._send(outcome.status, outcome.body)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header (RFC 7231), moved by ``faults.clock_skew_seconds`` to play a shop with a wrong clock."""
        moment = time.time() if timestamp is None else timestamp
        return super().date_time_string(moment + self.server.sandbox.faults.clock_skew_seconds)

    def _drop_connection(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, status: int, body: Any) -> None:
        payload = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        if status != 204:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def start_sandbox(
    host: str = "127.0.0.1",
    port: int = 0,
    seed: str = "demo",
    *,
    per_page: int = 100,
    token_ttl_seconds: int = 3600,
    rate_limit_per_minute: int | None = None,
    latency_ms: float = 0.0,
) -> Sandbox:
    """Start a sandbox shop on a background thread; returns once it is listening (port 0: any free port)."""
    faults = Faults(
        latency_ms=latency_ms,
        rate_limit_per_minute=rate_limit_per_minute,
        token_ttl_seconds=token_ttl_seconds,
    )
    return Sandbox(host, port, seed, per_page=per_page, faults=faults)
