"""The device path of an RVC voice (engine/voices/rvc/device_live.py): every step of the live block
on the synthesizer's torch device. On CUDA it is the default; here it runs on the CPU, where it
must sound like the numpy path and never take anything from the host mid-block."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from engine.dsp.resample import fixed_plan, resample
from engine.errors import ConfigError

SPEECH = "tests/data/cmuarctic_slt_F_arctic_a0009.wav"  # CMU ARCTIC slt (public domain), 3.1 s
GEOMETRY = dict(block_ms=200, extra_ms=600, crossfade_ms=40)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from helpers_frontend import tiny_fairseq_hubert_checkpoint, tiny_hubert_config
    from tiny_models import write_tiny_pth

    tmp = tmp_path_factory.mktemp("device_live")
    pth = write_tiny_pth(tmp / "voice.pth", "v1", True, 32000, seed=2)
    hubert = tmp / "hubert_base.pt"
    tiny_fairseq_hubert_checkpoint(hubert, tiny_hubert_config(final_dim=256))
    return pth, hubert


def _voices(files, index=None):
    """(numpy path, device path) of the same model, encoder and index on the CPU."""
    from engine.voices.rvc.voice import RVCVoice, load_rvc_voice

    pth, hubert = files
    numpy_voice = load_rvc_voice(pth, content_encoder_path=hubert, device="cpu", live_preset="exact", **GEOMETRY)
    numpy_voice.index = index
    device_voice = RVCVoice(numpy_voice.synth, numpy_voice.encoder, index=index, live_preset="exact",
                            device_path=True, **GEOMETRY)
    return numpy_voice, device_voice


def _stream(voice, x, params, blocks=None):
    hop = voice.hop_samples
    state = voice.init_state()
    n = len(x) // hop if blocks is None else blocks
    out = []
    for i in range(n):
        y, state = voice.process(x[i * hop : (i + 1) * hop], state, params)
        assert y.shape == (hop,) and y.dtype == np.float32
        out.append(y)
    return np.concatenate(out)


def _snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - other) ** 2)))


def _speech(sr: int) -> np.ndarray:
    x, file_sr = sf.read(SPEECH, dtype="float32")
    return resample(x, file_sr, sr)


@pytest.fixture(scope="module")
def index():
    import faiss

    from engine.voices.rvc.index import FeatureIndex

    vectors = np.random.default_rng(3).standard_normal((400, 256)).astype(np.float32) * 0.3
    flat = faiss.IndexFlatL2(256)
    flat.add(vectors)
    return FeatureIndex(flat, vectors)


@pytest.mark.parametrize("params", [
    {"transpose_st": 2.0, "rms_mix_rate": 0.25},
    {"transpose_st": -3.0, "index_rate": 0.5, "protect": 0.33, "rms_mix_rate": 0.0},
], ids=["transpose", "index-protect-loudness"])
def test_the_device_path_sounds_like_the_numpy_path(files, index, params):
    """Same model, same noise: only the 16 kHz resampler (a windowed sinc gather instead of soxr)
    and float32 loudness sums differ. Measured 44 dB."""
    numpy_voice, device_voice = _voices(files, index)
    x = _speech(numpy_voice.sample_rate)
    p = {"f0_method": "dsp", **params}
    a, b = _stream(numpy_voice, x, p), _stream(device_voice, x, p)
    assert np.sqrt(np.mean(a**2)) > 1e-2
    assert _snr_db(a, b) > 25.0


@pytest.mark.parametrize("formant_st", [-1.0, 0.5, 1.0])
def test_the_formant_unstretch_on_the_device_is_the_numpy_one(files, formant_st):
    """The stretched decode resampled back to R frames: the gather against soxr on speech-band noise
    (measured 71-94 dB). Whole streams are not compared with the formant moved: the tiny random model
    puts most of its energy near Nyquist, where the two filters differ (soxr passes up to 0.91 of
    it, the gather starts rolling off at ~0.83), so SOLA picks other splice offsets."""
    import scipy.signal as ss

    numpy_voice, device_voice = _voices(files)
    r = numpy_voice.return_frames
    n = int(np.ceil(r * 2 ** (formant_st / 12))) * numpy_voice.frame
    audio = ss.sosfilt(ss.butter(8, 0.7, output="sos"), np.random.default_rng(0).standard_normal(n)).astype(np.float32)
    a = numpy_voice._unstretch(audio, r, formant_st)
    b = device_voice.device_live._unstretched(torch.from_numpy(audio), formant_st).numpy()
    assert a.shape == b.shape == (r * numpy_voice.frame,)
    assert _snr_db(a[200:-200], b[200:-200]) > 60.0
    x = _speech(device_voice.sample_rate)
    y = _stream(device_voice, x, {"f0_method": "dsp", "formant_st": formant_st}, blocks=4)
    assert np.isfinite(y).all() and np.sqrt(np.mean(y[-device_voice.hop_samples:] ** 2)) > 1e-2


def test_the_16k_resampling_is_the_live_resamplers_filter():
    """fixed_plan against soxr on a 1 kHz tone at 32/40/48 kHz: the same signal within -80 dB."""
    for sr in (32000, 40000, 48000):
        n = sr // 2
        t = np.arange(n) / sr
        idx, w = fixed_plan(n, sr, 16000)
        y = (np.sin(2 * np.pi * 1000 * t).astype(np.float32)[idx] * w).sum(1)
        ref = np.sin(2 * np.pi * 1000 * np.arange(len(y)) / 16000)
        mid = slice(100, len(y) - 100)  # the segment's ends are silence beyond it
        assert len(y) == n * 16000 // sr
        assert _snr_db(ref[mid], y[mid]) > 80.0


class _HostCrossings(TorchDispatchMode):
    """Counts what makes a device wait for the host or take data from it: values read on the host
    (``.item()``, ``bool(t)``), sizes known only from values (``nonzero``, boolean indexing) and
    arrays made from host data (``torch.tensor([...])``). A Python scalar (``x[mask] = 0``) is
    passed to a GPU kernel as an argument, not copied: 0-d ``lift_fresh`` is not counted."""

    SYNCS = {"_local_scalar_dense", "is_nonzero", "equal", "nonzero", "masked_select", "unique"}

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in self.SYNCS or (name == "lift_fresh" and args[0].dim() > 0):
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


def test_a_steady_block_crosses_to_the_host_once_each_way(files, monkeypatch):
    """With FCPE (its estimate stays on the device) one block's audio goes in through the voice's
    staging buffer and comes out through the other; nothing else is copied, read back or made from
    host data while the block runs. The DSP tracker, which is host code, is the one round trip."""
    _, voice = _voices(files)
    live = voice.device_live
    x = _speech(voice.sample_rate)
    hop = voice.hop_samples
    state = voice.init_state()
    for i in range(2):  # warm: the estimator loads, SOLA makes its fades on the device
        voice.process(x[i * hop : (i + 1) * hop], state, {"f0_method": "fcpe", "transpose_st": 2})

    calls: list[str] = []
    staging = {id(live._host_in), id(live._host_out)}
    real_numpy, real_cpu, real_tolist, real_from_numpy = torch.Tensor.numpy, torch.Tensor.cpu, torch.Tensor.tolist, torch.from_numpy

    def numpy(self, *a, **k):
        if id(self) not in staging:
            calls.append("numpy")
        return real_numpy(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "numpy", numpy)
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: calls.append("cpu") or real_cpu(self, *a, **k))
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: calls.append("tolist") or real_tolist(self))
    monkeypatch.setattr(torch, "from_numpy", lambda a: calls.append("from_numpy") or real_from_numpy(a))

    def one_block(method):
        calls.clear()
        with _HostCrossings() as mode:
            voice.process(x[2 * hop : 3 * hop], state, {"f0_method": method, "transpose_st": 2})
        return calls + mode.seen

    assert one_block("fcpe") == []
    dsp = one_block("dsp")
    assert dsp.count("cpu") == 1 and dsp.count("from_numpy") == 1, dsp


def test_where_the_device_path_runs(files, index):
    from engine import accelerators as devices
    from engine.voices.rvc.voice import RVCVoice

    numpy_voice, device_voice = _voices(files, index)
    assert numpy_voice.device_live is None  # a CPU voice keeps the numpy path unless asked
    assert isinstance(device_voice.init_state().in_ring, torch.Tensor)
    device_voice.process(np.zeros(device_voice.hop_samples, np.float32), device_voice.init_state(), {"f0_method": "dsp"})
    parts = devices.describe_voice_device(device_voice)["parts"]
    assert parts == {"resampling": "cpu (windowed sinc)", "content_encoder": "cpu", "pitch": "dsp: cpu",
                     "index": "cpu (device copy, torch)", "synthesizer": "cpu", "sola": "cpu (torch)"}

    class Elsewhere:  # an encoder that is not where the synthesizer is
        device = torch.device("meta")
        versions = ("v1",)

    with pytest.raises(ConfigError, match="needs the content encoder on cpu"):
        RVCVoice(numpy_voice.synth, Elsewhere(), device_path=True, **GEOMETRY)
    assert RVCVoice(numpy_voice.synth, Elsewhere(), **GEOMETRY).device_live is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the device path on CUDA needs a CUDA GPU (none here)")
def test_on_cuda_the_device_path_is_the_default_and_matches_the_cpu(files, monkeypatch):
    from engine.voices.rvc.voice import load_rvc_voice

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    pth, hubert = files
    cpu = _voices(files)[1]
    gpu = load_rvc_voice(pth, content_encoder_path=hubert, device="cuda", live_preset="exact", **GEOMETRY)
    assert gpu.device_live is not None and gpu.device_live.device.type == "cuda"
    gpu.device_live.host_noise = True  # the CPU voice's noise, uploaded
    x = _speech(gpu.sample_rate)
    p = {"f0_method": "dsp", "transpose_st": 2}
    a, b = _stream(cpu, x, p, blocks=8), _stream(gpu, x, p, blocks=8)
    assert _snr_db(a, b) > 20.0  # fp16 on the GPU
