"""The worker's steady state: it retains nothing per block, and garbage collection cannot stall it
(engine/stream/gc_policy.py). Runs the worker's own per-block code on hand-fed rings."""

from __future__ import annotations

import gc
import os
import tracemalloc

import numpy as np
import pytest

from engine.api import Engine
from engine.stream.gc_policy import StreamingGc
from engine.stream.worker import BlockTimeline, History, RecentValues, Worker
from tests.stream_helpers import unstarted_chain


@pytest.fixture(params=["natural", "deeper"])
def chain_and_worker(request):
    engine = Engine(load_default_voice=False, autosave=False)
    engine.load_voice(request.param).result()
    chain = unstarted_chain(engine)
    worker = Worker()
    worker.shutdown()  # its thread is not needed: the test calls the per-block code itself
    yield chain, worker, chain.stream
    engine.close()


def test_the_worker_retains_nothing_per_block(chain_and_worker):
    chain, worker, stream = chain_and_worker
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(48000)).astype(np.float32)
    hop = stream.hop_frames
    played = np.zeros((hop, 1), np.float32)

    def blocks(start, n):
        for i in range(start, start + n):
            o = (i * hop) % (len(x) - hop)
            chain.in_block[:, 0] = x[o:o + hop]
            worker._process(chain)
            stream.out_ring.read_into(played)

    blocks(0, 1200)  # past the timing ring's fill-up and every lazy start-up
    tracemalloc.start()
    try:
        blocks(1200, 200)  # a voice that replaces its arrays each hop holds a fresh set from here on
        before = tracemalloc.take_snapshot()
        blocks(1400, 1800)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
    grown = sum(d.size_diff for d in after.filter_traces(keep).compare_to(before.filter_traces(keep), "filename"))
    # Anything kept per block is at least one 8-byte slot (a list entry; any object is 28 bytes or
    # more): 1800 blocks of it would be 14.4 kB. What remains (0.2-4.7 kB measured, varying with
    # where in its hop the shifter's replaced arrays and leftover samples stand) is not per block.
    assert grown < 8 * 1800, grown
    assert worker.blocks_processed == 3200 and len(worker.compute_ms) == 1000


def test_the_timeline_tells_a_late_worker_from_late_input(chain_and_worker):
    """Each block records how long its input had been complete when the worker took it: a block the
    worker took 30 ms after its input arrived shows at least that; a block whose input came 30 ms
    late (the sound server's gap) but was taken at once shows less (what the soak benchmark uses
    to say whose an underflow was)."""
    import time

    from engine.io.callbacks import InputSide

    chain, worker, stream = chain_and_worker
    worker.timeline = BlockTimeline(16)
    hop = stream.hop_frames
    callback = InputSide(stream.in_ring, stream.counters)
    x = np.zeros((hop // 2, stream.in_channels), np.float32)

    def take_one():
        assert stream.in_ring.read_exact(chain.in_block)
        worker._process(chain)

    callback(x, len(x), None, None)
    callback(x, len(x), None, None)
    time.sleep(0.03)  # the worker is held off
    take_one()
    time.sleep(0.03)  # the input is late ...
    callback(x, len(x), None, None)
    callback(x, len(x), None, None)
    take_one()  # ... and taken at once
    late_worker, late_input = worker.timeline.arrays()["input_wait_ms"].tolist()
    assert late_worker >= 30.0
    assert late_input < late_worker


@pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"), reason="Linux schedstat only")
def test_the_timeline_tells_a_worker_held_by_the_interpreter_lock(chain_and_worker):
    """A block whose input waited while another thread held the interpreter lock (a C call that
    never lets it go: sorting a long list of ints) records the worker's waits for it, and that it
    was neither on a CPU nor waiting for one for most of that time (what the soak benchmark quotes
    for a late worker)."""
    import threading

    from engine.io.callbacks import InputSide

    chain, worker, stream = chain_and_worker
    worker.timeline = BlockTimeline(16)
    hop = stream.hop_frames
    callback = InputSide(stream.in_ring, stream.counters)
    x = np.zeros((hop, stream.in_channels), np.float32)
    numbers = np.random.default_rng(0).permutation(500_000).tolist()

    def take_one():
        assert stream.in_ring.read_exact(chain.in_block)
        worker._process(chain)

    callback(x, len(x), None, None)
    take_one()
    callback(x, len(x), None, None)  # the next block's input is complete ...
    holder = threading.Thread(target=sorted, args=(numbers,))
    holder.start()  # ... and this thread waits for the interpreter until the sort ends
    holder.join()
    take_one()
    t = worker.timeline.arrays()
    waited_ms = float(t["input_wait_ms"][1])
    assert waited_ms >= 20.0  # the sort held the lock that long, at the least
    assert t["lock_waits"][1] >= 1
    assert t["on_cpu_ms"][1] < 0.5 * waited_ms and t["run_queue_ms"][1] < 0.5 * waited_ms
    assert t["disk_faults"][1] == 0


def test_recent_values_keep_the_newest_in_order():
    r = RecentValues(4)
    for v in range(1, 7):
        r.append(float(v))
    assert len(r) == 4 and r.latest().tolist() == [3.0, 4.0, 5.0, 6.0] and r.latest(2).tolist() == [5.0, 6.0]
    r.clear()
    assert len(r) == 0 and r.latest().size == 0


def test_history_gives_the_newest_samples_in_order_across_the_wrap():
    h = History(1000)  # HISTORY_SECONDS of samples at 1 kHz
    size = len(h.buf)
    signal = np.arange(3 * size + 123, dtype=np.float32)
    assert h.latest(10).size == 0
    written = 0
    for chunk in np.array_split(signal, 97):  # uneven hops, so the ring wraps at every offset
        h.push(chunk)
        written += len(chunk)
        for n in (1, 480, size // 2, size, size + 5):
            expect = signal[max(0, written - min(n, size)):written]
            np.testing.assert_array_equal(h.latest(n), expect)
    assert not np.shares_memory(h.latest(5), h.buf)  # a copy: the worker writes on


def test_streaming_freezes_what_exists_so_collections_skip_it():
    policy = StreamingGc(enabled=True)
    assert gc.get_freeze_count() == 0
    objects = len(gc.get_objects())
    policy.stream_started()
    try:
        frozen = gc.get_freeze_count()
        assert frozen >= 0.9 * objects  # everything alive when the stream started
        assert len(gc.get_objects(generation=2)) < 0.1 * frozen  # a full collection now walks little
        junk = [[i] for i in range(1000)]  # the new voice's objects...
        policy.voice_swapped()
        # ... join the frozen set without a collection. Counting the frozen set would not tell: frozen
        # objects that die meanwhile (another thread's frames) leave it, so look for the lists themselves.
        collectable = {id(o) for generation in range(3) for o in gc.get_objects(generation=generation)}
        assert not any(id(item) in collectable for item in junk) and id(junk) not in collectable
        del junk
        seen = policy.watch.count
        gc.collect(0)
        assert policy.watch.count == seen + 1 and policy.watch.generation[seen % 4096] == 0
    finally:
        policy.stream_stopped()
        policy.watch.uninstall()
    assert gc.get_freeze_count() == 0  # unfrozen when no stream runs: old garbage is found again


def test_the_baseline_switch_leaves_collection_as_python_does_it():
    policy = StreamingGc(enabled=False)
    policy.stream_started()
    try:
        assert gc.get_freeze_count() == 0
    finally:
        policy.stream_stopped()
        policy.watch.uninstall()
