"""The native audio callback (engine/io/native_callback.c) against the Python callbacks it replaces
(engine/io/callbacks.py, the reference): the same rings and counters after the same callbacks, a
thread that writes while the worker reads, and on a real JACK server, callbacks that keep running
while Python's interpreter lock is held."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.io import native
from engine.io.callbacks import ARRIVALS, CallbackCounters, DuplexSide, InputSide, OutputSide
from engine.ringbuffer import RingBuffer

ffi, lib = native.ffi, native.lib


def test_the_native_callback_is_built():
    """setup.sh builds it (a C compiler is needed for the test extras anyway); without it streams
    fall back to the Python callbacks, which is what this suite must not hide."""
    assert lib is not None, native.native_wanted()[1]


needs_native = pytest.mark.skipif(lib is None, reason="the native callback is not built")


class Twin:
    """The same stream twice: rings and counters run by the Python callbacks and by the C one."""

    def __init__(self, in_channels: int, out_channels: int, capacity: int):
        self.rings = {k: (RingBuffer(capacity, in_channels), RingBuffer(capacity, 1)) for k in ("py", "c")}
        self.counters = {k: CallbackCounters() for k in ("py", "c")}
        self.in_channels, self.out_channels = in_channels, out_channels
        py_in, py_out = self.rings["py"]
        self.python = DuplexSide(InputSide(py_in, self.counters["py"]), OutputSide(py_out, self.counters["py"]))
        self.sides = native.NativeSides(*self.rings["c"], self.counters["c"], out_channels)

    def callback(self, indata: np.ndarray, status: int) -> tuple[np.ndarray, np.ndarray]:
        """One duplex callback on both; returns what each put in the device's output buffer."""
        frames = len(indata)
        out_py = np.full((frames, self.out_channels), 9.0, np.float32)
        out_c = np.full((frames, self.out_channels), 9.0, np.float32)
        self.python(indata, out_py, frames, None, status)
        rc = lib.av_callback(ffi.from_buffer(indata), ffi.from_buffer(out_c), frames, ffi.NULL, status,
                             self.sides.userdata)
        assert rc == 0  # paContinue
        return out_py, out_c

    def same(self) -> None:
        (pi, po), (ci, co) = self.rings["py"], self.rings["c"]
        for p, c in ((pi, ci), (po, co)):
            assert p.state.tolist() == c.state.tolist()
            np.testing.assert_array_equal(p._buf, c._buf)
        cp, cc = self.counters["py"], self.counters["c"]
        assert cp.state.tolist() == cc.state.tolist()
        np.testing.assert_array_equal(cp.arrival_written, cc.arrival_written)


@needs_native
@pytest.mark.parametrize("in_channels,out_channels", [(1, 1), (2, 2), (1, 2)])
def test_the_native_callback_does_what_the_python_one_does(in_channels, out_channels):
    """Random callback sizes (some larger than the ring), statuses, and a worker that reads the
    input in blocks and writes the output, sometimes falling behind and sometimes
    starving the output: every ring position, counter and sample agrees."""
    rng = np.random.default_rng(7)
    twin = Twin(in_channels, out_channels, capacity=1000)
    block = np.zeros((160, in_channels), np.float32)
    for i in range(3000):
        frames = int(rng.choice([1, 64, 256, 333, 1024, 1500]))
        indata = rng.standard_normal((frames, in_channels)).astype(np.float32)
        out_py, out_c = twin.callback(indata, int(rng.random() < 0.05))
        np.testing.assert_array_equal(out_py, out_c)
        for kind in ("py", "c"):  # the worker's side, the same on both
            ring_in, ring_out = twin.rings[kind]
            r = np.random.default_rng(i)  # one draw per step, the same for both twins
            for _ in range(int(r.integers(0, 4))):
                if ring_in.read_exact(block):
                    ring_out.write(block[:, 0] * 0.5)
        twin.same()
    c = twin.counters["c"]
    assert c.input_callbacks == c.output_callbacks == 3000 and c.max_frames == 1500
    assert c.input_thread_id == c.output_thread_id == threading.get_native_id()
    ring_in, ring_out = twin.rings["c"]
    assert ring_in.dropped_frames > 0 and ring_out.underflow_events > 0


@needs_native
def test_native_arrival_stamps_are_on_pythons_monotonic_clock():
    twin = Twin(1, 1, capacity=4096)
    for _ in range(ARRIVALS + 5):
        before = time.monotonic()
        twin.callback(np.zeros((64, 1), np.float32), 0)
        after = time.monotonic()
        k = (twin.counters["c"].input_callbacks - 1) % ARRIVALS
        assert before <= twin.counters["c"].arrival_s[k] <= after


@needs_native
def test_a_native_callback_thread_and_a_python_reader_lose_nothing_silently():
    """The C callback on its own thread (cffi drops the interpreter lock for the call) writing a
    ramp while this thread reads blocks: the ramp arrives in order, except where frames were
    dropped, and then the gap is what the drop counter says."""
    ring, counters = RingBuffer(512), CallbackCounters()
    sides = native.NativeSides(ring, None, counters)
    chunk = 96
    total = chunk * 4000
    ramp = np.arange(total, dtype=np.float32)[:, None].copy()

    def produce():
        for start in range(0, total, chunk):
            lib.av_callback(ffi.from_buffer(ramp[start:start + chunk]), ffi.NULL, chunk, ffi.NULL, 0, sides.userdata)
            if start % (chunk * 8) == 0:
                time.sleep(0)  # let the reader keep up most of the time

    t = threading.Thread(target=produce)
    t.start()
    got, block = [], np.zeros((128, 1), np.float32)
    while t.is_alive() or ring.available() >= len(block):
        if ring.read_exact(block):
            got.append(block[:, 0].copy())
    t.join()
    got = np.concatenate(got)
    steps = np.diff(got)
    assert np.all(steps >= 1)  # in order, never repeated or torn backwards
    gaps = steps[steps > 1] - 1
    assert int(gaps.sum()) + (int(got[0]) if len(got) else 0) <= ring.dropped_frames
    assert len(got) + ring.dropped_frames + ring.available() == total
    assert len(got) > total // 4  # the reader did read, and not only what was left at the end


@needs_native
@pytest.mark.jack
@pytest.mark.parametrize("callback", ["native", "python"])
def test_jack_callbacks_run_while_python_holds_its_lock(jack_server, monkeypatch, callback):
    """A real duplex stream on JACK; this thread then holds the interpreter lock for about 300 ms
    (one long C call: sorting a million ints). The native callback keeps running meanwhile (its
    input arrival stamps fall inside the hold); Python's waits for the lock (none do)."""
    from engine.config import AudioConfig
    from engine.io.devices import resolve_device
    from engine.stream.realtime import RealtimeStream

    monkeypatch.setenv("AUTOVOICE_NATIVE_CALLBACK", "1" if callback == "native" else "0")
    stream = RealtimeStream(AudioConfig(sample_rate=48000), resolve_device("system", "input"),
                            resolve_device("system", "output"))
    stream.start()
    try:
        assert stream.native is (callback == "native")
        deadline = time.monotonic() + 5.0
        while stream.counters.input_callbacks < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.counters.input_callbacks >= 20
        numbers = np.random.default_rng(0).integers(0, 1 << 40, 1_000_000).tolist()
        holds = []  # (seconds held, input callbacks stamped inside, at most ARRIVALS)
        for _ in range(3):  # the longest of three, so that a busy machine still gives one long hold
            t0 = time.monotonic()
            sorted(numbers)
            t1 = time.monotonic()
            stamps = stream.counters.arrival_s.copy()
            holds.append((t1 - t0, int(np.sum((stamps > t0 + 0.02) & (stamps < t1 - 0.02)))))
        held_s, inside = max(holds)
        assert held_s > 0.1
        period_s = stream.counters.max_frames / stream.sample_rate
        if callback == "native":
            assert inside >= 0.5 * min(ARRIVALS - 1, (held_s - 0.04) / period_s)
        else:
            assert inside == 0
    finally:
        stream.close()


@pytest.mark.jack
@pytest.mark.parametrize("wanted", ["1", "0"])
def test_the_snapshot_says_which_callback_streams_and_why(jack_server, monkeypatch, wanted):
    """What the Performance panel, `autovoice live` and the stats JSON show."""
    from engine.api import Engine

    monkeypatch.setenv("AUTOVOICE_NATIVE_CALLBACK", wanted)
    engine = Engine(load_default_voice=False, autosave=False)
    try:
        assert engine.snapshot().audio_callback is None  # not streaming
        engine.load_voice("natural").result()
        engine.start("system", "system")
        s = engine.snapshot()
        if wanted == "1" and lib is not None:
            assert (s.audio_callback, s.audio_callback_detail) == ("native", None)
        else:
            assert s.audio_callback == "python"
            assert "AUTOVOICE_NATIVE_CALLBACK=0" in s.audio_callback_detail or lib is None
    finally:
        engine.close()


@needs_native
def test_other_processors_run_the_python_callbacks_and_say_why(monkeypatch):
    monkeypatch.setattr(native.platform, "machine", lambda: "arm64")
    monkeypatch.setenv("AUTOVOICE_NATIVE_CALLBACK", "1")
    wanted, why = native.native_wanted()
    assert not wanted and "arm64" in why and "x86-64" in why
