import threading

import numpy as np

from engine.ringbuffer import WRITTEN_FIELD, RingBuffer


def test_wraparound_preserves_order():
    ring = RingBuffer(10)
    out = np.zeros(4, np.float32)
    seq = np.arange(100, dtype=np.float32)
    got = []
    for i in range(0, 100, 4):
        assert ring.write(seq[i:i + 4]) == 4
        assert ring.read_exact(out)
        got.extend(out.tolist())
    assert got == seq.tolist()
    assert ring.dropped_frames == ring.underflow_frames == ring.overflow_frames == 0


def test_overwrite_drops_oldest_and_counts():
    ring = RingBuffer(8)
    ring.write_overwrite(np.arange(12, dtype=np.float32))
    out = np.zeros(8, np.float32)
    assert ring.read_exact(out)
    assert out.tolist() == list(range(4, 12))  # the 4 oldest were overwritten
    assert ring.dropped_frames == 4


def test_write_bigger_than_capacity_keeps_newest():
    ring = RingBuffer(5, channels=2)
    data = np.stack([np.arange(9), -np.arange(9)], axis=1).astype(np.float32)
    ring.write_overwrite(data)
    out = np.zeros((5, 2), np.float32)
    assert ring.read_exact(out)
    assert out[:, 0].tolist() == [4, 5, 6, 7, 8]
    assert ring.dropped_frames == 4


def test_read_into_fills_zeros_and_counts_underflow():
    ring = RingBuffer(16)
    ring.write(np.ones(3, np.float32))
    out = np.full(8, 7.0, np.float32)
    assert ring.read_into(out) == 3
    assert out.tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert ring.underflow_frames == 5 and ring.underflow_events == 1


def test_refusing_write_counts_overflow():
    ring = RingBuffer(4)
    assert ring.write(np.ones(6, np.float32)) == 4
    assert ring.overflow_frames == 2


def test_threads_see_every_frame_in_order_or_count_the_drop():
    """A producer thread writing a ramp and a consumer thread reading it: what arrives is the ramp,
    except where frames were dropped, and then the gap equals the drop counter."""
    ring = RingBuffer(256)
    total = 200_000
    received = []

    def produce():
        for start in range(0, total, 64):
            ring.write_overwrite(np.arange(start, start + 64, dtype=np.float32))

    def consume(stop):
        out = np.zeros(32, np.float32)
        while not stop.is_set() or ring.available() >= 32:
            if ring.read_exact(out):
                received.append(out.copy())

    stop = threading.Event()
    c = threading.Thread(target=consume, args=(stop,))
    c.start()
    produce()
    stop.set()
    c.join()
    got = np.concatenate(received)
    steps = np.diff(got)
    gaps = steps[steps != 1]
    assert np.all(gaps > 1), "frames went backwards or repeated"
    assert int(np.sum(gaps - 1)) <= ring.dropped_frames
    assert len(got) + ring.dropped_frames + ring.available() >= total - 64


class _ProducerWritesBetweenReads(np.ndarray):
    """A ring's ``state`` whose ``written`` moves on by 16 frames each time the consumer reads it,
    as it can when the native callback writes without the interpreter lock."""

    def __getitem__(self, index):
        value = super().__getitem__(index)
        if index == WRITTEN_FIELD:
            super().__setitem__(WRITTEN_FIELD, value + 16)
        return value


def test_an_overrun_skip_counts_every_frame_it_skips_while_the_producer_moves_on():
    ring = RingBuffer(32)
    ring.write_overwrite(np.arange(100, dtype=np.float32))
    ring.state = ring.state.view(_ProducerWritesBetweenReads)
    out = np.zeros(8, np.float32)
    assert ring.read_exact(out)
    # every frame before the read position was either delivered or counted as dropped
    assert ring.read == ring.dropped_frames + len(out)
