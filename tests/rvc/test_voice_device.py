"""Where a loaded RVC voice runs, what it holds there, and the visible fall-back to the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import accelerators as devices


@pytest.fixture
def files(tmp_path):
    from helpers_frontend import tiny_fairseq_hubert_checkpoint, tiny_hubert_config
    from tiny_models import write_tiny_pth

    pth = write_tiny_pth(tmp_path / "voice.pth", "v1", True, 32000, seed=2)
    hubert = tmp_path / "hubert_base.pt"
    tiny_fairseq_hubert_checkpoint(hubert, tiny_hubert_config(final_dim=256))
    return pth, hubert


def _load(files, **kw):
    from engine.voices.rvc.voice import load_rvc_voice

    pth, hubert = files
    return load_rvc_voice(pth, content_encoder_path=hubert, block_ms=300, extra_ms=400, crossfade_ms=40, **kw)


def test_cpu_voice_reports_its_device_and_memory(files):
    voice = _load(files, device="cpu")
    assert voice.device_choice.device.type == "cpu" and voice.device_choice.fallback_reason == ""
    mem = voice.memory.as_dict()
    assert mem["device"] == "cpu" and mem["index_bytes"] == 0 and mem["notes"] == []
    # the synthesizer's and the encoder's parameters, counted exactly
    expected = devices.module_bytes(voice.synth) + devices.module_bytes(voice.encoder.model)
    assert mem["weights_bytes"] == expected > 0
    assert voice.measure_peak_memory() is None and voice.memory.peak_bytes is None
    assert voice.cpu_bound_live  # its live worker takes a raised nice value, not real-time


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fall-back of a machine without a GPU")
def test_asking_for_a_gpu_that_is_not_there_gives_a_cpu_voice_that_says_so(files):
    voice = _load(files, device="cuda:0")
    assert next(voice.synth.parameters()).device.type == "cpu"
    reason = "cuda:0 was asked for, but no CUDA GPU is visible to torch; running on the CPU."
    assert voice.device_choice.fallback_reason == reason and voice.memory.notes == [reason]
    out, _ = voice.process(np.zeros(voice.hop_samples, np.float32), voice.init_state(), {"f0_method": "dsp"})
    assert out.shape == (voice.hop_samples,)


def test_a_gpu_too_full_for_the_voice_falls_back_with_one_sentence(files, monkeypatch):
    """The fit check runs before anything is put on the GPU (faked: a GPU with 100 MiB free)."""
    monkeypatch.setattr(devices, "select_device",
                        lambda spec=None: devices.DeviceChoice(torch.device("cuda:0"), "cuda:0"))
    monkeypatch.setattr(devices, "free_bytes", lambda dev: 100 * 2**20 if dev.type == "cuda" else None)
    voice = _load(files, device="cuda:0")
    assert next(voice.synth.parameters()).device.type == "cpu"
    msg = voice.device_choice.fallback_reason
    assert msg.startswith("Voice 'voice' needs about 0.5 GiB on cuda:0 but only 0.1 GiB is free; running it on the CPU")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a voice on the GPU needs a CUDA GPU (none here)")
def test_gpu_voice_is_fp16_graphed_and_measures_its_peak(files):
    from cuda_ops.graphs import GraphedSynthesizer

    voice = _load(files, device="cuda:0")
    assert isinstance(voice.synth, GraphedSynthesizer)
    assert next(voice.synth.parameters()).dtype == torch.float16
    assert not voice.cpu_bound_live  # the GPU computes: the worker may be real-time
    peak = voice.measure_peak_memory()
    assert peak is not None and peak >= voice.memory.weights_bytes
    state = voice.init_state()
    for _ in range(3):
        out, state = voice.process(np.zeros(voice.hop_samples, np.float32), state, {"f0_method": "dsp"})
    assert voice.synth.graph.captures >= 1 and voice.synth.graph.replays >= 2, voice.synth.graph.eager_reason
    parts = devices.describe_voice_device(voice)["parts"]
    assert parts["synthesizer"] == parts["content_encoder"] == "cuda:0"
    assert parts["pitch"] == "dsp: cpu (its estimate goes through the host each block)"
    assert parts["resampling"] == "cuda:0 (windowed sinc)" and parts["sola"] == "cuda:0 (Triton)"


def test_what_the_health_view_shows(files):
    voice = _load(files, device="cpu")
    info = devices.describe_voice_device(voice)
    assert info["device"] == "cpu" and info["fallback_reason"] == "" and info["cuda_graphs"] is None
    assert info["memory"]["weights_bytes"] == voice.memory.weights_bytes
    assert info["parts"] == {"resampling": "cpu (soxr)", "content_encoder": "cpu", "pitch": "not loaded yet",
                             "index": "none", "synthesizer": "cpu", "sola": "cpu (numpy)"}
    voice.process(np.zeros(voice.hop_samples, np.float32), voice.init_state(), {"f0_method": "dsp"})
    assert devices.describe_voice_device(voice)["parts"]["pitch"] == "dsp: cpu"
    from engine.voices.registry import load_voice

    builtin = devices.describe_voice_device(load_voice("natural"))
    assert builtin == {"parts": {}, "device": "cpu", "requested": "cpu", "fallback_reason": "", "memory": None,
                       "cuda_graphs": None}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the voice on CUDA needs a CUDA GPU (none here)")
def test_the_voice_on_cuda_sounds_like_the_voice_on_the_cpu(monkeypatch):
    """Same weights, same noise, fp32: a CUDA voice (the device path: graphed decode, GPU index, NSF
    and SOLA kernels) gives the blocks of the same path on the CPU; the graphed and the eager CUDA
    voices agree exactly."""
    import faiss
    import soundfile as sf
    from tiny_models import tiny_synthesizer

    from cuda_ops.graphs import GraphedSynthesizer
    from engine.dsp.resample import resample
    from engine.voices.rvc.index import FeatureIndex
    from engine.voices.rvc.voice import RVCVoice

    x, sr = sf.read("tests/data/cmuarctic_slt_F_arctic_a0009.wav", dtype="float32")
    x = resample(x, sr, 40000)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((500, 768)).astype(np.float32)
    flat = faiss.IndexFlatL2(768)
    flat.add(vectors)

    class Encoder:  # frame-local, deterministic, on the voice's device
        versions = ("v2",)

        def __init__(self, device):
            self.device = device

        def encode(self, audio, version):
            a = torch.as_tensor(audio, dtype=torch.float32).reshape(-1).to(self.device)
            t = (len(a) - 400) // 320 + 1
            frames = a.unfold(0, 400, 320)[:t]
            return torch.tanh(frames @ P.to(self.device))[None]

    P = torch.from_numpy(np.random.default_rng(1).standard_normal((400, 768)).astype(np.float32))
    # TF32 would make the GPU's convolutions differ from the CPU's by more than fp32 rounding
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    params = {"f0_method": "dsp", "index_rate": 0.5, "transpose_st": 2}
    outs = {}
    for name, device, graphs in (("cpu", "cpu", False), ("cuda_eager", "cuda", False), ("cuda_graphs", "cuda", True)):
        synth = tiny_synthesizer("v2", True, 40000, seed=1).to(device)
        if device == "cuda":
            synth = GraphedSynthesizer(synth, enabled=graphs)
        voice = RVCVoice(synth, Encoder(torch.device(device)), index=FeatureIndex(flat, vectors),
                         block_ms=200, extra_ms=600, crossfade_ms=40, device_path=True)
        voice.device_live.host_noise = True  # the CPU generator's draws on every device
        state = voice.init_state()
        hop = voice.hop_samples
        outs[name] = np.concatenate([voice.process(x[i : i + hop], state, params)[0] for i in range(0, 5 * hop, hop)])
        if graphs:
            assert voice.synth.graph.captures == 1 and voice.synth.graph.replays == 5, voice.synth.graph.eager_reason
    np.testing.assert_allclose(outs["cuda_graphs"], outs["cuda_eager"], atol=1e-5)
    assert np.abs(outs["cpu"]).max() > 1e-2
    np.testing.assert_allclose(outs["cuda_eager"], outs["cpu"], atol=5e-3)
