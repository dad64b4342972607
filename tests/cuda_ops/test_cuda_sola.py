"""SOLA on the device against engine/dsp/sola.py's numpy SOLA, on real speech."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cuda_ops import sola
from engine.dsp.sola import Sola

HOP, CROSSFADE, SEARCH = 480, 240, 96  # tiny geometry at 16 kHz-ish rates keeps the interpreter fast


def _chunks(speech, n: int):
    """Consecutive chunks with the jitter a model's re-decoded windows have (so offsets vary)."""
    x, _sr = speech
    rng = np.random.default_rng(0)
    size = HOP + CROSSFADE + SEARCH
    out = []
    for i in range(n):
        start = 4000 + i * HOP + int(rng.integers(0, SEARCH))
        out.append((x[start : start + size] * rng.uniform(0.9, 1.1)).astype(np.float32))
    return out


@pytest.fixture
def speech(speech_male):
    return speech_male


def test_reference_and_kernel_match_numpy_sola(speech, kernel_device):
    numpy_sola = Sola(HOP, CROSSFADE, SEARCH)
    state = numpy_sola.init_state()
    fade_in = torch.from_numpy(numpy_sola.fade_in).to(kernel_device)
    fade_out = torch.from_numpy(numpy_sola.fade_out).to(kernel_device)
    tail_ref = tail_k = None
    offsets = []
    for chunk in _chunks(speech, 6):
        want, state = numpy_sola.process(chunk, state)
        c = torch.from_numpy(chunk).to(kernel_device)
        out_ref, tail_ref, off_ref = sola.sola_step(c, tail_ref, fade_in, fade_out, HOP, SEARCH, impl="reference")
        out_k, tail_k, off_k = sola.sola_step(c, tail_k, fade_in, fade_out, HOP, SEARCH, impl="kernel")
        assert int(off_ref) == int(off_k)
        offsets.append(int(off_k))
        np.testing.assert_allclose(out_ref.cpu().numpy(), want, atol=1e-6)
        torch.testing.assert_close(out_k, out_ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(tail_k, tail_ref, rtol=0, atol=0)
    assert len(set(offsets[1:])) > 1  # the search really moved


def test_scores_kernel_matches_reference(speech, kernel_device):
    chunk, prev = (torch.from_numpy(c).to(kernel_device) for c in _chunks(speech, 2))
    tail = prev[HOP : HOP + CROSSFADE]
    want = sola.sola_scores_reference(chunk, tail, SEARCH)
    got = sola.sola_scores_kernel(chunk, tail, SEARCH)
    assert got.shape == (SEARCH + 1,)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_torch_sola_in_engine_dsp_equals_numpy(speech):
    """engine/dsp/sola.Sola takes torch tensors too (device-resident chunks) and gives the same audio."""
    a, b = Sola(HOP, CROSSFADE, SEARCH), Sola(HOP, CROSSFADE, SEARCH)
    sa, sb = a.init_state(), b.init_state()
    for chunk in _chunks(speech, 5):
        want, sa = a.process(chunk, sa)
        got, sb = b.process(torch.from_numpy(chunk), sb)
        assert isinstance(got, torch.Tensor)
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
