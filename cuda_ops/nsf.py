"""The NSF excitation (RVC's ``SourceModuleHnNSF``: SineGen + linear + tanh), fused.

Semantics are those of ``engine/voices/rvc/synthesizer.py``'s source, which the reference here
reproduces operation for operation (a test checks they are bitwise equal):

* per-sample phase increment ``r = (f0 * (h + 1) / sr) % 1`` cycles for harmonic h (RVC's
  ``harmonic_num``; RVC's released models use the fundamental only, H = 1);
* a running phase across frames and across blocks: frame t starts at ``phase0 + sum_{t' < t} upp *
  r[t']`` (summed in float64, wrapped, then float32), sample k of the frame adds ``(k + 1) * r[t]``;
  ``phase0`` (B,) carries the sine from one live block to the next;
* voiced (f0 > 0): ``0.1 * sin(2 pi phase) + 0.003 * noise``; unvoiced: ``(0.1 / 3) * noise``;
* ``tanh(w . harmonics + b)`` with the model's ``l_linear`` weight (1, H) and bias (1,).

The float64 prefix sum over frames is (B, H, T) work and stays in torch; the kernel fuses the
per-sample part (B, n = length * upp), which torch runs as a dozen full-size ops.
"""

from __future__ import annotations

import math

import torch

from cuda_ops.dispatch import Impl, use_kernel

SINE_AMP = 0.1
NSF_NOISE_STD = 0.003


def frame_phase(f0: torch.Tensor, upp: int, sample_rate: int, phase0: torch.Tensor | None,
                harmonics: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """f0 (B, T) Hz -> (start (B, H, T) float32 phase in cycles at each frame's start, wrapped to
    [0, 1), rad (B, H, T) float32 per-sample increment); phase0 (B,) cycles of the fundamental."""
    mult = torch.arange(1, harmonics + 1, device=f0.device, dtype=torch.float64).view(1, -1, 1)
    rad = (f0.double().unsqueeze(1) * mult / sample_rate) % 1.0  # (B, H, T)
    per_frame = (rad * upp) % 1.0
    start = torch.cumsum(per_frame, dim=2) - per_frame  # exclusive prefix sum
    if phase0 is not None:
        start = start + phase0.double().view(-1, 1, 1) * mult
    return (start % 1.0).float(), rad.float()


def nsf_source_reference(f0: torch.Tensor, upp: int, sample_rate: int, weight: torch.Tensor, bias: torch.Tensor,
                         noise: torch.Tensor | None = None, phase0: torch.Tensor | None = None, head: int = 0,
                         length: int | None = None) -> torch.Tensor:
    """f0 (B, T) Hz; weight (1, H), bias (1,) (the model's l_linear); noise (B, H, n) standard normal
    for the n = length * upp decoded samples (None: drawn); phase0 (B,) -> (B, 1, n) in weight's dtype.

    Phases run over all T frames and are cut to frames [head, head + length), so a partial decode
    continues the sine exactly where a full decode would be."""
    b, t = f0.shape
    h = weight.shape[1]
    length = t - head if length is None else length
    start, rad = frame_phase(f0, upp, sample_rate, phase0, h)
    steps = torch.arange(1, upp + 1, device=f0.device, dtype=torch.float32)
    phase = start.unsqueeze(3) + rad.unsqueeze(3) * steps  # (B, H, T, upp)
    phase = phase.reshape(b, h, -1)[:, :, head * upp : (head + length) * upp]
    f0_cut = f0[:, head : head + length]
    uv = (f0_cut > 0).float().unsqueeze(2).expand(-1, -1, upp).reshape(b, 1, -1)
    sine = torch.sin(phase * (2 * math.pi)) * SINE_AMP
    noise_amp = uv * NSF_NOISE_STD + (1 - uv) * (SINE_AMP / 3)
    noise = torch.randn_like(sine) if noise is None else noise
    source = (sine * uv + noise_amp * noise).transpose(1, 2).to(weight.dtype)  # (B, n, H)
    return torch.tanh(torch.nn.functional.linear(source, weight, bias)).transpose(1, 2)


def nsf_source_kernel(f0: torch.Tensor, upp: int, sample_rate: int, weight: torch.Tensor, bias: torch.Tensor,
                      noise: torch.Tensor | None = None, phase0: torch.Tensor | None = None, head: int = 0,
                      length: int | None = None, *, block: int = 1024) -> torch.Tensor:
    """The Triton version of ``nsf_source_reference`` (same arguments, same result). No host sync
    (the bias is read on the device), so it can be captured in a CUDA graph."""
    import triton

    from cuda_ops import _nsf_triton as kt

    b, t = f0.shape
    h = weight.shape[1]
    length = t - head if length is None else length
    n = length * upp
    start, rad = frame_phase(f0, upp, sample_rate, phase0, h)
    if noise is None:
        noise = torch.randn((b, h, n), device=f0.device)
    out = torch.empty((b, n), device=f0.device, dtype=torch.float32)
    kt.nsf_source_kernel[(triton.cdiv(n, block), b)](
        start.contiguous(), rad.contiguous(), f0.float().contiguous(), noise.float().contiguous(),
        weight.float().reshape(-1).contiguous(), bias.float().reshape(-1).contiguous(), out, t, n, head, upp,
        SINE_AMP, NSF_NOISE_STD, SINE_AMP / 3, H=h, BLOCK=block,
    )
    return out.unsqueeze(1).to(weight.dtype)


def nsf_source(f0: torch.Tensor, upp: int, sample_rate: int, weight: torch.Tensor, bias: torch.Tensor,
               noise: torch.Tensor | None = None, phase0: torch.Tensor | None = None, head: int = 0,
               length: int | None = None, impl: Impl = "auto") -> torch.Tensor:
    """The kernel on CUDA, the reference elsewhere; (B, 1, length * upp)."""
    if use_kernel(f0, impl, "the NSF source"):
        return nsf_source_kernel(f0, upp, sample_rate, weight, bias, noise, phase0, head, length)
    return nsf_source_reference(f0, upp, sample_rate, weight, bias, noise, phase0, head, length)
