"""Song jobs over HTTP: thin routes over engine.jobs.JobManager (the queue, its SQLite store, the work).

    POST   /api/v1/jobs                    multipart: file + options  -> 202 {"id", "state", ...}, Location
    GET    /api/v1/jobs                    every kept job
    GET    /api/v1/jobs/{id}               state, stage, progress (0..1 over all stages), eta_s, error, note
    GET    /api/v1/jobs/{id}/result        the cover (same format, rate, length and channels as the song)
    GET    /api/v1/jobs/{id}/stems/{name}  vocals | converted_vocals | accompaniment (with stems=true)
    DELETE /api/v1/jobs/{id}               cancels a queued or running job; deletes a finished one

Errors are {"error": "one sentence"}: 404 unknown job/voice/stem, 409 result not ready yet, 410 the
job ended without one, 411 no Content-Length, 413 upload over the limit, 415 not multipart or not
audio, 422 a bad option, 429 too many jobs or too much kept on disk.

Included from engine/server/app.py with one call, :func:`add_job_routes`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import soundfile as sf
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from starlette.concurrency import run_in_threadpool

from engine.errors import AutoVoiceError, ConfigError, VoiceError
from engine.api import JOB_STATES as STATES, JobError, JobLimits, JobManager

JOBS_PATH = "/api/v1/jobs"
STAGE_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _JobGauges:
    """Jobs by state and the disk they use, read from the store at scrape time."""

    def __init__(self, manager: JobManager):
        self.manager = manager

    def collect(self):
        g = GaugeMetricFamily("autovoice_song_jobs", "Song jobs kept by the server, by state", labels=["state"])
        try:
            counts = self.manager.counts()
        except Exception:  # noqa: BLE001 - a closed store during shutdown
            counts = {}
        for state in STATES:
            g.add_metric([state], counts.get(state, 0))
        yield g
        d = GaugeMetricFamily("autovoice_song_jobs_disk_bytes", "Disk used by kept jobs (inputs, results, stems)")
        try:
            d.add_metric([], self.manager.disk_bytes())
        except OSError:
            d.add_metric([], 0)
        yield d


def _float_field(form: Any, name: str, default: float) -> float:
    raw = form.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"The form field '{name}' must be a number, not {str(raw)[:40]!r}.") from None


def _options(form: Any, max_song_s: float):
    from engine.api import SongOptions

    separator = str(form.get("separator") or "auto")
    return SongOptions(transpose_st=_float_field(form, "transpose", 0.0), key_st=_float_field(form, "key", 0.0),
                       vocals_db=_float_field(form, "vocals_db", 0.0), accomp_db=_float_field(form, "accomp_db", 0.0),
                       separator=separator, max_duration_s=max_song_s).validated()


def add_job_routes(app: FastAPI, ctx: Any, limits: JobLimits | None = None) -> JobManager:
    """Add the job routes to ``app``; the manager stops with the server (``ctx.close``)."""
    m = ctx.metrics
    jobs_total = Counter("autovoice_song_jobs_finished", "Song jobs that ended, by outcome (done, failed, cancelled)",
                         ["outcome"], registry=m.registry)
    stage_seconds = Histogram("autovoice_song_job_stage_seconds", "Time per stage of a song job",
                              ["stage"], buckets=STAGE_BUCKETS, registry=m.registry)
    rejected = Counter("autovoice_song_jobs_rejected", "Song job submissions refused, by HTTP status", ["status"],
                       registry=m.registry)

    def finished(outcome: str, seconds: dict[str, float]) -> None:
        jobs_total.labels(outcome).inc()
        for stage, s in seconds.items():
            stage_seconds.labels(stage).observe(s)

    manager = JobManager(ctx.engine, limits=limits, on_finished=finished)
    m.registry.register(_JobGauges(manager))
    ctx.jobs = manager
    previous_close = ctx.close

    def close() -> None:
        manager.close()  # a running job goes back to the queue, to be resumed at the next start
        previous_close()

    ctx.close = close
    max_upload = int(manager.limits.max_upload_mb * 1e6)
    max_song_s = float(getattr(ctx.config, "max_audio_s", 1200.0))

    def refuse(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        rejected.labels(str(status)).inc()
        return _error(status, message, headers)

    @app.post(JOBS_PATH, tags=["jobs"], status_code=202,
              summary="Queue a song cover: separate the vocals, convert them with a voice, mix them back",
              description="multipart/form-data: `file` (the song: WAV, FLAC, OGG or MP3), and optionally `voice`, "
                          "`params` (JSON object of voice settings), `transpose` (vocals only, semitones), `key` "
                          "(whole song), `vocals_db`, `accomp_db`, `separator` (auto, htdemucs, stereo), `stems` "
                          "(true to keep the stems). Answers 202 with the job; poll its URL.",
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                  "type": "object", "required": ["file"], "properties": {
                      "file": {"type": "string", "format": "binary"}, "voice": {"type": "string"},
                      "params": {"type": "string", "description": "JSON object of voice settings"},
                      "transpose": {"type": "number"}, "key": {"type": "number"}, "vocals_db": {"type": "number"},
                      "accomp_db": {"type": "number"}, "separator": {"type": "string", "enum": ["auto", "htdemucs", "stereo"]},
                      "stems": {"type": "boolean"}}}}}},
                  "responses": {str(c): {"description": d} for c, d in (
                      (404, "Unknown voice."), (411, "No Content-Length."), (413, "Upload or song too long."),
                      (415, "Not multipart, or not audio."), (422, "A bad option."),
                      (429, "Too many jobs, or too much kept on disk."))}})
    async def submit(request: Request):
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            return refuse(415, f"POST {JOBS_PATH} takes multipart/form-data with the song in a 'file' field.")
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            return refuse(411, "Send the upload with a Content-Length header, so that it can be checked against "
                               "this server's limit before it is read.")
        if int(length) > max_upload:
            return refuse(413, f"The upload is {int(length) / 1e6:.0f} MB, over this server's {max_upload / 1e6:g} MB "
                               "limit for one song; send a compressed file (FLAC, OGG or MP3) or a shorter song.")
        form = await request.form(max_files=1, max_fields=20)
        try:
            upload = form.get("file")
            if upload is None or not hasattr(upload, "read"):
                return refuse(422, "The form field 'file' is required; send the song as the multipart field 'file'.")
            try:
                options = _options(form, max_song_s)
                params = json.loads(form.get("params") or "{}")
                if not isinstance(params, dict):
                    raise ValueError
            except ConfigError as exc:
                return refuse(422, str(exc))
            except ValueError:
                return refuse(422, 'The form field \'params\' must be a JSON object, e.g. {"index_rate": 0.5}.')
            stems = str(form.get("stems") or "").strip().lower() in ("1", "true", "yes", "on")
            name = Path(upload.filename or "song.wav").name
            fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=Path(name).suffix, dir=manager.folder)
            with os.fdopen(fd, "wb") as fh:
                while chunk := await upload.read(1 << 20):
                    fh.write(chunk)
        finally:
            await form.close()
        tmp_path = Path(tmp)
        try:
            try:
                info = sf.info(str(tmp_path))
            except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
                return refuse(415, f"'{name}' is not audio AutoVoice can decode; send WAV, FLAC, OGG or MP3.")
            if info.duration > max_song_s:
                return refuse(413, f"'{name}' is {info.duration / 60:.1f} minutes long, over this server's "
                                   f"{max_song_s / 60:g}-minute limit for one song.")
            try:
                job = await run_in_threadpool(manager.submit, tmp_path, name, form.get("voice") or None, params,
                                              options, stems)
            except JobError as exc:
                return refuse(exc.status, str(exc), {"Retry-After": "30"} if exc.status == 429 else None)
            except ConfigError as exc:
                return refuse(422, str(exc))
            except VoiceError as exc:
                return refuse(404 if "no voice" in str(exc).lower() or "unknown" in str(exc).lower() else 422, str(exc))
        finally:
            if tmp_path.exists():
                tmp_path.unlink()
        url = f"{JOBS_PATH}/{job['id']}"
        return JSONResponse({**job, "url": url}, status_code=202, headers={"Location": url})

    @app.get(JOBS_PATH, tags=["jobs"], summary="Every kept song job")
    async def list_jobs():
        return await run_in_threadpool(manager.list)

    @app.get(JOBS_PATH + "/{job_id}", tags=["jobs"], summary="A song job's state, stage and progress")
    async def get_job(job_id: str):
        try:
            return await run_in_threadpool(manager.get, job_id)
        except JobError as exc:
            return _error(exc.status, str(exc))

    @app.get(JOBS_PATH + "/{job_id}/result", tags=["jobs"], response_class=FileResponse,
             summary="The cover, once the job is done")
    async def get_result(job_id: str):
        try:
            path, download = await run_in_threadpool(manager.result_file, job_id)
        except JobError as exc:
            return _error(exc.status, str(exc))
        return FileResponse(path, filename=download)

    @app.get(JOBS_PATH + "/{job_id}/stems/{stem}", tags=["jobs"], response_class=FileResponse,
             summary="One stem of a done job submitted with stems=true")
    async def get_stem(job_id: str, stem: str):
        try:
            path, download = await run_in_threadpool(manager.result_file, job_id, stem)
        except JobError as exc:
            return _error(exc.status, str(exc))
        return FileResponse(path, filename=download, media_type="audio/wav")

    @app.delete(JOBS_PATH + "/{job_id}", tags=["jobs"], summary="Cancel a queued or running job; delete a finished one")
    async def delete_job(job_id: str):
        try:
            job = await run_in_threadpool(manager.cancel, job_id)
            if job["state"] == "running":
                job = await run_in_threadpool(manager.wait_cancelled, job_id, 30.0)
        except JobError as exc:
            return _error(exc.status, str(exc))
        except AutoVoiceError as exc:
            return _error(422, str(exc))
        return job

    return manager


def job_limits_from_args(args: Any) -> JobLimits:
    d = JobLimits()
    pick = lambda name, default: default if getattr(args, name, None) is None else getattr(args, name)  # noqa: E731
    return JobLimits(max_jobs=pick("max_jobs", d.max_jobs), max_results_mb=pick("max_results_mb", d.max_results_mb),
                     keep_results_h=pick("keep_results_h", d.keep_results_h),
                     max_upload_mb=pick("max_job_upload_mb", d.max_upload_mb)).validated()
