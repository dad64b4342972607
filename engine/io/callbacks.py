"""The only code that runs on the audio thread.

Rules (HOUSE_STYLE.md): copy into/out of preallocated rings and bump integer counters. No DSP, no
logging, no locks, no imports, no allocation of audio buffers, no waiting. The output side always
fills the whole buffer (zeros for what is missing, counted by the ring as underflow).

NB: every counter below has exactly one writer, the audio thread; the worker and the GUI only read.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from engine.ringbuffer import WRITTEN_FIELD, RingBuffer

SCRATCH_FRAMES = 16384  # larger than any callback PortAudio is asked for
ARRIVALS = 64  # input callbacks remembered (when, and the ring's written count after each)


# CallbackCounters.state, shared with engine/io/native_callback.c (keep both in step)
(INPUT_CALLBACKS_FIELD, OUTPUT_CALLBACKS_FIELD, DEVICE_XRUNS_FIELD, OVERSIZED_CALLBACKS_FIELD, MAX_FRAMES_FIELD,
 INPUT_THREAD_ID_FIELD, OUTPUT_THREAD_ID_FIELD) = range(7)
COUNTER_FIELDS = 7


class CallbackCounters:
    """What the audio callbacks count, in arrays both these Python callbacks and the native one
    (engine/io/native_callback.c) write."""

    def __init__(self) -> None:
        self.state = np.zeros(COUNTER_FIELDS, dtype=np.int64)
        # When the last ARRIVALS input callbacks ran (time.monotonic()) and how far the input ring
        # had been written after each (slot = callback number % ARRIVALS): how long a block's input
        # waited for the worker (Worker._input_wait_ms). NB: a slot being written while the worker
        # reads it gives one wrong figure in a diagnosis, nothing worse.
        self.arrival_s = np.zeros(ARRIVALS)
        self.arrival_written = np.zeros(ARRIVALS, dtype=np.int64)

    input_callbacks = property(lambda self: int(self.state[INPUT_CALLBACKS_FIELD]))
    output_callbacks = property(lambda self: int(self.state[OUTPUT_CALLBACKS_FIELD]))
    # PortAudio status flags (input overflow / output underflow)
    device_xruns = property(lambda self: int(self.state[DEVICE_XRUNS_FIELD]))
    oversized_callbacks = property(lambda self: int(self.state[OVERSIZED_CALLBACKS_FIELD]))
    # The largest callback seen: the jitter the output ring must absorb.
    max_frames = property(lambda self: int(self.state[MAX_FRAMES_FIELD]))
    # The OS thread ids the callbacks run on (0 until the first callback), so the worker can give
    # them its own priority (priority.raise_callback_thread); set once, then only read.
    input_thread_id = property(lambda self: int(self.state[INPUT_THREAD_ID_FIELD]))
    output_thread_id = property(lambda self: int(self.state[OUTPUT_THREAD_ID_FIELD]))

    def input_due_s(self, written: int, sample_rate: float) -> float:
        """When the input ring's written count should first reach ``written`` (time.monotonic()), so
        the worker can sleep until then instead of polling (read by the worker, never called by a
        callback). Each callback delivers audio captured at the device rate, so a frame cannot come
        before the earliest of the recent callbacks' delivery lines (arrival time less written frames
        over the rate) puts it; when those callbacks were all the same size the frame comes with a
        whole one, so the wait is rounded up to it. 0 before two callbacks (poll meanwhile).

        Later than the input comes only by a callback delivered sooner after its capture than any of
        the recent ones: by the delivery jitter those did not show (the worker wakes a little early
        for it), or, once, by a drop in the sound server's latency that lasted (the worker never
        sleeps long at a time for it). A callback that ran while these were read gives a time too
        early (a poll more)."""
        n = self.input_callbacks
        k = min(n, ARRIVALS - 1)  # not the slot the next callback writes
        if k < 2:
            return 0.0
        idx = (n - 1 - np.arange(k)) % ARRIVALS  # newest first
        w = self.arrival_written[idx]
        line_s = float(np.min(self.arrival_s[idx] - w / sample_rate))
        size = int(w[0] - w[1])
        end = written
        if size > 0 and written > w[0] and np.all(w[:-1] - w[1:] == size):
            end = int(w[0]) + -(-(written - int(w[0])) // size) * size
        return line_s + end / sample_rate


_native_id = threading.get_native_id  # bound here: the callback imports and looks up nothing
_monotonic = time.monotonic


def _note_callback(c: np.ndarray, thread_field: int, frames: int, status) -> None:
    if not c[thread_field]:
        c[thread_field] = _native_id()
    if status:
        c[DEVICE_XRUNS_FIELD] += 1
    if frames > c[MAX_FRAMES_FIELD]:
        c[MAX_FRAMES_FIELD] = frames


class InputSide:
    def __init__(self, ring: RingBuffer, counters: CallbackCounters):
        self.ring = ring
        self.counters = counters

    def __call__(self, indata, frames, time_info, status):
        c = self.counters
        _note_callback(c.state, INPUT_THREAD_ID_FIELD, frames, status)
        self.ring.write_overwrite(indata)
        slot = c.state[INPUT_CALLBACKS_FIELD] % ARRIVALS
        c.arrival_s[slot] = _monotonic()
        c.arrival_written[slot] = self.ring.state[WRITTEN_FIELD]
        c.state[INPUT_CALLBACKS_FIELD] += 1


class OutputSide:
    def __init__(self, ring: RingBuffer, counters: CallbackCounters):
        self.ring = ring
        self.counters = counters
        self.scratch = np.zeros(SCRATCH_FRAMES, dtype=np.float32)

    def __call__(self, outdata, frames, time_info, status):
        c = self.counters.state
        _note_callback(c, OUTPUT_THREAD_ID_FIELD, frames, status)
        if frames > SCRATCH_FRAMES:
            outdata.fill(0.0)
            c[OVERSIZED_CALLBACKS_FIELD] += 1
        else:
            mono = self.scratch[:frames]
            self.ring.read_into(mono)
            # Every output channel gets the mono signal (broadcast copy, no allocation).
            np.copyto(outdata, mono[:, None])
        c[OUTPUT_CALLBACKS_FIELD] += 1


class DuplexSide:
    def __init__(self, inp: InputSide, out: OutputSide):
        self.inp = inp
        self.out = out

    def __call__(self, indata, outdata, frames, time_info, status):
        self.inp(indata, frames, time_info, status)
        self.out(outdata, frames, time_info, None)
