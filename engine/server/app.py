"""Headless mode: probes, metrics and the conversion API over the same Engine and health module as the GUI.

Routes stay thin. Probes answer 200 or 503 from a bool computed by engine.health.snapshot (live =
the worker's heartbeat; ready = a voice loaded and warmed up, its conversion pipeline checked, and
with --live the device stream running). Conversions and streams go through engine.api, which runs the
same streaming Pipeline as the live worker. Everything in front of the routes (token, limits,
admission, request metrics) sits in guard.py.

    autovoice serve [--host 127.0.0.1] [--port 5000] [--token T | AUTOVOICE_TOKEN=T] [--live ...]
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from fastapi import FastAPI, File, Form, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine import __version__
from engine.api import MAX_SAMPLE_RATE
from engine.errors import AutoVoiceError, ConfigError, VoiceError, VoiceNotFound
from engine.health.snapshot import is_live, readiness
from engine.server import jsontext
from engine.server.config import ServerConfig, bind_socket, check_bind, resolve_token, token_warning
from engine.server.convert import RequestFailed, convert_upload, download_name, part_type_ok
from engine.server.guard import CONVERT_PATH, Guard, Slots
from engine.server.metrics import CONTENT_TYPE, Metrics
from engine.server.stream import run_session
from engine.server.system import system_status

log = logging.getLogger(__name__)

NOT_IMPLEMENTED = ("voice_cloner",)
STREAM_PATH = "/api/v1/stream"

DESCRIPTION = f"""AutoVoice converts voices: uploaded files over HTTP, and PCM streams over a WebSocket.

**Probes** (always open, also when a token is set): `/health/live` (200 while the process and the
engine's worker are alive), `/health/ready` (200 once a voice is loaded and warmed up, and with
`--live` while the device stream runs), `/health` (details), `/metrics` (Prometheus).

**Token**: when the server has one, everything under `/api/` needs `Authorization: Bearer <token>`
(401 without it; the WebSocket handshake is refused with 403). **Without a token** the server
listens on loopback only and answers only requests addressed to a loopback name (`Host`) that come
from no web page or from its own (`Origin`); anything else is 403.

**Limits**: request line and headers at most 16 kB (431) and complete within `--header-timeout-s`
(408); a truncated audio file is 422 in every format; float audio above full scale is scaled down
to it (`X-AutoVoice-Input-Gain-dB`).

**WebSocket `{STREAM_PATH}`** (not an OpenAPI operation): send a JSON text message
`{{"sample_rate": 48000, "channels": 1, "dtype": "float32", "voice": "deeper", "transpose": 2}}`
(dtype `float32` or `int16`, little-endian, 1 or 2 interleaved channels); the server answers
`{{"type": "ready", "latency_samples": L, "max_frame_samples": M, ...}}`. Then send binary frames
of at most M samples and receive converted frames in the same format: output sample i is input
sample i converted, L samples later. Send `{{"type": "end"}}` to receive the last L samples and
`{{"type": "end", "samples_in": n, "samples_out": n}}`. Errors arrive as
`{{"type": "error", "error": "..."}}` before the close (1003 bad format, 1008 idle, 1009 frame too
large, 1011 failure, 1013 too many sessions). The server stops reading while its small queue is
full (backpressure), so a fast client's sends block instead of the server buffering.
"""


# ---------------------------------------------------------------------- documented bodies
class ErrorBody(BaseModel):
    error: str


class LiveBody(BaseModel):
    status: Literal["alive", "dead"]
    heartbeat_age_s: float


class ReadyBody(BaseModel):
    status: Literal["ready", "not_ready"]
    components: dict[str, bool]
    missing: list[str]
    last_error: str | None


class HealthComponents(BaseModel):
    gpu_available: bool
    model_loaded: bool
    api: bool
    synthesizer: bool
    voice_cloner: bool
    singing_conversion_pipeline: bool
    worker: bool
    live_stream: bool


class VoiceDevice(BaseModel):
    device: str | None
    requested: str | None
    fallback_reason: str | None
    parts: dict[str, str]


class GpuDevice(BaseModel):
    index: int
    name: str
    memory_total_bytes: int
    memory_used_bytes: int
    memory_allocated_bytes: int
    memory_reserved_bytes: int


class GpuInfo(BaseModel):
    available: bool
    device_count: int
    name: str | None
    cuda_version: str | None
    torch_version: str | None
    reason: str | None
    devices: list[GpuDevice]


class SystemInfo(BaseModel):
    memory_percent: float
    cpu_percent: float
    process_rss_bytes: int
    gpu: GpuInfo


class HealthBody(BaseModel):
    status: Literal["healthy", "degraded"]
    version: str
    voice: str | None
    uptime_s: float
    components: HealthComponents
    not_implemented: list[str]
    last_error: str | None
    voice_device: VoiceDevice | None
    system: SystemInfo


class ParamBody(BaseModel):
    name: str
    label: str
    default: float | str
    minimum: float | None
    maximum: float | None
    step: float | None
    unit: str
    choices: list[str]
    help: str


class VoiceBody(BaseModel):
    name: str
    kind: str
    description: str
    loaded: bool
    params: list[ParamBody]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    what = {
        400: "Malformed request.", 401: "Missing or wrong bearer token (only when the server has a token).",
        404: "Unknown voice.", 408: "The upload did not arrive in time.", 413: "Upload or audio too long.",
        415: "Not multipart/form-data, or the file is not decodable audio.",
        422: "A parameter is out of range or of the wrong type, or the audio is unusable.",
        429: "Every conversion slot is busy; retry after Retry-After seconds.",
        503: "Not ready, or the conversion timed out.",
    }
    return {code: {"model": ErrorBody, "description": what[code]} for code in codes}


# ---------------------------------------------------------------------- shared state
class ServerContext:
    def __init__(self, engine: Any, config: ServerConfig):
        self.engine = engine
        self.config = config
        self.slots = Slots(config.max_conversions)
        self.convert_executor = ThreadPoolExecutor(config.max_conversions, thread_name_prefix="autovoice-convert")
        self.stream_executor = ThreadPoolExecutor(config.max_streams, thread_name_prefix="autovoice-stream")
        self.metrics = Metrics(engine, self.is_ready)
        self.cancels: set[threading.Event] = set()  # of conversions running now; NB: event loop only
        self.stream_sessions = 0  # NB: touched only on the event loop
        self.stream_queue_high_water = 0
        self.route_paths: set[str] = set()

    def readiness(self) -> dict[str, bool]:
        s = self.engine.snapshot()
        checks = readiness(s, self.config.require_stream)
        # The engine warms every voice up through the same Pipeline conversions and streams use, and
        # checks what comes out, before it calls the voice loaded (Engine._warm_up).
        checks["synthesizer"] = s.warmed_up
        return checks

    def is_ready(self) -> bool:
        return all(self.readiness().values())

    def close(self) -> None:
        for cancel in list(self.cancels):
            cancel.set()
        for ex in (self.convert_executor, self.stream_executor):
            ex.shutdown(wait=False, cancel_futures=True)


def _voice_device(d: dict[str, Any]) -> dict[str, Any] | None:
    """Where the loaded voice runs, part by part, for /health (None before a voice is loaded)."""
    if not d:
        return None
    return {"device": d.get("device"), "requested": d.get("requested"),
            "fallback_reason": d.get("fallback_reason") or None, "parts": dict(d.get("parts") or {})}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_sentence(exc: RequestValidationError) -> str:
    errs = exc.errors()
    if not errs:
        return "The request is not valid."
    e = errs[0]
    loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header")]
    field = loc[0] if loc else "request"
    if e.get("type") == "missing":
        if field == "file":
            return "The form field 'file' is required; send the audio as the multipart field 'file'."
        return f"The form field '{field}' is required."
    msg = str(e.get("msg", "is invalid"))
    got = e.get("input")
    shown = f" (got {got!r})" if isinstance(got, (str, int, float)) and len(repr(got)) < 60 else ""
    return f"The form field '{field}' is invalid: {msg[:1].lower() + msg[1:]}{shown}."


# ---------------------------------------------------------------------- the app
def create_app(engine: Any, config: ServerConfig | None = None, job_limits: Any = None) -> FastAPI:
    """The ASGI app over ``engine`` (an engine.api.Engine; the caller owns and closes it)."""
    config = (config or ServerConfig()).validated()
    ctx = ServerContext(engine, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        import psutil

        psutil.cpu_percent(interval=None)  # prime: the next call reports usage since now

        async def tick() -> None:
            while True:
                try:
                    ctx.metrics.sync_live_blocks()
                except Exception:  # noqa: BLE001 - telemetry must never stop the server
                    log.exception("server housekeeping failed")
                await asyncio.sleep(0.5)

        task = asyncio.create_task(tick())
        try:
            yield
        finally:
            task.cancel()
            ctx.close()

    app = FastAPI(title="AutoVoice", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.ctx = ctx

    # -- errors: always {"error": "one sentence"} ---------------------------------------------
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"There is no {request.url.path} on this server; see /docs for the API."
        elif exc.status_code == 405:
            message = f"{request.url.path} does not accept {request.method}; see /docs for the API."
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        return _error(422, _validation_sentence(exc))

    @app.exception_handler(Exception)
    async def server_error(request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, f"The server failed while answering ({type(exc).__name__}); it keeps running, "
                           "please report this with the server log.")

    # -- probes --------------------------------------------------------------------------------
    @app.get("/health/live", response_model=LiveBody, tags=["probes"],
             responses={503: {"model": LiveBody, "description": "The engine's worker is not beating."}})
    async def live():
        s = engine.snapshot()
        ok = is_live(s)
        return JSONResponse({"status": "alive" if ok else "dead", "heartbeat_age_s": round(s.worker_heartbeat_age_s, 3)},
                            status_code=200 if ok else 503)

    @app.get("/health/ready", response_model=ReadyBody, tags=["probes"],
             responses={503: {"model": ReadyBody, "description": "Not ready; 'missing' names what is missing."}})
    async def ready():
        checks = ctx.readiness()
        missing = [k for k, v in checks.items() if not v]
        s = engine.snapshot()
        last_error = s.last_error
        body = {"status": "not_ready" if missing else "ready", "components": checks, "missing": missing,
                "last_error": last_error}
        return JSONResponse(body, status_code=503 if missing else 200)

    @app.get("/health", response_model=HealthBody, tags=["probes"])
    async def health():
        s = engine.snapshot()
        checks = ctx.readiness()
        accel = engine.accelerator()
        components = {
            "gpu_available": bool(accel.get("available")),
            "model_loaded": s.voice_loaded,
            "api": True,
            "synthesizer": checks["synthesizer"],
            # Voice cloning does not exist in AutoVoice yet, so it cannot run on any install.
            "voice_cloner": False,
            # Song covers (separate, convert, mix): the stereo separator needs no download.
            "singing_conversion_pipeline": any(sep["available"] for sep in engine.separators()),
            "worker": is_live(s),
            "live_stream": s.running,
        }
        return {
            "status": "healthy" if all(checks.values()) else "degraded",
            "version": __version__,
            "voice": s.voice_name,
            "uptime_s": round(s.uptime_s, 3),
            "components": components,
            "not_implemented": list(NOT_IMPLEMENTED),
            "last_error": s.last_error,
            "voice_device": _voice_device(engine.voice_device()),
            "system": system_status(accel),
        }

    @app.get("/metrics", tags=["probes"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text exposition; every name starts with autovoice_ "
                                             "(plus the standard process_* metrics)."}})
    async def metrics():
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)

    # -- API -----------------------------------------------------------------------------------
    @app.get("/api/v1/voices", response_model=list[VoiceBody], tags=["api"], responses=_errors(401))
    async def voices():
        loaded = engine.voice_name
        return [{"name": v.name, "kind": v.kind, "description": v.description, "loaded": v.name == loaded,
                 "params": [{**p.__dict__, "choices": list(p.choices)} for p in v.params]}
                for v in engine.list_voices()]

    @app.post(
        CONVERT_PATH, tags=["api"], response_class=Response,
        summary="Convert an audio file with a voice",
        description="The reply is a WAV (24-bit) with the upload's sample rate, length and channel count. "
                    "Fields left out take the voice's saved settings, as `autovoice convert` does. A truncated "
                    "file (any format) is refused with 422; a float file whose samples go above full scale is "
                    "scaled down to full scale first, and `X-AutoVoice-Input-Gain-dB` says by how much.",
        responses={200: {"content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}},
                         "description": "The converted audio."},
                   **_errors(400, 401, 404, 408, 413, 415, 422, 429, 503)},
    )
    async def convert(
        file: UploadFile = File(..., description="The audio: WAV, FLAC, OGG or MP3, any rate 8-192 kHz, mono or stereo."),
        voice: str | None = Form(None, description="Voice name (GET /api/v1/voices); default: the server's voice."),
        transpose: float | None = Form(None, description="Pitch change in semitones (-24..24 for the built-in voices)."),
        formant: float | None = Form(None, description="Formant shift in semitones (-12..12 for the built-in voices)."),
        params: str | None = Form(None, description='Other voice settings as a JSON object, e.g. {"index_rate": 0.5}.'),
    ):
        m = ctx.metrics
        try:
            if not part_type_ok(file.content_type):
                raise RequestFailed(415, f"The 'file' part has type {file.content_type}; send audio "
                                         "(audio/wav, audio/flac, audio/ogg, audio/mpeg or application/octet-stream).",
                                    outcome="unsupported_media_type")
            overrides: dict[str, Any] = {}
            if params:
                try:
                    overrides = jsontext.loads(params, "The form field 'params'", '{"index_rate": 0.5}')
                except jsontext.JsonRefused as exc:
                    raise RequestFailed(422, str(exc)) from None
                if not isinstance(overrides, dict):
                    raise RequestFailed(422, 'The form field \'params\' must be a JSON object, e.g. {"index_rate": 0.5}.')
            # The form's names; the voice's own specs resolve them (transpose -> transpose_st, ...).
            if transpose is not None:
                overrides["transpose"] = transpose
            if formant is not None:
                overrides["formant"] = formant
            try:
                info, values = engine.params_for(voice, overrides)
            except VoiceNotFound as exc:
                raise RequestFailed(404, str(exc)) from None
            except (VoiceError, ConfigError) as exc:
                raise RequestFailed(422, str(exc)) from None
        except RequestFailed as exc:
            m.conversions.labels(exc.outcome).inc()
            return _error(exc.status, exc.message, exc.headers)

        # The upload is complete here (the form is parsed): only now is a slot taken, so stalled
        # uploads never keep others out. It is freed when the work really ends (see below).
        if not ctx.slots.try_acquire():
            m.rejected.labels("busy").inc()
            m.conversions.labels("busy").inc()
            return _error(429, f"The server is already converting {ctx.slots.n} file(s), its limit; retry in a moment.",
                          {"Retry-After": "1"})
        cancel = threading.Event()

        def job():
            m.conversions_in_flight.inc()
            try:
                return convert_upload(file.file, file.filename, engine, info, values, config.max_audio_s, cancel)
            finally:
                m.conversions_in_flight.dec()

        try:
            fut = ctx.convert_executor.submit(job)
        except RuntimeError:  # the executor is shut down: the server is stopping
            ctx.slots.release()
            return _error(503, "The server is shutting down; send the file again once it is back.")
        # Released when the thread finishes (or the job is cancelled before it starts), not when the
        # reply is sent: a timed-out conversion keeps its slot until it has really stopped, and a
        # client slow to read the reply does not hold one.
        fut.add_done_callback(lambda _f: ctx.slots.release())
        ctx.cancels.add(cancel)
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(fut), config.convert_timeout_s)
        except asyncio.TimeoutError:
            m.conversions.labels("timeout").inc()
            return _error(503, f"The conversion did not finish within {config.convert_timeout_s:g} s, this server's "
                               "limit; send a shorter file or retry when the server is less busy.", {"Retry-After": "5"})
        except RequestFailed as exc:
            m.conversions.labels(exc.outcome).inc()
            return _error(exc.status, exc.message, exc.headers)
        except AutoVoiceError as exc:  # the voice could not be loaded (damaged model, missing extras)
            m.conversions.labels("error").inc()
            return _error(503, str(exc))
        finally:
            # Timed out, or the server is shutting down (this coroutine cancelled): stop the work too.
            # convert_signal checks the event every second of audio, so the thread is soon free.
            if not fut.done():
                fut.cancel()  # still queued: never starts (its upload is about to be closed)
                cancel.set()  # running: stops at its next check
            ctx.cancels.discard(cancel)
        m.conversions.labels("ok").inc()
        m.conversion_seconds.observe(result.elapsed_s)
        m.converted_audio_seconds.labels("file").inc(result.duration_s)
        return Response(result.wav, media_type="audio/wav", headers={
            "Content-Disposition": f'attachment; filename="{download_name(file.filename, info.name)}"',
            "X-AutoVoice-Voice": info.name,
            "X-AutoVoice-Duration-Seconds": f"{result.duration_s:.6f}",
            "X-AutoVoice-Compute-Seconds": f"{result.elapsed_s:.3f}",
            # 0.0, or how far a float upload above full scale was scaled down before conversion
            "X-AutoVoice-Input-Gain-dB": f"{result.input_gain_db:.1f}",
        })

    @app.websocket(STREAM_PATH)
    async def stream(websocket: WebSocket):
        await run_session(websocket, ctx)

    from engine.server.jobs import add_job_routes  # song jobs (issue 9), routes in their own file

    add_job_routes(app, ctx, job_limits)
    ctx.route_paths = {getattr(r, "path", "") for r in app.routes}

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            if config.token:
                schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearerAuth"] = {
                    "type": "http", "scheme": "bearer"}
                for path, ops in schema["paths"].items():
                    if path.startswith("/api/"):
                        for op in ops.values():
                            op["security"] = [{"bearerAuth": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    app.add_middleware(Guard, ctx=ctx)
    return app


# ---------------------------------------------------------------------- `autovoice serve`
def config_from_args(args: Any) -> tuple[ServerConfig, str, int]:
    token = resolve_token(getattr(args, "token", None))
    host, port = args.host, int(args.port)
    check_bind(host, token)
    defaults = ServerConfig()
    mb = getattr(args, "max_upload_mb", None)
    config = ServerConfig(
        token=token,
        host=host,
        require_stream=bool(getattr(args, "live", False)),
        max_upload_bytes=int(mb * 1024 * 1024) if mb is not None else defaults.max_upload_bytes,
        max_audio_s=_arg(args, "max_audio_s", defaults.max_audio_s),
        max_conversions=_arg(args, "max_conversions", defaults.max_conversions),
        convert_timeout_s=_arg(args, "convert_timeout_s", defaults.convert_timeout_s),
        upload_timeout_s=_arg(args, "upload_timeout_s", defaults.upload_timeout_s),
        # One transfer limit both ways: a reply the client reads nothing of for as long is dropped.
        reply_stall_timeout_s=_arg(args, "upload_timeout_s", defaults.reply_stall_timeout_s),
        max_streams=_arg(args, "max_streams", defaults.max_streams),
        stream_idle_timeout_s=_arg(args, "stream_idle_timeout_s", defaults.stream_idle_timeout_s),
        header_timeout_s=_arg(args, "header_timeout_s", defaults.header_timeout_s),
    ).validated()
    return config, host, port


def _arg(args: Any, name: str, default: Any) -> Any:
    value = getattr(args, name, None)
    return default if value is None else value


def serve(args: Any) -> int:
    import uvicorn

    from engine.api import Engine
    from engine.server.protocols import protocol_classes

    config, host, port = config_from_args(args)  # refuses unsafe settings before anything starts
    weak = token_warning(config.token)
    if weak:
        print(f"warning: {weak}", file=sys.stderr, flush=True)
    sock = bind_socket(host, port)
    # Headless runs never change saved settings: the voice, devices and values given here (and in
    # requests) are for this run only, as with `autovoice convert`.
    engine = Engine(load_default_voice=False, autosave=False)
    try:
        if engine.settings_warning:
            print(f"warning: {engine.settings_warning}", file=sys.stderr)
        if getattr(args, "device", None):
            engine.set_compute_device(args.device)
        loading = engine.load_voice(args.voice or engine.settings.voice)  # an unknown name fails here, at once
        if config.require_stream:
            loading.result()  # the device stream needs the voice
            audio = {k: v for k, v in (("sample_rate", getattr(args, "samplerate", None)),
                                        ("block_ms", getattr(args, "block_ms", None)),
                                        ("prefill_ms", getattr(args, "prefill_ms", None))) if v is not None}
            engine.start(args.input, args.output, args.monitor, **audio)
        from engine.server.jobs import job_limits_from_args

        app = create_app(engine, config, job_limits=job_limits_from_args(args))
        bound = sock.getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        print(f"AutoVoice {__version__} listening on http://{shown}:{bound[1]} "
              f"({'API token required' if config.token else 'no token: local use only'}"
              f"{', live stream on' if config.require_stream else ''}); Ctrl-C stops.", file=sys.stderr, flush=True)
        # No permessage-deflate: PCM hardly compresses, so it would only cost CPU on the stream path.
        # The protocols add what uvicorn leaves open: head size and time, stalled readers, JSON refusals.
        http_protocol, ws_protocol = protocol_classes(config.max_header_bytes, config.header_timeout_s,
                                                      config.reply_stall_timeout_s, config.stream_idle_timeout_s)
        server = uvicorn.Server(uvicorn.Config(
            app, http=http_protocol, ws=ws_protocol, log_level=getattr(args, "log_level", None) or "warning",
            access_log=(getattr(args, "log_level", None) in ("debug", "info")),
            ws_max_size=_ws_max_size(config), ws_max_queue=4, ws_per_message_deflate=False,
            timeout_graceful_shutdown=5, server_header=False,
        ))
        # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to whatever
        # handler was there before it; with this one that is a no-op, so the engine (and a device
        # stream) is closed below instead of the process dying mid-cleanup.
        caught: list[int] = []
        main = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.signal(sig, lambda s, _f: caught.append(s))
                    for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            server.run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0
    finally:
        sock.close()
        engine.close()


def _ws_max_size(config: ServerConfig) -> int:
    # The largest frame the stream accepts (2 channels of float32 at the highest rate), plus slack:
    # anything bigger is refused by the protocol layer before it is buffered.
    return int(config.stream_max_frame_s * MAX_SAMPLE_RATE * 2 * 4) + 4096
