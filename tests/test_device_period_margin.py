"""The output margin against the device's callback size: a burst written ``margin`` after its input
is complete must arrive before the output needs it at every phase of bursts against periods, which
the ring's pre-fill alone does not give (PipeWire's 1024-frame quantum against a 10 ms margin)."""

import math

import numpy as np
import pytest

from engine.config import AudioConfig
from engine.io.callbacks import MAX_FRAMES_FIELD
from engine.pipeline import Pipeline
from engine.ringbuffer import RingBuffer
from engine.stream.realtime import RealtimeStream, margin_for_period, margin_step_above
from engine.stream.worker import LiveChain, Worker
from engine.voices.registry import load_voice
from tests.stream_helpers import fake_device


def underflows(period, burst, prefill_beyond_burst, late, callbacks=None):
    """One duplex stream on a frame clock: each callback (every ``period`` frames) delivers
    ``period`` input frames and takes ``period`` from the output ring; each burst of input is
    written to the ring ``late`` frames after the callback that completed it (just before a
    callback due at that very frame). Returns the underflow events. (Nothing here skips latency
    as the worker's guard does, so the first underflow would hide the next ones of its phase:
    every phase comes within the first bursts * periods / gcd frames.)"""
    ring = RingBuffer(1 << 17)
    ring.write(np.zeros(burst + prefill_beyond_burst, np.float32))
    out = np.zeros(period, np.float32)
    callbacks = callbacks or 2 * burst // math.gcd(burst, period) + 8
    writes, bursts_done = [], 0
    for k in range(1, callbacks):
        t = k * period
        while writes and writes[0] <= t:  # due before (or at) this callback
            writes.pop(0)
            ring.write(np.ones(burst, np.float32))
        ring.read_into(out)
        while (bursts_done + 1) * burst <= t:
            bursts_done += 1
            writes.append(t + late)
    return ring.underflow_events


CASES = [(256, 480), (128, 480), (512, 480), (1024, 480), (768, 480), (300, 480), (441, 441),
         (1024, 960), (480, 480), (2048, 480)]


@pytest.mark.parametrize("period,burst", CASES)
def test_the_margin_a_device_period_needs_is_the_least_that_never_underflows(period, burst):
    margin = 480  # 10 ms at 48 kHz: the default
    phase = math.gcd(burst, period)
    m = margin_for_period(margin, period, phase)
    assert m >= margin
    assert underflows(period, burst, m, late=margin) == 0
    if m > margin:  # raised: a frame less would not do (a worker exactly the margin late underflows)
        assert underflows(period, burst, m - 1, late=margin) > 0


def test_the_default_margin_is_already_enough_with_256_frame_periods():
    """10 ms at 48 kHz against 256-frame callbacks: 2 * 256 - 32 = 480, nothing to add. A 15 ms
    pre-fill holds out no longer than 10 ms (and a bit) at its worst phase: asked for, it becomes 736
    frames, the next step, which a worker 15 ms late then meets."""
    assert margin_for_period(480, 256, 32) == 480
    assert underflows(256, 480, 480, late=480) == 0
    assert underflows(256, 480, 720, late=720) > 0
    assert margin_for_period(720, 256, 32) == margin_step_above(480, 256, 32) == 736
    assert underflows(256, 480, 736, late=720) == 0


def test_any_phase_without_one_clock():
    """Separate input and output streams (or callbacks that do not come in step): bursts may
    complete at any phase of the output's callbacks, so the margin rounds up to whole periods."""
    assert margin_for_period(480, 256, 0) == 512
    assert margin_for_period(480, 1024, 0) == 1024
    assert margin_for_period(480, 0, 0) == 480  # no callback seen yet: as set


def _chain(duplex=True, adaptive=True):
    stream = RealtimeStream(AudioConfig(sample_rate=48000, adaptive_buffer=adaptive), fake_device("in"),
                            fake_device("out"))
    stream.duplex = duplex
    return stream, LiveChain(stream, Pipeline(load_voice("natural"), 480))


def test_the_worker_raises_the_margin_once_the_device_shows_long_callbacks_and_says_why():
    worker = Worker()
    worker.shutdown()  # the test runs the per-block code itself
    stream, chain = _chain()
    stream.counters.state[MAX_FRAMES_FIELD] = 256
    worker._process(chain)
    assert chain.guards[0].base_margin_frames == 480 and chain.buffer_note() is None
    level = stream.out_ring.available()
    stream.counters.state[MAX_FRAMES_FIELD] = 1024  # the sound server's quantum went up
    worker._process(chain)
    worker._process(chain)  # the raise goes in as one gap of silence at the next write
    guard = chain.guards[0]
    assert guard.base_margin_frames == guard.margin_frames == 1024 - 32
    assert stream.out_ring.available() - level == 2 * 480 + (992 - 480)
    assert "1024-frame callbacks" in chain.buffer_note() and "opened with 10 ms" in chain.buffer_note()
    _, buffer_ms = chain.latency_ms()
    assert buffer_ms == pytest.approx(992 / 48)
    # a fixed latency is raised the same way: without it every callback would empty the ring
    stream, chain = _chain(duplex=False, adaptive=False)
    stream.counters.state[MAX_FRAMES_FIELD] = 1024
    worker._process(chain)
    assert chain.guards[0].base_margin_frames == 1024
