"""The NSF excitation: the reference is the synthesizer's source, the kernel is the reference."""

from __future__ import annotations

import pytest
import torch

from cuda_ops import nsf
from engine.voices.rvc.synthesizer import SourceModuleHnNSF

SR = 40000
UPP = 400  # 40 kHz / 100 frames per second


def _f0(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    """A gliding voice with an unvoiced gap (f0 = 0) and one very high frame (r near 0.5)."""
    gen = torch.Generator().manual_seed(seed)
    f0 = torch.linspace(90.0, 420.0, frames).repeat(batch, 1) + 5 * torch.rand(batch, frames, generator=gen)
    f0[:, frames // 3 : frames // 3 + 4] = 0.0
    f0[:, -2] = 19000.0
    return f0


def _module(seed: int = 1) -> SourceModuleHnNSF:
    m = SourceModuleHnNSF(SR)
    with torch.no_grad():
        m.l_linear.weight.fill_(0.9)
        m.l_linear.bias.fill_(0.02)
    return m


@pytest.mark.parametrize("head,length,with_phase", [(0, None, False), (5, 12, True), (0, 20, True)])
def test_reference_is_the_synthesizers_source_bit_for_bit(head, length, with_phase):
    m = _module()
    f0 = _f0(2, 24)
    n = ((24 - head) if length is None else length) * UPP
    noise = torch.randn(2, 1, n, generator=torch.Generator().manual_seed(3))
    phase0 = torch.tensor([0.25, 0.875], dtype=torch.float64) if with_phase else None
    want = m(f0, UPP, noise, phase0, head, length)
    got = nsf.nsf_source_reference(f0, UPP, SR, m.l_linear.weight, m.l_linear.bias, noise, phase0, head, length)
    assert torch.equal(got, want)


@pytest.mark.parametrize("harmonics", [1, 3])
def test_kernel_matches_reference(kernel_device, harmonics):
    f0 = _f0(2, 16).to(kernel_device)
    head, length = 3, 10
    noise = torch.randn(2, harmonics, length * UPP, generator=torch.Generator().manual_seed(4)).to(kernel_device)
    weight = torch.linspace(0.9, 0.3, harmonics).view(1, -1).to(kernel_device)
    bias = torch.tensor([0.05], device=kernel_device)
    phase0 = torch.tensor([0.1, 0.6], dtype=torch.float64, device=kernel_device)
    want = nsf.nsf_source_reference(f0, UPP, SR, weight, bias, noise, phase0, head, length)
    got = nsf.nsf_source(f0, UPP, SR, weight, bias, noise, phase0, head, length, impl="kernel")
    assert got.shape == want.shape == (2, 1, length * UPP)
    # fp32 sin/tanh of the kernel vs torch's: measured 1.5e-7 on the interpreter
    torch.testing.assert_close(got, want, rtol=0, atol=2e-6)


def test_running_phase_carries_across_blocks(kernel_device):
    """Two blocks with the carried phase0 (as RVCVoice carries it) equal one long call."""
    f0 = _f0(1, 20).double().float()
    f0[:, -2] = 300.0
    weight, bias = torch.ones(1, 1), torch.zeros(1)
    zero = torch.zeros(1, 1, 20 * UPP)
    whole = nsf.nsf_source_reference(f0, UPP, SR, weight, bias, zero)
    first = nsf.nsf_source(f0[:, :8].to(kernel_device), UPP, SR, weight.to(kernel_device), bias.to(kernel_device),
                           zero[:, :, : 8 * UPP].to(kernel_device), impl="kernel")
    per_frame = ((f0[0, :8].double() / SR) % 1.0 * UPP) % 1.0
    phase0 = (per_frame.sum() % 1.0).reshape(1)
    second = nsf.nsf_source(f0[:, 8:].to(kernel_device), UPP, SR, weight.to(kernel_device), bias.to(kernel_device),
                            zero[:, :, 8 * UPP :].to(kernel_device), phase0.to(kernel_device), impl="kernel")
    torch.testing.assert_close(torch.cat([first, second], 2).cpu(), whole, rtol=0, atol=1e-5)
    assert whole.abs().max() > 0.05  # the sine is really there (tanh(0.1 sin) peaks near 0.0997)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the synthesizer's CUDA branch needs a CUDA GPU (none here)")
def test_the_synthesizers_source_on_cuda_runs_the_kernel_and_agrees_with_the_cpu():
    m = _module()
    f0 = _f0(2, 24)
    noise = torch.randn(2, 1, 14 * UPP, generator=torch.Generator().manual_seed(5))
    phase0 = torch.tensor([0.5, 0.125], dtype=torch.float64)
    want = m(f0, UPP, noise, phase0, 6, 14)
    got = m.cuda()(f0.cuda(), UPP, noise.cuda(), phase0.cuda(), 6, 14)
    torch.testing.assert_close(got.cpu(), want, rtol=0, atol=2e-6)
