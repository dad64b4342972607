"""HuBERT-base / ContentVec (fairseq's architecture and parameter names), inference only, no fairseq.

The conv feature extractor has a 400-sample receptive field and a 320-sample hop at 16 kHz, so
``N`` samples give ``(N - 400) // 320 + 1`` frames (50 per second)::

    audio   (B, N) 16 kHz  ->  conv features (B, 512, T)  ->  transformer (B, T, 768)  [-> final_proj (B, T, 256)]

Reading checkpoints into this model is :mod:`engine.voices.rvc.hubert_weights`' job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import VoiceError



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

    def forward(self, x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """x: (B, C_in, N) -> (B, C_out, N'). ``stats``: the group norm's per-channel (mean, variance),
        each (B, C_out, 1), taken from a longer signal (:meth:`_FeatureExtractor.window_stats`)."""
        x = self._modules["0"](x)
        # fairseq's Fp32GroupNorm / Fp32LayerNorm: normalise in float32 whatever the model dtype.
        if self.norm_kind == "group" and stats is not None:
            gn = self._modules["2"]
            mean, var = stats
            y = (x.float() - mean) * torch.rsqrt(var + gn.eps) * gn.weight.float()[:, None] + gn.bias.float()[:, None]
            x = y.type_as(x)
        elif self.norm_kind == "group":
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
        self.hop_samples = cfg.hop_samples
        n_in = 1
        for i, (dim, k, s) in enumerate(cfg.conv_layers):
            if cfg.extractor_mode == "layer_norm":
                norm = "layer"
            else:
                norm = "group" if i == 0 else None
            self.conv_layers.append(_ConvBlock(n_in, dim, k, s, cfg.conv_bias, norm))
            n_in = dim

    def forward(self, x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """x: (B, N) -> (B, C, T). Every conv is unpadded, so frame t depends on samples
        [320 t, 320 t + 400) only, except through the first block's group norm, which normalises each
        channel over the whole input: ``stats`` (from :meth:`window_stats` of a longer signal) make a
        slice of audio give that longer signal's frames."""
        x = x.unsqueeze(1)
        for i, block in enumerate(self.conv_layers):
            x = block(x, stats) if i == 0 else block(x)
        return x

    def first_conv_sums(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, N) -> the first conv's outputs summed per content frame's worth of them (hop / stride
        = 64 for HuBERT), and their squares: (B, C, K) float64 each, K = ceil(outputs / 64). The group
        norm's statistics are these sums over a window, so a stream can keep them per frame and only
        compute the new ones (this conv, 1 input channel, is slow for its size)."""
        first = self.conv_layers[0]._modules["0"]
        y = first(x.unsqueeze(1)).double()
        per = self.hop_samples // first.stride[0]
        k = -(-y.shape[-1] // per)
        y = torch.nn.functional.pad(y, (0, k * per - y.shape[-1])).reshape(y.shape[0], y.shape[1], k, per)
        return y.sum(-1), y.pow(2).sum(-1)

    def window_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """x: (B, N) -> the first block's group-norm statistics over it, (mean, variance) each
        (B, C, 1) float32; None when the extractor has no group norm (layer-norm mode is per frame)."""
        first = self.conv_layers[0]
        if first.norm_kind != "group" or first._modules["2"].num_groups != first._modules["2"].num_channels:
            return None
        y = first._modules["0"](x.unsqueeze(1)).float()
        return y.mean(dim=-1, keepdim=True), y.var(dim=-1, unbiased=False, keepdim=True)


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
        w, b = self.weight(), self.bias
        if x.device.type == "cpu" and x.dtype == torch.bfloat16:
            # torch 2.13's bfloat16 grouped convolution on CPUs with AMX gives wrong values when a
            # group has few channels (4 per group, kernel 16: 105 % error; HuBERT's own 48 per
            # group is right): this one small layer runs in float32 there.
            x, w, b = x.float(), w.float(), b.float()
        y = F.conv1d(x, w, b, padding=self.kernel // 2, groups=self.groups).to(self.bias.dtype)
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
        return self.from_conv_features(self.feature_extractor(source), output_layer)

    def from_conv_features(self, conv: torch.Tensor, output_layer: int | None = None) -> torch.Tensor:
        """The transformer half: conv features (B, C, T) from ``feature_extractor`` -> (B, T, embed_dim)."""
        x = self.layer_norm(conv.transpose(1, 2))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return self.encoder(x, output_layer)

    def forward(self, source: torch.Tensor, output_layer: int | None = None, project: bool = False,
                conv: torch.Tensor | None = None) -> torch.Tensor:
        """source: (B, N) -> (B, T, embed_dim or final_dim); ``conv`` (B, C, T): conv features already
        computed (then ``source`` is not read)."""
        x = self.extract_features(source, output_layer) if conv is None else self.from_conv_features(conv, output_layer)
        if project:
            if self.final_proj is None:
                raise VoiceError("This content encoder has no final projection, so it cannot produce v1 (256-d) features; use RVC's hubert_base.pt.")
            x = self.final_proj(x)
        return x



def hubert_base_config(**changes: Any) -> HubertConfig:
    """HuBERT-base's architecture, optionally changed (tests build tiny ones)."""
    return replace(HubertConfig(), **changes)
