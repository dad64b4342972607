"""RVC retrieval index (``added_*.index``, faiss IVF-Flat over the training set's content features).

RVC replaces each content frame by a weighted mean of its k = 8 nearest training frames, then
blends::

    dist, ids = index.search(feats, 8)          # faiss L2 indexes return SQUARED distances
    w = (1 / dist) ** 2;  w /= w.sum(axis=1)     # so w ~ 1 / |x - y|^4 in plain distance
    retrieved = sum_k w_k * vectors[ids_k]
    feats = index_rate * retrieved + (1 - index_rate) * feats

and, after upsampling to the pitch rate, ``protect`` keeps unvoiced frames (F0 < 1 Hz) close to the
original features: ``feats = feats * m + original * (1 - m)``, m = 1 where voiced, ``protect``
where unvoiced; RVC applies it only when protect < 0.5 (0.5 means off).

The index's own ``nprobe`` (RVC saves 1) is used, as RVC does.

When the features are a CUDA tensor (the voice runs on a GPU), ``blend`` searches a copy of the
index held on that GPU (``cuda_ops.knn.DeviceIndex``: the same IVF lists and nprobe, so the same
neighbours) instead of faiss-cpu, and the features never leave the device.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from engine.errors import ModelFormatError, VoiceError
from engine.voices.rvc.versions import VERSION_OF_DIM as _VERSION_OF_DIM

DEFAULT_K = 8
# Squared distances are floored here: an exact match would make RVC's 1/d^2 infinite (NaN after
# normalising); with the floor an exact match simply dominates the mean.
_MIN_SQUARED_DISTANCE = 1e-12


def added_name_for(trained_name: str) -> str:
    """``trained_IVF256_Flat_nprobe_1_x_v2.index`` -> ``added_IVF256_Flat_nprobe_1_x_v2.index``."""
    if trained_name.startswith("trained_"):
        return "added_" + trained_name[len("trained_"):]
    return "added_" + re.sub(r"^(total_fea|trained)_?", "", trained_name)


class FeatureIndex:
    """A loaded retrieval index: the faiss index plus its stored vectors ``(ntotal, dim)`` float32."""

    def __init__(self, index, vectors: np.ndarray, path: Path | None = None):
        self.index = index
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.path = path
        self.dim = int(index.d)
        self._device_copies: dict = {}  # torch.device -> cuda_ops.knn.DeviceIndex

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else "The index"

    def check_dim(self, feature_dim: int) -> None:
        """Raise VoiceError in one sentence if this index cannot serve a model with ``feature_dim`` features."""
        if feature_dim != self.dim:
            have = _VERSION_OF_DIM.get(self.dim)
            want = _VERSION_OF_DIM.get(feature_dim)
            raise VoiceError(
                f"{self.name} holds {self.dim}-d vectors{f' (an RVC {have} index)' if have else ''} but the voice "
                f"uses {feature_dim}-d features{f' (RVC {want})' if want else ''}; use the index that was trained with this voice."
            )

    def retrieve(self, feats: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
        """feats: (T, dim) -> (T, dim): inverse-square-distance weighted mean of the k nearest stored vectors."""
        q = np.ascontiguousarray(feats, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"feats must be (T, {self.dim}), got {q.shape}")
        if q.shape[0] == 0:
            return q.copy()
        k = min(k, self.index.ntotal)
        score, ix = self.index.search(q, k)
        valid = ix >= 0  # an IVF probe can return fewer than k neighbours
        score = np.maximum(score.astype(np.float64), _MIN_SQUARED_DISTANCE)
        weight = np.where(valid, np.square(1.0 / score), 0.0)
        total = weight.sum(axis=1, keepdims=True)
        empty = total[:, 0] == 0
        weight /= np.where(total == 0, 1.0, total)
        out = np.einsum("tk,tkc->tc", weight, self.vectors[np.where(valid, ix, 0)].astype(np.float64))
        out[empty] = q[empty]  # no neighbour found at all: keep the frame
        return out.astype(np.float32)

    def blend(self, feats: torch.Tensor | np.ndarray, index_rate: float, k: int = DEFAULT_K,
              on_device: bool = False) -> torch.Tensor | np.ndarray:
        """feats: (B, T, dim) or (T, dim); returns index_rate * retrieved + (1 - index_rate) * feats,
        the same type, dtype and device as given. index_rate 0 returns ``feats`` unchanged. CUDA
        tensors (and any tensor with ``on_device``) are searched in the index's copy on their device
        (cuda_ops.knn), others by faiss on the host."""
        if not 0.0 <= index_rate <= 1.0:
            raise ValueError(f"index_rate must be in [0, 1], got {index_rate}")
        if index_rate == 0:
            return feats
        if isinstance(feats, torch.Tensor) and (on_device or feats.device.type == "cuda"):
            flat = feats.detach().reshape(-1, feats.shape[-1])
            mixed = self.on_device(feats.device).blend(flat, index_rate, k)
            return mixed.reshape(feats.shape).to(feats.dtype)
        is_torch = isinstance(feats, torch.Tensor)
        arr = feats.detach().float().cpu().numpy() if is_torch else np.asarray(feats, dtype=np.float32)
        flat = arr.reshape(-1, arr.shape[-1])
        mixed = index_rate * self.retrieve(flat, k) + (1.0 - index_rate) * flat
        mixed = mixed.reshape(arr.shape).astype(np.float32)
        if is_torch:
            return torch.from_numpy(mixed).to(device=feats.device, dtype=feats.dtype)
        return mixed


    def on_device(self, device: torch.device):
        """This index's vectors (and IVF lists) on ``device``, built once and kept."""
        from cuda_ops.knn import DeviceIndex

        dev = torch.device(device)
        if dev not in self._device_copies:
            self._device_copies[dev] = DeviceIndex.from_faiss(self.index, self.vectors, dev)
        return self._device_copies[dev]

    @property
    def nbytes(self) -> int:
        """Bytes of the vectors (and, once on a device, of the device copies)."""
        return self.vectors.nbytes + sum(c.nbytes for c in self._device_copies.values())


def load_index(path: str | os.PathLike, feature_dim: int | None = None) -> FeatureIndex:
    """Read an RVC ``.index`` file and reconstruct its vectors.

    Raises VoiceError for a missing file, a trained-but-empty index (naming the ``added_`` file to
    use instead) or a dimension that does not match ``feature_dim``; ModelFormatError for a file
    faiss cannot read.
    """
    import faiss

    path = Path(path)
    if not path.is_file():
        raise VoiceError(f"The index file {path} does not exist; choose the voice's added_*.index file or no index.")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else "unreadable"
        raise ModelFormatError(f"{path.name} is not a faiss index ({first}); choose the voice's added_*.index file.") from None
    if index.ntotal == 0:
        added = added_name_for(path.name)
        there = " (it is in the same folder)" if (path.parent / added).is_file() else ""
        raise VoiceError(
            f"{path.name} is a trained index with no vectors added, so it cannot be searched; use {added}{there} instead."
        )
    try:
        vectors = index.reconstruct_n(0, index.ntotal)
    except RuntimeError:
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is None:
            raise ModelFormatError(f"{path.name} does not keep its vectors, so retrieval cannot use it; choose the voice's added_*.index file.") from None
        ivf.make_direct_map()
        vectors = index.reconstruct_n(0, index.ntotal)
    result = FeatureIndex(index, vectors, path)
    if feature_dim is not None:
        result.check_dim(feature_dim)
    return result


def protect_unvoiced(feats: torch.Tensor, feats_original: torch.Tensor, f0_hz: torch.Tensor | np.ndarray, protect: float) -> torch.Tensor:
    """RVC's consonant protection, at the pitch frame rate.

    feats, feats_original: (B, T, C) (after and before retrieval); f0_hz: (B, T) or (T,).
    Unvoiced frames (F0 < 1 Hz) become protect * feats + (1 - protect) * original; voiced frames keep
    ``feats``. protect >= 0.5 disables it, as in RVC.
    """
    if protect >= 0.5:
        return feats
    f0 = torch.as_tensor(np.asarray(f0_hz) if not isinstance(f0_hz, torch.Tensor) else f0_hz, device=feats.device)
    if f0.dim() == 1:
        f0 = f0.unsqueeze(0)
    t = feats.shape[1]
    if f0.shape[-1] < t:
        raise ValueError(f"f0 has {f0.shape[-1]} frames but feats has {t}")
    # Python scalars go to the kernel as arguments: no copy to a GPU
    mix = torch.where(f0[..., :t] < 1, float(protect), 1.0).unsqueeze(-1).to(feats.dtype)
    return feats * mix + feats_original * (1 - mix)
