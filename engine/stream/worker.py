"""The engine's worker thread: the only thread that runs a Pipeline for the live stream.

Commands flow inward through a queue and are applied between hops (never mid-block); heavy objects
(a loaded voice, a new Pipeline) arrive ready-made and are swapped in by reference. The worker beats
a heartbeat every loop, streaming or not, which is what the liveness probe reads.

Per hop, at the device rate ``sr_dev`` and the voice rate ``sr_v``::

    in_ring --hop_dev--> downmix --HopBridge: resample, whole hops--> Pipeline --HopBridge: resample back-->
        out_ring, mon_ring

Late blocks: if a hop takes longer than its duration, the output callback plays silence for what is
missing (counted as underflow, never blocking), the out ring then holds more than its pre-fill, and
the worker trims the excess with a short crossfade so latency returns to its budget instead of
drifting.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from engine.dsp.dynamics import peak_db
from engine.stream.hops import HopBridge
from engine.pipeline import Pipeline, PipelineState
from engine.stream.realtime import RealtimeStream

log = logging.getLogger(__name__)

STALL_TIMEOUT_S = 1.5  # no callback for this long while "running" = the device went away
GUARD_WINDOW_WRITES = 16  # writes over which the ring's low point is taken (see LatencyGuard)
GUARD_TOLERANCE_FRAMES = 8  # resampler rounding and timer noise, not worth a correction
HISTORY_SECONDS = 4.0


class History:
    """Last few seconds of mono audio for the GUI's scope/pitch view (worker writes, GUI copies).

    NB: the GUI may copy while the worker writes; a torn copy shows one hop of mixed audio on a
    display and is harmless, so no lock is taken.
    """

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.buf = np.zeros(int(HISTORY_SECONDS * sample_rate), dtype=np.float32)
        self.pos = 0

    def push(self, x: np.ndarray) -> None:
        n = min(len(x), len(self.buf))
        x = x[-n:]
        start = self.pos % len(self.buf)
        first = min(n, len(self.buf) - start)
        self.buf[start : start + first] = x[:first]
        self.buf[: n - first] = x[first:]
        self.pos += n

    def latest(self, n: int) -> np.ndarray:
        n = min(n, len(self.buf), self.pos)
        end = self.pos % len(self.buf)
        return np.roll(self.buf, -end)[len(self.buf) - n :].copy()


@dataclass
class SwapFade:
    """The voice that was playing before a swap: it stays audible until the new voice's look-ahead
    has passed, then crossfades out over one hop (see Worker._process)."""

    pipeline: Pipeline
    state: PipelineState
    done_samples: int = 0  # samples processed since the swap


@dataclass
class StallWatch:
    """When the device callbacks were last seen advancing; a stream whose callbacks stop for
    STALL_TIMEOUT_S while it claims to run has lost its device."""

    calls: int = -1
    seen_at: float = 0.0

    def stalled(self, calls: int, now: float, started_at: float) -> bool:
        if calls != self.calls:
            self.calls, self.seen_at = calls, now
            return False
        return now - self.seen_at > STALL_TIMEOUT_S and now - started_at > STALL_TIMEOUT_S


class LiveChain:
    """Everything the worker needs for one running stream; built by the engine, used by the worker only."""

    def __init__(self, stream: RealtimeStream, pipeline: Pipeline):
        self.stream = stream
        self.pipeline = pipeline
        self.state: PipelineState = pipeline.init_state()
        self.hop_dev = stream.hop_frames
        self.in_block = np.zeros((self.hop_dev, stream.in_channels), dtype=np.float32)
        self.bridge = HopBridge(stream.sample_rate, pipeline.sample_rate, pipeline.hop_samples)
        self.fade_from: SwapFade | None = None
        self.in_history = History(pipeline.sample_rate)
        self.out_history = History(pipeline.sample_rate)
        # One per output ring (main, monitor).
        mon_uf = stream.mon_ring.underflow_frames if stream.mon_ring else 0
        self.guards = (LatencyGuard(stream.out_ring.underflow_frames, stream.in_ring.dropped_frames),
                       LatencyGuard(mon_uf, stream.in_ring.dropped_frames))
        self.stall = StallWatch()

    def swap_pipeline(self, pipeline: Pipeline) -> None:
        if pipeline.sample_rate == self.pipeline.sample_rate and pipeline.hop_samples == self.pipeline.hop_samples:
            if self.fade_from is not None and self.fade_from.done_samples < self.pipeline.latency_samples:
                # Swapped again before the previous new voice was heard (arrowing through the
                # list): keep fading from the voice that is still audible, skip the one in between.
                self.fade_from.done_samples = 0
            else:
                self.fade_from = SwapFade(self.pipeline, self.state)
        else:
            self.fade_from = None
            self.bridge = HopBridge(self.stream.sample_rate, pipeline.sample_rate, pipeline.hop_samples)
            self.in_history = History(pipeline.sample_rate)
            self.out_history = History(pipeline.sample_rate)
        self.pipeline = pipeline
        self.state = pipeline.init_state()

    def latency_ms(self) -> tuple[float, float]:
        """(algorithmic, buffer) latency in ms."""
        sr_v, sr_d = self.pipeline.sample_rate, self.stream.sample_rate
        algo = (
            self.stream.burst_frames / sr_d
            + self.pipeline.latency_samples / sr_v
            + self.bridge.to_voice.delay_samples / sr_v
            + self.bridge.from_voice.delay_samples / sr_d
        )
        buffer = self.stream.margin_frames / sr_d
        return 1000.0 * algo, 1000.0 * buffer


class Worker:
    def __init__(self) -> None:
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self.chain: LiveChain | None = None
        self.heartbeat = time.monotonic()
        self.compute_ms: collections.deque = collections.deque(maxlen=1000)
        self.reset_counters()
        self.failure: str | None = None  # set when a device vanished; read by the engine
        self.on_failure: Callable[[str, RealtimeStream | None], None] | None = None
        self._thread = threading.Thread(target=self._run, name="autovoice-worker", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ control (any thread)
    def reset_counters(self) -> None:
        self.blocks_processed = 0
        self.late_blocks = 0
        self.latency_corrections = 0
        self.input_level_db = -120.0
        self.output_level_db = -120.0
        self.compute_ms.clear()

    def call(self, fn: Callable[["Worker"], Any], timeout_s: float = 5.0) -> Any:
        """Run ``fn(worker)`` on the worker thread between hops and return its result."""
        fut: Future = Future()
        self._commands.put((fn, fut))
        return fut.result(timeout=timeout_s)

    def post(self, fn: Callable[["Worker"], Any]) -> None:
        self._commands.put((fn, None))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    # ------------------------------------------------------------------ worker thread
    def _apply_commands(self) -> None:
        while True:
            try:
                fn, fut = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                result = fn(self)
                if fut is not None:
                    fut.set_result(result)
            except BaseException as exc:  # noqa: BLE001 - reported to the caller, the worker lives on
                if fut is not None:
                    fut.set_exception(exc)
                else:
                    log.exception("worker command failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            self._apply_commands()
            chain = self.chain
            if chain is None:
                time.sleep(0.02)
                continue
            if self._stalled(chain):
                continue
            if chain.stream.in_ring.read_exact(chain.in_block):
                try:
                    self._process(chain)
                except Exception as exc:  # noqa: BLE001 - a voice bug must not kill the stream
                    log.exception("voice failed")
                    self._fail(f"The voice failed while converting ({exc}); the stream was stopped.")
            else:
                time.sleep(0.0005)

    def _stalled(self, chain: LiveChain) -> bool:
        s = chain.stream
        now = time.monotonic()
        if s.finished_unexpectedly or not s.active:
            self._fail(self._device_message(chain))
            return True
        if chain.stall.stalled(s.counters.input_callbacks + s.counters.output_callbacks, now, s.started_at):
            self._fail(self._device_message(chain))
            return True
        return False

    @staticmethod
    def _device_message(chain: LiveChain) -> str:
        s = chain.stream
        devices = f"'{s.input_device.label}' -> '{s.output_device.label}'"
        if s.monitor_device is not None:
            devices += f", monitor '{s.monitor_device.label}'"
        return (
            f"An audio device stopped ({devices}): it was probably unplugged or taken by another program; "
            "the stream was stopped, pick the devices and start again."
        )

    def _fail(self, message: str) -> None:
        chain = self.chain
        self.failure = message
        if self.on_failure:
            try:
                self.on_failure(message, chain.stream if chain is not None else None)
            except Exception:  # noqa: BLE001
                log.exception("failure handler")
        self.chain = None  # NB: after the message is recorded, so whoever sees "not running" sees why
        if chain is not None:
            chain.stream.close_soon(wait_s=0.0)  # never block the worker on a dead device

    def _process(self, chain: LiveChain) -> None:
        t0 = time.perf_counter()
        s = chain.stream
        block = chain.in_block
        mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)
        self.input_level_db = peak_db(mono)
        x = chain.bridge.hops(mono)
        if len(x) == 0:
            return
        hop_v = chain.pipeline.hop_samples
        y, chain.state = chain.pipeline.process(x, chain.state)
        fade = chain.fade_from
        if fade is not None:
            # The new voice starts with its look-ahead of silence: keep the old one audible until
            # that has passed, then crossfade over one hop, so a swap never leaves a gap.
            y_old, fade.state = fade.pipeline.process(x, fade.state)
            hold = chain.pipeline.latency_samples
            pos = fade.done_samples + np.arange(len(y), dtype=np.float32)
            ramp = np.clip((pos - hold) / float(hop_v), 0.0, 1.0).astype(np.float32)
            y = y * ramp + y_old * (1.0 - ramp)
            fade.done_samples += len(y)
            if fade.done_samples >= hold + hop_v:
                chain.fade_from = None
        chain.in_history.push(x)
        chain.out_history.push(y)
        out = chain.bridge.back(y)
        self.output_level_db = peak_db(out)
        dropped = s.in_ring.dropped_frames
        if chain.guards[0].write(s.out_ring, out, s.margin_frames, dropped):
            self.latency_corrections += 1
        if s.mon_ring is not None and chain.guards[1].write(s.mon_ring, out, s.margin_frames, dropped):
            self.latency_corrections += 1
        dt_ms = 1000.0 * (time.perf_counter() - t0)
        self.compute_ms.append(dt_ms)
        self.blocks_processed += 1
        if dt_ms > 1000.0 * len(x) / chain.pipeline.sample_rate:
            self.late_blocks += 1


@dataclass
class LatencyGuard:
    """Keeps one output ring's latency at its budget (see :meth:`write`)."""

    underflow_frames_base: int  # the ring's underflow frames at the start, plus those made up since
    dropped_frames_base: int  # input frames dropped at the start
    lowest_frames: float = float("inf")  # lowest level of the ring in the current window
    writes: int = 0  # writes in the current window
    skipped_frames: int = 0  # frames skipped in all

    def write(self, ring, out: np.ndarray, margin: int, dropped_in: int = 0) -> bool:
        """Write ``out`` to the ring, first skipping latency that underflows added; True if it did.

        Every frame the output callback had to play as silence (an underflow: a late block, a
        stalled device) delays everything after it by one frame, for good, unless the input lost
        as many (``dropped_in``: frames the input ring overwrote, which were never converted). So
        once the late audio has arrived, skip the frames owed, but never more than the lowest level
        the ring held over the last few writes, so the skip itself cannot run the ring dry.
        Independently, a ring whose lowest level sits above the margin holds latency nobody asked
        for (e.g. the input started before the output): skip that too. A skip is a crossfade from
        the samples that would have followed the ring's content into those after the skipped
        stretch: no click.
        """
        level = ring.available()
        self.lowest_frames = min(self.lowest_frames, level)
        self.writes += 1
        if self.writes < GUARD_WINDOW_WRITES:
            ring.write(out)
            return False
        lowest = int(self.lowest_frames)
        self.lowest_frames, self.writes = float("inf"), 0
        owed = (ring.underflow_frames - self.underflow_frames_base) - (dropped_in - self.dropped_frames_base)
        excess = max(min(owed, lowest - GUARD_TOLERANCE_FRAMES), lowest - margin - GUARD_TOLERANCE_FRAMES)
        fade = min(128, max(excess, 0), len(out) // 2)
        skip = min(excess, len(out) - fade)
        if excess <= GUARD_TOLERANCE_FRAMES or skip <= 0 or fade <= 0:
            ring.write(out)
            return False
        kept = out[skip:].copy()
        ramp = (np.arange(fade, dtype=np.float32) + 0.5) / fade
        kept[:fade] = out[:fade] * (1.0 - ramp) + kept[:fade] * ramp
        self.underflow_frames_base += max(0, min(owed, skip))
        self.skipped_frames += skip
        ring.write(kept)
        return True
