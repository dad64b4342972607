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

import dataclasses
import logging
import math
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from engine.dsp.dynamics import SILENCE_DB, peak_db
from engine.stream.hops import HopBridge
from engine.pipeline import Pipeline, PipelineState
from engine.stream.priority import (
    CALLBACK_PRIORITY,
    DEMOTE_AFTER_LATE,
    Priority,
    ThreadTimes,
    cpu_bound,
    demote_current_thread,
    lower_callback_thread,
    raise_callback_thread,
    raise_current_thread,
    release_current_thread,
)
from engine.stream.realtime import RealtimeStream, margin_for_compute, margin_for_period, margin_step_above

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.02  # with no stream, the worker beats its heartbeat this often (and wakes on a command)
# Waiting for a block's input the worker sleeps until it is due (CallbackCounters.input_due_s) less
# INPUT_EARLY_S (the callbacks' delivery jitter), then polls every POLL_S; never longer than
# MAX_SLEEP_S at a time: the most it can oversleep input that came sooner than the recent
# callbacks foretold (and it applies commands and watches for a stalled device between sleeps).
POLL_S = 0.0005
INPUT_EARLY_S = 0.001
MAX_SLEEP_S = 0.005
STALL_TIMEOUT_S = 1.5  # no callback for this long while "running" = the device went away
GUARD_WINDOW_WRITES = 16  # writes over which the ring's low point is taken (see LatencyGuard)
GUARD_TOLERANCE_FRAMES = 8  # resampler rounding and timer noise, not worth a correction
HISTORY_SECONDS = 4.0
# Adaptive safety (AudioConfig.adaptive_buffer): an underflow's silence is kept as extra margin
# instead of being trimmed away, topped up to the next margin that holds out a device period longer
# (realtime.margin_step_above: less would not help at the worst phase), up to ADAPTIVE_MAX_MS, or
# ADAPTIVE_MAX_BURST_SHARE of the voice's burst when that is more (a neural voice's block takes
# hundreds of ms, and its lateness scales with it: an RVC soak on this CPU saw 4-25 ms); after
# ADAPTIVE_QUIET_S without one, the margin shrinks back by ADAPTIVE_SHRINK_MS every
# ADAPTIVE_SHRINK_EVERY_S until it is what was set; a block so late that only the growth saved it
# counts as an underflow for that quiet time. Slowly, as a
# jitter buffer does: the stalls that underflow come back minutes apart (an hour of `higher` here had
# them seconds to 19 min apart, 1-9 ms short each), so a margin given back after 30 s was gone before
# the next; paired by time, keeping it 5 minutes halved the underflows (README, soak runs).
ADAPTIVE_MAX_MS = 40.0
ADAPTIVE_MAX_BURST_SHARE = 0.2
ADAPTIVE_QUIET_S = 300.0
ADAPTIVE_SHRINK_MS = 1.0
ADAPTIVE_SHRINK_EVERY_S = 10.0
# What the adaptive buffer does, in the words the app's controls use.
ADAPTIVE_BUFFER_SUMMARY = (f"after an underflow the safety margin grows by its gap, at least to the next step of the "
                           f"device's callbacks (at most {ADAPTIVE_MAX_MS:.0f} ms, "
                           f"or a fifth of a neural voice's block) and is given back after "
                           f"{ADAPTIVE_QUIET_S / 60:g} minutes in which it saved no block")
# A voice that delivers bursts (a neural voice's 250-500 ms block) has its margin set from a warm-up
# on noise when it loads, which can be far off what live speech costs on a loaded machine (measured:
# 175 ms warm-up against 293 ms live; 1.2 s against 392 ms with a busy core during the warm-up).
# After its first SIZE_FROM_LIVE_BLOCKS blocks the margin is set again from the slowest of them
# (the first SIZE_SKIP_BLOCKS, still settling, not counted) when that differs by more than
# SIZE_TOLERANCE_MS.
SIZE_FROM_LIVE_BLOCKS = 16
SIZE_SKIP_BLOCKS = 2
SIZE_TOLERANCE_MS = 10.0


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
        """The newest ``n`` samples, oldest first, as a copy of just those (two slices of the ring)."""
        size = len(self.buf)
        n = min(n, size, self.pos)
        end = self.pos % size
        start = end - n
        if start >= 0:
            return self.buf[start:end].copy()
        return np.concatenate((self.buf[start:], self.buf[:end]))


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
        adaptive = stream.config.adaptive_buffer
        ms = stream.sample_rate / 1000.0
        growth = max(int(ADAPTIVE_MAX_MS * ms), int(ADAPTIVE_MAX_BURST_SHARE * stream.burst_frames)) if adaptive else 0
        self.guards = tuple(
            LatencyGuard(uf, stream.in_ring.dropped_frames, margin_frames=stream.margin_frames,
                         max_margin_frames=stream.margin_frames + growth,
                         shrink_frames=max(1, int(ADAPTIVE_SHRINK_MS * ms)))
            for uf in (stream.out_ring.underflow_frames, mon_uf))
        # The margin asked for (frames beyond a burst): the stream's, or set again from the live
        # blocks; each guard's holds it at its device's period (Worker._fit_margins).
        self.margin_set_frames = stream.margin_frames
        self.stall = StallWatch()
        # The callback threads still to be given the worker's priority once they have run
        # (Worker._raise_callbacks); AUTOVOICE_CALLBACK_PRIORITY=0 leaves them (the soak's baseline).
        raise_them = os.environ.get("AUTOVOICE_CALLBACK_PRIORITY", "1") != "0"
        sides = [(stream.counters, "input_thread_id"), (stream.counters, "output_thread_id")]
        if stream.mon_ring is not None:
            sides.append((stream.mon_counters, "output_thread_id"))
        self.callbacks_to_raise = sides if raise_them else []
        # Whether the worker sleeps until a block's input is due (Worker._sleep_s) rather than
        # polling every POLL_S; AUTOVOICE_INPUT_DUE=0 polls (the soak's baseline).
        self.sleep_until_due = os.environ.get("AUTOVOICE_INPUT_DUE", "1") != "0"
        # Voice blocks until the margin is sized from live compute (Worker._size_from_live); 0: never
        # (a voice without bursts, or a fixed latency asked for).
        sized = stream.burst_frames > stream.hop_frames and adaptive
        self.blocks_to_sizing = SIZE_FROM_LIVE_BLOCKS if sized else 0

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
        buffer = self.guards[0].margin_frames / sr_d
        return 1000.0 * algo, 1000.0 * buffer

    def buffer_growth_ms(self) -> float:
        """How much the adaptive margin has grown above what was set (0 with a fixed latency)."""
        g = self.guards[0]
        return 1000.0 * (g.margin_frames - g.base_margin_frames) / self.stream.sample_rate

    def buffer_note(self) -> str | None:
        """Why the margin in effect (less adaptive growth) is not the one the stream opened with."""
        s, g = self.stream, self.guards[0]
        notes = []
        if self.margin_set_frames != s.margin_frames:
            notes.append("set from the live blocks")
        if g.base_margin_frames > self.margin_set_frames:
            notes.append(f"raised to outlast the device's {g.period_frames}-frame callbacks")
        if not notes:
            return None
        return f"{'; '.join(notes)}; opened with {1000.0 * s.margin_frames / s.sample_rate:.0f} ms"


class Worker:
    def __init__(self) -> None:
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self.chain: LiveChain | None = None
        self.heartbeat = time.monotonic()
        self.compute_ms = RecentValues(1000)
        self.reset_counters()
        self.failure: str | None = None  # set when a device vanished; read by the engine
        self.raised_callbacks: list[int] = []  # callback threads given priority (see _raise_callbacks)
        self.timeline: BlockTimeline | None = None  # per-block record, when asked for (diagnosis, soak runs)
        self._times = ThreadTimes()  # the worker thread's, read only for the timeline
        self._times_before: tuple[float, float, int, int] | None = None  # their totals at the block before
        self._polls = 0  # the worker's own sleeps waiting for input (each one a voluntary switch)
        self.on_failure: Callable[[str, RealtimeStream | None], None] | None = None
        self.priority: Priority | None = None  # held while a stream runs (engine/stream/priority.py)
        self._late_in_a_row = 0
        self._thread = threading.Thread(target=self._run, name="autovoice-worker", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ control (any thread)
    def reset_counters(self) -> None:
        self.blocks_processed = 0
        self.late_blocks = 0
        self.latency_corrections = 0
        self.input_level_db = SILENCE_DB
        self.output_level_db = SILENCE_DB
        self.compute_ms.clear()

    def levels_db(self) -> tuple[float, float]:
        """(input, output) peak level of the last live block in dBFS; silence when not streaming."""
        if self.chain is None:
            return SILENCE_DB, SILENCE_DB
        return self.input_level_db, self.output_level_db

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
    def _apply_commands(self, wait_s: float = 0.0) -> None:
        """Run the queued commands; ``wait_s``: with none queued, wait that long for the first (an
        idle worker sleeps here, so a stream's attach runs the moment it is posted)."""
        while True:
            try:
                fn, fut = self._commands.get(timeout=wait_s) if wait_s > 0 else self._commands.get_nowait()
            except queue.Empty:
                return
            wait_s = 0.0
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
                if self.priority is not None:
                    release_current_thread(self.priority)
                    self.priority = None
                while self.raised_callbacks:
                    lower_callback_thread(self.raised_callbacks.pop())
                self._apply_commands(wait_s=IDLE_WAIT_S)
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
                self._polls += 1
                time.sleep(self._sleep_s(chain))
        self._times.close()

    @staticmethod
    def _sleep_s(chain: LiveChain) -> float:
        """How long to sleep for the next block's input: until it is due, or one poll."""
        if not chain.sleep_until_due:
            return POLL_S
        s = chain.stream
        due_s = s.counters.input_due_s(s.in_ring.read + len(chain.in_block), s.sample_rate)
        return min(max(due_s - INPUT_EARLY_S - time.monotonic(), POLL_S), MAX_SLEEP_S)

    def attach(self, chain: LiveChain) -> None:
        """Start converting `chain` (on the worker thread, between hops: through call())."""
        self._ask_priority(chain)
        self._late_in_a_row = 0
        self.chain = chain

    def swap_pipeline(self, pipeline: Pipeline) -> None:
        """Another voice (or its settings) for the running chain, at this hop boundary (on the worker
        thread); the priority is asked again when the new voice computes elsewhere than the old."""
        chain = self.chain
        if chain is None:
            return
        heavy_before = cpu_bound(chain.pipeline.voice)
        chain.swap_pipeline(pipeline)
        if cpu_bound(pipeline.voice) != heavy_before:
            self._ask_priority(chain)

    def _ask_priority(self, chain: LiveChain) -> None:
        if self.priority is not None:  # a stream reopened, or another kind of voice: ask again
            release_current_thread(self.priority)
        self.priority = raise_current_thread(chain.stream.config.realtime_priority,
                                             cpu_bound=cpu_bound(chain.pipeline.voice))

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
        waited_ms = self._input_wait_ms(s) if self.timeline is not None else 0.0  # only the timeline wants it
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
        now = time.monotonic()
        level = s.out_ring.available() if self.timeline is not None else 0  # only the timeline wants it
        if chain.guards[0].write(s.out_ring, out, dropped, now):
            self.latency_corrections += 1
        if s.mon_ring is not None and chain.guards[1].write(s.mon_ring, out, dropped, now):
            self.latency_corrections += 1
        dt_ms = 1000.0 * (time.perf_counter() - t0)
        self.compute_ms.append(dt_ms)
        self.blocks_processed += 1
        if dt_ms > 1000.0 * len(x) / chain.pipeline.sample_rate:
            self.late_blocks += 1
            self._late_in_a_row += 1
            if self._late_in_a_row == DEMOTE_AFTER_LATE and self.priority is not None:
                self.priority = demote_current_thread(self.priority, DEMOTE_AFTER_LATE)
        else:
            self._late_in_a_row = 0
        if self.timeline is not None:
            self._add_to_timeline(now, dt_ms, level, s.out_ring.underflow_frames, waited_ms)
        if chain.callbacks_to_raise:
            self._raise_callbacks(chain)
        if chain.blocks_to_sizing:
            chain.blocks_to_sizing -= 1
            if not chain.blocks_to_sizing:
                self._size_from_live(chain)
        if (s.counters.max_frames != chain.guards[0].period_frames
                or s.mon_counters.max_frames != chain.guards[1].period_frames):
            self._fit_margins(chain)

    def _add_to_timeline(self, now: float, dt_ms: float, level: int, underflow_frames: int, waited_ms: float) -> None:
        """One block's record, with what the kernel says of the worker thread since the block before."""
        times = self._times.sample() + (self._polls,)
        before = self._times_before or times
        self._times_before = times
        on_cpu_ms, queued_ms, switches, faults, polls = (a - b for a, b in zip(times, before))
        self.timeline.add(now, dt_ms, level, underflow_frames, waited_ms, queued_ms, on_cpu_ms,
                          max(0, switches - polls), faults, polls)

    def _size_from_live(self, chain: LiveChain) -> None:
        """The output rings' margin from the live blocks' compute instead of the warm-up's (see
        SIZE_FROM_LIVE_BLOCKS): lower, the guards skip the excess over their next writes; higher,
        the difference goes in at once as one faded gap, instead of as underflows one by one."""
        s = chain.stream
        slowest = float(np.max(self.compute_ms.latest(SIZE_FROM_LIVE_BLOCKS - SIZE_SKIP_BLOCKS)))
        sr = s.sample_rate
        need_ms = margin_for_compute(slowest, 1000.0 * s.hop_frames / sr, bursts=True)
        _, _, margin, _ = RealtimeStream.ring_frames(s.config, sr, 1000.0 * s.burst_frames / sr, need_ms,
                                                     1000.0 * s.jitter_frames / sr)
        if abs(margin - chain.margin_set_frames) * 1000.0 / sr <= SIZE_TOLERANCE_MS:
            return
        log.info("output margin %.0f ms -> %.0f ms, from the slowest of the first live blocks (%.0f ms)",
                 1000.0 * chain.margin_set_frames / sr, 1000.0 * margin / sr, slowest)
        chain.margin_set_frames = margin
        self._fit_margins(chain)

    @staticmethod
    def _fit_margins(chain: LiveChain) -> None:
        """Each output ring's margin: the one set, raised where its device's callbacks need more
        (margin_for_period) once they have run, so no phase of a burst against a period can empty
        the ring (a 10 ms margin under PipeWire's 1024-frame quantum would, every callback); never
        more than the ring can hold."""
        s = chain.stream
        sr = s.sample_rate
        for guard, counters, one_clock in zip(chain.guards, (s.counters, s.mon_counters), (s.duplex, False)):
            period = counters.max_frames
            # bursts complete only at multiples of gcd(burst, period) of a duplex stream's callbacks
            # when each is a whole number of reads (no jitter); otherwise at any phase
            phase = math.gcd(s.burst_frames, period) if period and one_clock and not s.jitter_frames else 0
            guard.period_frames, guard.phase_frames = period, phase
            margin = min(margin_for_period(chain.margin_set_frames, period, phase),
                         s.out_ring.capacity - s.burst_frames - s.hop_frames)  # what the ring can hold
            if margin != guard.base_margin_frames:
                if guard is chain.guards[0] and margin > chain.margin_set_frames:
                    log.info("output margin %.1f ms -> %.1f ms, to outlast the device's %d-frame callbacks",
                             1000.0 * guard.base_margin_frames / sr, 1000.0 * margin / sr, period)
                guard.resize(margin)

    @staticmethod
    def _input_wait_ms(s: RealtimeStream) -> float:
        """How long the block just read had been complete in the input ring before the worker took
        it: from the input callback that delivered its last frame until now. A prompt worker shows
        its poll interval; a late one (held off a core or the interpreter) shows how late; input
        the sound server delivered late shows nothing, however long the gap before it."""
        c = s.counters
        end = s.in_ring.read  # the block's last frame is end - 1
        written = c.arrival_written.copy()  # one look: a callback may write a slot meanwhile
        after = written >= end
        if not after.any():
            return 0.0
        first = np.flatnonzero(after)[np.argmin(written[after])]
        return 1000.0 * (time.monotonic() - float(c.arrival_s[first]))

    def _raise_callbacks(self, chain: LiveChain) -> None:
        """Each callback thread, once it has run, gets priority just above a real-time worker's
        (priority.raise_callback_thread: a busy machine, this worker included, would otherwise
        keep a normal-priority callback thread off its core, and the Python callbacks' interpreter
        lock with it)."""
        pending, raised = [], 0
        for counters, attr in chain.callbacks_to_raise:
            tid = getattr(counters, attr)
            if not tid:
                pending.append((counters, attr))
            elif tid not in self.raised_callbacks and self.priority is not None \
                    and raise_callback_thread(tid, self.priority):
                self.raised_callbacks.append(tid)
                raised += 1
        chain.callbacks_to_raise = pending
        note = f"; audio callbacks raised to real-time (SCHED_RR {CALLBACK_PRIORITY})"
        if raised and note not in self.priority.detail:
            self.priority = dataclasses.replace(self.priority, detail=self.priority.detail + note)


FADE_FRAMES = 128  # the longest fade of a skip or gap the guard makes (2.7 ms at 48 kHz)


def _fade_in(frames: int) -> np.ndarray:
    """A linear ramp from near 0 to near 1 over ``frames`` samples (reversed: a fade-out)."""
    return (np.arange(frames, dtype=np.float32) + 0.5) / frames


@dataclass
class LatencyGuard:
    """Keeps one output ring's latency at its budget (see :meth:`write`), and with an adaptive
    buffer moves that budget: up by what an underflow's silence added, down again when quiet."""

    underflow_frames_base: int  # the ring's underflow frames at the start, plus those made up since
    dropped_frames_base: int  # input frames dropped at the start
    margin_frames: int = 0  # the safety margin in effect
    max_margin_frames: int | None = None  # None or == margin: fixed latency
    shrink_frames: int = 48
    lowest_frames: float = float("inf")  # lowest level of the ring in the current window
    writes: int = 0  # writes in the current window
    skipped_frames: int = 0  # frames skipped in all
    inserted_frames: int = 0  # frames of silence put in by margin raises, in all
    base_margin_frames: int = -1  # the margin that was set (filled in from margin_frames)
    seen_underflow_frames: int = -1
    last_underflow_s: float = 0.0
    last_shrink_s: float = 0.0
    gap_frames: int = 0  # silence to put in at the next write (resize to a larger margin)
    # The device's callback size and the phase step of its bursts (margin_for_period); 0: not known
    period_frames: int = 0
    phase_frames: int = 0

    def __post_init__(self) -> None:
        if self.base_margin_frames < 0:
            self.base_margin_frames = self.margin_frames
        if self.max_margin_frames is None:
            self.max_margin_frames = self.margin_frames
        if self.seen_underflow_frames < 0:
            self.seen_underflow_frames = self.underflow_frames_base

    def _adapt(self, underflow_frames: int, level: int, now_s: float) -> None:
        """After a new underflow, grow to the next margin that holds out a period longer: its
        missing frames are already in the ring as silence and stay (no second gap), the rest goes
        in as silence right behind them (``gap_frames``). Else shrink one step after a quiet
        period, quiet meaning also no block so late that only the growth kept the ring from running
        dry (``level``, what the ring held just before this write, below the growth)."""
        new = underflow_frames - self.seen_underflow_frames
        self.seen_underflow_frames = underflow_frames
        if new > 0:
            target = max(self.margin_frames + new,
                         margin_step_above(self.margin_frames, self.period_frames, self.phase_frames))
            grow = min(target, self.max_margin_frames) - self.margin_frames
            if grow > 0:
                kept = min(grow, new)
                self.margin_frames += grow
                self.underflow_frames_base += kept  # kept as margin, no longer owed
                self.gap_frames += grow - kept
            self.last_underflow_s = self.last_shrink_s = now_s
        elif level < self.margin_frames - self.base_margin_frames:
            self.last_underflow_s = self.last_shrink_s = now_s
        elif (self.margin_frames > self.base_margin_frames and now_s - self.last_underflow_s >= ADAPTIVE_QUIET_S
              and now_s - self.last_shrink_s >= ADAPTIVE_SHRINK_EVERY_S):
            shrink = min(self.shrink_frames, self.margin_frames - self.base_margin_frames)
            self.margin_frames -= shrink
            self.underflow_frames_base -= shrink  # owed again: the skip below takes them out exactly
            self.last_shrink_s = now_s

    def resize(self, margin_frames: int) -> None:
        """A new margin as if it had been set (adaptive growth, if any, then counts from it): a
        lower one is reached by the skips of :meth:`write`, a higher one by one gap of silence at
        the next write (see there)."""
        growth = self.max_margin_frames - self.base_margin_frames
        self.gap_frames = max(0, margin_frames - self.margin_frames)
        self.margin_frames = self.base_margin_frames = margin_frames
        self.max_margin_frames = margin_frames + growth

    def _write_with_gap(self, ring, out: np.ndarray) -> None:
        """``out`` with ``gap_frames`` of silence after its first few samples, faded out into it and
        in after it (no click; nothing of ``out`` is lost)."""
        fade = min(FADE_FRAMES, len(out) // 2)
        ramp = _fade_in(fade)
        head = out[:fade] * ramp[::-1]
        tail = out[fade:].copy()
        tail[:fade] *= ramp
        ring.write(np.concatenate([head, np.zeros(self.gap_frames, np.float32), tail]))
        self.inserted_frames += self.gap_frames
        self.gap_frames = 0
        self.lowest_frames, self.writes = float("inf"), 0  # the level before the gap says nothing now

    def write(self, ring, out: np.ndarray, dropped_in: int = 0, now_s: float = 0.0) -> bool:
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
        if self.max_margin_frames > self.base_margin_frames:
            self._adapt(ring.underflow_frames, level, now_s)
        if self.gap_frames:
            self._write_with_gap(ring, out)
            return True
        margin = self.margin_frames
        self.lowest_frames = min(self.lowest_frames, level)
        self.writes += 1
        if self.writes < GUARD_WINDOW_WRITES:
            ring.write(out)
            return False
        lowest = int(self.lowest_frames)
        self.lowest_frames, self.writes = float("inf"), 0
        owed = (ring.underflow_frames - self.underflow_frames_base) - (dropped_in - self.dropped_frames_base)
        excess = max(min(owed, lowest - GUARD_TOLERANCE_FRAMES), lowest - margin - GUARD_TOLERANCE_FRAMES)
        fade = min(FADE_FRAMES, max(excess, 0), len(out) // 2)
        skip = min(excess, len(out) - fade)
        if excess <= GUARD_TOLERANCE_FRAMES or skip <= 0 or fade <= 0:
            ring.write(out)
            return False
        kept = out[skip:].copy()
        ramp = _fade_in(fade)
        kept[:fade] = out[:fade] * (1.0 - ramp) + kept[:fade] * ramp
        self.underflow_frames_base += max(0, min(owed, skip))
        self.skipped_frames += skip
        ring.write(kept)
        return True


class RecentValues:
    """The last ``capacity`` float values, preallocated: appending allocates nothing (a deque of
    floats would make a Python object per block)."""

    def __init__(self, capacity: int):
        self._values = np.zeros(capacity)
        self._count = 0

    def append(self, value: float) -> None:
        self._values[self._count % len(self._values)] = value
        self._count += 1

    def clear(self) -> None:
        self._count = 0

    def __len__(self) -> int:
        return min(self._count, len(self._values))

    def latest(self, n: int | None = None) -> np.ndarray:
        """The newest ``n`` (default all kept) values, oldest first, as a copy.

        NB: read from other threads while the worker appends; at worst the newest value is torn
        between two blocks, which statistics and displays tolerate."""
        count, cap = self._count, len(self._values)
        k = min(count, cap) if n is None else max(0, min(n, count, cap))
        idx = (np.arange(count - k, count)) % cap
        return self._values[idx]


class BlockTimeline:
    """What happened at each block, preallocated (the worker stores a few numbers per block).

    ``at_s``: time.monotonic() when the block's output was ready; ``compute_ms``: the block's
    work; ``out_level_frames``: what the output ring held just before the write (how close to an
    underflow the block came); ``underflow_frames``: the ring's underflow counter after it;
    ``input_wait_ms``: how long the block's input had been complete when the worker took it
    (Worker._input_wait_ms: the worker's own lateness, apart from the sound server's);
    ``run_queue_ms``: how long the worker thread waited, runnable, for a CPU since the block before
    (a late worker with little of it was waiting for a lock, the interpreter's, not for a core);
    ``on_cpu_ms``: how long it was on a CPU since the block before (far above ``compute_ms``: it
    was kept from running there, on a virtual machine by the host); ``lock_waits``: how often it
    gave its CPU up since then other than in its own polls (a lock: the interpreter's, mostly);
    ``disk_faults``: its page faults since then that had to read from disk
    (:class:`~engine.stream.priority.ThreadTimes`); ``polls``: how often it slept waiting for
    this block's input (Worker._sleep_s).
    """

    # One record per block, the fields in the order add() takes them.
    FIELDS = np.dtype([("at_s", np.float64), ("compute_ms", np.float32), ("out_level_frames", np.int32),
                       ("underflow_frames", np.int64), ("input_wait_ms", np.float32), ("run_queue_ms", np.float32),
                       ("on_cpu_ms", np.float32), ("lock_waits", np.int32), ("disk_faults", np.int32),
                       ("polls", np.int32)])

    def __init__(self, capacity: int):
        self._rows = np.zeros(capacity, dtype=self.FIELDS)
        self.count = 0

    def add(self, at_s: float, compute_ms: float, level: int, underflow_frames: int, input_wait_ms: float = 0.0,
            run_queue_ms: float = 0.0, on_cpu_ms: float = 0.0, lock_waits: int = 0, disk_faults: int = 0, polls: int = 0) -> None:
        self._rows[self.count % len(self._rows)] = (at_s, compute_ms, level, underflow_frames, input_wait_ms,
                                                    run_queue_ms, on_cpu_ms, lock_waits, disk_faults, polls)
        self.count += 1

    def arrays(self) -> dict[str, np.ndarray]:
        """The recorded blocks, oldest first, one array per field."""
        cap = len(self._rows)
        rows = self._rows[(np.arange(min(self.count, cap)) + max(0, self.count - cap)) % cap]
        return {name: np.ascontiguousarray(rows[name]) for name in self.FIELDS.names}
