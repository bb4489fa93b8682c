"""The Connections page's Test button, made to work for the ``starweb`` and ``mamut_odbc`` connection types.

Both types hide the port (it is part of the Starweb base URL or of the ODBC string), so a saved Connection has
no port. The Test button on the Connections list sends ``port: 0`` for such a row (Airflow 3.3's UI turns the
missing port into ``Number(null)``), and the API refuses the test: "The host or port to test differs from the
stored connection" (HTTP 400) — for every saved Connection of these types. Port 0 is never a real port, so this
middleware, registered by the Starmamut plugin as a root middleware of the API server, drops ``port: 0`` from a
test request of these two types before Airflow reads it; the request then tests the stored Connection as it is.
Every other request, and every other connection type, passes untouched.
"""

from __future__ import annotations

import json
from typing import Any

CONNECTION_TYPES = frozenset({"starweb", "mamut_odbc"})
TEST_PATH_SUFFIX = "/api/v2/connections/test"
MAX_BODY_BYTES = 1 << 20


def without_unset_port(body: bytes) -> bytes | None:
    """The test request's body without ``port: 0`` when it is one of our types; None when nothing changes."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("conn_type") not in CONNECTION_TYPES:
        return None
    if "port" not in payload or payload["port"] not in (0, "0"):
        return None
    del payload["port"]
    return json.dumps(payload).encode()


class ConnectionTestPortMiddleware:
    """Pure ASGI middleware: reads the body of ``POST …/api/v2/connections/test`` only, rewrites it if needed."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith(TEST_PATH_SUFFIX):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see that
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > MAX_BODY_BYTES:
                break
        body = b"".join(chunks)
        rewritten = without_unset_port(body) if not more else None
        if rewritten is None:
            await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": more}], receive), send)
            return
        headers = [(name, value) for name, value in scope["headers"] if name.lower() != b"content-length"]
        headers.append((b"content-length", str(len(rewritten)).encode()))
        await self.app(
            {**scope, "headers": headers},
            _replay([{"type": "http.request", "body": rewritten, "more_body": False}], receive),
            send,
        )


def _replay(messages: list[dict[str, Any]], then: Any) -> Any:
    """A ``receive`` that hands out ``messages`` first, then defers to the server's own ``then``."""
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        return await then()

    return receive
