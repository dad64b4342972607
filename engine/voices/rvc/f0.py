"""Pitch (F0) for RVC: FCPE (default, bundled with torchfcpe), RMVPE (user's ``rmvpe.pt``) and the
built-in DSP tracker; plus RVC's transpose and coarse-pitch quantisation.

Every estimator takes 16 kHz mono audio ``(N,)`` and returns F0 in Hz, 0 for unvoiced, one value
per 160 samples (100 frames/s): ``N // 160 + 1`` values, frame ``i`` centred on sample ``160 * i``.

FCPE uses torchfcpe's own model code and bundled weights, loaded without running
``torchfcpe/__init__.py``: that file imports torchaudio only for resampling (``Wav2MelModule``
when the input is not 16 kHz), and the torchaudio wheel that matches torch 2.13 on PyPI is a CUDA
build that does not import on CPU torch. We always feed 16 kHz, so the only part of torchfcpe
that touched torchaudio is replaced by :func:`fcpe_mel`, the same mel front end written in torch
(parity-tested against torchfcpe's ``MelModule``).
"""

from __future__ import annotations

import functools

import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ModelFormatError, VoiceError
from engine.voices.rvc.assets import RMVPE as RMVPE_ASSET
from engine.voices.rvc.assets import missing_file_message
from engine.weights import load_weights, safe_torch_load

SAMPLE_RATE = 16000
HOP_SAMPLES = 160

# RVC's pitch range and coarse quantisation (pipeline.get_f0 / rvc_for_realtime.get_f0_post).
F0_MIN_HZ = 50.0
F0_MAX_HZ = 1100.0
F0_MEL_MIN = 1127.0 * np.log(1.0 + F0_MIN_HZ / 700.0)
F0_MEL_MAX = 1127.0 * np.log(1.0 + F0_MAX_HZ / 700.0)

PitchMethod = Literal["fcpe", "rmvpe", "dsp"]
PITCH_METHODS: tuple[str, ...] = ("fcpe", "rmvpe", "dsp")


def f0_frames(n_samples: int) -> int:
    """Pitch frames for ``n_samples`` of 16 kHz audio."""
    return n_samples // HOP_SAMPLES + 1


def transpose_f0(f0_hz: np.ndarray, semitones: float) -> np.ndarray:
    """F0 x 2^(semitones/12); unvoiced (0) stays 0."""
    return np.asarray(f0_hz, dtype=np.float64) * (2.0 ** (float(semitones) / 12.0))


def f0_to_coarse(f0_hz: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """RVC's coarse pitch: mel scale mapped so 50 Hz -> 1 and 1100 Hz -> 255, rounded, clipped to
    1..255; unvoiced (0 Hz) -> 1. Returns int64 of the same shape (a tensor stays on its device)."""
    if isinstance(f0_hz, torch.Tensor):
        mel = 1127.0 * torch.log1p(f0_hz.double() / 700.0)
        mel = torch.where(mel > 0, (mel - F0_MEL_MIN) * 254.0 / (F0_MEL_MAX - F0_MEL_MIN) + 1.0, mel)
        return torch.round(mel.clamp(1.0, 255.0)).long()
    f0_mel = 1127.0 * np.log(1.0 + np.asarray(f0_hz, dtype=np.float64) / 700.0)
    voiced = f0_mel > 0
    f0_mel[voiced] = (f0_mel[voiced] - F0_MEL_MIN) * 254.0 / (F0_MEL_MAX - F0_MEL_MIN) + 1.0
    f0_mel[f0_mel <= 1] = 1
    f0_mel[f0_mel > 255] = 255
    return np.rint(f0_mel).astype(np.int64)


def rvc_pitch_inputs(f0_hz: np.ndarray, semitones: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """What an RVC synthesizer takes: (coarse pitch int64, F0 in Hz float32), both after transposing
    by ``semitones``, as RVC's get_f0: the F0 it returns is the transposed one."""
    f0 = transpose_f0(f0_hz, semitones)
    return f0_to_coarse(f0), f0.astype(np.float32)


def fit_length(f0: np.ndarray | torch.Tensor, n: int) -> np.ndarray | torch.Tensor:
    """Trim, or extend by repeating the last frame, to ``n`` frames (float64 numpy; a tensor keeps
    its dtype and device)."""
    if isinstance(f0, torch.Tensor):
        f0 = f0.reshape(-1)
        if f0.shape[0] >= n:
            return f0[:n]
        if f0.shape[0] == 0:
            return f0.new_zeros(n)
        return torch.cat([f0, f0[-1:].expand(n - f0.shape[0])])
    f0 = np.asarray(f0, dtype=np.float64).reshape(-1)
    if len(f0) >= n:
        return f0[:n]
    if len(f0) == 0:
        return np.zeros(n)
    return np.pad(f0, (0, n - len(f0)), mode="edge")


def _as_mono_16k(audio: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = audio if isinstance(audio, torch.Tensor) else torch.from_numpy(np.asarray(audio, dtype=np.float32))
    x = x.float().reshape(-1)
    return x


# --------------------------------------------------------------------------------------------
# Mel filter bank (librosa's algorithm, so results match the models' training front ends)
# --------------------------------------------------------------------------------------------


def _hz_to_mel(f: np.ndarray, htk: bool) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float, htk: bool) -> np.ndarray:
    """Triangular mel filters with Slaney area normalisation: (n_mels, n_fft // 2 + 1) float32,
    as ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=htk)``."""
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_pts = _mel_to_hz(np.linspace(_hz_to_mel(fmin_hz, htk), _hz_to_mel(fmax_hz, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_pts)
    ramps = mel_pts[:, None] - fft_hz[None, :]
    weights = np.zeros((n_mels, len(fft_hz)), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_pts[2 : n_mels + 2] - mel_pts[:n_mels])
    weights *= enorm[:, None]
    return weights


# --------------------------------------------------------------------------------------------
# FCPE
# --------------------------------------------------------------------------------------------

_TORCHFCPE_ALIAS = "_autovoice_torchfcpe"


def torchfcpe_dir() -> Path:
    """Folder of the installed torchfcpe package, found without importing it."""
    spec = importlib.util.find_spec("torchfcpe")
    if spec is None or not spec.submodule_search_locations:
        raise VoiceError("The FCPE pitch tracker needs the torchfcpe package: install it with `pip install --no-deps torchfcpe einops local-attention`.")
    return Path(list(spec.submodule_search_locations)[0])


def torchfcpe_module(name: str) -> types.ModuleType:
    """Import ``torchfcpe.<name>`` from torchfcpe's files under a private package name, so that
    torchfcpe's ``__init__`` (which imports torchaudio) does not run. The module's code is
    torchfcpe's own, unchanged."""
    pkg = sys.modules.get(_TORCHFCPE_ALIAS)
    if pkg is None:
        pkg = types.ModuleType(_TORCHFCPE_ALIAS)
        pkg.__path__ = [str(torchfcpe_dir())]
        pkg.__package__ = _TORCHFCPE_ALIAS
        sys.modules[_TORCHFCPE_ALIAS] = pkg
    try:
        return importlib.import_module(f"{_TORCHFCPE_ALIAS}.{name}")
    except ModuleNotFoundError as exc:
        raise VoiceError(
            f"The FCPE pitch tracker needs the Python package {exc.name!r}: install it with `pip install einops local-attention`."
        ) from None


class FcpeMel(nn.Module):
    """torchfcpe's mel front end (``MelModule`` at 16 kHz, no key shift) in torch:
    log(clamp(mel @ |STFT|, 1e-5)), Hann 1024, hop 160, 128 Slaney mels 0-8000 Hz, with
    torchfcpe's asymmetric padding, then the frame count fixed to N // 160 + 1 (last frame repeated)
    as ``Wav2MelModule`` does."""

    def __init__(self, sample_rate: int = 16000, n_mels: int = 128, n_fft: int = 1024, win_size: int = 1024,
                 hop_size: int = 160, fmin_hz: float = 0.0, fmax_hz: float = 8000.0, clip_val: float = 1e-5):
        super().__init__()
        self.n_fft, self.win_size, self.hop_size, self.clip_val = n_fft, win_size, hop_size, clip_val
        self.register_buffer("mel_basis", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels, fmin_hz, fmax_hz, htk=False)), persistent=False)
        self.register_buffer("window", torch.hann_window(win_size), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio: (B, N) -> (B, N // hop + 1, n_mels)"""
        n = audio.shape[-1]
        pad_left = (self.win_size - self.hop_size) // 2
        pad_right = max((self.win_size - self.hop_size + 1) // 2, self.win_size - n - pad_left)
        mode = "reflect" if pad_right < n else "constant"
        y = F.pad(audio.unsqueeze(1), (pad_left, pad_right), mode=mode).squeeze(1)
        spec = torch.stft(y, self.n_fft, hop_length=self.hop_size, win_length=self.win_size, window=self.window,
                          center=False, normalized=False, onesided=True, return_complex=True)
        mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
        mel = torch.log(torch.clamp(torch.matmul(self.mel_basis, mag), min=self.clip_val)).transpose(-1, -2)
        n_frames = n // self.hop_size + 1
        if mel.shape[1] < n_frames:
            mel = torch.cat((mel, mel[:, -1:, :].expand(-1, n_frames - mel.shape[1], -1)), dim=1)
        return mel[:, :n_frames, :]


def fcpe_mel(audio: torch.Tensor) -> torch.Tensor:
    return FcpeMel().to(audio.device)(audio)


class PitchEstimator(Protocol):
    name: str

    def estimate(self, audio_16k: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N,) 16 kHz -> F0 Hz, (N // 160 + 1,) float64, 0 = unvoiced."""
        ...


class FcpePitch:
    """FCPE with torchfcpe's bundled weights, decoded as RVC does (local argmax, threshold 0.006)."""

    name = "fcpe"

    def __init__(self, device: str | torch.device = "cpu", threshold: float = 0.006):
        models = torchfcpe_module("models")
        weights = torchfcpe_dir() / "assets" / "fcpe_c_v001.pt"
        if not weights.is_file():
            raise VoiceError(f"torchfcpe's bundled weights {weights} are missing: reinstall it with `pip install --force-reinstall --no-deps torchfcpe`.")
        ckpt = safe_torch_load(weights, what="FCPE pitch model", choose="torchfcpe's bundled model (reinstall torchfcpe)")
        cfg = ckpt["config_dict"]
        m, mel = cfg["model"], cfg["mel"]
        self.model = models.CFNaiveMelPE(
            input_channels=mel["num_mels"], out_dims=m["out_dims"], hidden_dims=m["hidden_dims"],
            n_layers=m["n_layers"], n_heads=m["n_heads"], f0_max=m["f0_max"], f0_min=m["f0_min"],
            use_fa_norm=m["use_fa_norm"], conv_only=m.get("conv_only", False), conv_dropout=0.0,
            atten_dropout=0.0, use_harmonic_emb=m.get("use_harmonic_emb", False) or False,
        )
        self.model.load_state_dict(ckpt["model"])
        self.device = torch.device(device)
        self.model.eval().to(self.device)
        self.mel = FcpeMel(mel["sr"], mel["num_mels"], mel["n_fft"], mel["win_size"], mel["hop_size"],
                           mel["fmin"], mel["fmax"]).to(self.device)
        if mel["sr"] != SAMPLE_RATE or mel["hop_size"] != HOP_SAMPLES:
            raise ModelFormatError("torchfcpe's bundled model is not the 16 kHz / hop 160 model RVC uses; install torchfcpe 0.0.4.")
        self.threshold = threshold

    @torch.inference_mode()
    def estimate(self, audio_16k: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.estimate_on_device(audio_16k).double().cpu().numpy()

    @torch.inference_mode()
    def estimate_on_device(self, audio_16k: np.ndarray | torch.Tensor) -> torch.Tensor:
        """As :meth:`estimate`, float32 on this estimator's device (nothing comes back to the host)."""
        x = _as_mono_16k(audio_16k).to(self.device)
        n = x.shape[0]
        if n == 0:
            return torch.zeros(1, device=self.device)
        f0 = self.model.infer(self.mel(x[None]), decoder="local_argmax", threshold=self.threshold)
        return fit_length(f0.reshape(-1).float(), f0_frames(n))


# --------------------------------------------------------------------------------------------
# RMVPE (RVC's infer/lib/rmvpe.py architecture, our code, RVC's parameter names)
# --------------------------------------------------------------------------------------------


class _ConvBlockRes(nn.Module):
    def __init__(self, c_in: int, c_out: int, momentum: float = 0.01):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out, momentum=momentum), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out, momentum=momentum), nn.ReLU(),
        )
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + (self.shortcut(x) if self.shortcut is not None else x)


class _ResEncoderBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, pool: tuple[int, int] | None, n_blocks: int):
        super().__init__()
        self.conv = nn.ModuleList([_ConvBlockRes(c_in, c_out)] + [_ConvBlockRes(c_out, c_out) for _ in range(n_blocks - 1)])
        self.pool = nn.AvgPool2d(pool) if pool is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        for block in self.conv:
            x = block(x)
        return x if self.pool is None else (x, self.pool(x))


class _Encoder(nn.Module):
    def __init__(self, c_in: int, n_layers: int, pool: tuple[int, int], n_blocks: int, c_out: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in, momentum=0.01)
        self.layers = nn.ModuleList()
        for _ in range(n_layers):
            self.layers.append(_ResEncoderBlock(c_in, c_out, pool, n_blocks))
            c_in, c_out = c_out, c_out * 2
        self.out_channels = c_out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        x = self.bn(x)
        for layer in self.layers:
            skip, x = layer(x)
            skips.append(skip)
        return x, skips


class _Intermediate(nn.Module):
    def __init__(self, c_in: int, c_out: int, n_inters: int, n_blocks: int):
        super().__init__()
        self.layers = nn.ModuleList(
            [_ResEncoderBlock(c_in, c_out, None, n_blocks)] + [_ResEncoderBlock(c_out, c_out, None, n_blocks) for _ in range(n_inters - 1)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class _ResDecoderBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int], n_blocks: int):
        super().__init__()
        out_pad = (0, 1) if tuple(stride) == (1, 2) else (1, 1)
        self.conv1 = nn.Sequential(
            nn.ConvTranspose2d(c_in, c_out, 3, stride, 1, output_padding=out_pad, bias=False),
            nn.BatchNorm2d(c_out, momentum=0.01), nn.ReLU(),
        )
        self.conv2 = nn.ModuleList([_ConvBlockRes(c_out * 2, c_out)] + [_ConvBlockRes(c_out, c_out) for _ in range(n_blocks - 1)])

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat((self.conv1(x), skip), dim=1)
        for block in self.conv2:
            x = block(x)
        return x


class _Decoder(nn.Module):
    def __init__(self, c_in: int, n_layers: int, stride: tuple[int, int], n_blocks: int):
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(n_layers):
            self.layers.append(_ResDecoderBlock(c_in, c_in // 2, stride, n_blocks))
            c_in //= 2

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, skips[-1 - i])
        return x


class _DeepUnet(nn.Module):
    def __init__(self, pool: tuple[int, int], n_blocks: int, en_de_layers: int, inter_layers: int, c_in: int, en_out_channels: int):
        super().__init__()
        self.encoder = _Encoder(c_in, en_de_layers, pool, n_blocks, en_out_channels)
        self.intermediate = _Intermediate(self.encoder.out_channels // 2, self.encoder.out_channels, inter_layers, n_blocks)
        self.decoder = _Decoder(self.encoder.out_channels, en_de_layers, pool, n_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, skips = self.encoder(x)
        return self.decoder(self.intermediate(x), skips)


class _BiGRU(nn.Module):
    def __init__(self, n_in: int, hidden: int, n_layers: int):
        super().__init__()
        self.gru = nn.GRU(n_in, hidden, num_layers=n_layers, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


RMVPE_N_MELS = 128
RMVPE_N_CLASSES = 360


class E2E(nn.Module):
    """RMVPE's network. Defaults = RVC's ``E2E(4, 1, (2, 2))`` for ``rmvpe.pt``.
    mel: (B, 128, T) with T a multiple of 2**en_de_layers -> salience (B, T, 360) in 0..1."""

    def __init__(self, n_blocks: int = 4, n_gru: int = 1, kernel_size: tuple[int, int] = (2, 2), en_de_layers: int = 5,
                 inter_layers: int = 4, in_channels: int = 1, en_out_channels: int = 16, gru_hidden: int = 256):
        super().__init__()
        self.en_de_layers = en_de_layers
        self.unet = _DeepUnet(tuple(kernel_size), n_blocks, en_de_layers, inter_layers, in_channels, en_out_channels)
        self.cnn = nn.Conv2d(en_out_channels, 3, 3, padding=1)
        if n_gru:
            self.fc = nn.Sequential(_BiGRU(3 * RMVPE_N_MELS, gru_hidden, n_gru), nn.Linear(2 * gru_hidden, RMVPE_N_CLASSES), nn.Dropout(0.25), nn.Sigmoid())
        else:
            self.fc = nn.Sequential(nn.Linear(3 * RMVPE_N_MELS, RMVPE_N_CLASSES), nn.Dropout(0.25), nn.Sigmoid())

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel.transpose(-1, -2).unsqueeze(1)  # (B, 1, T, 128)
        x = self.cnn(self.unet(x)).transpose(1, 2).flatten(-2)  # (B, T, 3 * 128)
        return self.fc(x)


def rmvpe_config_from_state_dict(sd: dict[str, torch.Tensor]) -> dict:
    """E2E constructor arguments that reproduce ``sd``'s shapes."""
    def count(prefix: str) -> int:
        idx = {int(k[len(prefix):].split(".", 1)[0]) for k in sd if k.startswith(prefix) and k[len(prefix):].split(".", 1)[0].isdigit()}
        return max(idx) + 1 if idx else 0

    n_gru = sum(1 for k in sd if k.startswith("fc.0.gru.weight_ih_l") and not k.endswith("_reverse"))
    return dict(
        n_blocks=count("unet.encoder.layers.0.conv."),
        n_gru=n_gru,
        kernel_size=(2, 2),
        en_de_layers=count("unet.encoder.layers."),
        inter_layers=count("unet.intermediate.layers."),
        in_channels=sd["unet.encoder.bn.weight"].shape[0],
        en_out_channels=sd["unet.encoder.layers.0.conv.0.conv.0.weight"].shape[0],
        gru_hidden=sd["fc.0.gru.weight_hh_l0"].shape[1] if n_gru else 256,
    )


class RmvpeMel(nn.Module):
    """RMVPE's front end: centred (reflect) STFT, Hann 1024, hop 160, 128 HTK-scale mels 30-8000 Hz
    (Slaney-normalised), log(clamp(., 1e-5)). audio (B, N) -> (B, 128, N // 160 + 1)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mel_basis", torch.from_numpy(mel_filterbank(SAMPLE_RATE, 1024, RMVPE_N_MELS, 30.0, 8000.0, htk=True)), persistent=False)
        self.register_buffer("window", torch.hann_window(1024), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mode = "reflect" if audio.shape[-1] > 512 else "constant"
        y = F.pad(audio.unsqueeze(1), (512, 512), mode=mode).squeeze(1)
        spec = torch.stft(y, 1024, hop_length=HOP_SAMPLES, win_length=1024, window=self.window, center=False, return_complex=True)
        mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2))
        return torch.log(torch.clamp(torch.matmul(self.mel_basis, mag), min=1e-5))


_CENTS_MAPPING = np.pad(20.0 * np.arange(RMVPE_N_CLASSES) + 1997.3794084376191, (4, 4))


@functools.lru_cache(maxsize=8)
def _cents_mapping_on(device: torch.device) -> torch.Tensor:
    return torch.from_numpy(_CENTS_MAPPING).to(device)  # once per device, not once per block


def salience_to_f0(salience: np.ndarray | torch.Tensor, threshold: float = 0.03) -> np.ndarray | torch.Tensor:
    """RMVPE decoding: the salience-weighted mean of the cents of the 9 bins around the peak,
    0 where the peak is at or below ``threshold``. salience: (T, 360) -> F0 Hz (T,) float64, numpy
    for numpy, a tensor on its device for a tensor."""
    if not isinstance(salience, torch.Tensor):
        return salience_to_f0(torch.from_numpy(np.asarray(salience, dtype=np.float64)), threshold).numpy()
    sal = salience.double()
    padded = F.pad(sal, (4, 4))
    idx = sal.argmax(dim=1, keepdim=True) + 4 + torch.arange(-4, 5, device=sal.device)[None, :]
    win = padded.gather(1, idx)
    mapping = _cents_mapping_on(sal.device)[idx]
    cents = (win * mapping).sum(1) / win.sum(1).clamp_min(1e-12)
    cents = torch.where(padded.amax(1) <= threshold, torch.zeros_like(cents), cents)
    f0 = 10.0 * 2.0 ** (cents / 1200.0)
    return torch.where(f0 == 10.0, torch.zeros_like(f0), f0)


class RmvpePitch:
    """RMVPE from a user's ``rmvpe.pt`` (a plain state dict, read through :mod:`engine.weights`)."""

    name = "rmvpe"
    FILE_NAME = RMVPE_ASSET.file_name

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu", threshold: float = 0.03):
        path = Path(path)
        if not path.is_file():
            raise VoiceError(missing_file_message(path.name, RMVPE_ASSET.what, path.parent))
        sd = load_weights(path, what="pitch model", choose="RVC's rmvpe.pt")
        if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
            sd = sd["model"]
        try:
            cfg = rmvpe_config_from_state_dict(sd)
            model = E2E(**cfg)
            model.load_state_dict(sd)
        except (KeyError, RuntimeError, TypeError, AttributeError) as exc:
            raise ModelFormatError(f"{path.name} is not an RMVPE model ({type(exc).__name__}); use RVC's rmvpe.pt.") from None
        self.path = path
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.mel = RmvpeMel().to(self.device)
        self.threshold = threshold

    @torch.inference_mode()
    def salience(self, audio_16k: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N,) -> (N // 160 + 1, 360)"""
        return self.salience_on_device(audio_16k).cpu().numpy()

    @torch.inference_mode()
    def salience_on_device(self, audio_16k: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = _as_mono_16k(audio_16k).to(self.device)
        mel = self.mel(x[None])
        n_frames = mel.shape[-1]
        multiple = 2 ** self.model.en_de_layers
        pad = multiple * ((n_frames - 1) // multiple + 1) - n_frames
        if pad:
            mel = F.pad(mel, (0, pad), mode="reflect" if pad < n_frames else "replicate")
        return self.model(mel)[0, :n_frames].float()

    def estimate(self, audio_16k: np.ndarray | torch.Tensor) -> np.ndarray:
        return salience_to_f0(self.salience(audio_16k), self.threshold)

    def estimate_on_device(self, audio_16k: np.ndarray | torch.Tensor) -> torch.Tensor:
        """As :meth:`estimate`, on this estimator's device."""
        return salience_to_f0(self.salience_on_device(audio_16k), self.threshold)


# --------------------------------------------------------------------------------------------
# Built-in DSP tracker
# --------------------------------------------------------------------------------------------


class DspPitch:
    """The engine's own DSP tracker (engine.dsp.pitch.track_f0): no model file needed."""

    name = "dsp"

    def __init__(self):
        from engine.dsp import pitch as dsp_pitch

        self._track = dsp_pitch.track_f0

    def estimate(self, audio_16k: np.ndarray | torch.Tensor) -> np.ndarray:
        x = _as_mono_16k(audio_16k).cpu().numpy()
        f0 = self._track(x, SAMPLE_RATE, HOP_SAMPLES, fmin_hz=F0_MIN_HZ, fmax_hz=F0_MAX_HZ)
        f0 = np.nan_to_num(np.asarray(f0, dtype=np.float64), nan=0.0)
        return fit_length(np.maximum(f0, 0.0), f0_frames(len(x)))


def load_pitch_estimator(method: str, models_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                         rmvpe_path: str | os.PathLike | None = None) -> PitchEstimator:
    """``"fcpe"`` (default in RVC realtime), ``"rmvpe"`` (needs ``rmvpe.pt`` in ``models_dir`` or at
    ``rmvpe_path``) or ``"dsp"``. Raises VoiceError in one sentence when something is missing."""
    if method == "fcpe":
        return FcpePitch(device=device)
    if method == "rmvpe":
        path = Path(rmvpe_path) if rmvpe_path is not None else (Path(models_dir) / RMVPE_ASSET.file_name if models_dir is not None else None)
        if path is None or not path.is_file():
            raise VoiceError(missing_file_message(RMVPE_ASSET.file_name if path is None else path.name, RMVPE_ASSET.what,
                                                  models_dir if path is None else path.parent))
        return RmvpePitch(path, device=device)
    if method == "dsp":
        return DspPitch()
    raise VoiceError(f"Unknown pitch method {method!r}: use one of {', '.join(PITCH_METHODS)}.")
