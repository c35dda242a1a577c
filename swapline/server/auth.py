"""The bearer token: checked on every route but ``/health`` whenever the server has one.

A client gives it as ``Authorization: Bearer <token>``, or as ``?token=<token>`` where it cannot
set a header (``EventSource``, a download link, the first page load). A page loaded with a good
``?token=`` also gets it as an HTTP-only, same-site cookie, so the page's own requests (scripts,
styles, API calls) need nothing more.
"""

from __future__ import annotations

import json
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "swapline_token"
OPEN_PATHS = frozenset({"/health"})


class TokenAuth:
    """ASGI middleware: 401 (one JSON line, ``WWW-Authenticate: Bearer``) without the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("TokenAuth needs a non-empty token")
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        how = self._given(scope)
        if how is None:
            await _unauthorized(scope, send)
            return
        if how != "query":
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _given(self, scope: Scope) -> str | None:
        """How a good token came (``"header"``, ``"query"``, ``"cookie"``), or None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and self._good(value.strip()):
            return "header"
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if any(self._good(v) for v in query.get("token", [])):
            return "query"
        if "cookie" in headers:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(headers["cookie"])
            except Exception:  # noqa: BLE001 - a malformed cookie header is just no token
                return None
            if COOKIE in jar and self._good(jar[COOKIE].value):
                return "cookie"
        return None

    def _good(self, value: str) -> bool:
        return bool(value) and secrets.compare_digest(value.encode(), self.token.encode())


async def _unauthorized(scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"detail": "a bearer token is required: 'Authorization: Bearer <token>' or ?token=<token>"})
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body.encode()})
