"""The live path's resampler: steady output per chunk, exact time alignment, a clean passband and
no aliasing. (soxr's stream mode, which it replaced, handed back 0 and ~890 samples on alternate
10 ms chunks at 44.1 <-> 48 kHz, which made the output ring underflow.)"""

import numpy as np
import pytest

from engine.dsp.resample import StreamResampler

PAIRS = [(44100, 48000), (48000, 44100), (48000, 40000), (16000, 48000), (48000, 16000), (32000, 48000)]


def tone(freq, rate, seconds=1.0, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def run_chunks(r, x, chunk):
    return [r.process(x[i : i + chunk]) for i in range(0, len(x), chunk)]


@pytest.mark.parametrize("a,b", PAIRS)
def test_every_chunk_yields_its_share_of_output(a, b):
    r = StreamResampler(a, b)
    chunk = a // 100  # 10 ms
    sizes = [len(y) for y in run_chunks(r, tone(440, a, 2.0), chunk)]
    # Every 10 ms gives 10 ms (+-1), the first chunk included: no start-up shortfall...
    assert all(abs(s - b // 100) <= 1 for s in sizes), sizes[:10]
    # ... and nothing accumulates.
    assert abs(len(sizes) * b // 100 - sum(sizes)) <= 1


@pytest.mark.parametrize("a,b", PAIRS)
def test_chunking_does_not_change_a_sample(a, b):
    x = np.random.default_rng(3).normal(0, 0.2, a).astype(np.float32)
    whole = StreamResampler(a, b).process(x)
    r = StreamResampler(a, b)
    sizes = np.random.default_rng(4).integers(1, 700, 400)
    pieces, i = [], 0
    for s in sizes:
        pieces.append(r.process(x[i : i + s]))
        i += s
    pieces.append(r.process(x[i:]))
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


@pytest.mark.parametrize("a,b", PAIRS + [(44100, 47999), (40000, 191999)])
def test_output_is_time_aligned_and_clean_in_the_passband(a, b):
    """A 1 kHz tone comes out as the same tone at the new rate, exactly `delay_samples` late (the
    figure the engine adds to its reported latency), with at least 85 dB SNR."""
    x = tone(1000, a, 1.0)
    r = StreamResampler(a, b)
    y = r.process(x)[r.delay_samples :]
    n = np.arange(len(y))
    ideal = 0.5 * np.sin(2 * np.pi * 1000 * n / b)
    err = y[500:] - ideal[500:]
    snr = 10 * np.log10(np.sum(ideal[500:] ** 2) / np.sum(err.astype(np.float64) ** 2))
    assert snr > 85.0


def level_db(y, freq, rate):
    """Level of the sinusoid at `freq` in y, dB re a full-scale sine (least-squares fit)."""
    t = np.arange(len(y)) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y.astype(np.float64), rcond=None)
    return 20 * np.log10(max(float(np.hypot(*coef)), 1e-12))


def test_passband_is_flat_up_to_18_khz():
    for a, b in ((44100, 48000), (48000, 44100)):
        for f in (100.0, 5000.0, 12000.0, 18000.0):
            y = StreamResampler(a, b).process(tone(f, a, 1.0, amp=1.0))[2000:]
            assert abs(level_db(y, f, b)) < 0.1, (a, b, f)


def test_downsampling_removes_what_the_new_rate_cannot_hold():
    """A 23 kHz tone at 48 kHz has no place at 44.1 kHz (Nyquist 22.05): it must not fold back to
    21.1 kHz as an audible alias."""
    y = StreamResampler(48000, 44100).process(tone(23000, 48000, 1.0, amp=1.0))[2000:]
    alias = 44100 - 23000
    assert level_db(y, alias, 44100) < -70.0


@pytest.mark.parametrize("a,b", PAIRS + [(8000, 48000), (44100, 191999)])
def test_tiny_chunks_from_the_first_one_on(a, b):
    """A WebSocket client may send a 1-sample frame first, and a 2.5 ms block at 8 kHz is 20 samples:
    any chunk size works from the start and gives the same samples as one call."""
    x = np.random.default_rng(5).normal(0, 0.2, 3000).astype(np.float32)
    whole = StreamResampler(a, b).process(x)
    r = StreamResampler(a, b)
    pieces, i = [], 0
    for s in [1, 3, 13, 31, 1, 2, 480, 7] * 20:
        pieces.append(r.process(x[i : i + s]))
        i += s
        if i >= len(x):
            break
    pieces.append(r.process(x[i:]))
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
