"""Song jobs for headless mode: a queue that survives restarts, in an embedded SQLite database.

A song takes longer than an HTTP request should, so the server answers at once with a job id and
the work runs here, one song at a time, through ``Engine.convert_songs`` (the same code as
``autovoice song``). Everything a job is lives on disk under ``<data dir>/jobs``::

    jobs.db                  one row per job: state, stage, progress, options, error, timings
    <id>/input.<ext>         the uploaded song, kept until the job is deleted or expires
    <id>/result.<ext>        the cover, written atomically when the job finishes
    <id>/stems/*.wav         the stems, when asked for

States: queued -> running -> done | failed | cancelled; a job that was running when the server
stopped (crash or shutdown) is queued again at the next start and says so in its ``note``; its
stems are usually in the stems cache, so the separation is not repeated. A job whose input is gone
is marked ``interrupted`` with a sentence. Finished jobs are deleted after ``keep_results_h``.

NB: the database connection is shared by the HTTP threads and the job thread; every use holds
``self._lock`` (sqlite3 objects are not safe to use from two threads at once).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from engine.errors import AutoVoiceError, ConfigError

STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINISHED = ("done", "failed", "cancelled", "interrupted")
PROGRESS_WRITE_S = 0.5  # progress reaches the database at most this often (and at every stage change)
RESUMED_NOTE = ("The server stopped while this job was running, so it was started again from the beginning "
                "after the restart (stems already separated are reused from the cache).")
MISSING_INPUT_NOTE = "The server stopped while this job was running and its uploaded song is gone, so it cannot be resumed; submit it again."


class JobError(AutoVoiceError):
    """A job request that cannot be honoured; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class JobLimits:
    max_jobs: int = 8  # queued + running at once; more -> 429
    max_results_mb: float = 2048.0  # disk for inputs, results and stems of kept jobs; over it -> 429
    keep_results_h: float = 24.0  # finished jobs (and their files) are deleted after this
    max_upload_mb: float = 200.0  # one song's upload; over it -> 413

    def validated(self) -> "JobLimits":
        for name, lo in (("max_jobs", 1), ("max_results_mb", 1.0), ("keep_results_h", 0.01), ("max_upload_mb", 0.1)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < lo:
                raise ConfigError(f"The job limit {name} must be at least {lo:g}, not {value!r}.")
        return self


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    stage TEXT,
    progress REAL NOT NULL DEFAULT 0,
    eta_s REAL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    input_name TEXT NOT NULL,
    input_file TEXT NOT NULL,
    result_file TEXT,
    voice TEXT NOT NULL,
    params TEXT NOT NULL,
    options TEXT NOT NULL,
    stems TEXT NOT NULL DEFAULT '{}',
    stage_seconds TEXT NOT NULL DEFAULT '{}',
    warnings TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    note TEXT,
    runs INTEGER NOT NULL DEFAULT 0
)
"""


def _folder_bytes(path: Path) -> int:
    try:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


class JobManager:
    """The job queue over an Engine; ``close()`` stops the job thread (a running job is resumed later)."""

    def __init__(self, engine: Any, folder: Path | None = None, limits: JobLimits | None = None,
                 on_finished: Callable[[str, dict[str, float]], None] | None = None):
        self.engine = engine
        self.limits = (limits or JobLimits()).validated()
        self.folder = Path(folder) if folder else engine.song_data_dir() / "jobs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.on_finished = on_finished
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.folder / "jobs.db", check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cancel: dict[str, threading.Event] = {}  # of the running job; NB: under self._lock
        self._recover()
        self.expire()
        self._thread = threading.Thread(target=self._run, name="autovoice-jobs", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ database helpers
    def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def _update(self, job_id: str, **fields: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*fields.values(), job_id))

    def _recover(self) -> None:
        for row in self._rows("SELECT id, input_file FROM jobs WHERE state = 'running'"):
            if (self.folder / row["input_file"]).is_file():
                self._update(row["id"], state="queued", stage=None, progress=0.0, eta_s=None, note=RESUMED_NOTE)
            else:
                self._update(row["id"], state="interrupted", finished_at=time.time(), note=MISSING_INPUT_NOTE,
                             error=MISSING_INPUT_NOTE)

    # ------------------------------------------------------------------ public API
    def describe(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {k: row[k] for k in ("id", "state", "stage", "progress", "eta_s", "created_at", "started_at",
                                   "finished_at", "input_name", "voice", "error", "note")}
        out["options"] = json.loads(row["options"])
        out["params"] = json.loads(row["params"])
        out["stems"] = sorted(json.loads(row["stems"]))
        out["stage_seconds"] = json.loads(row["stage_seconds"])
        out["warnings"] = json.loads(row["warnings"])
        return out

    def get(self, job_id: str) -> dict[str, Any]:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise JobError(404, f"There is no job {job_id!r} (it may have expired or been deleted).")
        return self.describe(rows[0])

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(r) for r in self._rows("SELECT * FROM jobs ORDER BY created_at")]

    def counts(self) -> dict[str, int]:
        found = {s: 0 for s in STATES}
        for r in self._rows("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"):
            found[r["state"]] = r["n"]
        return found

    def disk_bytes(self) -> int:
        return sum(_folder_bytes(p) for p in self.folder.iterdir() if p.is_dir())

    def submit(self, upload: Path, filename: str, voice: str | None, params: dict[str, Any], options: Any,
               stems: bool = False) -> dict[str, Any]:
        """Queue a song (``upload`` is moved into the job's folder); ``stems`` keeps the stems for download.
        JobError/ConfigError/VoiceError in one sentence on refusal."""
        from engine.offline.files import READ_EXTENSIONS
        from engine.voices.registry import get_info

        self.expire()
        options = options.validated()
        if options.stems_dir is not None:
            raise ConfigError("A job cannot name a stems folder; ask for stems with stems=true and download them.")
        name = voice or self.engine.voice_name or self.engine.settings.voice
        info = get_info(name, self.engine.data_dir)  # unknown voice: VoiceError
        for sep in self.engine.separators():
            if sep["name"] == options.separator and not sep["available"]:
                raise ConfigError(sep["note"])  # refused now, not after the job has waited in the queue
        clean = self.engine.validate_params(info, params)
        active = self.counts()
        if active["queued"] + active["running"] >= self.limits.max_jobs:
            raise JobError(429, f"This server already has {self.limits.max_jobs} song job(s) queued or running, its limit; "
                                "retry when one has finished.")
        used = self.disk_bytes()
        if used >= self.limits.max_results_mb * 1e6:
            raise JobError(429, f"Kept jobs use {used / 1e6:.0f} MB of this server's {self.limits.max_results_mb:g} MB; "
                                f"download and DELETE finished jobs, or wait until they expire after "
                                f"{self.limits.keep_results_h:g} h.")
        job_id = uuid.uuid4().hex
        ext = Path(filename or "").suffix.lower()
        ext = ext if ext in READ_EXTENSIONS else ".wav"
        folder = self.folder / job_id
        folder.mkdir()
        shutil.move(str(upload), folder / f"input{ext}")
        opts = {k: v for k, v in asdict(options).items() if k != "stems_dir"}
        opts["stems"] = bool(stems)
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, state, created_at, input_name, input_file, voice, params, options) "
                "VALUES (?, 'queued', ?, ?, ?, ?, ?, ?)",
                (job_id, time.time(), Path(filename or f"song{ext}").name, f"{job_id}/input{ext}", name,
                 json.dumps(clean), json.dumps(opts)))
        self._wake.set()
        return self.get(job_id)

    def result_file(self, job_id: str, stem: str | None = None) -> tuple[Path, str]:
        """(path, download name) of a done job's cover or one of its stems."""
        job = self.get(job_id)
        if job["state"] != "done":
            status = 409 if job["state"] in ("queued", "running") else 410
            why = {"queued": "is still queued", "running": f"is still running ({job['stage']})"}.get(
                job["state"], f"ended {job['state']}" + (f": {job['error']}" if job["error"] else ""))
            raise JobError(status, f"Job {job_id} has no result: it {why}.")
        row = self._rows("SELECT result_file, stems FROM jobs WHERE id = ?", (job_id,))[0]
        if stem is None:
            path = self.folder / row["result_file"]
            return path, f"{Path(job['input_name']).stem}_{job['voice']}{path.suffix}"
        stems = json.loads(row["stems"])
        if stem not in stems:
            known = ", ".join(sorted(stems)) or "none (submit with stems=true to keep them)"
            raise JobError(404, f"Job {job_id} has no stem {stem!r}; its stems are: {known}.")
        path = self.folder / stems[stem]
        return path, f"{Path(job['input_name']).stem}_{stem}.wav"

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job; delete a finished one and its files."""
        job = self.get(job_id)
        with self._lock:
            if job["state"] == "queued":
                self._update(job_id, state="cancelled", finished_at=time.time(), error="Cancelled before it started.")
                self._finished("cancelled", {})
                return self.get(job_id)
            if job["state"] == "running":
                event = self._cancel.get(job_id)
                if event is not None:
                    event.set()
                self._update(job_id, note="Cancelling...")
                return self.get(job_id)
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        shutil.rmtree(self.folder / job_id, ignore_errors=True)
        return {**job, "state": "deleted"}

    def wait_cancelled(self, job_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job["state"] != "running":
                return job
            time.sleep(0.05)
        return self.get(job_id)

    def expire(self) -> None:
        cutoff = time.time() - self.limits.keep_results_h * 3600.0
        old = self._rows(f"SELECT id FROM jobs WHERE state IN ({','.join('?' * len(FINISHED))}) AND finished_at < ?",
                         (*FINISHED, cutoff))
        for row in old:
            with self._lock:
                self._db.execute("DELETE FROM jobs WHERE id = ?", (row["id"],))
            shutil.rmtree(self.folder / row["id"], ignore_errors=True)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for event in self._cancel.values():
                event.set()
        self._wake.set()
        self._thread.join(timeout=30)
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ the job thread
    def _finished(self, outcome: str, stage_seconds: dict[str, float]) -> None:
        if self.on_finished:
            try:
                self.on_finished(outcome, stage_seconds)
            except Exception:  # noqa: BLE001 - metrics must never stop the queue
                pass

    def _run(self) -> None:
        while not self._stop.is_set():
            rows = self._rows("SELECT * FROM jobs WHERE state = 'queued' ORDER BY created_at LIMIT 1")
            if not rows:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._run_one(rows[0])

    def _run_one(self, row: dict[str, Any]) -> None:
        from engine.offline.song import SongCancelled, SongOptions

        job_id = row["id"]
        cancel = threading.Event()
        with self._lock:
            self._cancel[job_id] = cancel
            self._update(job_id, state="running", started_at=time.time(), runs=row["runs"] + 1, stage="separate",
                         progress=0.0, error=None)
        opts = json.loads(row["options"])
        want_stems = bool(opts.pop("stems", False))
        folder = self.folder / job_id
        stems_dir = folder / "stems"
        if stems_dir.exists():
            shutil.rmtree(stems_dir, ignore_errors=True)
        options = SongOptions(**opts, stems_dir=str(stems_dir) if want_stems else None)
        src = self.folder / row["input_file"]
        dst = folder / f"result{src.suffix}"
        last = {"t": 0.0, "stage": None}

        def progress(_i: int, p: Any) -> None:
            now = time.monotonic()
            if p.stage != last["stage"] or now - last["t"] >= PROGRESS_WRITE_S or p.fraction >= 1.0:
                last["t"], last["stage"] = now, p.stage
                self._update(job_id, stage=p.stage, progress=round(p.overall, 4),
                             eta_s=None if p.eta_s is None else round(p.eta_s, 1))

        try:
            fut = self.engine.convert_songs([src], dst, voice=row["voice"], params=json.loads(row["params"]),
                                            options=options, progress=progress, cancel=cancel)
            [result] = fut.result()
        except AutoVoiceError as exc:  # the voice or the separator could not be set up
            result = exc
        except Exception as exc:  # noqa: BLE001 - a job thread that dies would stall the whole queue
            result = AutoVoiceError(f"The job failed unexpectedly ({type(exc).__name__}: {exc}); please report it.")
        with self._lock:
            self._cancel.pop(job_id, None)
        now = time.time()
        if isinstance(result, SongCancelled) or (isinstance(result, AutoVoiceError) and cancel.is_set()):
            if self._stop.is_set():  # server shutting down: resume at the next start
                self._update(job_id, state="queued", stage=None, progress=0.0, eta_s=None, note=RESUMED_NOTE)
                return
            self._update(job_id, state="cancelled", finished_at=now, error="Cancelled while it was running; nothing "
                         "was kept.", note=None)
            shutil.rmtree(stems_dir, ignore_errors=True)
            self._finished("cancelled", {})
        elif isinstance(result, AutoVoiceError):
            self._update(job_id, state="failed", finished_at=now, error=str(result))
            self._finished("failed", {})
        else:
            stems = {label: str(Path(p).relative_to(self.folder)) for label, p in result.stems.items()}
            self._update(job_id, state="done", finished_at=now, progress=1.0, eta_s=0.0, stage="mix",
                         result_file=str(dst.relative_to(self.folder)), stems=json.dumps(stems),
                         stage_seconds=json.dumps({k: round(v, 3) for k, v in result.stage_seconds.items()}),
                         warnings=json.dumps(result.warnings))
            self._finished("done", result.stage_seconds)
