"""Triton kernel for cuda_ops.nsf (imported lazily; see cuda_ops.dispatch)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def nsf_source_kernel(
    start_ptr, rad_ptr, f0_ptr, noise_ptr, w_ptr, b_ptr, out_ptr,
    T, n, head, upp, sine_amp, noise_std, unvoiced_amp,
    H: tl.constexpr, BLOCK: tl.constexpr,
):
    """One program: BLOCK output samples of one batch row. Sample s belongs to frame
    ``t = head + s // upp`` at step ``k = s % upp``; harmonic h has phase
    ``start[b, h, t] + rad[b, h, t] * (k + 1)`` cycles (fp32, as the reference). Output
    ``tanh(sum_h w_h * (sin(2 pi phase) * amp * uv + noise_amp * noise[b, h, s]) + bias)``."""
    pid_s = tl.program_id(0)  # samples on axis 0 (limit 2^31 - 1): a long song has > 65535 blocks
    pid_b = tl.program_id(1)
    s = pid_s * BLOCK + tl.arange(0, BLOCK)
    ms = s < n
    t = head + s // upp
    step = (s % upp + 1).to(tl.float32)
    f0 = tl.load(f0_ptr + pid_b * T + t, mask=ms, other=0.0)
    uv = tl.where(f0 > 0.0, 1.0, 0.0)
    noise_amp = uv * noise_std + (1.0 - uv) * unvoiced_amp
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for h in tl.static_range(H):
        st = tl.load(start_ptr + (pid_b * H + h) * T + t, mask=ms, other=0.0)
        r = tl.load(rad_ptr + (pid_b * H + h) * T + t, mask=ms, other=0.0)
        phase = st + r * step
        sine = tl.sin(phase * 6.283185307179586) * sine_amp
        z = tl.load(noise_ptr + (pid_b * H + h).to(tl.int64) * n + s, mask=ms, other=0.0)
        w = tl.load(w_ptr + h)
        acc += w * (sine * uv + noise_amp * z)
    x = acc + tl.load(b_ptr)
    # tanh(x) = 1 - 2 / (exp(2x) + 1): exact at both ends (exp overflow gives 1, underflow -1)
    y = 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)
    tl.store(out_ptr + pid_b.to(tl.int64) * n + s, y, mask=ms)
