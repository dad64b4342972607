"""EngineController: the one QObject that owns the Engine, polls it, and runs its slow calls off the GUI thread.

Threads and who touches what::

    GUI thread ---- fast QTimer (~30 ms) ---> engine.levels_db(), engine.recent_audio(),
                                               engine.pitch_tracks() (tracked by the engine) --> scopeUpdated
               \--- slow QTimer (~1 s)  ---> engine.snapshot() ------------------------------> snapshotUpdated
               \--- commands -----------> self._jobs (one background thread, in order):
                                           start/stop/switch devices, set_params/set_chain (coalesced),
                                           device listing, voice listing
               \--- voice files --------> self._files (a second background thread, in order):
                                           import_voice() (verifies and copies a model: seconds),
                                           remove_voice(); kept off _jobs so slider changes still apply
    engine executor: load_voice() / convert_files() Futures --done callback--> signal --> GUI thread

The audio thread never pushes anything: everything here is pulled on a timer. Results of background
work reach the GUI thread only through signals (a signal emitted from another thread is queued to the
receiver's thread), so no widget is ever touched off the GUI thread.

NB: the engine serialises its control calls with a lock that device opening holds for as long as the
driver takes; calling those from the GUI thread could freeze the window, hence the job thread. Slider
drags would queue dozens of ``set_params`` calls (each one writes settings.json); they are coalesced so
the job thread applies only the latest values.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal, Slot

from engine.api import DEFAULT_VOICE, PITCH_HOP_S, VIEW_SECONDS
from engine.errors import AutoVoiceError

log = logging.getLogger(__name__)

FAST_POLL_MS = 30
SLOW_POLL_MS = 1000
SCOPE_SECONDS = VIEW_SECONDS
PITCH_EVERY_N_FAST_TICKS = 3  # the engine updates its pitch tracks every ~90 ms


def user_message(exc: BaseException) -> str:
    """What the window shows for a failed call: the engine's one sentence, never a traceback."""
    if isinstance(exc, AutoVoiceError):
        return str(exc)
    return f"Unexpected error: {type(exc).__name__}: {exc}"


@dataclass
class ScopeFrame:
    """What the live view draws on one fast tick."""

    input: np.ndarray  # (n,) float32, the last SCOPE_SECONDS at most
    output: np.ndarray
    sample_rate: int
    input_level_db: float
    output_level_db: float
    f0_input: np.ndarray | None  # (SCOPE_SECONDS / PITCH_HOP_S,) Hz, NaN where unvoiced; None: unchanged
    f0_output: np.ndarray | None


class EngineController(QObject):
    """Owns the Engine (or uses an injected one, for tests) and turns its state into signals."""

    # telemetry (pulled on timers)
    snapshotUpdated = Signal(object)  # HealthSnapshot, ~1 s
    scopeUpdated = Signal(object)  # ScopeFrame, ~30 ms while running
    runningChanged = Signal(bool)
    # results of background work
    busyChanged = Signal(bool, str)  # busy, what
    devicesUpdated = Signal(object)  # list[DeviceInfo]
    devicesUnavailable = Signal(str)  # the engine's sentence
    voicesUpdated = Signal(object)  # list[VoiceInfo]
    voiceLoading = Signal(str)
    voiceLoaded = Signal(object)  # VoiceInfo
    voiceFailed = Signal(str, str)  # name, message
    voiceImported = Signal(object)  # VoiceInfo of the newly installed voice (after voicesUpdated)
    voiceImportFailed = Signal(str)  # the engine's sentence; nothing was installed
    voiceRemoved = Signal(str)  # name (after voicesUpdated)
    paramsApplied = Signal(dict)
    chainChanged = Signal(object)  # ChainConfig
    audioChanged = Signal(object)  # AudioConfig (after a start, a device switch or an advanced change)
    errorOccurred = Signal(str)  # one sentence for the window's message bar
    infoMessage = Signal(str)
    convertProgress = Signal(int, float)  # file index, fraction
    convertFinished = Signal(object)  # list[ConvertResult | AutoVoiceError] or an exception
    # internal: hops a call-back from a worker thread onto the GUI thread
    _call_on_gui = Signal(object)

    def __init__(self, engine=None, parent: QObject | None = None, poll: bool = True):
        super().__init__(parent)
        self._owns_engine = engine is None
        if engine is None:
            from engine.api import Engine

            # Not load_default_voice=True: that warms the saved voice up on this (GUI) thread, which
            # can take seconds for a neural model. The saved voice is loaded in the background by
            # load_saved_voice() instead, with the same fall-back to the default voice.
            engine = Engine(load_default_voice=False)
        self.engine = engine
        self._jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autovoice-gui-jobs")
        self._files = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autovoice-gui-files")
        self._busy = 0
        self._device_jobs = 0  # of those, jobs that open, close or list the audio devices
        self._closed = False
        self._running = False
        self._last_error_seen: str | None = None
        self._pending_lock = threading.Lock()  # NB: guards the coalesced params/chain between GUI and job thread
        self._pending_params: dict[str, Any] = {}
        self._pending_params_voice: str | None = None
        self._pending_chain: dict[str, Any] = {}
        self._flush_scheduled = False
        self._fast_ticks = 0
        self._view_visible = False
        self._scope_cleared = True
        self.devices: list = []
        self.voices: list = []
        self.last_snapshot = None
        self._call_on_gui.connect(self._run_on_gui)

        self.fast_timer = QTimer(self)
        self.fast_timer.setInterval(FAST_POLL_MS)
        self.fast_timer.timeout.connect(self.poll_fast)
        self.slow_timer = QTimer(self)
        self.slow_timer.setInterval(SLOW_POLL_MS)
        self.slow_timer.timeout.connect(self.poll_slow)
        if poll:
            self.fast_timer.start()
            self.slow_timer.start()

    # ------------------------------------------------------------------ plumbing
    @Slot(object)
    def _run_on_gui(self, fn: Callable[[], None]) -> None:
        if not self._closed:
            fn()

    def _on_gui(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the GUI thread (queued when called from another thread)."""
        self._call_on_gui.emit(fn)

    def _set_busy(self, delta: int, what: str) -> None:
        was = self._busy > 0
        self._busy += delta
        if (self._busy > 0) != was or delta > 0:
            self.busyChanged.emit(self._busy > 0, what if self._busy > 0 else "")

    @property
    def busy(self) -> bool:
        return self._busy > 0

    @property
    def devices_busy(self) -> bool:
        """A job that opens, closes or lists the audio devices is queued or running: Start/Stop waits
        for it. Other work (settings, voice lists) does not hold Start/Stop back: the job thread
        runs a start or stop after it, so a key press is never lost."""
        return self._device_jobs > 0

    @property
    def can_toggle_running(self) -> bool:
        """Start/Stop may be pressed: no device job is pending, and there is a voice to start with
        (at start-up the saved one is still loading)."""
        return not self.devices_busy and (self._running or self.engine.voice_info is not None)

    def _submit(self, what: str, fn: Callable[[], Any], on_ok: Callable[[Any], None] | None = None,
                on_error: Callable[[BaseException], None] | None = None,
                executor: ThreadPoolExecutor | None = None, devices: bool = False) -> Future | None:
        """Run ``fn`` on the job thread (or ``executor``); ``on_ok``/``on_error`` then run on the GUI
        thread. ``devices``: the job opens, closes or lists the audio devices (see devices_busy)."""
        if self._closed:
            return None
        self._device_jobs += devices
        self._set_busy(+1, what)

        def job():
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - every failure is reported, none escapes the thread
                if not isinstance(exc, AutoVoiceError):
                    log.error("%s failed:\n%s", what, traceback.format_exc())

                def fail(exc=exc):
                    self._device_jobs -= devices
                    self._set_busy(-1, what)
                    if on_error is not None:
                        on_error(exc)
                    else:
                        self.errorOccurred.emit(user_message(exc))

                self._on_gui(fail)
                return None

            def ok(result=result):
                self._device_jobs -= devices
                self._set_busy(-1, what)
                if on_ok is not None:
                    on_ok(result)

            self._on_gui(ok)
            return result

        return (executor or self._jobs).submit(job)

    # ------------------------------------------------------------------ devices
    def refresh_devices(self, rescan: bool = False) -> None:

        def ok(devs):
            self.devices = list(devs)
            self.devicesUpdated.emit(self.devices)

        def fail(exc):
            self.devices = []
            self.devicesUnavailable.emit(user_message(exc))

        def job():
            # A PortAudio re-scan re-initialises the library under an open stream, which hangs it (seen on
            # JACK): only rescan when stopped, decided here on the job thread, after any queued start.
            return self.engine.devices(refresh=rescan and not self.engine.running)

        self._submit("Looking for audio devices", job, ok, fail, devices=True)

    def start(self) -> None:
        def ok(_):
            self._update_running(True)
            self.audioChanged.emit(self.engine.settings.audio)

        def fail(exc):
            self._update_running(False)
            self.errorOccurred.emit(user_message(exc))
            self.audioChanged.emit(self.engine.settings.audio)

        self._submit("Opening the audio devices", self.engine.start, ok, fail, devices=True)

    def stop(self) -> None:
        def ok(_):
            self._update_running(False)

        self._submit("Closing the audio devices", self.engine.stop, ok, devices=True)

    def toggle_running(self) -> None:
        if not self.can_toggle_running:
            return
        self.stop() if self.engine.running else self.start()

    def set_audio(self, **changes: Any) -> None:
        """Devices, block size, crossfade, pre-fill. While running this reopens the stream, and the
        engine restores the previous setup if the new one fails; the window re-syncs to what is in effect."""

        def ok(_):
            self._update_running(self.engine.running)
            self.audioChanged.emit(self.engine.settings.audio)

        def fail(exc):
            self._update_running(self.engine.running)
            self.errorOccurred.emit(user_message(exc))
            self.audioChanged.emit(self.engine.settings.audio)

        self._submit("Applying the audio settings", lambda: self.engine.set_audio(**changes), ok, fail, devices=True)

    def compute_devices(self) -> list[tuple[str, str]]:
        """(label, spec) for the compute-device choice: automatic, the CPU, and each GPU torch sees."""
        from engine.api import list_gpus

        gpus = [(f"GPU {g['index']}: {g['name'] or 'CUDA device'}", f"cuda:{g['index']}") for g in list_gpus()]
        return [("Automatic (GPU if there is one)", "auto"), ("CPU", "cpu"), *gpus]

    def set_compute_device(self, spec: str) -> None:
        """Where neural voices run; a loaded neural voice is reloaded there, off the GUI thread."""
        self._submit("Choosing the compute device", lambda: self.engine.set_compute_device(spec))

    # ------------------------------------------------------------------ voices
    def refresh_voices(self) -> None:
        def ok(voices):
            self.voices = list(voices)
            self.voicesUpdated.emit(self.voices)

        self._submit("Listing voices", self.engine.list_voices, ok)

    def load_saved_voice(self) -> None:
        """At start-up: the voice the engine already has, else the saved one, else the default."""
        if self.engine.voice_info is not None:
            self.voiceLoaded.emit(self.engine.voice_info)
            return
        self.load_voice(self.engine.settings.voice, fallback=True)

    def load_voice(self, name: str, fallback: bool = False) -> None:
        if self.engine.voice_name == name and self.engine.voice_info is not None:
            self.voiceLoaded.emit(self.engine.voice_info)
            return
        with self._pending_lock:
            self._pending_params.clear()  # values meant for the previous voice
        self.voiceLoading.emit(name)
        self._set_busy(+1, f"Loading voice '{name}'")
        try:
            fut = self.engine.load_voice(name)
        except BaseException as exc:  # noqa: BLE001 - unknown names fail synchronously
            self._set_busy(-1, "")
            self._voice_done(name, exc, fallback)
            return

        def done(f: Future) -> None:  # engine executor thread
            exc = f.exception()
            self._on_gui(lambda: (self._set_busy(-1, ""), self._voice_done(name, exc, fallback)))

        fut.add_done_callback(done)

    def _voice_done(self, name: str, exc: BaseException | None, fallback: bool) -> None:
        if exc is None:
            self.voiceLoaded.emit(self.engine.voice_info)
            return
        message = user_message(exc)
        self.voiceFailed.emit(name, message)
        self.errorOccurred.emit(message)
        if fallback:
            if name != DEFAULT_VOICE:
                self.load_voice(DEFAULT_VOICE, fallback=False)

    def import_voice(self, model: Path | str, index: Path | str | None = None,
                     name: str | None = None) -> Future | None:
        """Verify and install a model as a voice, off the GUI thread (``autovoice voices import``).

        Success: voicesUpdated, then voiceImported(info); the window decides whether to load it.
        Refusal (a training checkpoint, a pickle that would run code, a taken name...): the engine's
        sentence through voiceImportFailed and errorOccurred; the engine installs nothing then.
        """
        model = Path(model)
        index = Path(index) if index else None
        name = (name or "").strip() or None
        what = f"Importing voice '{name or model.stem}'"

        def job():
            info = self.engine.import_voice(model, index=index, name=name)
            return info, self.engine.list_voices()

        def ok(result):
            info, voices = result
            self.voices = list(voices)
            self.voicesUpdated.emit(self.voices)
            self.voiceImported.emit(info)

        def fail(exc):
            message = user_message(exc)
            self.voiceImportFailed.emit(message)
            self.errorOccurred.emit(message)

        return self._submit(what, job, ok, fail, executor=self._files)

    def remove_voice(self, name: str) -> Future | None:
        """Uninstall an installed voice, off the GUI thread. If it is the current voice, the engine first
        switches to the default voice (so nothing still uses the files), then the folder is deleted."""
        was_current = self.engine.voice_name == name
        if was_current:
            with self._pending_lock:
                self._pending_params.clear()  # values meant for the voice that goes away
            self.voiceLoading.emit(DEFAULT_VOICE)

        def job():
            switched = self.engine.remove_voice(name)
            return switched, self.engine.list_voices()

        def ok(result):
            switched, voices = result
            self.voices = list(voices)
            if switched or was_current:
                self.voiceLoaded.emit(self.engine.voice_info)
            self.voicesUpdated.emit(self.voices)
            self.voiceRemoved.emit(name)

        def fail(exc):
            if was_current:  # re-sync the voice panel to whatever the engine has now
                self.voiceLoaded.emit(self.engine.voice_info)
            self.errorOccurred.emit(user_message(exc))
            self.refresh_voices()

        return self._submit(f"Removing voice '{name}'", job, ok, fail, executor=self._files)

    def voice_params(self) -> dict[str, Any]:
        if self.engine.voice_info is None:
            return {}
        try:
            return self.engine.voice_params()
        except AutoVoiceError:
            return {}

    def set_param(self, name: str, value: Any) -> None:
        voice = self.engine.voice_name
        with self._pending_lock:
            if self._pending_params_voice != voice:
                self._pending_params.clear()
            self._pending_params_voice = voice
            self._pending_params[name] = value
        self._schedule_flush()

    def set_chain(self, **changes: Any) -> None:
        with self._pending_lock:
            self._pending_chain.update(changes)
        self._schedule_flush()

    def set_bypass(self, on: bool) -> None:
        self.set_chain(bypass=bool(on))

    def _schedule_flush(self) -> None:
        with self._pending_lock:
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        self._submit("Applying settings", self._flush, self._flushed, self._flush_failed)

    def _flush(self) -> tuple[dict | None, Any]:
        with self._pending_lock:
            params, voice = dict(self._pending_params), self._pending_params_voice
            chain = dict(self._pending_chain)
            self._pending_params.clear()
            self._pending_chain.clear()
            self._flush_scheduled = False
        merged = None
        if params and voice is not None and voice == self.engine.voice_name:
            merged = self.engine.set_params(**params)
        new_chain = self.engine.set_chain(**chain) if chain else None
        return merged, new_chain

    def _flushed(self, result) -> None:
        merged, chain = result
        if merged is not None:
            self.paramsApplied.emit(merged)
        if chain is not None:
            self.chainChanged.emit(chain)

    def _flush_failed(self, exc: BaseException) -> None:
        with self._pending_lock:
            self._flush_scheduled = False
        self.errorOccurred.emit(user_message(exc))
        # Re-sync the controls to what the engine really has.
        self.paramsApplied.emit(self.voice_params())
        self.chainChanged.emit(self.engine.settings.chain)

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Block until queued jobs ran (tests, shutdown). Results still arrive through the event loop."""
        try:
            deadline = time.monotonic() + timeout_s
            self._files.submit(lambda: None).result(timeout=timeout_s)
            self._jobs.submit(lambda: None).result(timeout=max(0.0, deadline - time.monotonic()))
            return True
        except Exception:  # noqa: BLE001
            return False

    # ------------------------------------------------------------------ files
    def convert_files(self, inputs: list[Path], output_dir: Path, cancel: threading.Event) -> None:
        def progress(i: int, fraction: float) -> None:  # engine executor thread
            self.convertProgress.emit(i, float(fraction))

        try:
            fut = self.engine.convert_files(inputs, output_dir, progress=progress, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - e.g. no voice loaded: one sentence
            self.convertFinished.emit(exc)
            return

        def done(f: Future) -> None:
            exc = f.exception()
            result = exc if exc is not None else f.result()
            self._on_gui(lambda: self.convertFinished.emit(result))

        fut.add_done_callback(done)

    # ------------------------------------------------------------------ polling
    def _update_running(self, running: bool) -> None:
        if running != self._running:
            self._running = running
            self.runningChanged.emit(running)

    def set_view_visible(self, visible: bool) -> None:
        """The window shows (or hides) the live view: the engine tracks pitch only while it is seen."""
        if visible != self._view_visible and not self._closed:
            self._view_visible = visible
            self.engine.set_pitch_view(visible)

    @Slot()
    def poll_fast(self) -> None:
        """Levels and the scope: cheap copies of what the worker already keeps."""
        if self._closed:
            return
        running = self.engine.running
        if not running:
            if not self._scope_cleared:
                empty = np.zeros(0, np.float32)
                blank = np.full(int(round(SCOPE_SECONDS / PITCH_HOP_S)), np.nan)
                self.scopeUpdated.emit(ScopeFrame(empty, empty, 48000, *self.engine.levels_db(), blank, blank.copy()))
                self._scope_cleared = True
            return
        self._scope_cleared = False
        level_in_db, level_out_db = self.engine.levels_db()
        x_in, x_out, sr = self.engine.recent_audio(SCOPE_SECONDS)
        f0_in = f0_out = None
        self._fast_ticks += 1
        if self._view_visible and self._fast_ticks % PITCH_EVERY_N_FAST_TICKS == 0:
            f0_in, f0_out = self.engine.pitch_tracks()
        self.scopeUpdated.emit(ScopeFrame(x_in, x_out, sr, level_in_db, level_out_db, f0_in, f0_out))

    @Slot()
    def poll_slow(self) -> None:
        """The HealthSnapshot for the status and performance panels."""
        if self._closed:
            return
        snap = self.engine.snapshot()
        self.last_snapshot = snap
        if not self.busy:
            self._update_running(snap.running)
        # A stream that died on its own (device unplugged) is told once, in the engine's words.
        if snap.last_error and snap.last_error != self._last_error_seen and not snap.running:
            self._last_error_seen = snap.last_error
            if not self.busy:
                self.errorOccurred.emit(snap.last_error)
        elif not snap.last_error:
            self._last_error_seen = None
        self.snapshotUpdated.emit(snap)

    def note_error_shown(self, message: str) -> None:
        """The window showed ``message`` already; the slow poll must not show it again."""
        self._last_error_seen = message

    # ------------------------------------------------------------------ what the window reads
    @property
    def settings(self):
        """The engine's settings in effect (AppSettings; the window reads, the engine writes)."""
        return self.engine.settings

    @property
    def settings_warning(self) -> str | None:
        return self.engine.settings_warning

    @property
    def voice_name(self) -> str | None:
        return self.engine.voice_name

    @property
    def voice_info(self):
        return self.engine.voice_info

    def resolve_device(self, spec, kind: str):
        """The listed device meant by ``spec`` (DeviceError if none)."""
        return self.engine.resolve_device(spec, kind, self.devices)

    # ------------------------------------------------------------------ settings
    def gui_settings(self) -> dict[str, Any]:
        return self.engine.settings.gui

    def save_gui_settings(self, **values: Any) -> None:
        self.engine.settings.gui.update(values)
        self.engine.save_settings()

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Stop polling, finish queued commands, stop the stream; close the engine if we made it."""
        if self._closed:
            return
        self.fast_timer.stop()
        self.slow_timer.stop()
        self.engine.set_pitch_view(False)
        self.wait_idle(timeout_s=15.0)
        self._closed = True
        self._jobs.shutdown(wait=True)
        self._files.shutdown(wait=True)
        try:
            if self.engine.running:
                self.engine.stop()
        except Exception:  # noqa: BLE001 - closing must not fail because a device already vanished
            log.warning("stopping the stream at exit failed", exc_info=True)
        if self._owns_engine:
            self.engine.close()
