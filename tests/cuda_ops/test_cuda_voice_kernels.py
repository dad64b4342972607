"""The kernels where the voice calls them: an RVC voice's device path with every cuda_ops call
forced to its Triton kernel (compiled on a GPU, Triton's interpreter here) gives what the torch
references give, and each kernel really ran."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rvc"))
from tiny_models import tiny_synthesizer  # noqa: E402

from cuda_ops import knn, nsf, sola  # noqa: E402
from cuda_ops.dispatch import ENV_IMPL  # noqa: E402


def test_the_device_path_runs_its_kernels_and_matches_the_references(kernel_device, monkeypatch):
    import faiss

    from engine.voices.rvc.index import FeatureIndex
    from engine.voices.rvc.voice import RVCVoice

    dev = kernel_device
    P = torch.from_numpy(np.random.default_rng(1).standard_normal((400, 768)).astype(np.float32)).to(dev)

    class Encoder:  # frame-local, on the kernels' device
        versions = ("v2",)
        device = dev

        def encode(self, audio, version):
            a = torch.as_tensor(audio, dtype=torch.float32).reshape(-1).to(dev)
            return torch.tanh(a.unfold(0, 400, 320) @ P)[None]

    vectors = np.random.default_rng(3).standard_normal((300, 768)).astype(np.float32)
    flat = faiss.IndexFlatL2(768)
    flat.add(vectors)
    synth = tiny_synthesizer("v2", True, 40000, seed=1).to(dev)
    voice = RVCVoice(synth, Encoder(), index=FeatureIndex(flat, vectors), block_ms=100, extra_ms=300,
                     crossfade_ms=20, device_path=True, live_preset="exact")
    t = np.arange(4 * voice.hop_samples) / 40000
    x = (0.3 * np.sin(2 * np.pi * 160 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    params = {"f0_method": "dsp", "index_rate": 0.5, "transpose_st": 2}

    ran: dict[str, int] = {}

    def counted(module, name):
        real = getattr(module, name)

        def wrapper(*a, **k):
            ran[name] = ran.get(name, 0) + 1
            return real(*a, **k)

        monkeypatch.setattr(module, name, wrapper)

    for module, name in ((sola, "sola_scores_kernel"), (sola, "sola_splice_kernel"), (knn, "knn_flat_kernel"),
                         (knn, "blend_kernel"), (nsf, "nsf_source_kernel")):
        counted(module, name)

    outs = {}
    for impl in ("reference", "kernel"):
        monkeypatch.setenv(ENV_IMPL, impl)
        state = voice.init_state()
        outs[impl] = np.concatenate([voice.process(x[i : i + voice.hop_samples], state, params)[0]
                                     for i in range(0, len(x), voice.hop_samples)])
    assert set(ran) == {"sola_scores_kernel", "sola_splice_kernel", "knn_flat_kernel", "blend_kernel",
                        "nsf_source_kernel"}, ran
    assert np.abs(outs["reference"]).max() > 1e-2
    np.testing.assert_allclose(outs["kernel"], outs["reference"], atol=2e-4)
