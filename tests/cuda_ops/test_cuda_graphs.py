"""CUDA graphs for the live block: replay equals eager on CUDA; everywhere else the wrapper runs
eagerly, says why, and gives exactly the wrapped model's output."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rvc"))
from tiny_models import tiny_synthesizer  # noqa: E402

from cuda_ops.graphs import ENV_SWITCH, GraphedCall, GraphedSynthesizer  # noqa: E402

NEEDS_CUDA = "CUDA graphs need a CUDA GPU (none here); benchmarks/gpu_check.sh runs this test on one"


def _inputs(synth, frames: int, seed: int, device):
    gen = torch.Generator().manual_seed(seed)
    cfg = synth.cfg
    hop = cfg.hop_samples
    return dict(
        phone=torch.randn(1, frames, cfg.feature_dim, generator=gen).to(device),
        phone_lengths=torch.tensor([frames], device=device),
        pitch=torch.randint(1, 255, (1, frames), generator=gen).to(device),
        nsff0=(100 + 200 * torch.rand(1, frames, generator=gen)).to(device),
        sid=torch.tensor([1], device=device),
        noise_z=torch.randn(1, cfg.inter_channels, frames, generator=gen).to(device),
        noise_nsf=torch.randn(1, 1, frames * hop, generator=gen).to(device),
        sine_phase0=torch.rand(1, generator=gen, dtype=torch.float64).to(device),
    )


def _call(model, x, head, length, **kw):
    return model.infer(x["phone"], x["phone_lengths"], x["pitch"], x["nsff0"], x["sid"], head, length,
                       noise_z=x["noise_z"], noise_nsf=x["noise_nsf"], sine_phase0=x["sine_phase0"], **kw)


def test_off_the_gpu_the_wrapper_is_the_model_and_says_why():
    synth = tiny_synthesizer("v2", True, 40000)
    graphed = GraphedSynthesizer(synth)
    x = _inputs(synth, 40, 0, "cpu")
    assert torch.equal(_call(graphed, x, 20, 12), _call(synth, x, 20, 12))
    # every argument the voice passes gets through, the formant's stretched decode too
    stretched = _call(graphed, x, 20, 12, formant_length=13)
    assert torch.equal(stretched, _call(synth, x, 20, 12, formant_length=13))
    assert stretched.shape[-1] == 13 * synth.cfg.hop_samples
    assert graphed.graph.captures == 0 and "CUDA tensors" in graphed.graph.eager_reason
    assert list(graphed.parameters())  # the voice reads its device and dtype from the parameters


def test_the_switch_turns_graphs_off(monkeypatch):
    monkeypatch.setenv(ENV_SWITCH, "0")
    call = GraphedCall(lambda a: a * 2)
    assert not call.enabled and call.eager_reason == "CUDA graphs are switched off"
    assert GraphedCall(lambda a: a, enabled=False).enabled is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NEEDS_CUDA)
def test_replay_equals_eager_and_a_new_geometry_recaptures():
    synth = tiny_synthesizer("v2", True, 40000).cuda()
    graphed = GraphedSynthesizer(synth)
    for seed in range(3):  # new values every block, same shapes: one capture, then replays
        x = _inputs(synth, 40, seed, "cuda")
        torch.testing.assert_close(_call(graphed, x, 20, 12), _call(synth, x, 20, 12), rtol=1e-5, atol=1e-5)
    assert graphed.graph.captures == 1 and graphed.graph.replays == 3, graphed.graph.eager_reason
    x = _inputs(synth, 60, 9, "cuda")  # a settings change: another window
    torch.testing.assert_close(_call(graphed, x, 30, 20), _call(synth, x, 30, 20), rtol=1e-5, atol=1e-5)
    assert graphed.graph.captures == 2
    stretched = _call(graphed, x, 30, 20, formant_length=22)  # the formant moved: a stretched decode
    torch.testing.assert_close(stretched, _call(synth, x, 30, 20, formant_length=22), rtol=1e-5, atol=1e-5)
    assert graphed.graph.captures == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NEEDS_CUDA)
def test_replay_equals_eager_in_half_precision():
    synth = tiny_synthesizer("v2", True, 40000).cuda().half()
    graphed = GraphedSynthesizer(synth)
    for seed in range(2):
        x = _inputs(synth, 40, seed, "cuda")
        x["phone"] = x["phone"].half()
        torch.testing.assert_close(_call(graphed, x, 20, 12), _call(synth, x, 20, 12), rtol=0, atol=2e-3)
    assert graphed.graph.captures == 1


@pytest.mark.parametrize("device_path", [False, True], ids=["numpy-path", "device-path"])
def test_a_voice_runs_through_the_wrapper_off_the_gpu(device_path):
    """The voice's calls on the wrapper (what a CUDA voice makes) work where they can run: on the CPU
    the wrapper is eager, so the voice gives what it gives without it, formant moved or not."""
    import numpy as np

    from engine.voices.rvc.voice import RVCVoice

    class Encoder:
        versions = ("v2",)
        device = torch.device("cpu")

        def encode(self, audio, version):
            a = torch.as_tensor(audio, dtype=torch.float32).reshape(-1)
            return torch.tanh(a.unfold(0, 400, 320)[:, :1].repeat(1, 768))[None]

    synth = tiny_synthesizer("v2", True, 40000, seed=1)
    geometry = dict(block_ms=100, extra_ms=400, crossfade_ms=20, device_path=device_path, live_preset="exact")
    plain, graphed = RVCVoice(synth, Encoder(), **geometry), RVCVoice(GraphedSynthesizer(synth), Encoder(), **geometry)
    x = np.sin(2 * np.pi * 150 * np.arange(4 * plain.hop_samples) / 40000).astype(np.float32) * 0.3
    for params in ({"f0_method": "dsp"}, {"f0_method": "dsp", "formant_st": 1.0}):
        outs = []
        for voice in (plain, graphed):
            state = voice.init_state()
            outs.append(np.concatenate([voice.process(x[i : i + voice.hop_samples], state, params)[0]
                                        for i in range(0, len(x), voice.hop_samples)]))
        np.testing.assert_array_equal(outs[0], outs[1])
