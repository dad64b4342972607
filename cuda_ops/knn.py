"""Nearest-neighbour retrieval against a voice's index vectors, on the device the voice runs on.

RVC replaces each content frame by the weighted mean of its k = 8 nearest stored frames, weights
``1 / d^2`` over faiss' *squared* L2 distances (so ~1/|x - y|^4), normalised, then blends
``index_rate * retrieved + (1 - index_rate) * feats``. ``engine/voices/rvc/index.py`` does that with
faiss-cpu; this module does the same search on torch tensors:

* ``knn_flat``: exact top-k over all N vectors (what a ``Flat`` index returns);
* ``knn_ivf``: the IVF search faiss' ``IndexIVFFlat`` does (nprobe nearest centroids, exact distances
  inside those inverted lists), from the index's own centroids and lists, so results match faiss;
* ``blend``: RVC's weighting and the index_rate blend, fused.

Each has a pure-torch reference (``*_reference``) and a Triton kernel; ``cuda_ops.dispatch`` picks.
Shapes: queries (Q, D) float32, vectors (N, D) float32 -> distances (Q, k) float32 ascending
(squared L2), ids (Q, k) int64 (-1 where fewer than k exist).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cuda_ops.dispatch import Impl, use_kernel

DEFAULT_K = 8
MIN_SQUARED_DISTANCE = 1e-12  # as engine/voices/rvc/index.py: an exact match dominates, never NaN
_REF_CHUNK = 65536  # stored vectors per step of the reference (bounds its (Q, chunk) scratch)
_REF_QUERIES = 1024  # queries per step of the reference
_CANDIDATES_PER_CALL = 1 << 24  # per-tile candidates one kernel launch may write


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _check(queries: torch.Tensor, vectors: torch.Tensor) -> None:
    if queries.dim() != 2 or vectors.dim() != 2 or queries.shape[1] != vectors.shape[1]:
        raise ValueError(f"queries (Q, D) and vectors (N, D) must share D, got {tuple(queries.shape)} and {tuple(vectors.shape)}")


def squared_norms(vectors: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N,) float32 |v|^2 (computed once per index and kept)."""
    v = vectors.float()
    return (v * v).sum(1)


# --- exact search --------------------------------------------------------------------------------


def knn_flat_reference(queries: torch.Tensor, vectors: torch.Tensor, k: int = DEFAULT_K,
                       vector_norms: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest by squared L2. queries (Q, D), vectors (N, D) -> (d2 (Q, k), ids (Q, k))."""
    _check(queries, vectors)
    if queries.shape[0] > _REF_QUERIES:  # bounded scratch: (queries per step, chunk) floats
        parts = [knn_flat_reference(queries[s : s + _REF_QUERIES], vectors, k, vector_norms)
                 for s in range(0, queries.shape[0], _REF_QUERIES)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    q = queries.float()
    vn = squared_norms(vectors) if vector_norms is None else vector_norms
    qn = (q * q).sum(1, keepdim=True)
    n = vectors.shape[0]
    best_d = torch.full((q.shape[0], 0), float("inf"), device=q.device)
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.int64, device=q.device)
    for s in range(0, n, _REF_CHUNK):
        v = vectors[s : s + _REF_CHUNK].float()
        d2 = (qn - 2.0 * (q @ v.T) + vn[s : s + _REF_CHUNK].unsqueeze(0)).clamp_min(0.0)
        kk = min(k, d2.shape[1])
        d, i = torch.topk(d2, kk, dim=1, largest=False)
        best_d = torch.cat([best_d, d], 1)
        best_i = torch.cat([best_i, i + s], 1)
        if best_d.shape[1] > k:
            best_d, sel = torch.topk(best_d, k, dim=1, largest=False)
            best_i = torch.gather(best_i, 1, sel)
    best_d, order = torch.sort(best_d, dim=1)
    best_i = torch.gather(best_i, 1, order)
    return _pad_k(best_d, best_i, k)


def _pad_k(d: torch.Tensor, i: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    if d.shape[1] >= k:
        return d[:, :k].contiguous(), i[:, :k].contiguous()
    pad = k - d.shape[1]
    d = torch.cat([d, torch.full((d.shape[0], pad), float("inf"), device=d.device)], 1)
    i = torch.cat([i, torch.full((i.shape[0], pad), -1, dtype=torch.int64, device=i.device)], 1)
    return d, i


def _merge(cand_d: torch.Tensor, cand_i: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, M) candidates (inf/-1 where none) -> the k smallest, ascending."""
    kk = min(k, cand_d.shape[1])
    d, sel = torch.topk(cand_d, kk, dim=1, largest=False, sorted=True)
    i = torch.gather(cand_i, 1, sel)
    i = torch.where(torch.isinf(d), torch.full_like(i, -1), i)
    return _pad_k(d, i, k)


def knn_flat_kernel(queries: torch.Tensor, vectors: torch.Tensor, k: int = DEFAULT_K,
                    vector_norms: torch.Tensor | None = None, *, block_n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton version of ``knn_flat_reference``: per (query tile, vector tile) top-k, then a
    torch top-k over the n_tiles * k candidates of each query."""
    import triton

    from cuda_ops import _knn_triton as kt

    _check(queries, vectors)
    q = queries.float().contiguous()
    v = vectors.float().contiguous()
    vn = (squared_norms(v) if vector_norms is None else vector_norms).float().contiguous()
    qn = (q * q).sum(1).contiguous()
    nq, d = q.shape
    n = v.shape[0]
    block_n = max(block_n, _pow2(k))  # a tile must be able to hold all k of a query's neighbours
    kk = min(k, n, block_n)
    n_tiles = triton.cdiv(n, block_n)
    bq = 16
    bd = min(64, max(16, _pow2(d)))
    # queries in groups, so the (group, n_tiles, k) candidates stay under ~16 M entries (a long song
    # against a big index would otherwise need gigabytes of scratch)
    group = max(bq, (_CANDIDATES_PER_CALL // (n_tiles * kk)) // bq * bq)
    ds, ids = [], []
    for s in range(0, nq, group):
        qs, qns = q[s : s + group], qn[s : s + group]
        m = qs.shape[0]
        out_d = torch.empty((m, n_tiles, kk), device=q.device, dtype=torch.float32)
        out_i = torch.empty((m, n_tiles, kk), device=q.device, dtype=torch.int64)
        grid = (n_tiles, triton.cdiv(m, bq))
        kt.flat_topk_tiles_kernel[grid](qs, qns, v, vn, out_d, out_i, m, n, d, n_tiles, K=kk, BQ=bq, BN=block_n, BD=bd)
        d_s, i_s = _merge(out_d.view(m, -1), out_i.view(m, -1), k)
        ds.append(d_s)
        ids.append(i_s)
    if not ds:
        return _pad_k(torch.empty((0, 0), device=q.device), torch.empty((0, 0), dtype=torch.int64, device=q.device), k)
    return torch.cat(ds), torch.cat(ids)


def knn_flat(queries: torch.Tensor, vectors: torch.Tensor, k: int = DEFAULT_K,
             vector_norms: torch.Tensor | None = None, impl: Impl = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k: the kernel on CUDA, the reference elsewhere (see cuda_ops.dispatch)."""
    if use_kernel(queries, impl, "kNN search"):
        return knn_flat_kernel(queries, vectors, k, vector_norms)
    return knn_flat_reference(queries, vectors, k, vector_norms)


# --- IVF search ----------------------------------------------------------------------------------


@dataclass
class IvfLists:
    """Inverted lists laid out for the device: list l holds rows ``offsets[l]:offsets[l+1]`` of
    ``vectors`` (N, D), whose index ids are ``ids`` (N,); ``centroids`` (nlist, D)."""

    centroids: torch.Tensor
    offsets: torch.Tensor  # (nlist + 1,) int64
    vectors: torch.Tensor
    norms: torch.Tensor  # (N,)
    ids: torch.Tensor  # (N,) int64
    centroid_norms: torch.Tensor
    max_list: int

    @classmethod
    def build(cls, centroids: torch.Tensor, list_of: torch.Tensor, vectors: torch.Tensor) -> "IvfLists":
        """centroids (nlist, D); list_of (N,) the list each stored vector is in; vectors (N, D)."""
        nlist = centroids.shape[0]
        order = torch.argsort(list_of, stable=True)
        counts = torch.bincount(list_of, minlength=nlist)
        offsets = torch.zeros(nlist + 1, dtype=torch.int64, device=vectors.device)
        offsets[1:] = torch.cumsum(counts, 0)
        v = vectors[order].float().contiguous()
        c = centroids.float().contiguous()
        return cls(c, offsets, v, squared_norms(v), order.to(torch.int64).contiguous(), squared_norms(c),
                   int(counts.max().item()) if nlist else 0)

    def to(self, device: torch.device) -> "IvfLists":
        return IvfLists(*(t.to(device) for t in (self.centroids, self.offsets, self.vectors, self.norms, self.ids,
                                                 self.centroid_norms)), self.max_list)


def knn_ivf_reference(queries: torch.Tensor, lists: IvfLists, k: int = DEFAULT_K, nprobe: int = 1,
                      probes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """faiss IndexIVFFlat's search: the ``nprobe`` lists whose centroids are nearest, exact distances
    inside them. queries (Q, D) -> (d2 (Q, k), ids (Q, k)). ``probes`` (Q, nprobe) overrides the
    coarse step (to compare kernels on equal lists)."""
    q = queries.float()
    if probes is None:
        _, probes = knn_flat_reference(q, lists.centroids, nprobe, lists.centroid_norms)
    nq = q.shape[0]
    span = max(lists.max_list, 1)
    start = lists.offsets[probes.clamp_min(0)]  # (Q, P)
    end = lists.offsets[probes.clamp_min(0) + 1]
    rows = start.unsqueeze(-1) + torch.arange(span, device=q.device)  # (Q, P, span)
    ok = (rows < end.unsqueeze(-1)) & (probes >= 0).unsqueeze(-1)
    rows = torch.where(ok, rows, torch.zeros_like(rows)).reshape(nq, -1)
    ok = ok.reshape(nq, -1)
    cand = lists.vectors[rows]  # (Q, M, D)
    dots = torch.einsum("qmd,qd->qm", cand, q)
    d2 = ((q * q).sum(1, keepdim=True) - 2.0 * dots + lists.norms[rows]).clamp_min(0.0)
    d2 = torch.where(ok, d2, torch.full_like(d2, float("inf")))
    return _merge(d2, torch.where(ok, lists.ids[rows], torch.full_like(rows, -1)), k)


def knn_ivf_kernel(queries: torch.Tensor, lists: IvfLists, k: int = DEFAULT_K, nprobe: int = 1,
                   probes: torch.Tensor | None = None, *, block_n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton version of ``knn_ivf_reference`` (coarse step through ``knn_flat_kernel``)."""
    import triton

    from cuda_ops import _knn_triton as kt

    q = queries.float().contiguous()
    if probes is None:
        _, probes = knn_flat_kernel(q, lists.centroids, nprobe, lists.centroid_norms)
    probes = probes.clamp_min(0).to(torch.int64).contiguous()
    nq, d = q.shape
    p = probes.shape[1]
    block_n = max(block_n, _pow2(k))
    n_chunks = max(1, triton.cdiv(lists.max_list, block_n))
    kk = min(k, block_n)
    out_d = torch.empty((nq, p, n_chunks, kk), device=q.device, dtype=torch.float32)
    out_i = torch.empty((nq, p, n_chunks, kk), device=q.device, dtype=torch.int64)
    qn = (q * q).sum(1).contiguous()
    bd = min(64, max(16, _pow2(d)))
    kt.ivf_topk_chunks_kernel[(nq, p, n_chunks)](
        q, qn, probes, lists.offsets, lists.vectors, lists.norms, lists.ids, out_d, out_i, d, p, n_chunks,
        K=kk, BN=block_n, BD=bd,
    )
    return _merge(out_d.view(nq, -1), out_i.view(nq, -1), k)


def knn_ivf(queries: torch.Tensor, lists: IvfLists, k: int = DEFAULT_K, nprobe: int = 1,
            impl: Impl = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    if use_kernel(queries, impl, "IVF search"):
        return knn_ivf_kernel(queries, lists, k, nprobe)
    return knn_ivf_reference(queries, lists, k, nprobe)


# --- RVC's weighting and blend --------------------------------------------------------------------


def blend_reference(queries: torch.Tensor, d2: torch.Tensor, ids: torch.Tensor, vectors: torch.Tensor,
                    index_rate: float) -> torch.Tensor:
    """queries (Q, D), d2/ids (Q, k), vectors (N, D) -> (Q, D) float32:
    ``index_rate * sum_k w_k v[ids_k] + (1 - index_rate) * q`` with w = (1/d2)^2 normalised."""
    q = queries.float()
    valid = ids >= 0
    d = torch.where(valid, d2.clamp_min(MIN_SQUARED_DISTANCE), torch.full_like(d2, float("inf")))
    d_min = d.min(1, keepdim=True).values
    d_min = torch.where(torch.isinf(d_min), torch.ones_like(d_min), d_min)  # no neighbour: no inf / inf
    ratio = d_min / d  # (d_min / d)^2 normalised == (1/d)^2 normalised
    w = torch.where(valid, ratio * ratio, torch.zeros_like(ratio))
    total = w.sum(1, keepdim=True)
    w = w / torch.where(total > 0, total, torch.ones_like(total))
    retrieved = torch.einsum("qk,qkd->qd", w, vectors[ids.clamp_min(0)].float())
    retrieved = torch.where(total > 0, retrieved, q)
    return index_rate * retrieved + (1.0 - index_rate) * q


def blend_kernel(queries: torch.Tensor, d2: torch.Tensor, ids: torch.Tensor, vectors: torch.Tensor,
                 index_rate: float) -> torch.Tensor:
    import triton

    from cuda_ops import _knn_triton as kt

    q = queries.float().contiguous()
    k = d2.shape[1]
    k2 = _pow2(k)
    if k2 != k:  # tl.arange needs a power of two: pad with "no neighbour"
        d2, ids = _pad_k(d2, ids, k2)
    nq, d = q.shape
    out = torch.empty_like(q)
    bd = min(256, _pow2(d))
    kt.blend_kernel[(nq, triton.cdiv(d, bd))](
        q, d2.float().contiguous(), ids.to(torch.int64).contiguous(), vectors.float().contiguous(), out, d,
        float(index_rate), MIN_SQUARED_DISTANCE, K=k2, BD=bd,
    )
    return out


def blend(queries: torch.Tensor, d2: torch.Tensor, ids: torch.Tensor, vectors: torch.Tensor,
          index_rate: float, impl: Impl = "auto") -> torch.Tensor:
    if use_kernel(queries, impl, "index blend"):
        return blend_kernel(queries, d2, ids, vectors, index_rate)
    return blend_reference(queries, d2, ids, vectors, index_rate)


# --- an index on a device --------------------------------------------------------------------------


class DeviceIndex:
    """A voice's retrieval index held on one torch device; searches as the faiss index it came from.

    ``from_faiss(index, vectors, device)``: an IVF index (RVC's ``IVF<n>,Flat``) keeps its centroids,
    its inverted lists and its ``nprobe``, so results equal faiss'; any other index is searched
    exactly (what ``IndexFlatL2`` returns).
    """

    def __init__(self, vectors: torch.Tensor, lists: IvfLists | None = None, nprobe: int = 1):
        self.vectors = vectors.float().contiguous()  # (N, D), by index id
        self.norms = squared_norms(self.vectors)
        self.lists = lists
        self.nprobe = int(nprobe)

    @property
    def device(self) -> torch.device:
        return self.vectors.device

    @property
    def nbytes(self) -> int:
        n = self.vectors.numel() * 4 + self.norms.numel() * 4
        if self.lists is not None:
            n += self.lists.vectors.numel() * 4 + self.lists.ids.numel() * 8 + self.lists.centroids.numel() * 4
        return n

    @classmethod
    def from_faiss(cls, index, vectors, device: torch.device | str) -> "DeviceIndex":
        """index: a faiss index; vectors: (ntotal, D) its stored vectors by id (numpy or torch)."""
        import numpy as np

        device = torch.device(device)
        v = torch.as_tensor(np.ascontiguousarray(vectors, dtype=np.float32)).to(device)
        lists = None
        nprobe = 1
        try:
            import faiss

            ivf = faiss.try_extract_index_ivf(index)
        except Exception:
            ivf = None
        if ivf is not None and ivf.nlist > 0:
            nprobe = int(ivf.nprobe)
            centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
            list_of = np.full(index.ntotal, -1, dtype=np.int64)
            inv = ivf.invlists
            for lst in range(ivf.nlist):
                size = inv.list_size(lst)
                if size:
                    ids = faiss.rev_swig_ptr(inv.get_ids(lst), size).copy()
                    if ids.min() < 0 or ids.max() >= index.ntotal:
                        list_of[:] = -1  # ids of its own (add_with_ids): search exactly instead
                        break
                    list_of[ids] = lst
            if (list_of >= 0).all():
                lists = IvfLists.build(torch.as_tensor(centroids).to(device), torch.as_tensor(list_of).to(device), v)
        return cls(v, lists, nprobe)

    def search(self, queries: torch.Tensor, k: int = DEFAULT_K, impl: Impl = "auto") -> tuple[torch.Tensor, torch.Tensor]:
        """queries (Q, D) on this index's device -> (d2 (Q, k), ids (Q, k))."""
        q = queries.to(self.device, torch.float32)
        if self.lists is not None:
            return knn_ivf(q, self.lists, k, self.nprobe, impl)
        return knn_flat(q, self.vectors, k, self.norms, impl)

    def blend(self, queries: torch.Tensor, index_rate: float, k: int = DEFAULT_K, impl: Impl = "auto") -> torch.Tensor:
        """queries (Q, D) -> (Q, D) float32: RVC's retrieval blend, all on this device."""
        q = queries.to(self.device, torch.float32)
        if q.shape[0] == 0 or index_rate == 0:
            return q.clone()
        d2, ids = self.search(q, k, impl)
        return blend(q, d2, ids, self.vectors, index_rate, impl)
