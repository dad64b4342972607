"""RVC synthesizer: every on-disk variant loads and produces hop = sr/100 samples per frame; partial
decoding (skip_head / return_length) equals the matching slice of a full decode away from its edges;
injected noise makes runs repeatable."""

from __future__ import annotations

import pytest
import torch

from engine.voices.rvc.checkpoint import load_synthesizer, read_checkpoint
from tiny_models import VARIANTS, random_inputs, tiny_synthesizer, write_tiny_pth


@pytest.mark.parametrize("version,f0,sample_rate", VARIANTS, ids=lambda v: str(v))
def test_every_variant_loads_and_makes_one_hop_per_frame(tmp_path, version, f0, sample_rate):
    path = write_tiny_pth(tmp_path / "voice.pth", version, f0, sample_rate, speakers=4)
    model, ckpt = load_synthesizer(path, device="cpu")
    assert (ckpt.version, ckpt.f0, ckpt.sample_rate, ckpt.speakers) == (version, f0, sample_rate, 4)
    assert ckpt.feature_dim == (256 if version == "v1" else 768)
    assert not model.training
    frames = 37
    x = random_inputs(frames, ckpt.feature_dim)
    audio = model.infer(
        x["phone"], x["phone_lengths"], x["pitch"] if f0 else None, x["nsff0"] if f0 else None, x["sid"]
    )
    assert audio.shape == (1, 1, frames * sample_rate // 100)
    assert torch.isfinite(audio).all()
    assert audio.abs().max() <= 1.0
    assert audio.std() > 1e-4  # not silence


def test_v1_file_without_version_key_is_read_as_v1(tmp_path):
    path = write_tiny_pth(tmp_path / "old.pth", "v1", True, 40000, drop_version=True)
    assert read_checkpoint(path).version == "v1"


def _decode(model, x, f0, **kw):
    return model.infer(
        x["phone"], x["phone_lengths"], x["pitch"] if f0 else None, x["nsff0"] if f0 else None, x["sid"], **kw
    )


@pytest.mark.parametrize("f0", [True, False])
def test_partial_decode_equals_full_decode_away_from_its_edges(f0):
    """The decoder (receptive field about +-11 frames) sees zero padding at the cut instead of the
    neighbouring frames, so the first and last frames of a partial decode differ; the interior must
    match the full decode to float precision (the flow gets its 24 frames of context by default)."""
    model = tiny_synthesizer("v2", f0, 40000, seed=3)
    hop = model.hop_samples
    frames, head, length, margin = 200, 50, 110, 35
    x = random_inputs(frames, 768, seed=1, unvoiced=slice(95, 105))
    noise_z = torch.randn(1, model.cfg.inter_channels, frames)
    noise_nsf = torch.randn(1, 1, frames * hop)
    full = _decode(model, x, f0, noise_z=noise_z, noise_nsf=noise_nsf)
    part = _decode(model, x, f0, skip_head=head, return_length=length, noise_z=noise_z, noise_nsf=noise_nsf)
    assert part.shape == (1, 1, length * hop)
    inner = slice(margin * hop, (length - margin) * hop)
    reference = full[..., head * hop : (head + length) * hop][..., inner]
    assert (part[..., inner] - reference).abs().max() < 1e-5
    assert reference.abs().max() > 1e-2  # the compared stretch is not silence
    # and the edges really do see different context (why a live voice decodes with margin) ...
    assert (part[..., : 5 * hop] - full[..., head * hop : (head + 5) * hop]).abs().max() > 1e-4
    # ... unless the decoder also gets its receptive field (about 11 frames) as context
    part = _decode(model, x, f0, skip_head=head, return_length=length, noise_z=noise_z, noise_nsf=noise_nsf,
                   decoder_context=12)
    assert (part - full[..., head * hop : (head + length) * hop]).abs().max() < 1e-5


def test_same_noise_same_output_and_generator_seeds_are_repeatable():
    model = tiny_synthesizer("v1", True, 48000, seed=5)
    x = random_inputs(40, 256)
    a = _decode(model, x, True, generator=torch.Generator().manual_seed(7))
    b = _decode(model, x, True, generator=torch.Generator().manual_seed(7))
    c = _decode(model, x, True, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-4


def test_speaker_id_changes_the_voice():
    model = tiny_synthesizer("v2", True, 32000, seed=2, speakers=3)
    x = random_inputs(40, 768)
    g = torch.Generator
    a = model.infer(x["phone"], x["phone_lengths"], x["pitch"], x["nsff0"], torch.tensor([0]), generator=g().manual_seed(0))
    b = model.infer(x["phone"], x["phone_lengths"], x["pitch"], x["nsff0"], torch.tensor([2]), generator=g().manual_seed(0))
    assert (a - b).abs().max() > 1e-3


def test_pitch_model_refuses_to_run_without_pitch():
    model = tiny_synthesizer("v2", True, 40000)
    x = random_inputs(20, 768)
    with pytest.raises(ValueError):
        model.infer(x["phone"], x["phone_lengths"], None, None, x["sid"])


def test_sine_excitation_follows_f0():
    """The NSF source at 200 Hz has its spectral peak at 200 Hz (hop-exact phase accumulation)."""
    model = tiny_synthesizer("v2", True, 40000)
    frames, hop = 100, model.hop_samples
    f0 = torch.full((1, frames), 200.0)
    phase = model.dec.m_source.sine_phase(f0, hop, None)
    sine = torch.sin(2 * torch.pi * phase[0])
    spectrum = torch.fft.rfft(sine).abs()
    peak_hz = spectrum.argmax().item() * 40000 / sine.numel()
    assert abs(peak_hz - 200.0) < 1.0
