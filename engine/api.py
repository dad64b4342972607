"""The one door into the engine: what the GUI, the CLI, the launcher and headless mode import.

The fronts import ``engine.api``, ``engine.errors`` and ``engine.health`` and nothing deeper
(tests/test_layers.py holds them to it). Everything they need is here: the :class:`Engine` for a
running session, module functions for what needs no session (listing and installing voices,
devices, ONNX export), and the plain data types they display (:class:`VoiceInfo`,
:class:`ParamSpec`, :class:`DeviceInfo`, :class:`HealthSnapshot`, ...).

Thread model:
* callers (GUI thread, HTTP handlers, CLI) call Engine methods; those validate, build heavy objects
  off the worker, and hand finished objects to the worker through its command queue;
* the worker thread (engine/stream/worker.py) runs the live Pipeline between hops;
* the audio callbacks (engine/io/callbacks.py) only move samples between rings.
Long work (loading a voice, converting files) returns a ``concurrent.futures.Future``.

What persists: an Engine made with ``autosave=True`` (the desktop app, ``autovoice live``) writes
the devices, the voice and its values, and the chain settings it is told to use; one made with
``autosave=False`` (``autovoice convert``, ``autovoice serve`` and its API) never writes settings,
and one-off overrides given to :meth:`Engine.convert_files`, :meth:`Engine.voice_for` or
:meth:`Engine.params_for` never change the saved values in any case.
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

from engine import __version__
from engine.accelerators import describe_accelerator, describe_voice_device, set_preferred_device
from engine.accelerators import list_gpus as _list_gpus
from engine.config import (
    CHAIN_SPECS,
    DEFAULT_VOICE,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    AppSettings,
    AudioConfig,
    ChainConfig,
)
from engine.errors import AutoVoiceError, ConfigError, DeviceError, VoiceError
from engine.health.collect import collect
from engine.health.snapshot import HealthSnapshot
from engine.io.devices import DeviceInfo, list_devices, resolve_device
from engine.io.portaudio import portaudio_wedged
from engine.offline.convert import ConvertResult, convert_file, convert_signal, output_path_for
from engine.offline.files import READ_EXTENSIONS, AudioProbe, DecodedAudio, decode_audio, probe_audio, read_audio
from engine.params import ParamSpec, default_params, reload_keys, resolve_params
# Song covers (issue 9): what the fronts (CLI, GUI, server) need, through this one door.
from engine.jobs import STATES as JOB_STATES, JobError, JobLimits, JobManager
from engine.offline.song import STAGES as SONG_STAGES, SongOptions, SongResult, StageProgress
from engine.pipeline import Pipeline, hop_for
from engine.paths import data_dir as user_data_dir
from engine.paths import models_dir
from engine.settings import SettingsStore
from engine.stream.gc_policy import STREAMING_GC
from engine.stream.pitch_view import PITCH_HOP_S, VIEW_SECONDS, PitchView
from engine.stream.realtime import RealtimeStream, margin_for_compute
from engine.stream.session import StreamSession
from engine.stream.worker import ADAPTIVE_BUFFER_SUMMARY, BlockTimeline, LiveChain, Worker
from engine.voices import install as _install
from engine.voices.base import Voice, VoiceInfo
from engine.voices.cache import VoiceCache
from engine.voices.registry import check_voice_name, get_info, load_voice
from engine.voices.registry import list_voices as _list_voices

__all__ = [
    "ADAPTIVE_BUFFER_SUMMARY",
    "AudioProbe", "DecodedAudio", "decode_audio", "probe_audio", "StreamSession", "list_gpus",
    "JOB_STATES", "JobError", "JobLimits", "JobManager", "SONG_STAGES", "SongOptions", "SongResult", "StageProgress",
    "CHAIN_SPECS", "DEFAULT_VOICE", "MAX_SAMPLE_RATE", "MIN_SAMPLE_RATE", "PITCH_HOP_S", "READ_EXTENSIONS",
    "VIEW_SECONDS", "AppSettings", "AudioConfig", "ChainConfig", "ConvertResult", "DeviceInfo", "Engine",
    "HealthSnapshot", "ParamSpec", "Voice", "VoiceInfo", "__version__", "convert_signal", "export_onnx",
    "import_voice", "list_devices", "list_voices", "portaudio_wedged", "read_audio", "remove_voice",
    "resolve_device", "voice_info",
]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- no session needed
def list_voices(data_dir: Path | None = None) -> list[VoiceInfo]:
    """Built-in voices, then installed ones."""
    return _list_voices(data_dir)


def voice_info(name: str, data_dir: Path | None = None) -> VoiceInfo:
    """One voice's description (VoiceNotFound in one sentence for an unknown name)."""
    return get_info(name, data_dir)


def import_voice(model: str | Path, index: str | Path | None = None, name: str | None = None,
                 data_dir: Path | None = None) -> VoiceInfo:
    """Verify an RVC model (and its index) and install it as a voice; nothing is installed on refusal."""
    return _install.import_voice(Path(model), index=Path(index) if index else None, name=name, base=data_dir)


def remove_voice(name: str, data_dir: Path | None = None, store: SettingsStore | None = None) -> None:
    """Uninstall a voice and forget its saved settings (they must not apply to a different model
    imported later under the same name)."""
    try:
        _install.remove_voice(name, base=data_dir)
    except OSError as exc:  # e.g. a file still open elsewhere
        raise VoiceError(f"Could not remove voice '{name}' ({exc.strerror}); close programs that use its "
                         "files and try again.") from None
    store = store if store is not None else SettingsStore()
    settings = store.load()
    if settings.voice_params.pop(name, None) is not None:
        store.save(settings)


def export_onnx(model: str | Path, output: str | Path | None = None) -> tuple[Path, float]:
    """Export an RVC .pth to ONNX, checked against the .pth: (path written, largest difference)."""
    try:
        from engine.voices.rvc.export import export_onnx_checked
    except ImportError as exc:
        raise AutoVoiceError(
            f"ONNX export needs the neural extras ({exc.name} is missing); run: pip install 'autovoice[neural]'."
        ) from None
    return export_onnx_checked(model, output)


def list_gpus() -> list[dict[str, Any]]:
    """``[{index, name, memory_total_bytes, memory_free_bytes}]`` for every GPU torch sees; [] without."""
    return _list_gpus()


def _accelerator() -> dict[str, Any]:
    try:
        return describe_accelerator()
    except Exception:  # noqa: BLE001 - health must answer even if the GPU stack is broken
        return {"available": False, "name": None, "device_count": 0}


class _NoStore:
    """A settings store that writes nothing, for an Engine that must not persist."""

    def load(self) -> AppSettings:
        return AppSettings()

    def save(self, settings: AppSettings) -> None:
        pass


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
        self._cache = VoiceCache(data_dir)
        self._gc_held = False  # this engine's stream counts in STREAMING_GC
        self._voice_device: tuple[tuple[Voice, int], dict[str, Any]] | None = None  # ((voice, trackers), view)
        self._song_separator_cache: tuple[tuple, Any] | None = None  # (separator, weights stamp) -> loaded
        set_preferred_device(self.settings.compute_device)
        # NB: the view's thread calls these two through the instance, never touching the worker's state.
        self.pitch_view = PitchView(lambda seconds: self.recent_audio(seconds), lambda: self.running)
        if load_default_voice:
            try:
                self.load_voice(self.settings.voice).result()
            except AutoVoiceError as exc:
                # A saved voice that no longer exists (deleted model): fall back to the default.
                self.last_error = str(exc)
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

    def info_for(self, name: str | None = None) -> VoiceInfo:
        """A voice's description: ``name``, else the current voice, else the saved one."""
        name = self.default_voice_name() if name in (None, "") else name
        check_voice_name(name)
        return get_info(name, self.data_dir)

    def default_voice_name(self) -> str:
        """What a conversion that names no voice uses: the loaded voice, else the saved one."""
        return self.voice_name or self.settings.voice

    def import_voice(self, model: str | Path, index: str | Path | None = None, name: str | None = None) -> VoiceInfo:
        """Install a model as a voice (seconds: call off a GUI thread); see :func:`import_voice`."""
        info = import_voice(model, index=index, name=name, data_dir=self.data_dir)
        self._cache.forget(info.name)
        return info

    def remove_voice(self, name: str) -> bool:
        """Uninstall a voice and forget its settings. If it is the current voice, the engine first
        switches to the default voice (so nothing still uses its files). True if it switched."""
        switched = self.voice_name == name
        if switched:
            self.load_voice(DEFAULT_VOICE).result()
        remove_voice(name, data_dir=self.data_dir, store=self.store if self.autosave else _NoStore())
        self._cache.forget(name)
        self.settings.voice_params.pop(name, None)
        return switched

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

    @staticmethod
    def validate_params(info: VoiceInfo, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` (names or aliases such as ``transpose``) checked against the voice's settings:
        canonical names -> valid values, or ConfigError in one sentence. The one check at the edge."""
        return resolve_params(info.params, params, f"Voice '{info.name}'")

    def params_for(self, name: str | None, overrides: dict[str, Any] | None = None) -> tuple[VoiceInfo, dict[str, Any]]:
        """A one-off conversion's voice and values: the saved values with ``overrides`` validated on
        top (nothing is saved). An unknown name raises VoiceNotFound; a malformed one VoiceError."""
        info = self.info_for(name)
        return info, {**self.voice_params(info.name), **self.validate_params(info, overrides or {})}

    def voice_for(self, info: VoiceInfo, params: dict[str, Any]) -> Voice:
        """A loaded voice for a conversion with ``params`` (from :meth:`params_for`): the live one if
        it was built with the same reloading settings, else one from a small cache (may take
        seconds for a neural model: call off any event loop)."""
        voice = self.voice
        if voice is not None and self.voice_name == info.name:
            saved = self.voice_params(info.name)
            if all(params.get(k) == saved.get(k) for k in reload_keys(info.params)):
                return voice
        return self._cache.get(info, params)

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
                STREAMING_GC.voice_swapped()
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
        """Run the conversion pipeline that conversions and streams build around the voice on a few
        blocks of noise (lazy init, caches) and check what it returns; return ms per block of the
        slowest warm call. A voice that fails here is never swapped in."""
        hop = hop_for(voice, 10.0)
        pipe = Pipeline(voice, hop, chain=replace(self.settings.chain, bypass=False),
                        params=default_params(voice.param_specs))
        state = pipe.init_state()
        rng = np.random.default_rng(0)
        worst = 0.0
        for i in range(3):  # the first call pays one-off costs and is not timed
            x = (0.05 * rng.standard_normal(hop)).astype(np.float32)
            t0 = time.perf_counter()
            y, state = pipe.process(x, state)
            if i:
                worst = max(worst, 1000.0 * (time.perf_counter() - t0))
            if y.shape != x.shape or not np.all(np.isfinite(y)):
                raise VoiceError(f"Voice '{voice.name}' failed its warm-up (it returned {y.shape[0]} samples, some not "
                                 f"finite, for {x.shape[0]}); reinstall the voice or report the problem.")
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
            if any(k in reload_keys(self.voice_info.params) and before.get(k) != merged.get(k) for k in clean):
                # Block/context sizes shape a neural voice's buffers: rebuild it off-thread; the old one
                # keeps playing until the new one is swapped in.
                self.load_voice(self.voice_info.name)
            return merged

    def set_compute_device(self, spec: str | None) -> str:
        """Where neural voices run from now on: "auto", "cpu", "cuda" or "cuda:N" (ConfigError in one
        sentence otherwise); a loaded neural voice is reloaded there (built-in voices run on the CPU)."""
        try:
            device = set_preferred_device(spec)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        with self._lock:
            changed = device != self.settings.compute_device
            self.settings.compute_device = device
            if changed:
                self.save_settings()
                if self.voice_info is not None and self.voice_info.kind != "builtin":
                    self.load_voice(self.voice_info.name)
        return device

    def voice_device(self) -> dict[str, Any]:
        """Where the loaded voice runs, part by part: {parts, device, requested, fallback_reason, memory, cuda_graphs}."""
        voice = self.voice
        if voice is None:
            return {}
        # A voice never moves once loaded: describe it again only when it loads a pitch tracker
        # (they load on first use) or another voice comes.
        key = (voice, len(getattr(voice, "pitch_trackers_loaded", ())))
        cached = self._voice_device
        if cached is None or cached[0] != key:
            cached = self._voice_device = (key, describe_voice_device(voice))
        return cached[1]

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
        # A voice that delivers big blocks needs the ring to hold out while the next one computes:
        # sized from the warm-up here, and from the live blocks once a few have run (Worker).
        margin = margin_for_compute(self._voice_compute_ms, audio.block_ms, bool(burst))
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
            w.swap_pipeline(pipeline)

        self.worker.post(apply)

    @property
    def running(self) -> bool:
        return self.stream is not None and self.worker.chain is not None

    def resolve_device(self, spec: str | int | None, kind: str, devices: list[DeviceInfo] | None = None) -> DeviceInfo:
        """The device meant by ``spec`` (a number, part of a name, None/"default"), or DeviceError."""
        return resolve_device(spec, kind, devices)

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
        # No full collection may stall the worker while it streams: the one collection the policy
        # makes (~75 ms with torch loaded) runs now, before the devices start playing.
        held_here = not self._gc_held
        if held_here:
            self._gc_held = True
            STREAMING_GC.stream_started()
        # Built before the devices start: from their first callback the pre-fill drains, and only
        # the attach (which the idle worker runs the moment it is posted) stands between them.
        chain = LiveChain(stream, pipeline)
        try:
            stream.start()  # raises DeviceError in one sentence
        except BaseException:
            if held_here:
                self._release_gc()
            raise
        abandoned = threading.Event()

        def attach(w: Worker) -> None:
            if abandoned.is_set():  # the caller gave up waiting; never attach a closed stream
                return
            w.reset_counters()
            w.failure = None
            w.attach(chain)

        try:
            self.worker.call(attach)
        except FutureTimeout:
            abandoned.set()
            stream.close()
            if held_here:
                self._release_gc()
            raise DeviceError(
                "The engine's worker did not answer within 5 s (the machine may be overloaded); "
                "the stream was not started, try again."
            ) from None
        except BaseException:
            abandoned.set()
            stream.close()
            if held_here:
                self._release_gc()
            raise
        self.stream = stream
        self.last_error = None
        self.device_error = None

    def _release_gc(self) -> None:
        if self._gc_held:
            self._gc_held = False
            STREAMING_GC.stream_stopped()

    def stop(self) -> None:
        with self._lock:
            stream, self.stream = self.stream, None
            self._release_gc()
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
        return collect(worker=self.worker, voice=self.voice, voice_info=self.voice_info, audio=self.settings.audio,
                       accelerator=self._accel, started_at=self._started, loading=self._loading > 0,
                       warmed_up=self.warmed_up, last_error=self.last_error, device_error=self.device_error,
                       gc_watch=STREAMING_GC.watch, voice_device=self.voice_device())

    def record_timeline(self, seconds: float = 600.0) -> None:
        """Record every live block from now on (about ``seconds`` worth, preallocated): see :meth:`timeline`."""
        capacity = int(seconds * 1000.0 / max(self.settings.audio.block_ms, 1.0)) + 1024
        timeline = BlockTimeline(capacity)

        def attach(w: Worker) -> None:
            w.timeline = timeline

        self.worker.call(attach)

    def timeline(self) -> dict[str, np.ndarray]:
        """The recorded blocks (``at_s``, ``compute_ms``, ``out_level_frames``, ``underflow_frames``)
        and the garbage collections (``gc_at_s``, ``gc_pause_ms``, ``gc_generation``), oldest first."""
        t = self.worker.timeline
        out = t.arrays() if t is not None else {}
        gc_at, gc_ms, gc_gen = STREAMING_GC.watch.recent()
        return {**out, "gc_at_s": gc_at, "gc_pause_ms": gc_ms, "gc_generation": gc_gen}

    def set_pitch_view(self, on: bool) -> None:
        """Track the pitch of the live input and output for a display (off while nobody looks)."""
        self.pitch_view.enable(on)

    def pitch_tracks(self) -> tuple[np.ndarray, np.ndarray]:
        """(input, output) pitch in Hz, one value per PITCH_HOP_S over VIEW_SECONDS, NaN where unvoiced."""
        return self.pitch_view.tracks()

    def levels_db(self) -> tuple[float, float]:
        """(input, output) peak level of the last live block in dBFS, -120 when not streaming: what a
        meter needs 30 times a second, without assembling a whole snapshot."""
        return self.worker.levels_db()

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
        chain: dict[str, Any] | None = None,
    ) -> Future:
        """Convert files with a voice (the current one by default); Future of list[ConvertResult].

        ``params`` and ``chain`` (gains, gate) apply to these files only and are never saved.
        ``progress(file_index, fraction)``; results for files that failed are AutoVoiceError objects
        in the list, so one bad file does not lose the others.
        """
        inputs = [Path(p) for p in inputs]
        out = Path(output)
        if len(inputs) > 1 and out.exists() and not out.is_dir():
            raise AutoVoiceError(f"With several inputs, -o must be a folder, but '{out}' is a file.")
        info, merged = self.params_for(voice, params)
        name = info.name
        try:
            chain_cfg = replace(self.settings.chain, **(chain or {}), bypass=False).validated()
        except TypeError as exc:
            raise ConfigError(f"Unknown chain setting ({exc}).") from None
        many = len(inputs) > 1
        if many or out.is_dir():
            out.mkdir(parents=True, exist_ok=True)

        def job() -> list[ConvertResult | AutoVoiceError]:
            v = self.voice_for(info, merged)
            results: list[ConvertResult | AutoVoiceError] = []
            for i, src in enumerate(inputs):
                dst = output_path_for(src, out, name, many)
                try:
                    results.append(convert_file(src, dst, v, merged, chain_cfg,
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
        cached = self._song_separator_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        sep = get_separator(name, self.song_models_dir())
        self._song_separator_cache = (key, sep)
        return sep

    def song_data_dir(self) -> Path:
        """The data folder (this engine's, else the user's)."""
        return self.data_dir or user_data_dir()

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
        from engine.offline.song import StemCache, convert_song, expand_song_inputs, song_output_path

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
        info, merged = self.params_for(voice, params)
        name = info.name
        chain = replace(self.settings.chain, bypass=False)
        separator = self._song_separator(options.separator)  # missing weights: one sentence now
        cache = StemCache(self.song_cache_dir())

        def job() -> list[Any]:
            v = self.voice_for(info, merged)
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

    def convert_audio(self, x: np.ndarray, sample_rate: int, info: VoiceInfo, params: dict[str, Any],
                      cancel: threading.Event | None = None) -> np.ndarray:
        """Convert mono ``x`` (n,) at ``sample_rate`` with a voice and values from :meth:`params_for`:
        (n,) float32, time-aligned, at the same rate. Runs on the caller's thread."""
        voice = self.voice_for(info, params)
        chain = replace(self.settings.chain, bypass=False)
        return convert_signal(x, sample_rate, voice, params=params, chain=chain, cancel=cancel)

    def open_stream(self, info: VoiceInfo, params: dict[str, Any], sample_rate: int) -> StreamSession:
        """A streaming conversion at a client's ``sample_rate`` with a voice and values from
        :meth:`params_for` (may load a voice: call off any event loop)."""
        voice = self.voice_for(info, params)
        return StreamSession(voice, params, replace(self.settings.chain, bypass=False), sample_rate)

    def live_block_times(self) -> tuple[int, np.ndarray]:
        """(blocks converted by the live stream so far, compute ms of the most recent ones, oldest first)."""
        w = self.worker
        return int(w.blocks_processed), w.compute_ms.latest()

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        self.pitch_view.close()
        try:
            self.stop()
        except Exception:  # noqa: BLE001
            pass
        self.worker.shutdown()
        self._executor.shutdown(wait=False, cancel_futures=True)
