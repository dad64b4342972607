"""uvicorn's connection protocols with the limits a public-facing server needs, and JSON refusals.

uvicorn (httptools + websockets sans-I/O) leaves four things open that the headless server must
not: a request head of any size (a 256 MB header was parsed before the token check), a
connection that never finishes its head (slowloris: nothing times it out until the first
response), a client that stops reading (a send waits for the socket to drain, forever), and
refusals in text/plain or without a word (HTTP parser errors; a WebSocket frame over the
protocol's size limit). These subclasses close them at the connection, before any route runs:

    HTTP, per connection:
      head (request line + headers) over max_header_bytes        -> 431 {"error": ...}, closed
      head not complete header_timeout_s after the connection
        opened or the previous reply was sent                    -> 408 {"error": ...}, closed
                                                                    (closed silently if no byte came)
      bytes that are not HTTP/1.1                                -> 400 {"error": ...}, closed
      reply not drained for send_stall_s (client stopped reading) -> connection aborted
    WebSocket, per connection:
      outgoing data not drained for send_stall_s                 -> connection aborted
      frame over the protocol limit, broken framing, bad UTF-8   -> {"type": "error", ...}, then the close
                                                                    (the rest is read and dropped for 3 s)

"Not drained" is measured by the transport's flow control: it pauses writing above its high-water
mark (64 kB buffered in the process, after the kernel's buffers are full) and resumes when the
peer has read enough. A slow reader keeps resuming; only one that reads nothing at all for the
whole interval is cut. Aborting (not closing) matters: close() waits for the buffer to drain,
which is exactly what never happens.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode

HEAD_END = b"\r\n\r\n"
PARSER_FAILURE_LINGER_S = 3.0  # reading (and discarding) after a WebSocket protocol error, before the close


def _json_response(status: int, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return b"".join([STATUS_LINE[status], b"content-type: application/json\r\n",
                     b"content-length: ", str(len(body)).encode(), b"\r\n", b"connection: close\r\n\r\n", body])


class _OneShot:
    """At most one pending ``loop.call_later``, forgotten when it fires or is cancelled.

    The send-stall watch and the request-head clock both need exactly this; one home keeps
    ``pending`` true exactly while a call is waiting, for both.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.handle: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        return self.handle is not None

    def start(self, delay_s: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` after ``delay_s``; a call still pending is cancelled first."""
        self.cancel()
        self.handle = self.loop.call_later(delay_s, self._fire, callback)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _fire(self, callback: Callable[[], None]) -> None:
        self.handle = None
        callback()


class _StallWatch:
    """Aborts a transport whose writes stay paused for ``stall_s`` (the peer reads nothing)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stall_s: float):
        self.stall_s = stall_s
        self.timer = _OneShot(loop)
        self.transport: Any = None

    def paused(self, transport: Any) -> None:
        if not self.timer.pending:  # a second pause does not restart the clock
            self.transport = transport
            self.timer.start(self.stall_s, self._fire)

    def resumed(self) -> None:
        self.timer.cancel()

    def _fire(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # connection_lost follows: sends waiting on the buffer return


class _StallGuarded:
    """The flow-control hooks that feed a _StallWatch, for both protocol classes (mixed in first,
    so these run around uvicorn's own hooks). ``connection_made`` must call ``_watch_stalls``."""

    send_stall_s = 60.0

    def _watch_stalls(self) -> None:
        self._stall = _StallWatch(self.loop, self.send_stall_s)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stall.paused(self.transport)

    def resume_writing(self) -> None:
        self._stall.resumed()
        super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stall.resumed()
        super().connection_lost(exc)


class LimitedHttpProtocol(_StallGuarded, HttpToolsProtocol):
    max_header_bytes = 16 * 1024
    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_stalls()
        self._head_timer = _OneShot(self.loop)
        self._start_head()

    # -- the request head: size and time ------------------------------------------------------
    def _start_head(self) -> None:
        """A new request head may start now: count its bytes and give it header_timeout_s."""
        self._in_head, self._head_bytes, self._head_tail = True, 0, b""
        self._head_timer.start(self.header_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        if self.transport.is_closing() or not self._in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a (pipelined) request is being answered; the head clock restarts after its reply
        if self._head_bytes == 0:
            self.transport.close()  # an idle connection: nothing was asked, nothing to answer
            return
        self._refuse(408, f"The request headers did not arrive within {self.header_timeout_s:g} s; "
                          "send the whole request head at once.")

    def _refuse(self, status: int, message: str) -> None:
        self._in_head = False
        self._head_timer.cancel()
        if not self.transport.is_closing():
            self.transport.write(_json_response(status, message))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            seen = self._head_tail + data
            end = seen.find(HEAD_END)
            self._head_bytes += (len(data) if end < 0 else end + len(HEAD_END) - len(self._head_tail))
            self._head_tail = seen[-(len(HEAD_END) - 1):]
            if self._head_bytes > self.max_header_bytes:
                self._refuse(431, f"The request line and headers exceed this server's limit of "
                                  f"{self.max_header_bytes // 1024} kB; send shorter headers.")
                return
        if self.transport.is_closing():
            return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_timer.cancel()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._start_head()  # the keep-alive's next request, if any, has header_timeout_s too

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "The request is not valid HTTP/1.1; check the client (the API is described at /docs).")

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_timer.cancel()
        super().connection_lost(exc)  # _StallGuarded's: the stall watch stops too


class LimitedWebSocketProtocol(_StallGuarded, WebSocketsSansIOProtocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._watch_stalls()
        self._parser_failed = False

    def handle_parser_exception(self) -> None:
        # websockets has already queued its close frame; the reason goes first, as JSON text, the
        # way every other refusal of the stream arrives. Then the rest of what the peer sends is
        # read and discarded for a moment (uvicorn closes at once): a client still sending the
        # oversized message would otherwise meet a reset and never read why.
        if self._parser_failed:
            return  # later data: websockets discards it
        self._parser_failed = True
        sent = self.conn.close_sent
        code = sent.code if sent is not None else 1002
        if code in (1002, 1007, 1009):
            if code == 1009:
                message = (f"A message larger than {self.config.ws_max_size} bytes is more than this server accepts; "
                           "send frames of at most max_frame_samples samples (see the ready message).")
            elif code == 1007:
                message = "A text message is not valid UTF-8; send the JSON messages as UTF-8 text."
            else:
                message = "The WebSocket framing is broken; check the client, the session was closed."
            text = json.dumps({"type": "error", "error": message}).encode()
            self.transport.write(Frame(Opcode.TEXT, text).serialize(mask=False))
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": sent.reason if sent else ""})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if self.close_timer is None:
            self.close_timer = self.loop.call_later(PARSER_FAILURE_LINGER_S, self.transport.close)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            # A refused handshake answered with a body (ASGI websocket.http.response) is complete;
            # without this uvicorn logs "returned without completing handshake" for every refusal.
            self.handshake_complete = True


def protocol_classes(max_header_bytes: int, header_timeout_s: float, http_send_stall_s: float,
                     ws_send_stall_s: float) -> tuple[type, type]:
    """The HTTP and WebSocket protocol classes for uvicorn.Config(http=..., ws=...) with these limits."""
    http = type("AutoVoiceHttpProtocol", (LimitedHttpProtocol,), {
        "max_header_bytes": int(max_header_bytes), "header_timeout_s": float(header_timeout_s),
        "send_stall_s": float(http_send_stall_s)})
    ws = type("AutoVoiceWebSocketProtocol", (LimitedWebSocketProtocol,), {"send_stall_s": float(ws_send_stall_s)})
    return http, ws
