"""HuBERT-base / ContentVec content encoder for RVC, without fairseq.

RVC feeds 16 kHz audio through a fairseq HuBERT-base model (``hubert_base.pt``; in practice the
ContentVec weights in HuBERT's layout) and takes

* v1 voices: the output of transformer layer 9, then ``final_proj`` (768 -> 256): ``(B, T, 256)``
* v2 voices: the output of transformer layer 12 as is: ``(B, T, 768)``

(fairseq ``extract_features(output_layer=L)`` is 1-based and, for HuBERT-base whose encoder is
post-norm, returns layer L's output with no extra layer norm.)

Frames: the conv feature extractor has a 400-sample receptive field and a 320-sample hop, so
``N`` samples give ``(N - 400) // 320 + 1`` frames (50 per second). RVC's pitch runs at 100 frames
per second (hop 160); :func:`features_to_f0_rate` repeats the last frame once and upsamples x2
(nearest), as RVC's realtime code does, then trims to the pitch frame count::

    audio   |-------- N samples --------|
    hubert  [0][1][2]...[T-1] + [T-1]        (T = (N-400)//320 + 1, last frame repeated)
    x2      [0 0][1 1]...[T-1 T-1][T-1 T-1]  -> trimmed/padded to n_f0 frames (N//160 in RVC)

Loading never runs pickled code: checkpoints go through :mod:`engine.weights`.

ONNX content encoders (RVC's ``vec-256-layer-9.onnx`` / ``vec-768-layer-12.onnx``: ``(1, 1, N)`` in,
``(1, C, T)`` out) are supported through onnxruntime; the layout is detected from the shapes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ModelFormatError, VoiceError
from engine.voices.rvc.assets import CONTENT_ENCODER, missing_file_message
from engine.weights import plain, read_safetensors, safe_torch_load

SAMPLE_RATE = 16000
HOP_SAMPLES = 320
RECEPTIVE_FIELD_SAMPLES = 400
F0_HOP_SAMPLES = 160

Version = Literal["v1", "v2"]
# RVC: (output_layer, apply final_proj)
RVC_VERSION_LAYERS: dict[str, tuple[int, bool]] = {"v1": (9, True), "v2": (12, False)}
RVC_VERSION_DIMS = {"v1": 256, "v2": 768}

# File names users have for content encoders, in the order we look for them.
CONTENT_ENCODER_FILE_NAMES = (
    "hubert_base.pt",
    "contentvec_base.pt",
    "checkpoint_best_legacy_500.pt",
    "vec-768-layer-12.onnx",
    "vec-256-layer-9.onnx",
)


def content_frames(n_samples: int) -> int:
    """Number of HuBERT frames for ``n_samples`` of 16 kHz audio (0 below 400 samples)."""
    if n_samples < RECEPTIVE_FIELD_SAMPLES:
        return 0
    return (n_samples - RECEPTIVE_FIELD_SAMPLES) // HOP_SAMPLES + 1


def features_to_f0_rate(feats: torch.Tensor, n_f0_frames: int) -> torch.Tensor:
    """Upsample content features from 50 to 100 frames/s, aligned with pitch frames, as RVC does.

    feats: (B, T, C) -> (B, n_f0_frames, C). The last frame is repeated once before the x2 nearest
    upsampling (RVC's realtime path), then the result is trimmed, or padded by repeating its last
    frame, to ``n_f0_frames``.
    """
    if feats.dim() != 3:
        raise ValueError(f"feats must be (B, T, C), got {tuple(feats.shape)}")
    if feats.shape[1] == 0:
        raise ValueError("feats has no frames: the audio was shorter than 400 samples (25 ms at 16 kHz)")
    feats = torch.cat((feats, feats[:, -1:, :]), dim=1)
    feats = feats.repeat_interleave(2, dim=1)
    if feats.shape[1] >= n_f0_frames:
        return feats[:, :n_f0_frames, :]
    pad = feats[:, -1:, :].expand(-1, n_f0_frames - feats.shape[1], -1)
    return torch.cat((feats, pad), dim=1)


# --------------------------------------------------------------------------------------------
# HuBERT architecture with fairseq's state-dict names
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubertConfig:
    """Architecture of a fairseq HuBERT model. Defaults: HuBERT-base (and ContentVec)."""

    conv_layers: tuple[tuple[int, int, int], ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
    conv_bias: bool = False
    extractor_mode: str = "default"  # "default": group norm in the first conv block only
    embed_dim: int = 768
    ffn_dim: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_norm_first: bool = False
    final_dim: int = 256  # 0: no final_proj

    @property
    def hop_samples(self) -> int:
        return math.prod(s for _, _, s in self.conv_layers)


class _ConvBlock(nn.Module):
    """fairseq ConvFeatureExtractionModel block; children indexed as fairseq's Sequential:
    0 conv, 1 dropout, 2 group norm (first block in "default" mode) / layer norm, then GELU."""

    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int, bias: bool, norm: str | None):
        super().__init__()
        self.add_module("0", nn.Conv1d(n_in, n_out, kernel, stride=stride, bias=bias))
        self.norm_kind = norm
        if norm == "group":
            self.add_module("2", nn.GroupNorm(n_out, n_out, affine=True))
        elif norm == "layer":
            # fairseq: Sequential(TransposeLast, Fp32LayerNorm, TransposeLast) at index 2
            self.add_module("2", nn.Sequential())
            self._modules["2"].add_module("1", nn.LayerNorm(n_out, elementwise_affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._modules["0"](x)
        # fairseq's Fp32GroupNorm / Fp32LayerNorm: normalise in float32 whatever the model dtype.
        if self.norm_kind == "group":
            gn = self._modules["2"]
            x = F.group_norm(x.float(), gn.num_groups, gn.weight.float(), gn.bias.float(), gn.eps).type_as(x)
        elif self.norm_kind == "layer":
            ln = self._modules["2"]._modules["1"]
            y = F.layer_norm(x.transpose(1, 2).float(), ln.normalized_shape, ln.weight.float(), ln.bias.float(), ln.eps)
            x = y.type_as(x).transpose(1, 2)
        return F.gelu(x)


class _FeatureExtractor(nn.Module):
    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.conv_layers = nn.ModuleList()
        n_in = 1
        for i, (dim, k, s) in enumerate(cfg.conv_layers):
            if cfg.extractor_mode == "layer_norm":
                norm = "layer"
            else:
                norm = "group" if i == 0 else None
            self.conv_layers.append(_ConvBlock(n_in, dim, k, s, cfg.conv_bias, norm))
            n_in = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N) -> (B, C, T)"""
        x = x.unsqueeze(1)
        for block in self.conv_layers:
            x = block(x)
        return x


class _PosConv(nn.Module):
    """Convolutional relative position embedding with weight norm over dim 2, named as fairseq's
    ``pos_conv.0.weight_g / weight_v / bias``; an even kernel drops the last output step (SamePad)."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.kernel = kernel
        self.groups = groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.randn(dim, dim // groups, kernel) * 0.02)
        self.bias = nn.Parameter(torch.zeros(dim))

    def weight(self) -> torch.Tensor:
        v = self.weight_v
        norm = v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
        return self.weight_g * v / norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T) -> (B, C, T)"""
        y = F.conv1d(x, self.weight(), self.bias, padding=self.kernel // 2, groups=self.groups)
        if self.kernel % 2 == 0:
            y = y[:, :, :-1]
        return F.gelu(y)


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C)"""
        b, t, c = x.shape
        h = self.heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, h, c // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(out.transpose(1, 2).reshape(b, t, c))


class _EncoderLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, heads: int, layer_norm_first: bool):
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.self_attn = _SelfAttention(dim, heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.self_attn(self.self_attn_layer_norm(x))
            return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x + self.self_attn(x))
        return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))


class _TransformerEncoder(nn.Module):
    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.layer_norm_first = cfg.layer_norm_first
        self.pos_conv = nn.ModuleList([_PosConv(cfg.embed_dim, cfg.pos_conv_kernel, cfg.pos_conv_groups)])
        self.layers = nn.ModuleList(
            _EncoderLayer(cfg.embed_dim, cfg.ffn_dim, cfg.num_heads, cfg.layer_norm_first) for _ in range(cfg.num_layers)
        )
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)

    def forward(self, x: torch.Tensor, output_layer: int | None) -> torch.Tensor:
        """x: (B, T, C); output_layer is 1-based (None: all layers, plus the final norm if pre-norm)."""
        x = x + self.pos_conv[0](x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        n = len(self.layers) if output_layer is None else output_layer
        for layer in self.layers[:n]:
            x = layer(x)
        if self.layer_norm_first and output_layer is None:
            x = self.layer_norm(x)
        return x


class HubertModel(nn.Module):
    """fairseq HuBERT (inference only) with fairseq's parameter names, so that
    ``load_state_dict(checkpoint["model"])`` works on real checkpoints."""

    def __init__(self, cfg: HubertConfig = HubertConfig()):
        super().__init__()
        self.cfg = cfg
        conv_dim = cfg.conv_layers[-1][0]
        self.feature_extractor = _FeatureExtractor(cfg)
        self.layer_norm = nn.LayerNorm(conv_dim)
        self.post_extract_proj = nn.Linear(conv_dim, cfg.embed_dim) if conv_dim != cfg.embed_dim else None
        self.encoder = _TransformerEncoder(cfg)
        self.final_proj = nn.Linear(cfg.embed_dim, cfg.final_dim) if cfg.final_dim else None

    def extract_features(self, source: torch.Tensor, output_layer: int | None = None) -> torch.Tensor:
        """source: (B, N) 16 kHz float -> (B, T, embed_dim), T = (N - 400) // 320 + 1 for base."""
        x = self.feature_extractor(source).transpose(1, 2)
        x = self.layer_norm(x)
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return self.encoder(x, output_layer)

    def forward(self, source: torch.Tensor, output_layer: int | None = None, project: bool = False) -> torch.Tensor:
        x = self.extract_features(source, output_layer)
        if project:
            if self.final_proj is None:
                raise VoiceError("This content encoder has no final projection, so it cannot produce v1 (256-d) features; use RVC's hubert_base.pt.")
            x = self.final_proj(x)
        return x


# Parameters in fairseq checkpoints that inference does not use.
_UNUSED_KEYS_PREFIXES = ("label_embs_concat", "mask_emb", "target_glu", "encoder.layer_norm_first")


def _count_indexed(keys: Iterable[str], prefix: str) -> int:
    idx = set()
    for k in keys:
        if k.startswith(prefix):
            head = k[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                idx.add(int(head))
    return max(idx) + 1 if idx else 0


def _parse_conv_layers(spec: Any) -> tuple[tuple[int, int, int], ...] | None:
    if isinstance(spec, str):
        # fairseq stores e.g. "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"; evaluate it as
        # data only: list literals, tuples of ints, + and * between them.
        import ast

        def ev(node: ast.AST) -> Any:
            if isinstance(node, ast.Expression):
                return ev(node.body)
            if isinstance(node, ast.Constant) and isinstance(node.value, int):
                return node.value
            if isinstance(node, ast.List | ast.Tuple):
                return [ev(e) for e in node.elts]
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
                a, b = ev(node.left), ev(node.right)
                return a + b if isinstance(node.op, ast.Add) else a * b
            raise ValueError("unsupported expression")

        try:
            spec = ev(ast.parse(spec, mode="eval"))
        except (SyntaxError, ValueError, TypeError):
            return None
    if isinstance(spec, list) and all(isinstance(t, list | tuple) and len(t) == 3 for t in spec):
        return tuple((int(a), int(b), int(c)) for a, b, c in spec)
    return None


def _normalise_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept re-saved checkpoints whose weight norm uses torch's parametrization names."""
    out = {}
    for k, v in sd.items():
        k = k.replace("encoder.pos_conv.0.parametrizations.weight.original0", "encoder.pos_conv.0.weight_g")
        k = k.replace("encoder.pos_conv.0.parametrizations.weight.original1", "encoder.pos_conv.0.weight_v")
        out[k] = v
    return out


def config_from_checkpoint(sd: dict[str, torch.Tensor], model_cfg: dict[str, Any] | None = None) -> HubertConfig:
    """Architecture from a state dict's shapes, completed by the checkpoint's config where shapes
    cannot tell (heads, norm placement, strides)."""
    model_cfg = model_cfg or {}
    keys = list(sd)
    n_conv = _count_indexed(keys, "feature_extractor.conv_layers.")
    n_layers = _count_indexed(keys, "encoder.layers.")
    if n_conv == 0 or n_layers == 0 or "encoder.pos_conv.0.weight_v" not in sd:
        raise ValueError("not a fairseq HuBERT state dict")
    conv_from_cfg = _parse_conv_layers(model_cfg.get("conv_feature_layers"))
    shapes = [tuple(sd[f"feature_extractor.conv_layers.{i}.0.weight"].shape) for i in range(n_conv)]
    if conv_from_cfg is not None and len(conv_from_cfg) == n_conv:
        conv_layers = conv_from_cfg
    else:
        # HuBERT/wav2vec 2.0 convention: kernel 10 stride 5, other kernels stride 2.
        conv_layers = tuple((s[0], s[2], 5 if s[2] == 10 else 2) for s in shapes)
    for (dim, k, _), s in zip(conv_layers, shapes):
        if s[0] != dim or s[2] != k:
            raise ValueError("conv layer shapes disagree with the checkpoint's configuration")
    embed_dim = sd["encoder.layers.0.fc1.weight"].shape[1]
    v = sd["encoder.pos_conv.0.weight_v"]
    mode = "layer_norm" if "feature_extractor.conv_layers.0.2.1.weight" in sd else "default"
    heads = model_cfg.get("encoder_attention_heads")
    if not isinstance(heads, int) or heads <= 0:
        heads = 12 if embed_dim == 768 else max(1, embed_dim // 64)
    lnf = model_cfg.get("layer_norm_first")
    final = sd.get("final_proj.weight")
    return HubertConfig(
        conv_layers=conv_layers,
        conv_bias="feature_extractor.conv_layers.0.0.bias" in sd,
        extractor_mode=mode,
        embed_dim=embed_dim,
        ffn_dim=sd["encoder.layers.0.fc1.weight"].shape[0],
        num_layers=n_layers,
        num_heads=heads,
        pos_conv_kernel=v.shape[2],
        pos_conv_groups=embed_dim // v.shape[1],
        layer_norm_first=bool(lnf) if isinstance(lnf, bool) else mode == "layer_norm",
        final_dim=0 if final is None else final.shape[0],
    )


def _checkpoint_model_config(ckpt: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    args = plain(ckpt.get("args"))
    if isinstance(args, dict):
        merged.update(args)
    cfg = plain(ckpt.get("cfg"))
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        merged.update({k: v for k, v in cfg["model"].items() if v is not None})
    return merged


def load_hubert_checkpoint(path: str | os.PathLike) -> HubertModel:
    """Load a fairseq HuBERT/ContentVec checkpoint (``hubert_base.pt``) into :class:`HubertModel`, in eval()."""
    path = Path(path)
    ckpt = safe_torch_load(path, what="content encoder")
    if not isinstance(ckpt, dict):
        raise ModelFormatError(f"{path.name} is not a fairseq HuBERT/ContentVec checkpoint; use RVC's hubert_base.pt.")
    sd = ckpt.get("model", ckpt)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelFormatError(f"{path.name} holds no model weights where a fairseq checkpoint keeps them; use RVC's hubert_base.pt.")
    model_cfg = _hf_config_near(path) if _is_hf_layout(sd) else _checkpoint_model_config(ckpt)
    return _model_from_state_dict(path, _normalise_state_dict(sd), model_cfg)


def _model_from_state_dict(path: Path, sd: dict[str, torch.Tensor], model_cfg: dict[str, Any]) -> HubertModel:
    if _is_hf_layout(sd):
        sd = hf_to_fairseq_state_dict(sd)
        if any(k.startswith("feature_extractor.conv_layers.") and ".layer_norm." in k for k in sd):
            raise ModelFormatError(f"{path.name} is a HuBERT-large-style model (layer-norm feature extractor), not the HuBERT-base/ContentVec RVC uses; use RVC's hubert_base.pt.")
    try:
        cfg = config_from_checkpoint(sd, model_cfg)
    except (ValueError, KeyError, IndexError) as exc:
        raise ModelFormatError(f"{path.name} is not a fairseq HuBERT/ContentVec checkpoint ({exc}); use RVC's hubert_base.pt.") from None
    model = HubertModel(cfg)
    wanted = {k: v for k, v in sd.items() if not k.startswith(_UNUSED_KEYS_PREFIXES)}
    try:
        missing, unexpected = model.load_state_dict(wanted, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()[:160]
        raise ModelFormatError(f"{path.name} does not match the HuBERT layout ({first}); use RVC's hubert_base.pt.") from None
    if missing or unexpected:
        bad = (missing or unexpected)[:3]
        raise ModelFormatError(
            f"{path.name} does not match the HuBERT layout ({'missing' if missing else 'unexpected'} weights {', '.join(bad)}); use RVC's hubert_base.pt."
        )
    return model.eval()


# Hugging Face transformers layout (HubertModel / ContentVec ports with a top-level final_proj).
_HF_RENAMES = (
    ("feature_projection.layer_norm.", "layer_norm."),
    ("feature_projection.projection.", "post_extract_proj."),
    ("encoder.pos_conv_embed.conv.parametrizations.weight.original0", "encoder.pos_conv.0.weight_g"),
    ("encoder.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv.0.weight_v"),
    ("encoder.pos_conv_embed.conv.", "encoder.pos_conv.0."),
    (".attention.", ".self_attn."),
    (".feed_forward.intermediate_dense.", ".fc1."),
    (".feed_forward.output_dense.", ".fc2."),
)


def _is_hf_layout(sd: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("hubert.", "feature_projection.", "encoder.pos_conv_embed.")) or ".attention.q_proj." in k for k in sd)


def hf_to_fairseq_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a transformers HubertModel state dict to fairseq's names (values untouched)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith("hubert."):
            k = k[len("hubert."):]
        if k == "masked_spec_embed":
            continue
        for a, b in _HF_RENAMES:
            k = k.replace(a, b)
        if k.startswith("feature_extractor.conv_layers."):
            # conv_layers.i.conv.weight -> conv_layers.i.0.weight; group norm conv_layers.0.layer_norm -> .2
            k = k.replace(".conv.weight", ".0.weight").replace(".conv.bias", ".0.bias")
            if k.startswith("feature_extractor.conv_layers.0.layer_norm."):
                k = k.replace(".layer_norm.", ".2.")
        if k.startswith("encoder.layers.") and ".layer_norm." in k:
            k = k.replace(".layer_norm.", ".self_attn_layer_norm.")
        out[k] = v
    return out


def _hf_config_near(path: Path) -> dict[str, Any]:
    import json

    cfg_path = path.parent / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, Any] = {}
    if isinstance(cfg.get("num_attention_heads"), int):
        out["encoder_attention_heads"] = cfg["num_attention_heads"]
    if isinstance(cfg.get("do_stable_layer_norm"), bool):
        out["layer_norm_first"] = cfg["do_stable_layer_norm"]
    dims, kernels, strides = cfg.get("conv_dim"), cfg.get("conv_kernel"), cfg.get("conv_stride")
    if all(isinstance(v, list) for v in (dims, kernels, strides)) and len(dims) == len(kernels) == len(strides):
        out["conv_feature_layers"] = [list(t) for t in zip(dims, kernels, strides)]
    return out


def load_hf_hubert(path: str | os.PathLike) -> HubertModel:
    """A transformers-layout HuBERT/ContentVec (``pytorch_model.bin`` or ``model.safetensors``, with
    its ``config.json`` beside it if present) into :class:`HubertModel`."""
    path = Path(path)
    if path.suffix == ".safetensors":
        sd = read_safetensors(path)
    else:
        sd = safe_torch_load(path, what="content encoder")
        if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
            sd = sd["state_dict"]
    if not isinstance(sd, dict) or not _is_hf_layout(sd):
        raise ModelFormatError(f"{path.name} is not a HuBERT/ContentVec model; use RVC's hubert_base.pt.")
    return _model_from_state_dict(path, _normalise_state_dict(sd), _hf_config_near(path))


# --------------------------------------------------------------------------------------------
# Content encoders as RVC uses them
# --------------------------------------------------------------------------------------------


def _as_batch(audio: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32) if not isinstance(audio, torch.Tensor) else audio)
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError(f"audio must be (N,) or (B, N), got {tuple(x.shape)}")
    return x.float()


class ContentEncoder:
    """Turns 16 kHz audio into RVC content features. Subclasses: torch HuBERT, ONNX."""

    path: Path | None = None
    versions: tuple[str, ...] = ()

    def output_dim(self, version: Version) -> int:
        return RVC_VERSION_DIMS[version]

    def encode(self, audio: np.ndarray | torch.Tensor, version: Version) -> torch.Tensor:
        """audio: (N,) or (B, N) float at 16 kHz -> (B, T, 256 for v1 | 768 for v2) float32 on CPU or
        the encoder's device, T = :func:`content_frames` (N)."""
        raise NotImplementedError

    def _check_version(self, version: str) -> None:
        if version not in RVC_VERSION_LAYERS:
            raise VoiceError(f"Unknown RVC model version {version!r}: it must be v1 or v2.")
        if version not in self.versions:
            have = " and ".join(f"{v} ({RVC_VERSION_DIMS[v]}-d)" for v in self.versions) or "no"
            name = self.path.name if self.path else "This content encoder"
            raise VoiceError(
                f"{name} gives {have} features but the voice is an RVC {version} model needing {RVC_VERSION_DIMS[version]}-d features; use RVC's hubert_base.pt."
            )


class TorchContentEncoder(ContentEncoder):
    """HuBERT/ContentVec in torch; serves both v1 (layer 9 + final_proj) and v2 (layer 12)."""

    def __init__(self, model: HubertModel, path: Path | None = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32):
        # dtype=torch.float16 on a GPU is what RVC does with is_half; features come out in ``dtype``.
        self.model = model.to(device=device, dtype=dtype).eval()
        self.path = path
        self.device = torch.device(device)
        versions = []
        n = model.cfg.num_layers
        if n >= RVC_VERSION_LAYERS["v1"][0] and model.final_proj is not None:
            versions.append("v1")
        if n >= RVC_VERSION_LAYERS["v2"][0]:
            versions.append("v2")
        self.versions = tuple(versions)

    def output_dim(self, version: Version) -> int:
        return self.model.cfg.final_dim if version == "v1" else self.model.cfg.embed_dim

    @torch.inference_mode()
    def encode(self, audio: np.ndarray | torch.Tensor, version: Version) -> torch.Tensor:
        self._check_version(version)
        layer, project = RVC_VERSION_LAYERS[version]
        x = _as_batch(audio).to(self.device, dtype=next(self.model.parameters()).dtype)
        if x.shape[1] < RECEPTIVE_FIELD_SAMPLES:
            return x.new_zeros((x.shape[0], 0, self.output_dim(version)))
        return self.model(x, output_layer=layer, project=project)


class OnnxContentEncoder(ContentEncoder):
    """An ONNX content encoder: one input (``source``/``audio``/..., shaped (1, N) or (1, 1, N)),
    first output (B, C, T) or (B, T, C); C = 256 gives v1 features, 768 gives v2."""

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelFormatError(f"{self.path.name} could not be opened as an ONNX model ({str(exc).splitlines()[0][:160]}); check the file.") from None
        inputs = self.session.get_inputs()
        float_inputs = [i for i in inputs if "float" in i.type]
        if len(float_inputs) != 1:
            raise ModelFormatError(f"{self.path.name} is not a content encoder: it should take one audio input, not {[i.name for i in inputs]}.")
        self.input = float_inputs[0]
        self.other_inputs = [i for i in inputs if i is not self.input]
        self.input_rank = len(self.input.shape)
        if self.input_rank not in (2, 3):
            raise ModelFormatError(f"{self.path.name} takes a {self.input_rank}-D input; a content encoder takes (1, N) or (1, 1, N) audio.")
        # Probe once with 1 s of silence to learn the feature size and layout.
        probe = self._run(np.zeros(SAMPLE_RATE, dtype=np.float32))
        self.dim = probe.shape[2]
        if self.dim not in (256, 768):
            raise ModelFormatError(f"{self.path.name} produces {self.dim}-d features; RVC needs 256 (v1) or 768 (v2).")
        self.versions = ("v1",) if self.dim == 256 else ("v2",)

    def _feeds(self, x: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {self.input.name: x.reshape((1,) * (self.input_rank - 1) + (-1,))}
        for extra in self.other_inputs:  # e.g. a padding mask
            if "bool" in extra.type:
                feeds[extra.name] = np.zeros((1, x.shape[-1]), dtype=bool)
            else:
                raise ModelFormatError(f"{self.path.name} needs an input {extra.name!r} we cannot provide; use an encoder exported with audio as its only input.")
        return feeds

    def _run(self, audio: np.ndarray) -> np.ndarray:
        """(N,) -> (1, T, C)"""
        out = np.asarray(self.session.run(None, self._feeds(audio.astype(np.float32, copy=False)))[0])
        if out.ndim != 3:
            raise ModelFormatError(f"{self.path.name} outputs a {out.ndim}-D array; a content encoder outputs (1, C, T) or (1, T, C).")
        t = content_frames(audio.shape[-1])
        if out.shape[1] == t and out.shape[2] != t:
            return out
        if out.shape[2] == t and out.shape[1] != t:
            return out.transpose(0, 2, 1)
        # Ambiguous (T equals C, or an unusual frame count): trust the known feature sizes.
        return out if out.shape[2] in (256, 768) else out.transpose(0, 2, 1)

    def output_dim(self, version: Version) -> int:
        return self.dim

    def encode(self, audio: np.ndarray | torch.Tensor, version: Version) -> torch.Tensor:
        self._check_version(version)
        x = _as_batch(audio).cpu().numpy()
        if x.shape[1] < RECEPTIVE_FIELD_SAMPLES:
            return torch.zeros((x.shape[0], 0, self.dim))
        return torch.from_numpy(np.concatenate([self._run(row) for row in x], axis=0).astype(np.float32, copy=False))


def load_content_encoder(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> ContentEncoder:
    """Open a content encoder file: fairseq ``.pt`` (HuBERT/ContentVec) or ``.onnx``.

    Raises VoiceError (missing file) or ModelFormatError (anything else wrong), in one sentence.
    """
    path = Path(path)
    if not path.is_file():
        raise VoiceError(missing_file_message(path.name, CONTENT_ENCODER.what, path.parent))
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and path.suffix.lower() not in (".pt", ".pth", ".bin")):
        return OnnxContentEncoder(path, providers=_onnx_providers(device))
    if path.suffix.lower() == ".safetensors":
        return TorchContentEncoder(load_hf_hubert(path), path=path, device=device, dtype=dtype)
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return TorchContentEncoder(load_hubert_checkpoint(path), path=path, device=device, dtype=dtype)
    raise ModelFormatError(
        f"{path.name} is neither a PyTorch checkpoint nor an ONNX model; use RVC's hubert_base.pt or a vec-*-layer-*.onnx content encoder."
    )


def _onnx_providers(device: str | torch.device) -> list[str]:
    if torch.device(device).type == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def find_content_encoder(models_dir: str | os.PathLike, version: Version | None = None) -> Path:
    """The content encoder file in ``models_dir`` (``hubert_base.pt`` first; an ONNX one whose
    size matches ``version`` otherwise), or VoiceError naming the file to get and where to put it."""
    folder = Path(models_dir)
    for name in CONTENT_ENCODER_FILE_NAMES:
        if version == "v1" and name == "vec-768-layer-12.onnx":
            continue
        if version == "v2" and name == "vec-256-layer-9.onnx":
            continue
        if (folder / name).is_file():
            return folder / name
    raise VoiceError(missing_file_message(CONTENT_ENCODER.file_name, CONTENT_ENCODER.what, folder))


def hubert_base_config(**changes: Any) -> HubertConfig:
    """HuBERT-base's architecture, optionally changed (tests build tiny ones)."""
    return replace(HubertConfig(), **changes)
