"""Pitch for RVC: FCPE (torchfcpe's model), RMVPE (our network, RVC's names), DSP fallback, coarse pitch."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.errors import ModelFormatError, VoiceError
from engine.voices.rvc import f0 as f0mod
from engine.voices.rvc.f0 import (
    E2E,
    DspPitch,
    FcpeMel,
    FcpePitch,
    RmvpeMel,
    RmvpePitch,
    f0_frames,
    f0_to_coarse,
    load_pitch_estimator,
    mel_filterbank,
    rvc_pitch_inputs,
    rmvpe_config_from_state_dict,
    salience_to_f0,
    torchfcpe_module,
    transpose_f0,
)
from tests.rvc.helpers_frontend import TINY_RMVPE, RunsAShellCommand, tiny_rmvpe_state_dict

DATA = Path(__file__).resolve().parents[1] / "data"
RECORDING = DATA / "cmuarctic_slt_F_arctic_a0009.wav"  # 16 kHz, female, F0 about 188 Hz
SR = 16000


def harmonic_tone(f0_hz: float, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    """A voice-like tone: all harmonics up to 7 kHz with 1/k amplitudes."""
    t = np.arange(int(seconds * sr)) / sr
    x = sum(0.3 / k * np.sin(2 * np.pi * k * f0_hz * t) for k in range(1, int(7000 / f0_hz) + 1))
    return x.astype(np.float32)


def cents(a: np.ndarray, b: float | np.ndarray) -> np.ndarray:
    return 1200 * np.log2(np.asarray(a) / b)


@pytest.fixture(scope="module")
def fcpe() -> FcpePitch:
    return FcpePitch()


# ------------------------------------------------------------------------------ FCPE


@pytest.mark.parametrize("f0_hz", [98.0, 147.0, 220.5, 440.0, 880.0])
def test_fcpe_tracks_tones_within_a_few_cents(fcpe, f0_hz):
    x = harmonic_tone(f0_hz)
    f0 = fcpe.estimate(x)
    assert f0.shape == (f0_frames(len(x)),)
    inner = f0[10:-10]  # away from the edges of the signal
    assert np.all(inner > 0)
    err = cents(inner, f0_hz)
    assert abs(np.median(err)) < 5
    assert np.max(np.abs(err)) < 10


def test_fcpe_silence_is_unvoiced(fcpe):
    f0 = fcpe.estimate(np.zeros(SR // 2, dtype=np.float32))
    assert f0.shape == (f0_frames(SR // 2),)
    assert np.all(f0 == 0)


def test_fcpe_on_a_real_recording(fcpe):
    x, sr = sf.read(RECORDING, dtype="float32")
    assert sr == SR
    f0 = fcpe.estimate(x)
    assert f0.shape == (len(x) // 160 + 1,)
    voiced = f0 > 0
    assert 0.4 < voiced.mean() < 0.95  # a spoken sentence: mostly voiced, with pauses and consonants
    assert 170 < np.median(f0[voiced]) < 210
    # Agreement with an independent method (the DSP YIN tracker) where both hear voice.
    dsp = DspPitch().estimate(x)
    both = voiced & (dsp > 0)
    assert both.sum() > 100
    assert np.mean(np.abs(cents(f0[both], dsp[both])) < 50) > 0.7


def test_fcpe_follows_a_transposed_recording(fcpe):
    """Playing the recording 4 semitones faster raises FCPE's median F0 by ~400 cents."""
    x, _ = sf.read(RECORDING, dtype="float32")
    ratio = 2 ** (4 / 12)
    t_new = np.arange(int(len(x) / ratio)) * ratio
    faster = np.interp(t_new, np.arange(len(x)), x).astype(np.float32)
    a, b = fcpe.estimate(x), fcpe.estimate(faster)
    shift = cents(np.median(b[b > 0]), np.median(a[a > 0]))
    assert abs(shift - 400) < 30


@pytest.fixture
def torchfcpe_with_stub_torchaudio(monkeypatch):
    """torchfcpe's own mel/inference modules, importable here only because a stand-in torchaudio
    whose Resample raises is installed for this test: at 16 kHz torchfcpe never resamples."""
    ta = types.ModuleType("torchaudio")
    tt = types.ModuleType("torchaudio.transforms")

    class Resample:
        def __init__(self, *a, **k):
            raise AssertionError("torchfcpe resampled; the parity test must use 16 kHz")

    tt.Resample = Resample
    ta.transforms = tt
    monkeypatch.setitem(sys.modules, "torchaudio", ta)
    monkeypatch.setitem(sys.modules, "torchaudio.transforms", tt)
    yield
    for name in ("mel_extractor", "tools", "models_infer"):
        sys.modules.pop(f"{f0mod._TORCHFCPE_ALIAS}.{name}", None)


def test_fcpe_matches_torchfcpe_end_to_end(fcpe, torchfcpe_with_stub_torchaudio):
    mel_ref = torchfcpe_module("mel_extractor").Wav2MelModule(16000, 128, 1024, 1024, 160, 0, 8000)
    for n in (16000, 16123, 3000, 700):
        x = torch.from_numpy(harmonic_tone(180.0, n / SR))
        torch.testing.assert_close(FcpeMel()(x[None]), mel_ref(x[None, :, None], 16000), rtol=0, atol=0)
    ref = torchfcpe_module("models_infer").spawn_bundled_infer_model("cpu")
    x, _ = sf.read(RECORDING, dtype="float32")
    expected = ref.infer(torch.from_numpy(x)[None, :, None], sr=16000, decoder_mode="local_argmax", threshold=0.006)
    np.testing.assert_array_equal(fcpe.estimate(x), expected.reshape(-1).numpy().astype(np.float64))


@pytest.mark.parametrize("htk,fmin", [(False, 0.0), (True, 30.0)], ids=["fcpe-slaney", "rmvpe-htk"])
def test_mel_filterbank_matches_librosa_algorithm(htk, fmin):
    # torchfcpe vendors librosa's mel filter code; compare with it.
    ref = torchfcpe_module("mel_fn_librosa").mel(sr=16000, n_fft=1024, n_mels=128, fmin=fmin, fmax=8000, htk=htk)
    np.testing.assert_allclose(mel_filterbank(16000, 1024, 128, fmin, 8000, htk), ref, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------ coarse, transpose


def test_coarse_pitch_matches_rvc_formula_on_hand_computed_values():
    # mel(f) = 1127 ln(1 + f/700); mel(50) = 77.755, mel(1100) = 1064.41, span 986.66
    # 100 Hz: mel 150.49 -> (150.49 - 77.755) * 254 / 986.66 + 1 = 19.72 -> 20
    # 200 Hz: mel 283.23 -> 53.90 -> 54
    # 440 Hz: mel 549.64 -> 122.48 -> 122
    # 0 Hz (unvoiced) and anything at/below 50 Hz -> 1; 1100 Hz and above -> 255
    f0 = np.array([0.0, 30.0, 50.0, 100.0, 200.0, 440.0, 1100.0, 2000.0])
    np.testing.assert_array_equal(f0_to_coarse(f0), [1, 1, 1, 20, 54, 122, 255, 255])
    ladder = f0_to_coarse(np.geomspace(50, 1100, 500))
    assert np.all(np.diff(ladder) >= 0) and ladder.min() == 1 and ladder.max() == 255


def test_transpose_is_a_frequency_ratio():
    f0 = np.array([0.0, 100.0, 220.0])
    np.testing.assert_allclose(transpose_f0(f0, 12), [0, 200, 440])
    np.testing.assert_allclose(transpose_f0(f0, -12), [0, 50, 110])
    np.testing.assert_allclose(transpose_f0(f0, 7), f0 * 2 ** (7 / 12))
    coarse, f0_out = rvc_pitch_inputs(np.array([0.0, 100.0, 220.0]), 12)  # 200 Hz -> 54, 440 Hz -> 122
    assert coarse.tolist() == [1, 54, 122] and f0_out.dtype == np.float32
    np.testing.assert_allclose(f0_out, [0, 200, 440])


# ------------------------------------------------------------------------------ RMVPE


def test_full_size_rmvpe_has_rvc_layout():
    model = E2E()  # RVC: E2E(4, 1, (2, 2))
    sd = model.state_dict()
    for key, shape in {
        "unet.encoder.bn.weight": (1,),
        "unet.encoder.layers.0.conv.0.conv.0.weight": (16, 1, 3, 3),
        "unet.encoder.layers.0.conv.0.shortcut.weight": (16, 1, 1, 1),
        "unet.encoder.layers.4.conv.3.conv.3.weight": (256, 256, 3, 3),
        "unet.intermediate.layers.0.conv.0.shortcut.weight": (512, 256, 1, 1),
        "unet.intermediate.layers.3.conv.3.conv.4.running_var": (512,),
        "unet.decoder.layers.0.conv1.0.weight": (512, 256, 3, 3),
        "unet.decoder.layers.4.conv2.0.conv.0.weight": (16, 32, 3, 3),
        "cnn.weight": (3, 16, 3, 3),
        "fc.0.gru.weight_ih_l0": (768, 384),
        "fc.0.gru.weight_hh_l0_reverse": (768, 256),
        "fc.1.weight": (360, 512),
    }.items():
        assert tuple(sd[key].shape) == shape, key
    assert rmvpe_config_from_state_dict(sd) == dict(
        n_blocks=4, n_gru=1, kernel_size=(2, 2), en_de_layers=5, inter_layers=4, in_channels=1, en_out_channels=16, gru_hidden=256
    )


def test_tiny_rmvpe_loads_weights_only_and_gives_frames(tmp_path):
    sd = tiny_rmvpe_state_dict()
    path = tmp_path / "rmvpe.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, path)  # rmvpe.pt is stored in fp16
    pitch = load_pitch_estimator("rmvpe", models_dir=tmp_path)
    assert isinstance(pitch, RmvpePitch)
    ref = E2E(**TINY_RMVPE).eval()
    ref.load_state_dict(sd)
    for n in (16000, 5120 - 160, 1000):  # RVC realtime uses 5120k - 160 samples: frames a multiple of 32
        x = harmonic_tone(200.0, n / SR)
        sal = pitch.salience(x)
        assert sal.shape == (f0_frames(n), 360)
        assert np.all((sal >= 0) & (sal <= 1))
        f0 = pitch.estimate(x)
        assert f0.shape == (f0_frames(n),) and np.all(np.isfinite(f0))
        on_device = pitch.estimate_on_device(x)  # the device path's: the same decode in torch
        assert isinstance(on_device, torch.Tensor)
        np.testing.assert_allclose(on_device.numpy(), f0, rtol=1e-12)
    # Same network output as the model whose weights were saved (fp16 rounding aside).
    x = torch.from_numpy(harmonic_tone(200.0, 0.64 - 0.01))
    mel = RmvpeMel()(x[None])
    assert mel.shape[-1] % 4 == 0
    with torch.no_grad():
        ref_sal = ref.half().float()(mel)[0].numpy()
    np.testing.assert_allclose(pitch.salience(x), ref_sal, rtol=1e-3, atol=1e-3)


def test_rmvpe_mel_matches_an_explicit_framewise_dft():
    """RVC computes the STFT as a conv with a windowed Fourier basis after reflect padding by 512."""
    x = harmonic_tone(150.0, 0.2) + 0.01 * np.random.default_rng(0).standard_normal(3200).astype(np.float32)
    padded = np.pad(x.astype(np.float64), 512, mode="reflect")
    n_frames = len(x) // 160 + 1
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)  # periodic Hann
    frames = np.stack([padded[i * 160 : i * 160 + 1024] * window for i in range(n_frames)])
    mag = np.abs(np.fft.rfft(frames, axis=1)).T
    expected = np.log(np.maximum(mel_filterbank(16000, 1024, 128, 30, 8000, True) @ mag, 1e-5))
    got = RmvpeMel()(torch.from_numpy(x)[None])[0].numpy()
    assert got.shape == (128, n_frames)
    np.testing.assert_allclose(got, expected, atol=2e-4)


def test_rmvpe_decoding_local_average():
    cents_of_bin = 20 * np.arange(360) + 1997.3794084376191
    sal = np.zeros((4, 360))
    sal[0, 99:102] = [0.5, 0.9, 0.5]  # symmetric around bin 100
    sal[1, 150:152] = [0.6, 0.6]  # halfway between 150 and 151
    sal[2, 0:2] = [0.8, 0.4]  # at the lower edge (zero padding below)
    sal[3, 200] = 0.03  # not above the 0.03 threshold -> unvoiced
    f0 = salience_to_f0(sal, threshold=0.03)
    np.testing.assert_allclose(f0[0], 10 * 2 ** (cents_of_bin[100] / 1200))
    np.testing.assert_allclose(f0[1], 10 * 2 ** ((cents_of_bin[150] + 10) / 1200))
    np.testing.assert_allclose(f0[2], 10 * 2 ** (((0.8 * cents_of_bin[0] + 0.4 * cents_of_bin[1]) / 1.2) / 1200))
    assert f0[3] == 0


def test_missing_rmvpe_names_file_source_and_folder(tmp_path):
    with pytest.raises(VoiceError) as info:
        load_pitch_estimator("rmvpe", models_dir=tmp_path / "models")
    msg = str(info.value)
    assert "rmvpe.pt" in msg and "lj1995/VoiceConversionWebUI" in msg and str(tmp_path / "models") in msg
    assert "\n" not in msg and msg.endswith(".")


def test_rmvpe_file_with_code_is_refused(tmp_path):
    target = tmp_path / "created"
    path = tmp_path / "rmvpe.pt"
    torch.save({"cnn.weight": torch.zeros(1), "x": RunsAShellCommand(target)}, path)
    with pytest.raises(ModelFormatError):
        RmvpePitch(path)
    assert not target.exists()
    wrong = tmp_path / "other.pt"
    torch.save({"a": torch.zeros(2)}, wrong)
    with pytest.raises(ModelFormatError) as info:
        RmvpePitch(wrong)
    assert "other.pt" in str(info.value)


# ------------------------------------------------------------------------------ DSP fallback


def test_dsp_fallback_tracks_a_tone_at_rvc_frame_rate():
    pitch = load_pitch_estimator("dsp")
    x = harmonic_tone(220.0)
    f0 = pitch.estimate(x)
    assert f0.shape == (f0_frames(len(x)),)
    assert abs(np.median(cents(f0[5:-5], 220.0))) < 10


def test_dsp_fallback_passes_rvc_settings(monkeypatch):
    calls = []

    def fake_track(x, sample_rate, hop_samples, fmin_hz=0.0, fmax_hz=0.0):
        calls.append((len(x), sample_rate, hop_samples, fmin_hz, fmax_hz))
        return np.full(-(-len(x) // hop_samples), 123.0)

    import engine.dsp.pitch

    monkeypatch.setattr(engine.dsp.pitch, "track_f0", fake_track)
    f0 = DspPitch().estimate(np.zeros(1600, dtype=np.float32))
    assert calls == [(1600, 16000, 160, 50.0, 1100.0)]
    assert f0.shape == (11,) and np.all(f0 == 123.0)  # ceil(N/160) frames extended to N // 160 + 1


def test_unknown_method_is_one_sentence():
    with pytest.raises(VoiceError) as info:
        load_pitch_estimator("crepe")
    assert "crepe" in str(info.value) and "fcpe" in str(info.value)
