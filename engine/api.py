"""Engine: the one thing the GUI, the CLI and headless mode import.

Thread model:
* callers (GUI thread, HTTP handlers, CLI) call Engine methods; those validate, build heavy objects
  off the worker, and hand finished objects to the worker through its command queue;
* the worker thread (engine/stream/worker.py) runs the live Pipeline between hops;
* the audio callbacks (engine/io/callbacks.py) only move samples between rings.
Long work (loading a voice, converting files) returns a ``concurrent.futures.Future``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from engine.config import AppSettings, AudioConfig, ChainConfig
from engine.errors import AutoVoiceError, ConfigError, DeviceError, VoiceError
from engine.health.snapshot import HealthSnapshot
from engine.io.devices import DeviceInfo, list_devices, resolve_device
from engine.offline.convert import ConvertResult, convert_file, output_path_for
# Song covers (issue 9): what the fronts (CLI, GUI, server) need, through this one door.
from engine.jobs import STATES as JOB_STATES, JobError, JobLimits, JobManager  # noqa: F401
from engine.offline.song import STAGES as SONG_STAGES, SongOptions, SongResult, StageProgress  # noqa: F401
from engine.pipeline import Pipeline, hop_for
from engine.settings import SettingsStore
from engine.stream.realtime import RealtimeStream
from engine.stream.worker import LiveChain, Worker
from engine.voices.base import Voice, VoiceInfo, default_params
from engine.voices.registry import RELOAD_PARAMS, get_info, list_voices, load_voice

log = logging.getLogger(__name__)


def _accelerator() -> dict[str, Any]:
    try:
        from engine.devices import describe_accelerator
    except ImportError:
        return {"available": False, "name": None, "device_count": 0}
    try:
        return describe_accelerator()
    except Exception:  # noqa: BLE001 - health must answer even if the GPU stack is broken
        return {"available": False, "name": None, "device_count": 0}


class Engine:
    def __init__(
        self,
        store: SettingsStore | None = None,
        data_dir: Path | None = None,
        autosave: bool = True,
        load_default_voice: bool = True,
    ):
        self.store = store if store is not None else SettingsStore()
        self.settings: AppSettings = self.store.load()
        self.settings_warning = self.store.last_warning
        self.data_dir = data_dir
        self.autosave = autosave
        self._save_lock = threading.Lock()
        self._lock = threading.RLock()  # NB: serialises control calls; never taken by worker or callbacks
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="autovoice-bg")
        self._started = time.monotonic()
        self.worker = Worker()
        self.worker.on_failure = self._on_stream_failure
        self.voice: Voice | None = None
        self._voice_compute_ms = 0.0
        self.voice_info: VoiceInfo | None = None
        self.warmed_up = False
        self._loading = 0
        self.stream: RealtimeStream | None = None
        self.last_error: str | None = None
        self.device_error: str | None = None  # the last device problem, separate from voice errors
        self._accel = _accelerator()
        if load_default_voice:
            try:
                self.load_voice(self.settings.voice).result()
            except AutoVoiceError as exc:
                # A saved voice that no longer exists (deleted model): fall back to the default.
                self.last_error = str(exc)
                from engine.config import DEFAULT_VOICE

                self.load_voice(DEFAULT_VOICE).result()

    # ------------------------------------------------------------------ settings
    def save_settings(self) -> None:
        if self.autosave:
            try:
                # NB: the GUI thread and background jobs both save; serialising the writes means the
                # last one to run writes the newest settings, never an older copy over a newer one.
                with self._save_lock:
                    self.store.save(self.settings)
            except OSError as exc:
                self.last_error = f"Settings could not be saved to {self.store.path} ({exc.strerror})."
                log.warning(self.last_error)

    # ------------------------------------------------------------------ voices
    def list_voices(self) -> list[VoiceInfo]:
        return list_voices(self.data_dir)

    @property
    def voice_name(self) -> str | None:
        return self.voice_info.name if self.voice_info else None

    def voice_params(self, name: str | None = None) -> dict[str, Any]:
        """The current values of a voice's parameters (saved ones over the voice's defaults)."""
        name = name or self.voice_name
        info = self.voice_info if (self.voice_info and self.voice_info.name == name) else get_info(name, self.data_dir)
        saved = self.settings.voice_params.get(name, {})
        params = default_params(info.params)
        for spec in info.params:
            if spec.name in saved:
                try:
                    params[spec.name] = spec.validate(saved[spec.name])
                except ConfigError:
                    pass  # a stale saved value falls back to the default
        return params

    def loaded_voice_for(self, name: str, params: dict[str, Any]) -> Voice | None:
        """The loaded voice if it is ``name`` and was built with the same ``RELOAD_PARAMS`` as
        ``params`` would need (other settings apply per conversion); else None."""
        voice = self.voice
        if voice is None or self.voice_name != name:
            return None
        saved = self.voice_params(name)
        return voice if all(params.get(k) == saved.get(k) for k in RELOAD_PARAMS) else None

    @staticmethod
    def validate_params(info: VoiceInfo, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` checked against the voice's settings (ConfigError in one sentence)."""
        specs = {s.name: s for s in info.params}
        out = {}
        for key, value in params.items():
            if key not in specs:
                known = ", ".join(specs) or "none"
                raise ConfigError(f"Voice '{info.name}' has no setting '{key}'; its settings are: {known}.")
            out[key] = specs[key].validate(value)
        return out

    def load_voice(self, name: str, params: dict[str, Any] | None = None) -> Future:
        """Load (and warm up) a voice off the caller's thread; it replaces the current one at a hop boundary."""
        info = get_info(name, self.data_dir)  # unknown names fail here, synchronously, in one sentence
        extra = self.validate_params(info, params or {})

        def job() -> VoiceInfo:
            saved = {**self.settings.voice_params.get(name, {}), **extra}
            voice = load_voice(name, self.data_dir, saved)
            compute_ms = self._warm_up(voice)
            with self._lock:
                self.voice, self.voice_info, self.warmed_up = voice, info, True
                self._voice_compute_ms = compute_ms
                self.settings.voice = name
                if extra:
                    self.settings.voice_params.setdefault(name, {}).update(extra)
                self._swap_live_pipeline()
                self.save_settings()
            return info

        with self._lock:
            self._loading += 1
        fut = self._executor.submit(job)

        def done(f: Future) -> None:
            with self._lock:
                self._loading -= 1
                if f.exception() is not None:
                    self.last_error = str(f.exception())

        fut.add_done_callback(done)
        return fut

    def _warm_up(self, voice: Voice) -> float:
        """Run the voice on a few blocks of noise (lazy init, caches); return ms per block of the slowest warm call."""
        hop = hop_for(voice, 10.0)
        state = voice.init_state()
        rng = np.random.default_rng(0)
        x = (0.01 * rng.standard_normal(hop)).astype(np.float32)
        params = default_params(voice.param_specs)
        _, state = voice.process(x, state, params)  # the first call pays one-off costs
        worst = 0.0
        for _ in range(2):
            t0 = time.perf_counter()
            _, state = voice.process(x, state, params)
            worst = max(worst, 1000.0 * (time.perf_counter() - t0))
        return worst

    def set_params(self, **params: Any) -> dict[str, Any]:
        """Change the current voice's parameters live (validated; saved per voice)."""
        with self._lock:
            if self.voice_info is None:
                raise VoiceError("No voice is loaded yet; pick a voice first.")
            clean = self.validate_params(self.voice_info, params)
            before = self.voice_params()
            self.settings.voice_params.setdefault(self.voice_info.name, {}).update(clean)
            merged = self.voice_params()
            self._post_to_pipeline(lambda p: setattr(p, "params", {**p.params, **merged}))
            self.save_settings()
            if any(k in RELOAD_PARAMS and before.get(k) != merged.get(k) for k in clean):
                # Block/context sizes shape a neural voice's buffers: rebuild it off-thread; the old one
                # keeps playing until the new one is swapped in.
                self.load_voice(self.voice_info.name)
            return merged

    def set_chain(self, **changes: Any) -> ChainConfig:
        """Gains, gate and bypass; applied at the next hop, ramped."""
        with self._lock:
            try:
                chain = replace(self.settings.chain, **changes).validated()
            except TypeError as exc:
                raise ConfigError(f"Unknown chain setting ({exc}).") from None
            self.settings.chain = chain
            self._post_to_pipeline(lambda p: setattr(p, "chain", chain))
            self.save_settings()
            return chain

    def set_bypass(self, on: bool) -> None:
        self.set_chain(bypass=bool(on))

    # ------------------------------------------------------------------ live stream
    def _make_pipeline(self, audio: AudioConfig) -> Pipeline:
        voice = self.voice
        if voice is None:
            raise VoiceError("No voice is loaded yet; pick a voice first.")
        hop = hop_for(voice, audio.block_ms)
        xfade = int(round(max(audio.crossfade_ms, 1.0) * voice.sample_rate / 1000.0))
        return Pipeline(voice, hop, chain=self.settings.chain, params=self.voice_params(), crossfade_samples=xfade)

    def _stream_geometry(self, device_rate: int) -> tuple[float | None, float, float]:
        """(burst_ms, margin_ms, jitter_ms) the output ring needs for the current voice at a device rate."""
        v = self.voice
        audio = self.settings.audio
        burst = 1000.0 * v.hop_samples / v.sample_rate if (v is not None and v.hop_samples) else None
        # Writes are evenly spaced only when one read hop is a whole number of voice samples and
        # the voice's hop a whole number of read hops (10 ms at 44.1 kHz is 480 samples at 48 kHz:
        # fine); otherwise a block completes one read earlier or later than the average.
        jitter = audio.block_ms
        if v is not None:
            sr_v, sr_d = int(v.sample_rate), int(device_rate)
            read_hop = max(1, int(round(audio.block_ms * sr_d / 1000.0)))
            if (read_hop * sr_v) % sr_d == 0:
                read_hop_v = read_hop * sr_v // sr_d
                if hop_for(v, audio.block_ms) % read_hop_v == 0:
                    jitter = 0.0
        # A voice that delivers big blocks needs the ring to hold out while the next one computes;
        # the warm-up measurement plus half again, and a read hop of slack, is the margin (the
        # stream adds the jitter on top).
        margin = 1.5 * self._voice_compute_ms + (audio.block_ms if burst else 0.0)
        return burst, margin, jitter

    def _post_to_pipeline(self, fn: Callable[[Pipeline], None]) -> None:
        def apply(w: Worker) -> None:
            if w.chain is not None:
                fn(w.chain.pipeline)

        self.worker.post(apply)

    def _swap_live_pipeline(self) -> None:
        if self.stream is None:
            return
        s = self.stream
        _, new_burst, new_margin, new_jitter = RealtimeStream.ring_frames(
            s.config, s.sample_rate, *self._stream_geometry(s.sample_rate))
        if new_burst != s.burst_frames or new_margin > s.margin_frames or new_jitter != s.jitter_frames:
            # The output ring's budget changes with the voice: reopen the same devices (a short gap)
            # rather than underflow on every block or keep a needlessly large latency.
            try:
                self.stop()
                self._open(s.config)
            except AutoVoiceError as exc:
                self.last_error = f"{exc}"
            return
        pipeline = self._make_pipeline(self.stream.config)

        def apply(w: Worker) -> None:
            if w.chain is not None:
                w.chain.swap_pipeline(pipeline)

        self.worker.post(apply)

    @property
    def running(self) -> bool:
        return self.stream is not None and self.worker.chain is not None

    def devices(self, refresh: bool = False) -> list[DeviceInfo]:
        """Audio devices. ``refresh`` re-scans, which PortAudio can only do with no stream open."""
        if refresh and self.stream is not None:
            raise DeviceError("Stop the stream before refreshing the device list (the audio system rescans only when idle).")
        return list_devices(refresh=refresh)

    def start(
        self,
        input_device: str | int | None = None,
        output_device: str | int | None = None,
        monitor_device: str | int | None = None,
        **audio_changes: Any,
    ) -> None:
        """Open the devices and start converting.

        Device arguments default to the saved ones; pass "default" for the system's device and ""
        for no monitor.
        """
        with self._lock:
            try:
                self._start(input_device, output_device, monitor_device, **audio_changes)
            except AutoVoiceError as exc:
                self.last_error = str(exc)
                if isinstance(exc, DeviceError):
                    self.device_error = str(exc)
                raise

    def _start(self, input_device, output_device, monitor_device, **audio_changes: Any) -> None:
        with self._lock:
            audio = self.settings.audio
            changes = dict(audio_changes)
            for key, value in (("input_device", input_device), ("output_device", output_device),
                               ("monitor_device", monitor_device)):
                if value is not None:
                    changes[key] = value
            audio = audio.with_changes(**changes) if changes else audio.validated()
            if self.stream is not None:
                self.stop()
            self._open(audio)
            self.settings.audio = audio
            self.save_settings()

    def _open(self, audio: AudioConfig) -> None:
        devs = list_devices()
        inp = resolve_device(audio.input_device, "input", devs)
        out = resolve_device(audio.output_device, "output", devs)
        mon = resolve_device(audio.monitor_device, "output", devs) if audio.monitor_device not in (None, "") else None
        burst, margin, jitter = self._stream_geometry(RealtimeStream.rate_for(audio, out))
        stream = RealtimeStream(audio, inp, out, mon, burst_ms=burst, margin_ms=margin, jitter_ms=jitter)
        pipeline = self._make_pipeline(audio)
        stream.start()  # raises DeviceError in one sentence
        chain = LiveChain(stream, pipeline)
        abandoned = threading.Event()

        def attach(w: Worker) -> None:
            if abandoned.is_set():  # the caller gave up waiting; never attach a closed stream
                return
            w.reset_counters()
            w.failure = None
            w.chain = chain

        try:
            self.worker.call(attach)
        except FutureTimeout:
            abandoned.set()
            stream.close()
            raise DeviceError(
                "The engine's worker did not answer within 5 s (the machine may be overloaded); "
                "the stream was not started, try again."
            ) from None
        except BaseException:
            abandoned.set()
            stream.close()
            raise
        self.stream = stream
        self.last_error = None
        self.device_error = None

    def stop(self) -> None:
        with self._lock:
            stream, self.stream = self.stream, None
            if not self.worker.alive:  # after close(): nothing left to detach from
                return

            def detach(w: Worker) -> None:
                w.chain = None

            try:
                self.worker.call(detach)
            except FutureTimeout:
                # Still queued: it runs (before any later attach) once the worker gets to it.
                log.warning("the worker did not answer within 5 s; the stream is closed without waiting")
            finally:
                if stream is not None and not stream.close_soon(wait_s=3.0):
                    log.warning("the audio device did not close within 3 s; continuing without it")

    def switch_devices(
        self,
        input_device: str | int | None = None,
        output_device: str | int | None = None,
        monitor_device: str | int | None = None,
        **audio_changes: Any,
    ) -> None:
        """Change devices (or rate/block) while running; on failure the previous setup is restored."""
        with self._lock:
            previous = self.settings.audio
            was_running = self.stream is not None
            try:
                self.start(input_device, output_device, monitor_device, **audio_changes)
            except AutoVoiceError as exc:
                # A bad setting is refused before anything is stopped; reopen only what was closed.
                if was_running and self.stream is None:
                    try:
                        self._open(previous)
                    except AutoVoiceError as again:
                        self.last_error = f"{exc} The previous devices could not be reopened either ({again})."
                        raise DeviceError(self.last_error) from None
                self.settings.audio = previous
                self.last_error = f"{exc} The previous devices were kept."
                raise type(exc)(self.last_error) from None

    def set_audio(self, **changes: Any) -> AudioConfig:
        """Block size, crossfade, pre-fill...; restarts the stream if running (restoring on failure)."""
        with self._lock:
            new = self.settings.audio.with_changes(**changes)
            if self.stream is not None:
                self.switch_devices(**changes)
            else:
                self.settings.audio = new
                self.save_settings()
            return self.settings.audio

    def _on_stream_failure(self, message: str, stream: RealtimeStream | None = None) -> None:
        # Worker thread: record only; the stream object is closed by the worker on a helper thread.
        # Only forget the stream that failed: a control thread may have just opened a new one.
        self.last_error = message
        self.device_error = message
        if stream is None or self.stream is stream:
            self.stream = None
        log.info(message)

    # ------------------------------------------------------------------ telemetry
    def snapshot(self) -> HealthSnapshot:
        w = self.worker
        chain = w.chain
        now = time.monotonic()
        comp = np.array(w.compute_ms, dtype=np.float64) if len(w.compute_ms) else np.zeros(1)
        mean, p99 = float(comp.mean()), float(np.percentile(comp, 99))
        stream = chain.stream if chain else None
        audio = self.settings.audio
        if chain is not None:
            algo, buf = chain.latency_ms()
            block_ms = 1000.0 * stream.burst_frames / stream.sample_rate  # what one voice call covers
            dev_ms = stream.device_latency_ms
        else:
            block_ms = audio.block_ms
            look = (self.voice.latency_samples / self.voice.sample_rate * 1000.0) if self.voice else 0.0
            algo, buf, dev_ms = block_ms + look, audio.prefill_ms, 0.0
        load = p99 / block_ms if block_ms else 0.0
        suggestion = None
        if chain is not None and len(w.compute_ms) >= 20 and load > 0.9:
            fit = int(np.ceil(p99 / 0.7 / 5.0) * 5)
            suggestion = (
                f"Conversion takes {p99:.1f} ms per {block_ms:.0f} ms block (p99), too slow for real time: "
                f"raise the block size to about {fit} ms or choose a lighter voice."
            )
        counters = stream.counters if stream else None
        return HealthSnapshot(
            time=time.time(),
            uptime_s=now - self._started,
            worker_alive=w.alive,
            worker_heartbeat_age_s=now - w.heartbeat,
            voice_name=self.voice_name,
            voice_kind=self.voice_info.kind if self.voice_info else None,
            voice_loaded=self.voice is not None,
            warmed_up=self.warmed_up,
            voice_loading=self._loading > 0,
            gpu_available=bool(self._accel.get("available")),
            gpu_name=self._accel.get("name"),
            running=chain is not None,
            devices_ok=self.device_error is None or chain is not None,
            input_device=stream.input_device.label if stream else None,
            output_device=stream.output_device.label if stream else None,
            monitor_device=stream.monitor_device.label if stream and stream.monitor_device else None,
            sample_rate=stream.sample_rate if stream else None,
            voice_sample_rate=self.voice.sample_rate if self.voice else None,
            last_error=self.last_error,
            block_ms=block_ms,
            algorithmic_latency_ms=algo,
            buffer_latency_ms=buf,
            device_latency_ms=dev_ms,
            total_latency_ms=algo + buf + dev_ms,
            compute_ms_mean=mean,
            compute_ms_p99=p99,
            compute_load=load,
            input_level_db=w.input_level_db if chain else -120.0,
            output_level_db=w.output_level_db if chain else -120.0,
            blocks_processed=w.blocks_processed,
            late_blocks=w.late_blocks,
            input_overflows=stream.in_ring.dropped_frames if stream else 0,
            output_underflows=stream.out_ring.underflow_events if stream else 0,
            output_underflow_frames=stream.out_ring.underflow_frames if stream else 0,
            device_xruns=(counters.device_xruns + stream.mon_counters.device_xruns) if stream else 0,
            latency_corrections=w.latency_corrections,
            nonfinite_blocks=chain.state.nonfinite_blocks if chain else 0,
            suggestion=suggestion,
        )

    def accelerator(self) -> dict[str, Any]:
        return dict(self._accel)

    def recent_audio(self, seconds: float = 2.0) -> tuple[np.ndarray, np.ndarray, int]:
        """(input, output, sample_rate): the last ``seconds`` of the live stream at the voice's rate."""
        chain = self.worker.chain
        if chain is None:
            return np.zeros(0, np.float32), np.zeros(0, np.float32), 48000
        sr = chain.pipeline.sample_rate
        n = int(seconds * sr)
        return chain.in_history.latest(n), chain.out_history.latest(n), sr

    # ------------------------------------------------------------------ offline
    def convert_files(
        self,
        inputs: Iterable[str | Path],
        output: str | Path,
        voice: str | None = None,
        params: dict[str, Any] | None = None,
        progress: Callable[[int, float], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Future:
        """Convert files with a voice (the current one by default); Future of list[ConvertResult].

        ``progress(file_index, fraction)``; results for files that failed are AutoVoiceError objects
        in the list, so one bad file does not lose the others.
        """
        inputs = [Path(p) for p in inputs]
        out = Path(output)
        name = voice or self.voice_name
        info = get_info(name, self.data_dir)
        merged = {**self.voice_params(name), **self.validate_params(info, params or {})}
        many = len(inputs) > 1
        if many or out.is_dir():
            out.mkdir(parents=True, exist_ok=True)
        chain = replace(self.settings.chain, bypass=False)

        def job() -> list[ConvertResult | AutoVoiceError]:
            v = self.loaded_voice_for(name, merged) or load_voice(name, self.data_dir, merged)
            results: list[ConvertResult | AutoVoiceError] = []
            for i, src in enumerate(inputs):
                dst = output_path_for(src, out, name, many)
                try:
                    results.append(convert_file(src, dst, v, merged, chain,
                                                progress=(lambda f, i=i: progress(i, f)) if progress else None,
                                                cancel=cancel))
                except AutoVoiceError as exc:
                    results.append(exc)
                    if cancel is not None and cancel.is_set():
                        break
            return results

        return self._executor.submit(job)

    # ------------------------------------------------------------------ songs (separate, convert, mix)
    # NB: one self-contained block (issue 9); it only uses the public methods above and
    # engine.offline.song / engine.separation, so it can move as a unit.
    def song_models_dir(self) -> Path:
        from engine.voices.registry import models_dir

        return models_dir(self.data_dir)

    def separators(self) -> list[dict[str, Any]]:
        """The song separators, whether each can run here, and what to install where not."""
        from engine.separation import describe_separators

        return describe_separators(self.song_models_dir())

    def fetch_separation_model(self, progress: Callable[[int, int | None], None] | None = None,
                               url: str | None = None, sha256: str | None = None) -> Path:
        """Download the htdemucs weights once into the models folder (SHA-256 checked); blocks, so
        call it off the GUI thread. ``url``/``sha256`` default to the official file (tests use a mirror)."""
        from engine.separation import demucs
        from engine.voices.rvc.assets import download_asset

        return demucs.fetch_weights(self.song_models_dir(), download_asset, url=url or demucs.WEIGHTS_URL,
                                    sha256=sha256 or demucs.WEIGHTS_SHA256, progress=progress)

    def song_notes(self, options: Any) -> list[str]:
        """Sentences to show before converting songs with ``options`` (key warning, separator fallback)."""
        from engine.offline.song import transpose_warning
        from engine.separation import describe_separators

        notes = [transpose_warning(options.transpose_st)]
        if options.separator == "auto":
            demucs_info = describe_separators(self.song_models_dir())[0]
            if not demucs_info["available"]:
                notes.append("Using the stereo separator, which needs no download but is less clean; "
                             + demucs_info["note"][:1].lower() + demucs_info["note"][1:])
        return [n for n in notes if n]

    def _song_voice(self, name: str, merged: dict[str, Any]) -> Voice:
        """The voice for a batch of songs: the loaded one when it fits, else a fresh load.
        NB (merge): main's refactored api has voice_for(info, params) for this; the getattr keeps
        this block working on both sides of that change."""
        finder = getattr(self, "loaded_voice_for", None)
        voice = finder(name, merged) if finder is not None else None
        return voice or load_voice(name, self.data_dir, merged)

    def _song_separator(self, name: str):
        """The separator for ``name``, kept between calls (loading htdemucs takes seconds) until its
        weight file changes."""
        from engine.separation import demucs, get_separator

        weights = demucs.weights_path(self.song_models_dir())
        try:
            stamp = (weights.stat().st_mtime_ns, weights.stat().st_size)
        except OSError:
            stamp = None
        key = (name, str(weights), stamp)
        # NB: several threads may ask at once; the worst case is loading the model twice.
        cached = getattr(self, "_song_separator_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        sep = get_separator(name, self.song_models_dir())
        self._song_separator_cache = (key, sep)
        return sep

    def song_data_dir(self) -> Path:
        """The data folder (this engine's, else the user's). NB: taken as the models folder's parent,
        which exists under the same name before and after main's engine.paths move."""
        return self.song_models_dir().parent

    def song_cache_dir(self) -> Path:
        return self.song_data_dir() / "cache" / "stems"

    def convert_songs(
        self,
        inputs: Iterable[str | Path],
        output: str | Path,
        voice: str | None = None,
        params: dict[str, Any] | None = None,
        options: Any = None,
        progress: Callable[[int, Any], None] | None = None,
        cancel: threading.Event | None = None,
        on_result: Callable[[int, Any], None] | None = None,
    ) -> Future:
        """Songs -> covers with a voice; Future of list[SongResult | AutoVoiceError].

        ``inputs`` may hold folders (their audio files are taken); ``output`` is a file for one
        song, else a folder. ``options`` is an engine.offline.song.SongOptions. ``progress(i,
        StageProgress)``; ``on_result(i, result_or_error)`` as each song finishes, so one bad
        file is reported and the others still run. Cancelling stops at the next check and writes
        nothing for the song in progress.
        """
        from engine.offline.song import SongOptions, StemCache, convert_song, expand_song_inputs, song_output_path

        options = (options or SongOptions()).validated()
        songs = expand_song_inputs([Path(p) for p in inputs])
        if not songs:
            raise AutoVoiceError("No songs were given (a folder given had no audio files in it).")
        out = Path(output)
        many = len(songs) > 1
        if many and out.exists() and not out.is_dir():
            raise AutoVoiceError(f"With several songs, -o must be a folder, but '{out}' is a file.")
        if many or str(out).endswith(("/", "\\")):
            out.mkdir(parents=True, exist_ok=True)
        name = voice or self.voice_name
        info = get_info(name, self.data_dir)
        merged = {**self.voice_params(name), **self.validate_params(info, params or {})}
        chain = replace(self.settings.chain, bypass=False)
        separator = self._song_separator(options.separator)  # missing weights: one sentence now
        cache = StemCache(self.song_cache_dir())

        def job() -> list[Any]:
            v = self._song_voice(name, merged)
            results: list[Any] = []
            for i, src in enumerate(songs):
                if cancel is not None and cancel.is_set():
                    break
                try:
                    r: Any = convert_song(src, song_output_path(src, out, name, many), v, name, merged, options,
                                          separator, chain=chain, cache=cache,
                                          progress=(lambda p, i=i: progress(i, p)) if progress else None,
                                          cancel=cancel)
                except AutoVoiceError as exc:
                    # Name the song: in a batch, "this song is mono" alone would not say which.
                    r = exc if src.name in str(exc) else type(exc)(f"{src.name}: {exc}")
                results.append(r)
                if on_result:
                    on_result(i, r)
            return results

        return self._executor.submit(job)

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        try:
            self.stop()
        except Exception:  # noqa: BLE001
            pass
        self.worker.shutdown()
        self._executor.shutdown(wait=False, cancel_futures=True)
