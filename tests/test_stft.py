"""The streaming STFT under the spectral voices: with an identity frame function it gives the input
back, delayed by its stated latency, for any hop (not only divisors of the FFT size)."""

import numpy as np
import pytest

from engine.dsp.stft import StreamingStft


@pytest.mark.parametrize("n_fft,hop", [(2048, 436), (2048, 512), (960, 240), (2048, 1000)])
def test_identity_is_transparent_for_any_hop(n_fft, hop):
    stft = StreamingStft(n_fft, hop, lambda spec, state: spec)
    state = stft.init_state()
    x = np.random.default_rng(0).normal(0, 0.1, 200_000).astype(np.float32)
    sizes = np.random.default_rng(1).integers(1, 900, 200)
    pieces, i = [], 0
    for s in sizes:
        y, state = stft.process(x[i : i + s], state)
        pieces.append(y)
        i += s
    y = np.concatenate(pieces)
    lat = stft.latency_samples
    assert len(y) == i
    np.testing.assert_allclose(y[lat + n_fft :], x[n_fft : i - lat], atol=1e-6)
