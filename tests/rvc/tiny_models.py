"""Tiny random-weight RVC models in the REAL on-disk formats, for tests (ours and other modules').

Channel sizes are tiny, everything else is RVC's real structure: the 18-entry config, the real
upsample rates and kernels of each release (so hop = sample_rate / 100), weight norm stored as
``weight_g``/``weight_v``, fp16 weights, ``enc_q`` removed, ``sr`` as "40k" etc.

    from tiny_models import write_tiny_pth, tiny_synthesizer   # tests in tests/rvc (pytest puts
                                                                # this folder on sys.path)
    path = write_tiny_pth(tmp_path / "voice.pth", version="v2", f0=True, sample_rate=40000)

Weights are scaled like a trained model's (unit-variance activations, no tanh saturation), so outputs
are in (-1, 1) and differences between implementations show up. Nothing here downloads anything.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path

import torch

from engine.voices.rvc.checkpoint import unfold_weight_norm, write_checkpoint
from engine.voices.rvc.synthesizer import SynthConfig, SynthesizerTrn, build_synthesizer, weight_norm_prefixes

# (upsample_rates, upsample_kernel_sizes) of RVC's released configs (configs/v1|v2/*.json);
# v2 40k uses the v1 40k config, as RVC does.
REAL_UPSAMPLING = {
    ("v1", 32000): ([10, 4, 2, 2, 2], [16, 16, 4, 4, 4]),
    ("v1", 40000): ([10, 10, 2, 2], [16, 16, 4, 4]),
    ("v1", 48000): ([10, 6, 2, 2, 2], [16, 16, 4, 4, 4]),
    ("v2", 32000): ([10, 8, 2, 2], [20, 16, 4, 4]),
    ("v2", 40000): ([10, 10, 2, 2], [16, 16, 4, 4]),
    ("v2", 48000): ([12, 10, 2, 2], [24, 20, 4, 4]),
}
SPEC_CHANNELS = {32000: 513, 40000: 1025, 48000: 1025}
VARIANTS = [(v, f0, sr) for v in ("v1", "v2") for f0 in (True, False) for sr in (32000, 40000, 48000)]


def tiny_config(
    version: str = "v2",
    f0: bool = True,
    sample_rate: int = 40000,
    *,
    speakers: int = 3,
    inter_channels: int = 8,
    hidden_channels: int = 16,
    filter_channels: int = 32,
    n_layers: int = 2,
    upsample_initial_channel: int = 64,
) -> SynthConfig:
    ups, kernels = REAL_UPSAMPLING[(version, sample_rate)]
    values = [
        SPEC_CHANNELS[sample_rate], 32, inter_channels, hidden_channels, filter_channels, 2, n_layers, 3, 0,
        "1", [3, 7, 11], [[1, 3, 5], [1, 3, 5], [1, 3, 5]], ups, upsample_initial_channel, kernels,
        speakers, 16, sample_rate,
    ]
    return SynthConfig.from_list(values, version=version, f0=f0)


def full_config(version: str = "v2", f0: bool = True, sample_rate: int = 40000) -> SynthConfig:
    """RVC's real full-size config (for benchmarks; ~27 M parameters)."""
    ups, kernels = REAL_UPSAMPLING[(version, sample_rate)]
    values = [
        SPEC_CHANNELS[sample_rate], 32, 192, 192, 768, 2, 6, 3, 0, "1", [3, 7, 11],
        [[1, 3, 5], [1, 3, 5], [1, 3, 5]], ups, 512, kernels, 109, 256, sample_rate,
    ]
    return SynthConfig.from_list(values, version=version, f0=f0)


def randomize_(model: SynthesizerTrn, seed: int = 0) -> SynthesizerTrn:
    """Fan-in scaled random weights everywhere (RVC zero-inits the flow's ``post``; we don't, so the
    flow is exercised)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                fan_in = p.shape[0] * p.shape[2] if ".ups." in name else p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) * fan_in**-0.5)
            else:
                base = 1.0 if name.endswith("gamma") else 0.0
                p.copy_(base + 0.05 * torch.randn(p.shape, generator=gen))
    return model


def tiny_synthesizer(
    version: str = "v2", f0: bool = True, sample_rate: int = 40000, *, seed: int = 0, **cfg_kwargs
) -> SynthesizerTrn:
    return randomize_(build_synthesizer(tiny_config(version, f0, sample_rate, **cfg_kwargs)), seed)


def write_tiny_pth(
    path: str | os.PathLike,
    version: str = "v2",
    f0: bool = True,
    sample_rate: int = 40000,
    *,
    seed: int = 0,
    drop_version: bool = False,
    **cfg_kwargs,
) -> Path:
    """An RVC inference ``.pth`` exactly as RVC's ``savee`` writes it. ``drop_version`` writes an
    old v1 file without the ``version`` key."""
    model = tiny_synthesizer(version, f0, sample_rate, seed=seed, **cfg_kwargs)
    write_checkpoint(model, path, info="tiny test model")
    if drop_version:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        obj.pop("version")
        torch.save(obj, path)
    return Path(path)


def write_training_checkpoint(path: str | os.PathLike, *, seed: int = 0) -> Path:
    """A G_*.pth as RVC's training loop saves it: model (fp32, weight norm, enc_q), optimizer, iteration."""
    model = tiny_synthesizer(seed=seed)
    state = unfold_weight_norm(model.state_dict(), weight_norm_prefixes(model))
    state["enc_q.pre.weight"] = torch.zeros(16, 1025, 1)
    torch.save(
        {"model": state, "iteration": 1200, "optimizer": {"state": {}, "param_groups": []}, "learning_rate": 1e-4},
        path,
    )
    return Path(path)


def write_discriminator_checkpoint(path: str | os.PathLike) -> Path:
    state = OrderedDict(
        (f"discriminators.{i}.convs.0.weight_v", torch.randn(16, 1, 5, 1)) for i in range(1, 4)
    )
    torch.save({"model": state, "iteration": 1200, "optimizer": {}, "learning_rate": 1e-4}, path)
    return Path(path)


def write_sovits_checkpoint(path: str | os.PathLike) -> Path:
    """Key layout of a so-vits-svc 4.x G_*.pth (pre conv, emb_uv, f0_decoder beside enc_p/dec/flow)."""
    state = OrderedDict(
        [
            ("emb_g.weight", torch.randn(2, 16)),
            ("pre.weight", torch.randn(16, 768, 5)),
            ("pre.bias", torch.randn(16)),
            ("emb_uv.weight", torch.randn(2, 16)),
            ("enc_p.proj.weight", torch.randn(16, 16, 1)),
            ("dec.conv_pre.weight", torch.randn(32, 8, 7)),
            ("f0_decoder.prenet.weight", torch.randn(16, 1, 3)),
        ]
    )
    torch.save({"model": state, "iteration": 10, "optimizer": None, "learning_rate": 1e-4}, path)
    return Path(path)


class _RunsCode:
    """Unpickling this calls ``os.system(command)``: the classic malicious-pickle payload."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def write_malicious_pth(path: str | os.PathLike, marker: str | os.PathLike, *, zip_format: bool = True) -> Path:
    """A .pth that would create ``marker`` when unpickled (inside an otherwise RVC-looking dict).

    ``zip_format=True`` writes torch's zip container (data.pkl inside), else a bare pickle stream.
    """
    payload = OrderedDict(
        [("weight", {"emb_g.weight": torch.zeros(2, 2)}), ("config", _RunsCode(f"touch '{marker}'")), ("f0", 1)]
    )
    if zip_format:
        torch.save(payload, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh, protocol=2)
    return Path(path)


def write_truncated_pth(src: str | os.PathLike, path: str | os.PathLike, keep_fraction: float = 0.5) -> Path:
    data = Path(src).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep_fraction)])
    return Path(path)


def write_tiny_onnx(
    path: str | os.PathLike,
    version: str = "v2",
    f0: bool = True,
    sample_rate: int = 40000,
    *,
    contract: str = "rvc",
    seed: int = 0,
    strip_metadata: bool = False,
) -> tuple[Path, SynthesizerTrn]:
    """Export a tiny synthesizer in ``contract`` ("rvc" or "wokada"); returns the file and the torch
    model it came from. ``strip_metadata`` makes it look like RVC's own (metadata-free) export."""
    from engine.voices.rvc.export import export_onnx

    model = tiny_synthesizer(version, f0, sample_rate, seed=seed)
    export_onnx(model, path, contract=contract)
    if strip_metadata:
        import onnx

        proto = onnx.load(str(path))
        del proto.metadata_props[:]
        onnx.save(proto, str(path))
    return Path(path), model


def random_inputs(
    frames: int, feature_dim: int, *, seed: int = 0, unvoiced: slice | None = slice(20, 30)
) -> dict[str, torch.Tensor]:
    """phone (1, T, C), phone_lengths (1,), pitch (1, T) coarse, nsff0 (1, T) Hz with a gliding
    F0 and an unvoiced stretch, sid (1,)."""
    gen = torch.Generator().manual_seed(seed)
    t = frames
    nsff0 = 110.0 + 120.0 * torch.linspace(0, 1, t).unsqueeze(0)
    if unvoiced is not None:
        nsff0[:, unvoiced] = 0.0
    mel = 1127.0 * torch.log1p(nsff0 / 700.0)
    lo, hi = 1127.0 * torch.log1p(torch.tensor(50.0 / 700)), 1127.0 * torch.log1p(torch.tensor(1100.0 / 700))
    coarse = torch.where(mel > 0, (mel - lo) * 254 / (hi - lo) + 1, torch.ones_like(mel))
    pitch = coarse.clamp(1, 255).round().long()
    return {
        "phone": torch.randn(1, t, feature_dim, generator=gen),
        "phone_lengths": torch.tensor([t]),
        "pitch": pitch,
        "nsff0": nsff0,
        "sid": torch.tensor([1]),
    }
