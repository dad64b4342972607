"""The RVC v1/v2 synthesizer (VITS-style text encoder, flow and NSF-HiFiGAN decoder), inference only.

Our own implementation of the architecture of RVC's ``SynthesizerTrnMs{256,768}NSFsid[_nono]``. Module
and parameter names follow RVC's exactly (``enc_p.encoder.attn_layers.0.conv_q.weight``, ``dec.ups.0``,
``flow.flows.0.enc.in_layers.0``, ``emb_g.weight`` ...) so a user's ``.pth`` loads by name. RVC trains with
weight normalisation and saves ``weight_g``/``weight_v`` pairs; we fold them into one plain ``weight`` at
load time (``checkpoint.fold_weight_norm``), which is what RVC's ``remove_weight_norm`` would compute.
The posterior encoder ``enc_q`` is only used in training and is absent here, as in RVC's inference files.

Shapes (B = batch, T = content frames at 100 frames/s, C = 256 (v1) or 768 (v2), H = hidden channels,
I = inter channels (192 in every RVC release), hop = sample_rate / 100 = prod(upsample_rates))::

    phone (B, T, C) float   pitch (B, T) int64 coarse 1..255   nsff0 (B, T) float Hz (0 = unvoiced)
    sid (B,) int64          ->  audio (B, 1, return_length * hop) float in [-1, 1]

Randomness is injectable so that torch, ONNX, streaming and offline runs can be compared sample for
sample: ``noise_z`` (B, I, T) and ``noise_nsf`` (B, 1, T * hop) are standard-normal tensors covering the
whole input window (partial decoding slices them like everything else), or pass a ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from cuda_ops.dispatch import kernels_forced
from engine.voices.rvc.versions import feature_dim, sample_rate_from_name

LRELU_SLOPE = 0.1
Z_NOISE_SCALE = 0.66666  # RVC's inference-time temperature on the prior, to the digit it uses
SINE_AMP = 0.1
NSF_NOISE_STD = 0.003
REL_WINDOW = 10  # relative-attention window of RVC's text encoder
FLOW_CONTEXT_FRAMES = 24  # 4 couplings x 3 WaveNet layers x (kernel 5 // 2): the flow's exact reach
SR_NAMES = {"32k": 32000, "40k": 40000, "48k": 48000}


@dataclass(frozen=True)
class SynthConfig:
    """RVC's 18-entry constructor list, named. ``from_list``/``to_list`` convert the on-disk form."""

    spec_channels: int
    segment_size: int
    inter_channels: int
    hidden_channels: int
    filter_channels: int
    n_heads: int
    n_layers: int
    kernel_size: int
    p_dropout: float
    resblock: str
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    upsample_rates: tuple[int, ...]
    upsample_initial_channel: int
    upsample_kernel_sizes: tuple[int, ...]
    spk_embed_dim: int
    gin_channels: int
    sample_rate: int
    # not in RVC's list: they come from the checkpoint's other fields
    version: str = "v2"
    f0: bool = True
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    N_ENTRIES = 18

    @classmethod
    def from_list(cls, values: list, *, version: str = "v1", f0: bool = True) -> "SynthConfig":
        if len(values) != cls.N_ENTRIES:
            raise ValueError(f"expected {cls.N_ENTRIES} config entries, got {len(values)}")
        v = list(values)
        sr = v[17]
        if isinstance(sr, str):
            sr = sample_rate_from_name(sr) or SR_NAMES[sr]  # any "<n>k"; KeyError for what names no rate
        return cls(
            spec_channels=int(v[0]),
            segment_size=int(v[1]),
            inter_channels=int(v[2]),
            hidden_channels=int(v[3]),
            filter_channels=int(v[4]),
            n_heads=int(v[5]),
            n_layers=int(v[6]),
            kernel_size=int(v[7]),
            p_dropout=float(v[8]),
            resblock=str(v[9]),
            resblock_kernel_sizes=tuple(int(k) for k in v[10]),
            resblock_dilation_sizes=tuple(tuple(int(d) for d in ds) for ds in v[11]),
            upsample_rates=tuple(int(u) for u in v[12]),
            upsample_initial_channel=int(v[13]),
            upsample_kernel_sizes=tuple(int(k) for k in v[14]),
            spk_embed_dim=int(v[15]),
            gin_channels=int(v[16]),
            sample_rate=int(sr),
            version=version,
            f0=bool(f0),
        )

    def to_list(self) -> list:
        return [
            self.spec_channels,
            self.segment_size,
            self.inter_channels,
            self.hidden_channels,
            self.filter_channels,
            self.n_heads,
            self.n_layers,
            self.kernel_size,
            self.p_dropout,
            self.resblock,
            list(self.resblock_kernel_sizes),
            [list(d) for d in self.resblock_dilation_sizes],
            list(self.upsample_rates),
            self.upsample_initial_channel,
            list(self.upsample_kernel_sizes),
            self.spk_embed_dim,
            self.gin_channels,
            self.sample_rate,
        ]

    @property
    def feature_dim(self) -> int:
        return feature_dim(self.version)

    @property
    def hop_samples(self) -> int:
        return math.prod(self.upsample_rates)


# --- text encoder -------------------------------------------------------------------------------


def sequence_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_length) bool."""
    positions = torch.arange(max_length, dtype=lengths.dtype, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


class LayerNorm(nn.Module):
    """Layer norm over the channel axis of (B, C, T)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.transpose(1, -1), (self.channels,), self.gamma, self.beta, self.eps)
        return x.transpose(1, -1)


class MultiHeadAttention(nn.Module):
    """Self-attention with VITS' shared relative-position embeddings (window of +-10 frames).

    Instead of RVC's pad-and-reshape skew over (T, 2T-1) we gather the 21 window offsets directly;
    the sums are the same, the relative-value term costs O(T * 21) instead of O(T * T).
    """

    def __init__(self, channels: int, n_heads: int, window_size: int = REL_WINDOW):
        super().__init__()
        assert channels % n_heads == 0
        self.n_heads = n_heads
        self.k_channels = channels // n_heads
        self.window_size = window_size
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        n_rel = 2 * window_size + 1
        std = self.k_channels**-0.5
        self.emb_rel_k = nn.Parameter(torch.randn(1, n_rel, self.k_channels) * std)
        self.emb_rel_v = nn.Parameter(torch.randn(1, n_rel, self.k_channels) * std)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """x: (B, H, T), attn_mask: (B, 1, T, T) -> (B, H, T)."""
        b, d, t = x.shape
        h, kc, w = self.n_heads, self.k_channels, self.window_size
        q = self.conv_q(x).view(b, h, kc, t).transpose(2, 3) / math.sqrt(kc)  # (B, h, T, kc)
        k = self.conv_k(x).view(b, h, kc, t).transpose(2, 3)
        v = self.conv_v(x).view(b, h, kc, t).transpose(2, 3)

        rows = torch.arange(t, device=x.device).unsqueeze(1)
        cols = torch.arange(t, device=x.device).unsqueeze(0)
        offset = cols - rows  # j - i
        in_window = (offset.abs() <= w).to(q.dtype)  # (T, T)

        scores = torch.matmul(q, k.transpose(-2, -1))
        rel_k = torch.matmul(q, self.emb_rel_k.transpose(-2, -1))  # (B, h, T, 2w+1)
        idx = (offset.clamp(-w, w) + w).expand(b, h, t, t)
        scores = scores + torch.gather(rel_k, 3, idx) * in_window
        scores = scores.masked_fill(attn_mask == 0, -1e4)
        p_attn = torch.softmax(scores, dim=-1)  # (B, h, T, T)
        out = torch.matmul(p_attn, v)

        # relative values: weight of offset d for row i is p[i, i + d] (zero outside the sequence)
        d_range = torch.arange(-w, w + 1, device=x.device).unsqueeze(0)  # (1, 2w+1)
        src = rows + d_range  # (T, 2w+1)
        valid = ((src >= 0) & (src < t)).to(q.dtype)
        gathered = torch.gather(p_attn, 3, src.clamp(0, t - 1).expand(b, h, t, 2 * w + 1))
        out = out + torch.matmul(gathered * valid, self.emb_rel_v)
        out = out.transpose(2, 3).reshape(b, d, t)
        return self.conv_o(out)


class FFN(nn.Module):
    def __init__(self, channels: int, filter_channels: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_size == 1:
            return x
        return F.pad(x, [(self.kernel_size - 1) // 2, self.kernel_size // 2])

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv_1(self._pad(x * x_mask)))
        x = self.conv_2(self._pad(x * x_mask))
        return x * x_mask


class Encoder(nn.Module):
    def __init__(self, hidden: int, filter_channels: int, n_heads: int, n_layers: int, kernel_size: int):
        super().__init__()
        self.attn_layers = nn.ModuleList(MultiHeadAttention(hidden, n_heads) for _ in range(n_layers))
        self.norm_layers_1 = nn.ModuleList(LayerNorm(hidden) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(FFN(hidden, filter_channels, kernel_size) for _ in range(n_layers))
        self.norm_layers_2 = nn.ModuleList(LayerNorm(hidden) for _ in range(n_layers))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)
        x = x * x_mask
        for attn, norm1, ffn, norm2 in zip(
            self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2
        ):
            x = norm1(x + attn(x, attn_mask))
            x = norm2(x + ffn(x, x_mask))
        return x * x_mask


class TextEncoder(nn.Module):
    """Content features (+ coarse pitch) -> prior mean and log-std, each (B, I, T)."""

    def __init__(self, cfg: SynthConfig):
        super().__init__()
        self.hidden_channels = cfg.hidden_channels
        self.out_channels = cfg.inter_channels
        self.emb_phone = nn.Linear(cfg.feature_dim, cfg.hidden_channels)
        if cfg.f0:
            self.emb_pitch = nn.Embedding(256, cfg.hidden_channels)
        self.encoder = Encoder(
            cfg.hidden_channels, cfg.filter_channels, cfg.n_heads, cfg.n_layers, cfg.kernel_size
        )
        self.proj = nn.Conv1d(cfg.hidden_channels, cfg.inter_channels * 2, 1)

    def forward(
        self, phone: torch.Tensor, pitch: torch.Tensor | None, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.emb_phone(phone)
        if pitch is not None:
            x = x + self.emb_pitch(pitch)
        x = F.leaky_relu(x * math.sqrt(self.hidden_channels), LRELU_SLOPE).transpose(1, -1)
        x_mask = sequence_mask(lengths, x.size(2)).unsqueeze(1).to(x.dtype)
        x = self.encoder(x * x_mask, x_mask)
        stats = self.proj(x) * x_mask
        m, logs = torch.split(stats, self.out_channels, dim=1)
        return m, logs, x_mask


# --- flow --------------------------------------------------------------------------------------


class WN(nn.Module):
    """WaveNet-style gated residual stack (kernel 5, dilation 1 in RVC's flow)."""

    def __init__(self, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int, gin_channels: int):
        super().__init__()
        self.hidden_channels = hidden
        self.n_layers = n_layers
        if gin_channels:
            self.cond_layer = nn.Conv1d(gin_channels, 2 * hidden * n_layers, 1)
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = dilation_rate**i
            pad = (kernel_size * dilation - dilation) // 2
            self.in_layers.append(nn.Conv1d(hidden, 2 * hidden, kernel_size, dilation=dilation, padding=pad))
            out = 2 * hidden if i < n_layers - 1 else hidden
            self.res_skip_layers.append(nn.Conv1d(hidden, out, 1))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        hc = self.hidden_channels
        output = torch.zeros_like(x)
        cond = self.cond_layer(g) if g is not None else None
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            x_in = in_layer(x)
            if cond is not None:
                x_in = x_in + cond[:, i * 2 * hc : (i + 1) * 2 * hc, :]
            acts = torch.tanh(x_in[:, :hc]) * torch.sigmoid(x_in[:, hc:])
            rs = res_skip(acts)
            if i < self.n_layers - 1:
                x = (x + rs[:, :hc]) * x_mask
                output = output + rs[:, hc:]
            else:
                output = output + rs
        return output * x_mask


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling; only the reverse (sampling) direction is needed for inference."""

    def __init__(self, channels: int, hidden: int, gin_channels: int):
        super().__init__()
        self.half_channels = channels // 2
        self.pre = nn.Conv1d(self.half_channels, hidden, 1)
        self.enc = WN(hidden, 5, 1, 3, gin_channels)
        self.post = nn.Conv1d(hidden, self.half_channels, 1)

    def reverse(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        x0, x1 = torch.split(x, [self.half_channels] * 2, 1)
        h = self.enc(self.pre(x0) * x_mask, x_mask, g)
        m = self.post(h) * x_mask
        return torch.cat([x0, (x1 - m) * x_mask], 1)


class Flip(nn.Module):
    """Channel reversal between couplings (no parameters; keeps RVC's module indices 1, 3, 5, 7)."""

    def reverse(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        return torch.flip(x, [1])


class ResidualCouplingBlock(nn.Module):
    def __init__(self, channels: int, hidden: int, gin_channels: int, n_flows: int = 4):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(ResidualCouplingLayer(channels, hidden, gin_channels))
            self.flows.append(Flip())

    def reverse(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        for flow in reversed(self.flows):
            x = flow.reverse(x, x_mask, g)
        return x


# --- decoder -----------------------------------------------------------------------------------


def _padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size * dilation - dilation) // 2


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_padding(kernel_size, d))
            for d in dilation
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_padding(kernel_size, 1)) for _ in dilation
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = c1(F.leaky_relu(x, LRELU_SLOPE))
            x = x + c2(F.leaky_relu(xt, LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: tuple[int, ...]):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_padding(kernel_size, d))
            for d in dilation
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in self.convs:
            x = x + c(F.leaky_relu(x, LRELU_SLOPE))
        return x


class SourceModuleHnNSF(nn.Module):
    """Harmonic-plus-noise excitation from F0 (RVC uses the fundamental only: harmonic_num = 0)."""

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = sample_rate
        self.l_linear = nn.Linear(1, 1)

    def sine_phase(self, f0: torch.Tensor, upp: int, phase0: torch.Tensor | None) -> torch.Tensor:
        """f0: (B, T) Hz -> phase in cycles, (B, T * upp), float32, wrapped to [0, 1).

        Sample ``t * upp + k`` has phase ``phase0 + sum_{t' < t} upp * r[t'] + (k + 1) * r[t]`` with
        ``r = (f0 / sr) % 1``: the running sum of RVC's per-sample increments. The frame sums run in
        float64 and are wrapped before going back to float32, which keeps the phase exact over minutes
        where a float32 running sum would drift.
        """
        rad = (f0.double() / self.sample_rate) % 1.0  # (B, T) cycles per sample
        per_frame = (rad * upp) % 1.0
        start = torch.cumsum(per_frame, dim=1) - per_frame  # exclusive prefix sum
        if phase0 is not None:
            start = start + phase0.double().unsqueeze(1)
        start = (start % 1.0).float()
        steps = torch.arange(1, upp + 1, device=f0.device, dtype=torch.float32)  # (upp,)
        phase = start.unsqueeze(2) + rad.float().unsqueeze(2) * steps  # (B, T, upp)
        return phase.reshape(f0.shape[0], -1)

    def forward(
        self,
        f0: torch.Tensor,
        upp: int,
        noise: torch.Tensor | None = None,
        phase0: torch.Tensor | None = None,
        head: int = 0,
        length: int | None = None,
    ) -> torch.Tensor:
        """f0: (B, T) Hz, noise: (B, 1, n) standard normal for the n decoded samples -> (B, 1, n).

        ``noise=None`` draws it with ``randn_like`` (what an exported ONNX graph does).

        The phase is accumulated over all T frames and then cut to frames [head, head + length), so
        a partial decode continues the sine exactly where a full decode would be.
        """
        length = f0.shape[1] - head if length is None else length
        if (f0.is_cuda or kernels_forced()) and not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            from cuda_ops.nsf import nsf_source  # the fused kernel; same result as the code below

            return nsf_source(f0, upp, self.sample_rate, self.l_linear.weight, self.l_linear.bias,
                              noise if noise is None else noise.float(), phase0, head, length)
        phase = self.sine_phase(f0, upp, phase0)[:, head * upp : (head + length) * upp]
        f0_cut = f0[:, head : head + length]
        uv = (f0_cut > 0).float().unsqueeze(2).expand(-1, -1, upp).reshape(f0.shape[0], -1)
        sine = torch.sin(phase * (2 * math.pi)) * SINE_AMP
        noise_amp = uv * NSF_NOISE_STD + (1 - uv) * (SINE_AMP / 3)
        noise = torch.randn_like(sine) if noise is None else noise[:, 0, :]
        source = sine * uv + noise_amp * noise
        source = source.unsqueeze(-1).to(self.l_linear.weight.dtype)  # (B, n, 1)
        return torch.tanh(self.l_linear(source)).transpose(1, 2)


class Generator(nn.Module):
    """HiFi-GAN decoder; with ``nsf`` it adds the F0 excitation after every upsampling (GeneratorNSF)."""

    def __init__(self, cfg: SynthConfig, nsf: bool):
        super().__init__()
        self.nsf = nsf
        self.num_kernels = len(cfg.resblock_kernel_sizes)
        self.upp = cfg.hop_samples
        ch0 = cfg.upsample_initial_channel
        self.conv_pre = nn.Conv1d(cfg.inter_channels, ch0, 7, 1, padding=3)
        block = ResBlock1 if cfg.resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        if nsf:
            self.m_source = SourceModuleHnNSF(cfg.sample_rate)
            self.noise_convs = nn.ModuleList()
        rates = cfg.upsample_rates
        for i, (u, k) in enumerate(zip(rates, cfg.upsample_kernel_sizes)):
            c_in, c_out = ch0 // 2**i, ch0 // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(c_in, c_out, k, u, padding=(k - u) // 2))
            if nsf:
                if i + 1 < len(rates):
                    s = math.prod(rates[i + 1 :])
                    self.noise_convs.append(nn.Conv1d(1, c_out, s * 2, stride=s, padding=s // 2))
                else:
                    self.noise_convs.append(nn.Conv1d(1, c_out, 1))
            for rk, rd in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes):
                self.resblocks.append(block(c_out, rk, rd))
        self.conv_post = nn.Conv1d(c_out, 1, 7, 1, padding=3, bias=False)
        if cfg.gin_channels:
            self.cond = nn.Conv1d(cfg.gin_channels, ch0, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor | None, source: torch.Tensor | None) -> torch.Tensor:
        """x: (B, I, L), g: (B, G, 1), source: (B, 1, L * hop) or None -> (B, 1, L * hop)."""
        x = self.conv_pre(x)
        if g is not None:
            x = x + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            if source is not None:
                x = x + self.noise_convs[i](source)
            xs = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                xs = xs + self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))  # default slope 0.01 here, as in HiFi-GAN and RVC
        return torch.tanh(x)


# --- the synthesizer ---------------------------------------------------------------------------


class SynthesizerTrn(nn.Module):
    """RVC's synthesizer for all four variants: v1/v2 (256/768-d content) x with/without F0 (NSF)."""

    def __init__(self, cfg: SynthConfig):
        super().__init__()
        self.cfg = cfg
        self.enc_p = TextEncoder(cfg)
        self.dec = Generator(cfg, nsf=cfg.f0)
        self.flow = ResidualCouplingBlock(cfg.inter_channels, cfg.hidden_channels, cfg.gin_channels)
        self.emb_g = nn.Embedding(cfg.spk_embed_dim, cfg.gin_channels)

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def hop_samples(self) -> int:
        return self.cfg.hop_samples

    @torch.inference_mode()
    def infer(
        self,
        phone: torch.Tensor,
        phone_lengths: torch.Tensor,
        pitch: torch.Tensor | None,
        nsff0: torch.Tensor | None,
        sid: torch.Tensor,
        skip_head: int | torch.Tensor | None = None,
        return_length: int | torch.Tensor | None = None,
        *,
        noise_z: torch.Tensor | None = None,
        noise_nsf: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        sine_phase0: torch.Tensor | None = None,
        flow_context: int = FLOW_CONTEXT_FRAMES,
        decoder_context: int = 0,
        formant_length: int | None = None,
    ) -> torch.Tensor:
        """Convert one window; with ``skip_head``/``return_length`` decode only frames [head, head+length).

        phone: (B, T, C) content features at 100 frames/s; phone_lengths: (B,) int64;
        pitch: (B, T) int64 coarse pitch 1..255 and nsff0: (B, T) float Hz, both None for no-F0 models;
        sid: (B,) int64 speaker id. The text encoder always sees all T frames (that is the context);
        the decoder, which costs nearly everything, runs on the returned frames only.
        noise_z: (B, I, T), noise_nsf: (B, 1, T * hop): standard normal for the whole window (or, for
        noise_nsf, exactly the decoded samples); drawn from ``generator`` (or torch's global RNG) when
        None. sine_phase0: (B,) NSF sine phase in cycles at frame 0.
        flow_context / decoder_context: frames of context on each side of the returned frames that the
        flow / decoder also process (clipped to the window), so the cut edges see their real
        neighbours. The flow's receptive field is exactly +-24 frames and it is cheap, so it gets 24,
        as RVC's current realtime code does; the decoder is most of the cost and gets 0 by default
        (its receptive field is about +-11 frames).
        formant_length: RVC's ``return_length2`` (formant shift): the decoder's input latent (B, I, length)
        and NSF source (B, 1, length * hop) are stretched linearly to ``formant_length`` frames before
        decoding, as RVC's GeneratorNSF does with ``n_res``; needs decoder_context=0. The caller
        resamples the result back (see ``voice.py``).
        Returns audio (B, 1, length * hop) at ``self.sample_rate``, or (B, 1, formant_length * hop).

        ::

            window    [0 ........................................................... T)
            flow           [head - 24 ..................................... head+len+24)
            decoder                [head - dc ................... head+len+dc)
            returned                    [head .......... head+len)
        """
        if self.cfg.f0 and (pitch is None or nsff0 is None):
            raise ValueError("this model uses pitch: pass pitch and nsff0")
        b, t, _ = phone.shape
        head = 0 if skip_head is None else int(skip_head)
        length = t - head if return_length is None else int(return_length)
        if not (0 <= head and 0 < length and head + length <= t):
            raise ValueError(f"skip_head={head}, return_length={length} do not fit {t} frames")
        upp = self.hop_samples
        param = self.emb_g.weight
        g = self.emb_g(sid).unsqueeze(-1)  # (B, G, 1)
        m_p, logs_p, x_mask = self.enc_p(phone, pitch if self.cfg.f0 else None, phone_lengths)

        f_lo, f_hi = max(head - flow_context, 0), min(head + length + flow_context, t)
        d_lo, d_hi = max(head - decoder_context, f_lo), min(head + length + decoder_context, f_hi)
        if noise_z is None:
            noise_z = torch.randn(m_p.shape, generator=generator, device=m_p.device, dtype=torch.float32)
        noise_z = noise_z.to(device=m_p.device, dtype=m_p.dtype)
        fl = slice(f_lo, f_hi)
        m_p, logs_p, x_mask = m_p[:, :, fl], logs_p[:, :, fl], x_mask[:, :, fl]
        z_p = (m_p + torch.exp(logs_p) * noise_z[:, :, fl] * Z_NOISE_SCALE) * x_mask
        z = self.flow.reverse(z_p, x_mask, g)
        z, x_mask = z[:, :, d_lo - f_lo : d_hi - f_lo], x_mask[:, :, d_lo - f_lo : d_hi - f_lo]

        source = None
        if self.cfg.f0:
            if noise_nsf is None:
                noise_nsf = torch.randn((b, 1, t * upp), generator=generator, device=phone.device)
            if noise_nsf.shape[-1] == t * upp:
                noise_nsf = noise_nsf[:, :, d_lo * upp : d_hi * upp]
            source = self.dec.m_source(
                nsff0.float(), upp, noise_nsf.to(phone.device).float(), sine_phase0, d_lo, d_hi - d_lo
            )
            source = source.to(param.dtype)
        if formant_length is not None and int(formant_length) != length:
            if d_lo != head or d_hi != head + length:
                raise ValueError("formant_length needs decoder_context=0")
            n2 = int(formant_length)
            z = F.interpolate(z * x_mask, size=n2, mode="linear")
            source = None if source is None else F.interpolate(source, size=n2 * upp, mode="linear")
            return self.dec(z, g, source)
        audio = self.dec(z * x_mask, g, source)
        return audio[:, :, (head - d_lo) * upp : (head - d_lo + length) * upp]


def build_synthesizer(cfg: SynthConfig) -> SynthesizerTrn:
    """A randomly initialised synthesizer in eval() mode (load weights with ``checkpoint``)."""
    return SynthesizerTrn(cfg).eval()


# Module prefixes that RVC wraps in weight normalisation (saved as weight_g / weight_v).
def weight_norm_prefixes(model: SynthesizerTrn) -> list[str]:
    out = []
    for name, _module in model.named_modules():
        if name.startswith("dec.ups.") and name.count(".") == 2:
            out.append(name)
        elif name.startswith("dec.resblocks.") and (".convs" in name) and name.rsplit(".", 1)[-1].isdigit():
            out.append(name)
        elif name.startswith("flow.flows.") and (
            ".enc.in_layers." in name or ".enc.res_skip_layers." in name or name.endswith(".enc.cond_layer")
        ):
            out.append(name)
    return out
