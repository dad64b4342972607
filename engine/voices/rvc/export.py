"""Export an RVC synthesizer (loaded from a ``.pth``) to ONNX, in either public contract.

``contract="rvc"`` (RVC WebUI's own export; what ``infer/lib/infer_pack/onnx_inference.py`` runs)::

    phone (1, T, 256|768) f32, phone_lengths (1,) i64, pitch (1, T) i64, pitchf (1, T) f32,
    ds (1,) i64 speaker id, rnd (1, 192, T) f32 prior noise  ->  audio (1, 1, T * hop)

  The prior is ``m + exp(logs) * rnd``: a caller that wants RVC's torch output passes
  ``rnd = 0.66666 * randn`` (RVC's own ONNX runner passes plain ``randn``). For models without pitch
  our export drops ``pitch``/``pitchf`` (RVC has no no-pitch ONNX export).

``contract="wokada"`` (w-okada voice-changer's export)::

    feats (1, T, C) f32, p_len (1,) i64, pitch (1, T) i64, pitchf (1, T) f32, sid (1,) i64 -> audio
    ("nono" models: feats, p_len, sid); the prior noise is drawn inside the graph, and the model carries
    JSON metadata under metadata_props["metadata"] (samplingRate, f0, embChannels, modelType ...).

Both graphs draw the NSF excitation noise inside (``RandomNormalLike``), as the originals do; tests pin
it with ``onnx_model.pin_random_nodes``. Every file we write also carries ``sr``, ``version``, ``f0``,
``feature_dim`` and ``contract`` in metadata_props. The time axis is dynamic.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.voices.rvc.synthesizer import Z_NOISE_SCALE, SynthesizerTrn

OPSET = 17
CONTRACTS = ("rvc", "wokada")


class _RVCContract(nn.Module):
    def __init__(self, synth: SynthesizerTrn):
        super().__init__()
        self.synth = synth

    def _decode(self, m_p, logs_p, x_mask, g, rnd_scaled, pitchf):
        s = self.synth
        z_p = (m_p + torch.exp(logs_p) * rnd_scaled) * x_mask
        z = s.flow.reverse(z_p, x_mask, g)
        source = None
        if s.cfg.f0:
            source = s.dec.m_source(pitchf.float(), s.hop_samples).to(m_p.dtype)
        return s.dec(z * x_mask, g, source)

    def forward(self, phone, phone_lengths, pitch, pitchf, ds, rnd):
        s = self.synth
        g = s.emb_g(ds).unsqueeze(-1)
        m_p, logs_p, x_mask = s.enc_p(phone, pitch, phone_lengths)
        return self._decode(m_p, logs_p, x_mask, g, rnd, pitchf)


class _RVCContractNoPitch(_RVCContract):
    def forward(self, phone, phone_lengths, ds, rnd):
        s = self.synth
        g = s.emb_g(ds).unsqueeze(-1)
        m_p, logs_p, x_mask = s.enc_p(phone, None, phone_lengths)
        return self._decode(m_p, logs_p, x_mask, g, rnd, None)


class _WokadaContract(_RVCContract):
    def forward(self, feats, p_len, pitch, pitchf, sid):
        s = self.synth
        g = s.emb_g(sid).unsqueeze(-1)
        m_p, logs_p, x_mask = s.enc_p(feats, pitch, p_len)
        return self._decode(m_p, logs_p, x_mask, g, torch.randn_like(m_p) * Z_NOISE_SCALE, pitchf)


class _WokadaContractNoPitch(_RVCContract):
    def forward(self, feats, p_len, sid):
        s = self.synth
        g = s.emb_g(sid).unsqueeze(-1)
        m_p, logs_p, x_mask = s.enc_p(feats, None, p_len)
        return self._decode(m_p, logs_p, x_mask, g, torch.randn_like(m_p) * Z_NOISE_SCALE, None)


def export_onnx(
    model: SynthesizerTrn,
    path: str | os.PathLike,
    *,
    contract: str = "rvc",
    frames: int = 32,
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``model`` (float32, CPU) to ``path`` as an ONNX graph following ``contract``.

    ``frames`` is only the length of the example input used for tracing; the time axis is dynamic.
    """
    if contract not in CONTRACTS:
        raise ValueError(f"contract must be one of {CONTRACTS}, not {contract!r}")
    cfg = model.cfg
    synth = copy.deepcopy(model).float().cpu().eval()  # never change the caller's model
    t = frames
    phone = torch.randn(1, t, cfg.feature_dim)
    lengths = torch.tensor([t], dtype=torch.int64)
    pitch = torch.randint(1, 255, (1, t), dtype=torch.int64)
    pitchf = torch.rand(1, t) * 300 + 50
    sid = torch.tensor([0], dtype=torch.int64)
    rnd = torch.randn(1, cfg.inter_channels, t)
    if contract == "rvc":
        if cfg.f0:
            wrapper, args = _RVCContract(synth), (phone, lengths, pitch, pitchf, sid, rnd)
            names = ["phone", "phone_lengths", "pitch", "pitchf", "ds", "rnd"]
        else:
            wrapper, args = _RVCContractNoPitch(synth), (phone, lengths, sid, rnd)
            names = ["phone", "phone_lengths", "ds", "rnd"]
        axes = {"phone": {1: "T"}, "pitch": {1: "T"}, "pitchf": {1: "T"}, "rnd": {2: "T"}}
    else:
        if cfg.f0:
            wrapper, args = _WokadaContract(synth), (phone, lengths, pitch, pitchf, sid)
            names = ["feats", "p_len", "pitch", "pitchf", "sid"]
        else:
            wrapper, args = _WokadaContractNoPitch(synth), (phone, lengths, sid)
            names = ["feats", "p_len", "sid"]
        axes = {"feats": {1: "T"}, "pitch": {1: "T"}, "pitchf": {1: "T"}}
    axes = {k: v for k, v in axes.items() if k in names}
    axes["audio"] = {2: "samples"}
    out = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            args,
            str(out),
            input_names=names,
            output_names=["audio"],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    import onnx

    proto = onnx.load(str(out))
    meta = {
        "sr": str(cfg.sample_rate),
        "version": cfg.version,
        "f0": str(int(cfg.f0)),
        "feature_dim": str(cfg.feature_dim),
        "contract": contract,
        "producer": "AutoVoice",
    }
    if contract == "wokada":
        meta["metadata"] = json.dumps(
            {
                "application": "VC_CLIENT",
                "version": "2.1",
                "modelType": ("pyTorchRVCv2" if cfg.version == "v2" else "pyTorchRVC")
                + ("" if cfg.f0 else "Nono"),
                "samplingRate": cfg.sample_rate,
                "f0": bool(cfg.f0),
                "embChannels": cfg.feature_dim,
                "embedder": "hubert_base",
                "embOutputLayer": 12 if cfg.version == "v2" else 9,
                "useFinalProj": cfg.version == "v1",
            }
        )
    meta.update(extra_metadata or {})
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))
    return out


def export_pth_to_onnx(
    pth_path: str | os.PathLike, onnx_path: str | os.PathLike, *, contract: str = "rvc"
) -> Path:
    """Read an RVC ``.pth`` (verified, as ``checkpoint.read_checkpoint`` does) and export it."""
    from engine.voices.rvc.checkpoint import build_from_checkpoint, read_checkpoint

    ckpt = read_checkpoint(pth_path)
    model = build_from_checkpoint(ckpt, "cpu", torch.float32)
    return export_onnx(model, onnx_path, contract=contract, extra_metadata={"info": ckpt.info})


def verify_export(pth_path: str | os.PathLike, onnx_path: str | os.PathLike, frames: int = 80) -> float:
    """Max abs difference between the .pth model and its ONNX export on one input, noise pinned."""
    import numpy as np

    from engine.voices.rvc.checkpoint import build_from_checkpoint, read_checkpoint
    from engine.voices.rvc.f0 import rvc_pitch_inputs
    from engine.voices.rvc.onnx_model import load_onnx_synthesizer

    ckpt = read_checkpoint(pth_path)
    model = build_from_checkpoint(ckpt, "cpu", torch.float32)
    onnx_model = load_onnx_synthesizer(onnx_path, providers=["CPUExecutionProvider"], pin_noise=True)
    cfg = model.cfg
    gen = torch.Generator().manual_seed(0)
    phone = torch.randn(1, frames, cfg.feature_dim, generator=gen)
    lengths = torch.tensor([frames])
    f0_hz = np.linspace(110.0, 330.0, frames).astype(np.float32)
    coarse, f0 = rvc_pitch_inputs(f0_hz, 0.0)
    pitch = torch.as_tensor(np.asarray(coarse)).reshape(1, frames).long()
    nsff0 = torch.as_tensor(np.asarray(f0)).reshape(1, frames).float()
    noise_z = torch.randn(1, cfg.inter_channels, frames, generator=gen)
    noise_nsf = torch.randn(1, 1, frames * cfg.hop_samples, generator=gen)
    sid = torch.tensor([0])
    ours = model.infer(phone, lengths, pitch if cfg.f0 else None, nsff0 if cfg.f0 else None, sid,
                       noise_z=noise_z, noise_nsf=noise_nsf).numpy()
    theirs = onnx_model.infer(phone.numpy(), lengths.numpy(), pitch.numpy(), nsff0.numpy(), 0,
                              noise_z=noise_z.numpy(), noise_nsf=noise_nsf.numpy())
    return float(np.abs(np.asarray(theirs) - ours).max())


def export_onnx_checked(src: str | os.PathLike, dst: str | os.PathLike | None = None) -> tuple[Path, float]:
    """Export ``src`` (.pth) to ``dst`` (default: beside it, .onnx), check the export against torch
    on a test input, and only then put it in place. Returns (path written, largest difference)."""
    from engine.errors import VoiceError

    src = Path(src)
    if not src.is_file():
        raise VoiceError(f"The model file '{src}' does not exist; check the path.")
    dst = Path(dst) if dst else src.with_suffix(".onnx")
    if dst.exists():
        raise VoiceError(f"'{dst}' already exists; remove it or choose another name with -o.")
    tmp = dst.with_name(f".{dst.name}.partial")
    try:
        export_pth_to_onnx(src, tmp)
        diff = verify_export(src, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst, diff
