"""SOLA on the device: the correlation search for the best splice offset and the crossfade.

Semantics of ``engine/dsp/sola.Sola.process`` (hop H, crossfade C, search S; chunk of H + C + S
samples, tail of C samples kept from the previous call)::

    score[o] = sum_j chunk[o + j] tail[j] / sqrt(sum_j chunk[o + j]^2 + 1e-8),  o in [0, S], j < C
    offset   = argmax(score)                      (first maximum on ties)
    out      = chunk[offset : offset + H];  out[:C] = out[:C] * fade_in + tail * fade_out
    new tail = chunk[offset + H : offset + H + C]

The numpy version works in float64 on the host; here everything stays in the chunk's dtype on
its device, and the offset never leaves the device (no sync, so a CUDA graph can hold it).
"""

from __future__ import annotations

import torch

from cuda_ops.dispatch import Impl, use_kernel


def sola_scores_reference(chunk: torch.Tensor, tail: torch.Tensor, search: int) -> torch.Tensor:
    """chunk (>= C + S,), tail (C,) -> (S + 1,) normalised cross-correlation scores."""
    c = tail.shape[0]
    region = chunk[: c + search]
    windows = region.unfold(0, c, 1)  # (S + 1, C) views
    num = windows @ tail
    energy = (windows * windows).sum(1)
    return num / torch.sqrt(energy + 1e-8)


def sola_splice_reference(chunk: torch.Tensor, tail: torch.Tensor | None, offset: torch.Tensor,
                          fade_in: torch.Tensor, fade_out: torch.Tensor, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (out (H,), new_tail (C,)); offset is a 0-d int64 tensor (on the chunk's device)."""
    c = fade_in.shape[0]
    idx = offset + torch.arange(hop + c, device=chunk.device)
    taken = chunk[idx]
    out = taken[:hop].clone()
    if tail is not None and c > 0:
        out[:c] = out[:c] * fade_in + tail * fade_out
    return out, taken[hop:].clone()


def sola_scores_kernel(chunk: torch.Tensor, tail: torch.Tensor, search: int) -> torch.Tensor:
    import triton

    from cuda_ops import _sola_triton as kt

    c = tail.shape[0]
    out = torch.empty(search + 1, device=chunk.device, dtype=torch.float32)
    bs, bc = 16, 128
    kt.sola_scores_kernel[(triton.cdiv(search + 1, bs),)](
        chunk.float().contiguous(), tail.float().contiguous(), out, c, search + 1, BS=bs, BC=bc
    )
    return out


def sola_splice_kernel(chunk: torch.Tensor, tail: torch.Tensor | None, offset: torch.Tensor,
                       fade_in: torch.Tensor, fade_out: torch.Tensor, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    import triton

    from cuda_ops import _sola_triton as kt

    c = fade_in.shape[0]
    x = chunk.float().contiguous()
    out = torch.empty(hop, device=chunk.device, dtype=torch.float32)
    new_tail = torch.empty(c, device=chunk.device, dtype=torch.float32)
    has_tail = tail is not None and c > 0
    block = 1024
    kt.sola_splice_kernel[(triton.cdiv(hop + c, block),)](
        x, (tail if has_tail else x).float().contiguous(), fade_in.float().contiguous(), fade_out.float().contiguous(),
        offset.to(torch.int64).reshape(1).contiguous(), out, new_tail, hop, c, HAS_TAIL=has_tail, BLOCK=block,
    )
    return out, new_tail


def sola_step(chunk: torch.Tensor, tail: torch.Tensor | None, fade_in: torch.Tensor, fade_out: torch.Tensor,
              hop: int, search: int, impl: Impl = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One SOLA call: chunk (H + C + S,), tail (C,) or None on the first call
    -> (out (H,), new_tail (C,), offset 0-d int64), all on the chunk's device."""
    c = fade_in.shape[0]
    kernel = use_kernel(chunk, impl, "SOLA")
    if tail is not None and c > 0 and search > 0:
        scores = (sola_scores_kernel if kernel else sola_scores_reference)(chunk, tail, search)
        offset = torch.argmax(scores)
    else:
        offset = torch.zeros((), dtype=torch.int64, device=chunk.device)
    out, new_tail = (sola_splice_kernel if kernel else sola_splice_reference)(chunk, tail, offset, fade_in, fade_out, hop)
    return out, new_tail, offset
