"""When the worker expects a block's input (CallbackCounters.input_due_s): it sleeps until then
instead of polling, so the time must never be later than the input's arrival, and should be
close to it. Simulated callbacks on a made-up clock: fixed sizes with delivery jitter, varying
sizes, and a sound server that stalls and then catches up."""

from __future__ import annotations

import numpy as np
import pytest

import engine.io.callbacks as callbacks
from engine.io.callbacks import CallbackCounters, InputSide
from engine.ringbuffer import RingBuffer
from engine.stream.worker import INPUT_EARLY_S, MAX_SLEEP_S

SR = 48000
HOP = 480


def run(sizes, delay_s, monkeypatch):
    """Deliver callbacks of ``sizes`` frames, each arriving when its last frame was captured plus
    ``delay_s(callback number, capture time)``, never before the one before it; before each one, ask when the next block (HOP frames past what a prompt reader has
    taken) is due. Returns (due, actual arrival) pairs."""
    ring, counters = RingBuffer(8192), CallbackCounters()
    side = InputSide(ring, counters)
    clock = {"now": 0.0}
    monkeypatch.setattr(callbacks, "_monotonic", lambda: clock["now"])
    captured, read = 0, 0
    asked: list[tuple[int, float]] = []  # (written needed, due)
    arrivals: list[tuple[int, float]] = []
    for i, size in enumerate(sizes):
        while ring.written - read >= HOP:  # a prompt reader takes every complete block
            read += HOP
        due = counters.input_due_s(read + HOP, SR)
        if due:
            asked.append((read + HOP, due))
        captured += size
        clock["now"] = max(clock["now"], captured / SR + delay_s(i, captured / SR))
        side(np.zeros((size, 1), np.float32), size, None, None)
        arrivals.append((ring.written, clock["now"]))
    written = np.array([w for w, _ in arrivals])
    at = np.array([t for _, t in arrivals])
    pairs = []
    for need, due in asked:
        k = int(np.searchsorted(written, need))  # the first callback that completed it
        if k < len(at):
            pairs.append((due, float(at[k])))
    return np.array(pairs)


def test_fixed_callbacks_with_jitter_are_never_expected_late(monkeypatch):
    """Delivery up to 0.8 ms late at random: the worker, waking INPUT_EARLY_S before the time,
    is never late, and does not wake much sooner than it must."""
    jitter_s = np.random.default_rng(1).uniform(0.0, 0.0008, 3000)
    pairs = run([256] * 3000, lambda i, _: 0.002 + jitter_s[i], monkeypatch)
    early = pairs[:, 1] - (pairs[:, 0] - INPUT_EARLY_S)
    assert len(pairs) > 1000 and np.all(early >= 0.0)
    assert np.median(early) < INPUT_EARLY_S + 0.0006


def test_varying_callback_sizes_are_never_expected_late(monkeypatch):
    sizes = np.random.default_rng(2).integers(64, 1024, 3000).tolist()
    pairs = run(sizes, lambda i, _: 0.003, monkeypatch)
    assert len(pairs) > 1000 and np.all(pairs[:, 0] <= pairs[:, 1] + 1e-9)


@pytest.mark.parametrize("stall_s", [0.03, 0.2])
def test_a_server_that_stalls_and_catches_up_is_never_expected_late(monkeypatch, stall_s):
    """No callback for ``stall_s``, then the missed ones back to back (an unscheduled JACK server)."""
    pairs = run([256] * 3000, stall_at_5_s(stall_s), monkeypatch)
    assert np.all(pairs[:, 0] <= pairs[:, 1] + 1e-9)


def stall_at_5_s(stall_s):
    return lambda i, at_s: max(0.002, 5.0 + stall_s - at_s) if at_s >= 5.0 else 0.002


@pytest.mark.parametrize("delay_s, until_s", [
    (lambda i, at_s: 0.05 if at_s < 5.0 else 0.002, 5.1),  # the server's latency falls from 50 to 2 ms
    (stall_at_5_s(1.0), 6.1),  # a stall longer than the callbacks remembered: the burst is all they show
])
def test_a_lasting_drop_in_latency_is_expected_late_only_just_after_it(monkeypatch, delay_s, until_s):
    """Input then comes sooner than the recent callbacks foretold, by no more than the drop, until
    callbacks from after it are among them: the worker's sleeps, MAX_SLEEP_S at most, bound what it
    oversleeps then."""
    pairs = run([256] * 3000, delay_s, monkeypatch)
    late = pairs[:, 0] - pairs[:, 1]
    at_s = pairs[late > 1e-9, 1]
    assert len(at_s) and at_s.min() >= 5.0 and at_s.max() < until_s and late.max() <= 0.048 + 1e-9


def test_the_worker_never_sleeps_longer_than_its_bound():
    from types import SimpleNamespace

    from engine.stream.worker import Worker

    far = SimpleNamespace(input_due_s=lambda written, sr: 1e9)
    chain = SimpleNamespace(stream=SimpleNamespace(counters=far, in_ring=SimpleNamespace(read=0), sample_rate=SR),
                            in_block=np.zeros((HOP, 1), np.float32), sleep_until_due=True)
    assert Worker._sleep_s(chain) == MAX_SLEEP_S


def test_nothing_is_due_before_two_callbacks():
    counters = CallbackCounters()
    assert counters.input_due_s(HOP, SR) == 0.0
