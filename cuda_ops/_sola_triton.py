"""Triton kernels for cuda_ops.sola (imported lazily; see cuda_ops.dispatch)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def sola_scores_kernel(chunk_ptr, tail_ptr, out_ptr, C, S1, BS: tl.constexpr, BC: tl.constexpr):
    """One program: BS candidate offsets o. score[o] = sum_j chunk[o+j] tail[j] /
    sqrt(sum_j chunk[o+j]^2 + 1e-8), j < C (normalised cross-correlation, as engine/dsp/sola.py)."""
    pid = tl.program_id(0)
    ro = pid * BS + tl.arange(0, BS)
    mo = ro < S1
    num = tl.zeros((BS,), dtype=tl.float32)
    energy = tl.zeros((BS,), dtype=tl.float32)
    for j0 in range(0, C, BC):
        rj = j0 + tl.arange(0, BC)
        mj = rj < C
        tail = tl.load(tail_ptr + rj, mask=mj, other=0.0)
        x = tl.load(chunk_ptr + ro[:, None] + rj[None, :], mask=mo[:, None] & mj[None, :], other=0.0)
        num += tl.sum(x * tail[None, :], axis=1)
        energy += tl.sum(x * x, axis=1)
    tl.store(out_ptr + ro, num / tl.sqrt(energy + 1e-8), mask=mo)


@triton.jit
def sola_splice_kernel(chunk_ptr, tail_ptr, fade_in_ptr, fade_out_ptr, offset_ptr, out_ptr, new_tail_ptr,
                       HOP, C, HAS_TAIL: tl.constexpr, BLOCK: tl.constexpr):
    """One program: BLOCK of the HOP + C samples taken from ``chunk[offset:]`` (offset read on the
    device, so no host sync): the first C crossfaded with the previous tail, HOP output samples,
    then C samples kept as the next tail."""
    pid = tl.program_id(0)
    i = pid * BLOCK + tl.arange(0, BLOCK)
    off = tl.load(offset_ptr)
    m = i < HOP + C
    x = tl.load(chunk_ptr + off + i, mask=m, other=0.0)
    is_out = i < HOP
    if HAS_TAIL:
        fade = i < C
        fi = tl.load(fade_in_ptr + i, mask=fade, other=1.0)
        fo = tl.load(fade_out_ptr + i, mask=fade, other=0.0)
        tail = tl.load(tail_ptr + i, mask=fade, other=0.0)
        y = tl.where(fade, x * fi + tail * fo, x)
    else:
        y = x
    tl.store(out_ptr + i, y, mask=m & is_out)
    tl.store(new_tail_ptr + (i - HOP), x, mask=m & (i >= HOP))
