"""The worker's latency guard, on a simulated device clock: a late block is heard as a gap once,
then latency returns to its budget instead of staying higher for good; on time, it never acts."""

import numpy as np

from engine.ringbuffer import RingBuffer
from engine.stream.worker import LatencyGuard

CALLBACK = 256  # device period (frames)
HOP = 480  # worker block (frames)
MARGIN = 480
PREFILL = HOP + MARGIN


def simulate(late_at=None, late_by_callbacks=0, callbacks=600, drop_at=None, adaptive=False, sr=48000, resize=None,
             period_known=False):
    """Device callbacks of CALLBACK frames; the worker writes one HOP block each time a HOP of input
    has arrived. Block k carries the sample indices k*HOP ... so the delay of what is played can be
    read off. ``late_at``: the callback (or callbacks) from which the voice is stuck for
    ``late_by_callbacks``. ``resize``: {callback: margin frames} for LatencyGuard.resize.
    ``period_known``: the guard knows the device period (as the worker tells it once callbacks
    ran). Returns (delays per played block of content, underflow events, corrections)."""
    stuck = () if late_at is None else np.atleast_1d(late_at)
    ring = RingBuffer(1 << 16, 1)
    ring.write(np.zeros(PREFILL, np.float32))
    guard = LatencyGuard(0, 0, margin_frames=MARGIN, max_margin_frames=MARGIN + (1920 if adaptive else 0),
                         shrink_frames=48)
    if period_known:
        guard.period_frames, guard.phase_frames = CALLBACK, 32  # gcd(HOP, CALLBACK)
    corrections, arrived, k, pending, dropped = 0, 0, 0, [], 0
    played = np.zeros(CALLBACK, np.float32)
    delays, margins = [], []
    for c in range(callbacks):
        ring.read_into(played.reshape(-1, 1))
        t = c * CALLBACK
        nz = np.nonzero(played)[0]
        if nz.size:
            delays.append(t + nz[-1] - (played[nz[-1]] - 1))  # play time - content time
        arrived += CALLBACK
        while arrived >= (k + 1) * HOP:
            pending.append(k)
            k += 1
        if resize and c in resize:
            guard.resize(resize[c])
        if any(a <= c < a + late_by_callbacks for a in stuck):
            continue  # the voice is stuck: blocks queue up
        for j in pending:
            if drop_at is not None and j == drop_at:
                dropped += HOP  # the input ring overwrote this block before the worker read it
                continue
            block = (np.arange(j * HOP, (j + 1) * HOP) + 1).astype(np.float32)
            corrections += guard.write(ring, block, dropped, now_s=t / sr)
        pending.clear()
        if adaptive:
            margins.append(guard.margin_frames)
    if adaptive:
        return np.array(delays), ring.underflow_events, corrections, np.array(margins)
    return np.array(delays), ring.underflow_events, corrections


def test_on_time_blocks_are_never_touched():
    delays, underflows, corrections = simulate()
    assert underflows == 0 and corrections == 0
    assert np.ptp(delays[10:]) <= CALLBACK  # steady, within one callback of phase


def test_a_late_block_is_heard_once_then_latency_returns_to_its_budget():
    base, _, _ = simulate()
    delays, underflows, corrections = simulate(late_at=200, late_by_callbacks=6)
    assert underflows >= 1  # the gap is real and counted...
    assert corrections >= 1
    # ... but it does not stay: after recovery the delay is back where it was without the gap.
    assert abs(np.median(delays[-100:]) - np.median(base[-100:])) <= 16


def test_without_the_guard_the_gap_would_stay():
    """The same late block, written without skipping: the delay grows by the gap for good (this is
    what the guard prevents, and shows the simulation can tell)."""
    import engine.stream.worker as w

    base, _, _ = simulate()
    saved = w.GUARD_WINDOW_WRITES
    w.GUARD_WINDOW_WRITES = 10**9
    try:
        delays, underflows, _ = simulate(late_at=200, late_by_callbacks=6)
    finally:
        w.GUARD_WINDOW_WRITES = saved
    assert np.median(delays[-100:]) - np.median(base[-100:]) > 500


def test_audio_lost_at_the_input_is_not_made_up_at_the_output():
    """A block the input ring dropped leaves a gap at the output too, but adds no latency (the
    content after it is, if anything, earlier): the guard must not skip for it, which would eat
    into the margin and cause more underflows."""
    base, _, _ = simulate()
    delays, underflows, corrections = simulate(drop_at=100)
    assert underflows >= 1 and corrections == 0
    assert np.median(delays[-100:]) <= np.median(base[-100:])


def test_adaptive_buffer_keeps_an_underflows_silence_as_margin_then_shrinks_back(monkeypatch):
    """With the adaptive buffer a late block's gap is heard once and its silence is kept as extra
    margin (no second skip); after a quiet period the margin returns to what was set."""
    import engine.stream.worker as w

    monkeypatch.setattr(w, "ADAPTIVE_QUIET_S", 2.0)
    monkeypatch.setattr(w, "ADAPTIVE_SHRINK_EVERY_S", 0.05)
    base, _, _ = simulate()
    delays, underflows, corrections, margins = simulate(late_at=200, late_by_callbacks=6, callbacks=1400,
                                                        adaptive=True)
    assert underflows >= 1
    grown = margins.max() - MARGIN
    assert grown > 500  # the gap (6 callbacks late, minus the margin it ate) became margin
    # Right after the recovery the delay is the old one plus the kept margin...
    after = delays[230:300]
    assert abs(np.median(after) - np.median(base[-100:]) - grown) <= 64
    # ... and once the quiet period has passed it is back to the budget, the margin too.
    assert margins[-1] == MARGIN
    assert abs(np.median(delays[-50:]) - np.median(base[-100:])) <= 16


def test_fixed_latency_never_moves_the_margin():
    delays, underflows, corrections = simulate(late_at=200, late_by_callbacks=6)
    guard_margins = simulate(late_at=200, late_by_callbacks=6, adaptive=True)[3]
    assert underflows >= 1 and corrections >= 1
    assert guard_margins.max() > MARGIN  # the same late block would have grown an adaptive one


def test_a_neural_voices_margin_may_grow_by_a_fifth_of_its_block():
    """Its lateness scales with its block (hundreds of ms), so the adaptive cap does too; a built-in
    voice's 10 ms block keeps the 40 ms cap."""
    from engine.config import AudioConfig
    from engine.pipeline import Pipeline
    from engine.stream.realtime import RealtimeStream
    from engine.stream.worker import ADAPTIVE_MAX_MS, LiveChain
    from engine.voices.registry import load_voice
    from tests.stream_helpers import fake_device

    audio = AudioConfig(sample_rate=48000)
    voice = load_voice("natural")
    pipeline = Pipeline(voice, 480)
    for burst_ms, growth_ms in ((None, ADAPTIVE_MAX_MS), (500.0, 100.0)):
        stream = RealtimeStream(audio, fake_device("in"), fake_device("out"), burst_ms=burst_ms)
        guard = LiveChain(stream, pipeline).guards[0]
        assert guard.max_margin_frames - stream.margin_frames == int(growth_ms * 48)
    fixed = RealtimeStream(AudioConfig(sample_rate=48000, adaptive_buffer=False), fake_device("in"), fake_device("out"),
                           burst_ms=500.0)
    fixed_chain = LiveChain(fixed, pipeline)
    assert fixed_chain.guards[0].max_margin_frames == fixed.margin_frames
    assert fixed_chain.blocks_to_sizing == 0  # nor is it sized again from the live blocks


def test_a_larger_margin_goes_in_as_one_gap_and_a_smaller_one_by_skips():
    """LatencyGuard.resize (the live sizing of a neural voice's margin): growing adds the difference
    to the delay at once, without an underflow; shrinking takes it away over the next windows."""
    base, _, _ = simulate()
    steady = np.median(base[100:])
    grown, underflows, corrections = simulate(resize={200: MARGIN + 960})
    assert underflows == 0 and corrections == 1
    assert abs(np.median(grown[-100:]) - (steady + 960)) <= CALLBACK // 2
    back, underflows, corrections = simulate(resize={200: MARGIN + 960, 300: MARGIN})
    assert underflows == 0 and corrections >= 2
    # Skips stop with the ring's lowest level at the margin, where a start may sit up to a device
    # period below it (the phase of callbacks against writes): within one period of the start.
    assert 0 <= np.median(back[-100:]) - steady <= CALLBACK


def test_a_neural_voices_margin_is_set_again_from_its_first_live_blocks(monkeypatch):
    """A voice delivering bursts starts with the margin its warm-up gave; after its first live blocks
    the worker sets it from the slowest of them, down when the warm-up overestimated, up (one gap)
    when it underestimated."""
    import time

    from engine.config import AudioConfig
    from engine.pipeline import Pipeline
    from engine.stream.realtime import RealtimeStream, margin_for_compute
    from engine.stream.worker import SIZE_FROM_LIVE_BLOCKS, SIZE_SKIP_BLOCKS, LiveChain, Worker
    from engine.voices.registry import load_voice
    from tests.stream_helpers import fake_device

    audio = AudioConfig(sample_rate=48000)
    worker = Worker()
    worker.shutdown()  # the test runs the per-block code itself

    def run(warm_margin_ms, sleep_s):
        pipeline = Pipeline(load_voice("natural"), 480)
        if sleep_s:
            fast = pipeline.process
            monkeypatch.setattr(pipeline, "process", lambda x, st: (time.sleep(sleep_s), fast(x, st))[1])
        stream = RealtimeStream(audio, fake_device("in"), fake_device("out"), burst_ms=100.0, margin_ms=warm_margin_ms)
        chain = LiveChain(stream, pipeline)
        worker.compute_ms.clear()
        for i in range(SIZE_FROM_LIVE_BLOCKS):
            assert chain.guards[0].margin_frames == stream.margin_frames  # the warm-up's until then
            worker._process(chain)
        slowest = float(np.max(worker.compute_ms.latest(SIZE_FROM_LIVE_BLOCKS - SIZE_SKIP_BLOCKS)))
        want = int(round(max(audio.prefill_ms, margin_for_compute(slowest, 10.0, True)) * 48))
        return stream, chain.guards[0], want

    stream, guard, want = run(warm_margin_ms=300.0, sleep_s=0.0)  # warm-up far slower than live
    assert guard.margin_frames == guard.base_margin_frames == want < stream.margin_frames // 2
    assert guard.gap_frames == 0
    stream, guard, want = run(warm_margin_ms=0.0, sleep_s=0.03)  # live slower than the warm-up
    assert guard.margin_frames == want >= int((1.5 * 30.0 + 10.0) * 48)
    assert guard.gap_frames == want - stream.margin_frames
    before = stream.out_ring.available()
    guard.write(stream.out_ring, np.zeros(480, np.float32))
    assert stream.out_ring.available() - before == 480 + want - stream.margin_frames


def test_an_underflow_grows_the_adaptive_margin_to_the_next_period_step():
    """Grown by an underflow's missing frames alone (32 here), the margin would hold out no longer
    at the worst phase of blocks against callbacks, and the same stall there underflows again;
    grown to the next step (736 frames: 3 * 256 - 32) it does not."""
    stalls = dict(late_at=(209, 508), late_by_callbacks=2, callbacks=800, adaptive=True)
    _, underflows, _, margins = simulate(**stalls, period_known=True)
    assert underflows == 1 and margins.max() == 736
    _, underflows, _, margins = simulate(**stalls)  # the period not known: only the missing frames
    assert underflows == 2


def test_the_growth_stays_while_it_saves_blocks(monkeypatch):
    """A stall that only the grown margin absorbed restarts the quiet time: stalls a little more
    than the quiet time apart keep the growth, and are absorbed one after another."""
    import engine.stream.worker as w

    monkeypatch.setattr(w, "ADAPTIVE_QUIET_S", 2.0)  # 375 callbacks
    monkeypatch.setattr(w, "ADAPTIVE_SHRINK_EVERY_S", 0.05)
    _, underflows, _, margins = simulate(late_at=(209, 508, 808, 1108), late_by_callbacks=2, callbacks=1600,
                                         adaptive=True, period_known=True)
    assert underflows == 1
    assert margins[1100] == 736  # still grown before the last stall (900 callbacks after the underflow)...
    assert margins[-1] == MARGIN  # ... and given back after a quiet time with nothing to save
