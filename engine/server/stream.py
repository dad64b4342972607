"""WebSocket /api/v1/stream: a client streams PCM, the same streaming Pipeline as live mode converts it.

Protocol (documented in README and in the OpenAPI description):

1. client -> text ``{"sample_rate": 48000, "channels": 1, "dtype": "float32", "voice": "deeper",
   "transpose": 2, "formant": 0, "params": {...}}`` (only sample_rate is required; dtype is
   "float32" or "int16", little-endian, channels 1 or 2 interleaved);
2. server -> text ``{"type": "ready", ..., "latency_samples": L, "max_frame_samples": M}``;
3. client -> binary frames (at most M samples per channel each); server -> binary frames in the same
   format. Output sample i is the converted input sample i: the server holds back L samples (the
   voice's look-ahead), so the first replies are shorter than the frames sent;
4. client -> text ``{"type": "end"}``; server -> the last L samples, then text
   ``{"type": "end", "samples_in": n, "samples_out": n}``, and closes (1000).

Errors come as text ``{"type": "error", "error": "one sentence"}`` followed by a close: 1003 bad
format, 1008 idle, 1009 frame too large, 1011 conversion failed, 1013 too many sessions.

Per session, at the client's rate ``sr_c`` and the voice's ``sr_v`` (as the live worker)::

    frame -> downmix -> HopBridge (resample sr_c -> sr_v, whole hops) -> Pipeline
          -> HopBridge (resample back) -> drop the first L samples -> every channel -> frame

Backpressure: frames wait in an ``asyncio.Queue`` of ``stream_queue_frames``; when it is full the
receiving coroutine stops reading the socket, so the client's sends block (TCP flow control)
instead of the server buffering without bound. Replies are sent with a timeout, and the
connection's protocol aborts a socket nobody reads (engine/server/protocols.py): a client that
stops reading is disconnected after ``stream_idle_timeout_s`` and its session freed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from engine.api import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from engine.errors import AutoVoiceError
from engine.server import jsontext

log = logging.getLogger(__name__)

DTYPES = {"float32": np.dtype("<f4"), "int16": np.dtype("<i2")}
OPENING_KEYS = ("sample_rate", "channels", "dtype", "voice", "transpose", "formant", "params")
OPENING_TIMEOUT_S = 10.0
FAIL_SEND_TIMEOUT_S = 2.0  # for the error message and the close, once a session has failed
_END = object()


@dataclass(frozen=True)
class StreamFormat:
    sample_rate: int
    channels: int
    dtype: str

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.np_dtype.itemsize

    def decode(self, data: bytes) -> np.ndarray:
        x = np.frombuffer(data, dtype=self.np_dtype).reshape(-1, self.channels)
        x = x.astype(np.float32) / 32768.0 if self.dtype == "int16" else x.astype(np.float32)
        if not np.all(np.isfinite(x)):
            x = np.where(np.isfinite(x), x, 0.0).astype(np.float32)
        return x[:, 0] if self.channels == 1 else x.mean(axis=1)

    def encode(self, y: np.ndarray) -> bytes:
        y = np.clip(y, -1.0, 1.0)
        if self.dtype == "int16":
            y = np.round(y * 32767.0)
        frames = np.repeat(y[:, None], self.channels, axis=1) if self.channels > 1 else y[:, None]
        return frames.astype(self.np_dtype).tobytes()


class SessionError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def parse_opening(text: str | None, engine: Any) -> tuple[StreamFormat, Any, dict[str, Any]]:
    """(format, voice info, params) from the opening message, or SessionError(1003) in one sentence."""
    if text is None:
        raise SessionError(1003, "The first message must be JSON text describing the audio, e.g. "
                                 '{"sample_rate": 48000, "channels": 1, "dtype": "float32"}.')
    try:
        msg = jsontext.loads(text, "The opening message", '{"sample_rate": 48000, "channels": 1, "dtype": "float32"}')
    except jsontext.JsonRefused as exc:
        raise SessionError(1003, str(exc)) from None
    if not isinstance(msg, dict):
        raise SessionError(1003, "The opening message must be a JSON object.")
    unknown = sorted(set(msg) - set(OPENING_KEYS))
    if unknown:
        raise SessionError(1003, f"The opening message has unknown field(s) {', '.join(unknown)}; "
                                 f"allowed: {', '.join(OPENING_KEYS)}.")
    rate, channels, dtype = msg.get("sample_rate"), msg.get("channels", 1), msg.get("dtype", "float32")
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise SessionError(1003, f"sample_rate must be a whole number of Hz between {MIN_SAMPLE_RATE} and "
                                 f"{MAX_SAMPLE_RATE}, not {rate!r}.")
    if isinstance(channels, bool) or channels not in (1, 2):
        raise SessionError(1003, f"channels must be 1 or 2, not {channels!r}.")
    if dtype not in DTYPES:
        raise SessionError(1003, f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}.")
    overrides = msg.get("params") or {}
    if not isinstance(overrides, dict):
        raise SessionError(1003, "params must be a JSON object of voice settings, e.g. {\"transpose_st\": 2}.")
    overrides = dict(overrides)
    for key in ("transpose", "formant"):  # the voice's specs resolve these names
        if msg.get(key) is not None:
            overrides[key] = msg[key]
    voice_name = msg.get("voice")
    if voice_name is not None and not isinstance(voice_name, str):
        raise SessionError(1003, f"voice must be a voice name (text), not {voice_name!r}.")
    try:
        info, params = engine.params_for(voice_name, overrides)
    except AutoVoiceError as exc:
        raise SessionError(1003, str(exc)) from None
    return StreamFormat(rate, int(channels), dtype), info, params


async def run_session(ws: WebSocket, ctx: Any) -> None:
    """Serve one WebSocket session (``ctx``: the app's ServerContext)."""
    cfg, m = ctx.config, ctx.metrics
    await ws.accept()
    if ctx.stream_sessions >= cfg.max_streams:
        m.stream_sessions_total.labels("refused").inc()
        await _fail(ws, SessionError(1013, f"This server already runs {cfg.max_streams} stream sessions, its limit; "
                                           "try again later."))
        return
    ctx.stream_sessions += 1
    m.stream_sessions.inc()
    outcome = "error"
    try:
        outcome = await _session(ws, ctx)
    except SessionError as exc:
        await _fail(ws, exc)
    except (WebSocketDisconnect, OSError):
        outcome = "ok"  # the client left; nothing to answer
    except Exception as exc:  # noqa: BLE001 - one session's bug must not take the server down
        log.exception("stream session failed")
        await _fail(ws, SessionError(1011, f"The conversion failed ({type(exc).__name__}: {exc}); the session was closed."))
    finally:
        ctx.stream_sessions -= 1
        m.stream_sessions.dec()
        m.stream_sessions_total.labels(outcome).inc()


async def _fail(ws: WebSocket, exc: SessionError) -> None:
    # Bounded: after a send timed out the socket is full, and an unbounded send here would hold the
    # session (and its slot) for as long as the client keeps the connection open without reading.
    # The connection itself is aborted by the protocol (engine/server/protocols.py).
    try:
        await asyncio.wait_for(ws.send_text(json.dumps({"type": "error", "error": exc.message})), FAIL_SEND_TIMEOUT_S)
        await asyncio.wait_for(ws.close(code=exc.code, reason=exc.message[:120]), FAIL_SEND_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - the client may be gone already, or not reading
        pass


async def _receive(ws: WebSocket, timeout_s: float, what: str) -> dict:
    try:
        msg = await asyncio.wait_for(ws.receive(), timeout_s)
    except asyncio.TimeoutError:
        raise SessionError(1008, f"No {what} arrived within {timeout_s:g} s; the session was closed.") from None
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    return msg


async def _session(ws: WebSocket, ctx: Any) -> str:
    cfg, m = ctx.config, ctx.metrics
    loop = asyncio.get_running_loop()
    opening = await _receive(ws, OPENING_TIMEOUT_S, "opening message")
    fmt, info, params = parse_opening(opening.get("text"), ctx.engine)
    conv = await loop.run_in_executor(ctx.stream_executor, ctx.engine.open_stream, info, params, fmt.sample_rate)
    max_frame = max(1, int(cfg.stream_max_frame_s * fmt.sample_rate))
    await ws.send_text(json.dumps({
        "type": "ready", "sample_rate": fmt.sample_rate, "channels": fmt.channels, "dtype": fmt.dtype,
        "byte_order": "little", "voice": info.name, "params": params, "latency_samples": conv.latency_samples,
        "max_frame_samples": max_frame, "queue_frames": cfg.stream_queue_frames,
    }))
    queue: asyncio.Queue = asyncio.Queue(maxsize=cfg.stream_queue_frames)

    async def send(data: bytes | str) -> None:
        try:
            if isinstance(data, str):
                await asyncio.wait_for(ws.send_text(data), cfg.stream_idle_timeout_s)
            else:
                await asyncio.wait_for(ws.send_bytes(data), cfg.stream_idle_timeout_s)
        except asyncio.TimeoutError:
            raise SessionError(1008, f"The client read nothing for {cfg.stream_idle_timeout_s:g} s; "
                                     "the session was closed.") from None

    async def receiver() -> None:
        while True:
            msg = await _receive(ws, cfg.stream_idle_timeout_s, "audio")
            data = msg.get("bytes")
            if data is not None:
                if len(data) % fmt.frame_bytes:
                    raise SessionError(1003, f"A frame of {len(data)} bytes is not a whole number of "
                                             f"{fmt.channels}-channel {fmt.dtype} samples ({fmt.frame_bytes} bytes each).")
                if len(data) // fmt.frame_bytes > max_frame:
                    raise SessionError(1009, f"A frame of {len(data) // fmt.frame_bytes} samples is longer than "
                                             f"the limit of {max_frame} ({cfg.stream_max_frame_s:g} s); send smaller frames.")
                m.stream_frames.labels("in").inc()
                await queue.put((time.perf_counter(), data))  # NB: waits while the queue is full: backpressure
                if queue.qsize() > ctx.stream_queue_high_water:
                    ctx.stream_queue_high_water = queue.qsize()
                    m.stream_queue_high_water.set(queue.qsize())
                continue
            try:
                kind = jsontext.loads(msg.get("text") or "", "The message", '{"type": "end"}').get("type")
            except (jsontext.JsonRefused, AttributeError):
                kind = None
            if kind != "end":
                raise SessionError(1003, 'After the opening, send binary audio frames, then {"type": "end"}.')
            await queue.put((time.perf_counter(), _END))
            return

    async def processor() -> None:
        compute = m.block_compute_seconds.labels("stream")
        while True:
            arrived, data = await queue.get()
            if data is _END:
                tail = await loop.run_in_executor(ctx.stream_executor, conv.flush)
                if len(tail):
                    await send(fmt.encode(tail))
                    m.stream_frames.labels("out").inc()
                m.converted_audio_seconds.labels("stream").inc(conv.samples_in / fmt.sample_rate)
                await send(json.dumps({"type": "end", "samples_in": conv.samples_in, "samples_out": conv.samples_out}))
                await ws.close(code=1000)
                return
            mono = fmt.decode(data)
            t0 = time.perf_counter()
            out = await loop.run_in_executor(ctx.stream_executor, conv.process, mono)
            compute.observe(time.perf_counter() - t0)
            if len(out):
                await send(fmt.encode(out))
                m.stream_frames.labels("out").inc()
                m.stream_frame_latency_seconds.observe(time.perf_counter() - arrived)

    recv_task = asyncio.create_task(receiver())
    proc_task = asyncio.create_task(processor())
    try:
        done, _ = await asyncio.wait({recv_task, proc_task}, return_when=asyncio.FIRST_COMPLETED)
        if recv_task in done and recv_task.exception() is None:
            await proc_task  # "end" was queued: the processor flushes, answers and closes
        for task in done:
            if task.exception() is not None:
                raise task.exception()
        if not proc_task.done():
            await proc_task
        return "ok"
    finally:
        for task in (recv_task, proc_task):
            if not task.done():
                task.cancel()
        await asyncio.gather(recv_task, proc_task, return_exceptions=True)
