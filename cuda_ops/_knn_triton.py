"""Triton kernels for cuda_ops.knn (imported lazily by cuda_ops.knn; see cuda_ops.dispatch)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def flat_topk_tiles_kernel(
    q_ptr, qn_ptr, v_ptr, vn_ptr, out_d_ptr, out_i_ptr,
    Q, N, D, n_tiles,
    K: tl.constexpr, BQ: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr,
):
    """One program: BQ queries x BN stored vectors. Squared L2 distances via
    ``|q|^2 - 2 q.v + |v|^2`` (tl.dot, IEEE fp32), then the K smallest of the tile per query by K
    rounds of min/argmin. Writes (Q, n_tiles, K) candidate distances and global ids."""
    pid_n = tl.program_id(0)  # vector tiles on axis 0: its limit is 2^31 - 1, axis 1's only 65535
    pid_q = tl.program_id(1)
    rq = pid_q * BQ + tl.arange(0, BQ)
    rn = pid_n * BN + tl.arange(0, BN)
    mq = rq < Q
    mn = rn < N
    acc = tl.zeros((BQ, BN), dtype=tl.float32)
    for d0 in range(0, D, BD):
        rd = d0 + tl.arange(0, BD)
        md = rd < D
        qt = tl.load(q_ptr + rq[:, None].to(tl.int64) * D + rd[None, :], mask=mq[:, None] & md[None, :], other=0.0)
        vt = tl.load(v_ptr + rn[:, None].to(tl.int64) * D + rd[None, :], mask=mn[:, None] & md[None, :], other=0.0)
        acc += tl.dot(qt, tl.trans(vt), input_precision="ieee")
    qn = tl.load(qn_ptr + rq, mask=mq, other=0.0)
    vn = tl.load(vn_ptr + rn, mask=mn, other=0.0)
    d2 = qn[:, None] - 2.0 * acc + vn[None, :]
    d2 = tl.maximum(d2, 0.0)
    d2 = tl.where(mn[None, :], d2, float("inf"))
    cols = tl.arange(0, BN)
    base = (rq.to(tl.int64) * n_tiles + pid_n) * K
    for j in tl.static_range(K):
        best = tl.min(d2, axis=1)
        arg = tl.argmin(d2, axis=1)
        ids = tl.where(best < float("inf"), pid_n * BN + arg, -1)
        tl.store(out_d_ptr + base + j, best, mask=mq)
        tl.store(out_i_ptr + base + j, ids.to(tl.int64), mask=mq)
        d2 = tl.where(cols[None, :] == arg[:, None], float("inf"), d2)


@triton.jit
def ivf_topk_chunks_kernel(
    q_ptr, qn_ptr, probes_ptr, offsets_ptr, v_ptr, vn_ptr, ids_ptr, out_d_ptr, out_i_ptr,
    D, nprobe, n_chunks,
    K: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr,
):
    """One program: one query x one probed inverted list x one chunk of BN entries of that list.
    Vectors are stored list by list (``offsets[l]:offsets[l+1]``), ``ids`` maps a row back to the
    index's own id. Writes (Q, nprobe, n_chunks, K) candidates; chunks past a list's end write inf/-1."""
    pid_q = tl.program_id(0)
    pid_p = tl.program_id(1)
    pid_c = tl.program_id(2)
    lst = tl.load(probes_ptr + pid_q * nprobe + pid_p)
    start = tl.load(offsets_ptr + lst)
    end = tl.load(offsets_ptr + lst + 1)
    rows = start + pid_c * BN + tl.arange(0, BN)
    mrow = rows < end
    acc = tl.zeros((BN,), dtype=tl.float32)
    for d0 in range(0, D, BD):
        rd = d0 + tl.arange(0, BD)
        md = rd < D
        qv = tl.load(q_ptr + pid_q * D + rd, mask=md, other=0.0)
        vt = tl.load(v_ptr + rows[:, None].to(tl.int64) * D + rd[None, :], mask=mrow[:, None] & md[None, :], other=0.0)
        acc += tl.sum(vt * qv[None, :], axis=1)
    qn = tl.load(qn_ptr + pid_q)
    vn = tl.load(vn_ptr + rows, mask=mrow, other=0.0)
    d2 = tl.maximum(qn - 2.0 * acc + vn, 0.0)
    d2 = tl.where(mrow, d2, float("inf"))
    cols = tl.arange(0, BN)
    base = ((pid_q * nprobe + pid_p) * n_chunks + pid_c) * K
    for j in tl.static_range(K):
        best = tl.min(d2, axis=0)
        arg = tl.argmin(d2, axis=0)
        row = start + pid_c * BN + arg
        found = best < float("inf")
        gid = tl.load(ids_ptr + row, mask=found, other=-1)
        tl.store(out_d_ptr + base + j, best)
        tl.store(out_i_ptr + base + j, tl.where(found, gid, -1).to(tl.int64))
        d2 = tl.where(cols == arg, float("inf"), d2)


@triton.jit
def blend_kernel(
    q_ptr, d2_ptr, ids_ptr, v_ptr, out_ptr, D, index_rate, min_d2,
    K: tl.constexpr, BD: tl.constexpr,
):
    """One program: one query x BD channels. RVC's weights 1/d^2 over squared distances (as
    ``(d2_min / d2)^2``, normalised; the same ratios without overflow), the weighted mean of the K
    neighbours, blended with the query by ``index_rate``. A row with no neighbour keeps the query."""
    pid_t = tl.program_id(0)
    pid_d = tl.program_id(1)
    rk = tl.arange(0, K)
    ids = tl.load(ids_ptr + pid_t * K + rk)
    d2 = tl.load(d2_ptr + pid_t * K + rk)
    valid = ids >= 0
    d2 = tl.maximum(d2, min_d2)
    d2 = tl.where(valid, d2, float("inf"))
    dmin = tl.min(d2, axis=0)
    dmin = tl.where(dmin < float("inf"), dmin, 1.0)  # no neighbour at all: avoid inf / inf
    ratio = dmin / d2
    w = tl.where(valid, ratio * ratio, 0.0)
    total = tl.sum(w, axis=0)
    w = w / tl.where(total > 0, total, 1.0)
    rd = pid_d * BD + tl.arange(0, BD)
    md = rd < D
    safe = tl.where(valid, ids, 0)
    vt = tl.load(v_ptr + safe[:, None] * D + rd[None, :], mask=valid[:, None] & md[None, :], other=0.0)
    retrieved = tl.sum(vt * w[:, None], axis=0)
    q = tl.load(q_ptr + pid_t * D + rd, mask=md, other=0.0)
    retrieved = tl.where(total > 0, retrieved, q)
    out = index_rate * retrieved + (1.0 - index_rate) * q
    tl.store(out_ptr + pid_t * D + rd, out, mask=md)
