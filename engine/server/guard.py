"""The ASGI layer in front of every route: token, request metrics, and admission for conversions.

For POST /api/v1/convert, in this order and before a byte of the body is read:

    not multipart/form-data -> 415     Content-Length over the limit -> 413

then the body is counted as it arrives: past the limit -> 413 (a chunked upload without
Content-Length cannot slip through), not complete within upload_timeout_s -> 408. Only then,
in the route, is a conversion slot taken (every slot busy -> 429 with Retry-After, never a queue
that grows): a slow or stalled uploader holds its own connection, not a slot.

Who may ask at all, before any route (HTTP and WebSocket alike):

    no token (the server listens on loopback only):
        Host not a loopback name (localhost, *.localhost, 127.0.0.0/8, [::1], the bound name) -> 403
        Origin present and not this server itself (same host and port as Host)             -> 403
    token: everything under /api/ needs 'Authorization: Bearer <token>' -> 401 (WebSocket: 403);
        Host and Origin are not checked (a browser page cannot attach the header to a
        cross-site request or WebSocket, and a proxy or LAN name must work)

A web page in the user's browser, or one on a DNS-rebinding name that resolves to 127.0.0.1,
sends its own Host or Origin and so cannot drive a token-less server. Probes, /metrics and the
OpenAPI document stay open when a token is set (orchestrators and scrapers carry no token).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import threading
import time
from typing import Any

from starlette.exceptions import HTTPException

CONVERT_PATH = "/api/v1/convert"
PROTECTED_PREFIX = "/api/"


class Slots:
    """A non-blocking counting semaphore (asyncio.Semaphore would make callers wait; we answer 429)."""

    def __init__(self, n: int):
        self.n = n
        self._free = n
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self._free <= 0:
                return False
            self._free -= 1
            return True

    def release(self) -> None:
        with self._lock:
            self._free = min(self.n, self._free + 1)

    @property
    def in_use(self) -> int:
        return self.n - self._free


def _split_host(value: str) -> tuple[str, str]:
    """'Host' / authority -> (host name lowercased without brackets, port or '')."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else ""
    name, _, port = value.partition(":") if value.count(":") == 1 else (value, "", "")
    return name.rstrip("."), port


def host_is_local(host_header: str, bind_host: str | None = None) -> bool:
    """Whether a Host header names this machine's loopback: localhost (and *.localhost, which
    browsers resolve to loopback themselves), 127.0.0.0/8, ::1, or the name the server was bound to.
    A page on a DNS-rebinding name (evil.example -> 127.0.0.1) sends its own name, and is refused."""
    name, _ = _split_host(host_header)
    if name == "localhost" or name.endswith(".localhost") or (bind_host and name == bind_host.strip("[]").lower()):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def same_origin(origin: str, host_header: str | None) -> bool:
    """Whether a browser's Origin is this server itself (same host and port as the Host header)."""
    scheme, sep, authority = origin.strip().lower().partition("://")
    if not sep or scheme not in ("http", "https") or host_header is None:
        return False  # 'null' (sandboxed pages, file://), other schemes, or nothing to compare with
    o_name, o_port = _split_host(authority.split("/")[0])
    h_name, h_port = _split_host(host_header)
    default = "443" if scheme == "https" else "80"
    return o_name == h_name and (o_port or default) == (h_port or default)


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def _send_json(send: Any, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: Any, ctx: Any):
        self.app = app
        self.ctx = ctx
        self._token = ctx.config.token.encode() if ctx.config.token else None

    def _authorized(self, scope: dict) -> bool:
        if self._token is None or not scope["path"].startswith(PROTECTED_PREFIX):
            return True
        scheme, _, credentials = (_header(scope, b"authorization") or "").strip().partition(" ")
        # NB: compare_digest takes as long for a wrong token as for a right one of the same length.
        ok = hmac.compare_digest(credentials.strip().encode("latin-1"), self._token)
        return ok and scheme.lower() == "bearer"

    def _foreign(self, scope: dict) -> tuple[str, str] | None:
        """(metric reason, sentence) when a server without a token must not answer this request."""
        if self._token is not None:
            return None  # the token is the check; any Host (proxy, LAN name) and Origin may carry it
        hosts = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"]
        host = hosts[0] if hosts else None
        foreign = next((h for h in hosts if not host_is_local(h, self.ctx.config.host)), None)  # every copy counts
        if foreign is not None:
            return "foreign_host", (
                f"This server has no token, so it answers only requests addressed to localhost, 127.0.0.1 or [::1], "
                f"not to '{foreign[:80]}'; use one of those names, or start the server with a token.")
        origin = _header(scope, b"origin")
        if origin is not None and not same_origin(origin, host):
            return "foreign_origin", (
                f"Requests from the web page at '{origin[:80]}' are refused: this server has no token, so only its "
                "own pages and programs that send no Origin header may use it.")
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            foreign = self._foreign(scope)
            if foreign is not None:
                self.ctx.metrics.rejected.labels(foreign[0]).inc()
                await self._deny_websocket(scope, receive, send, foreign[1])
                return
            if not self._authorized(scope):
                self.ctx.metrics.rejected.labels("unauthorized").inc()
                await self._deny_websocket(scope, receive, send, "This WebSocket needs the header "
                                           "'Authorization: Bearer <token>' with the server's token.")
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        m = self.ctx.metrics
        method, path = scope["method"], scope["path"]
        route = path if path in self.ctx.route_paths else "other"  # bounded label values
        status = {"code": 500}
        t0 = time.perf_counter()

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            foreign = self._foreign(scope)
            if foreign is not None:
                m.rejected.labels(foreign[0]).inc()
                await _send_json(send_wrapper, 403, foreign[1])
                return
            if not self._authorized(scope):
                m.rejected.labels("unauthorized").inc()
                await _send_json(send_wrapper, 401, "This API needs the header 'Authorization: Bearer <token>' "
                                                    "with the server's token.", {"WWW-Authenticate": "Bearer"})
                return
            if path == CONVERT_PATH and method == "POST":
                await self._convert(scope, receive, send_wrapper)
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            m.requests.labels(method, route, str(status["code"])).inc()
            m.request_seconds.labels(method, route).observe(time.perf_counter() - t0)

    async def _deny_websocket(self, scope: dict, receive: Any, send: Any, message: str) -> None:
        # Refused before the handshake completes: 403 with the JSON sentence as its body (ASGI's
        # websocket.http.response, which uvicorn offers), else a close before accept, which the
        # server turns into a bare 403.
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            body = json.dumps({"error": message}).encode()
            await send({"type": "websocket.http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})

    async def _convert(self, scope: dict, receive: Any, send: Any) -> None:
        cfg, m = self.ctx.config, self.ctx.metrics
        ctype = (_header(scope, b"content-type") or "").lower()
        if not ctype.startswith("multipart/form-data"):
            m.rejected.labels("unsupported_media_type").inc()
            m.conversions.labels("unsupported_media_type").inc()
            shown = ctype.split(";")[0] or "no Content-Type"
            await _send_json(send, 415, f"POST {CONVERT_PATH} takes multipart/form-data with the audio in a 'file' "
                                        f"field, not {shown}.")
            return
        limit = cfg.max_upload_bytes
        too_large = (f"The upload is larger than this server's limit of {limit / 2**20:g} MB; "
                     "send a shorter or compressed file (FLAC, OGG, MP3).")
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await _send_json(send, 400, "The Content-Length header is not a number.")
                return
            if int(length) > limit:
                m.rejected.labels("too_large").inc()
                m.conversions.labels("too_large").inc()
                await _send_json(send, 413, too_large)
                return
        # NB: no conversion slot is taken here. The route takes one once the whole upload is in,
        # so clients that stall mid-upload cost only their own connection, never everyone's 429.
        await self.app(scope, self._counted(receive, limit, too_large), send)

    def _counted(self, receive: Any, limit: int, too_large: str) -> Any:
        cfg, m = self.ctx.config, self.ctx.metrics
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.upload_timeout_s
        state = {"bytes": 0, "done": False}

        async def counted_receive() -> dict:
            if state["done"]:
                return await receive()  # after the body: e.g. waiting for a disconnect
            try:
                message = await asyncio.wait_for(receive(), max(0.001, deadline - loop.time()))
            except asyncio.TimeoutError:
                m.rejected.labels("upload_timeout").inc()
                m.conversions.labels("upload_timeout").inc()
                # NB: raised inside the form parser; FastAPI passes HTTPException through to our handler.
                raise HTTPException(408, f"The upload did not complete within {cfg.upload_timeout_s:g} s; "
                                         "check the connection and send it again.") from None
            if message["type"] == "http.request":
                state["bytes"] += len(message.get("body", b""))
                if state["bytes"] > limit:
                    m.rejected.labels("too_large").inc()
                    m.conversions.labels("too_large").inc()
                    raise HTTPException(413, too_large)
                if not message.get("more_body", False):
                    state["done"] = True
            return message

        return counted_receive
