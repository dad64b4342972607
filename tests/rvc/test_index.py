"""Retrieval index: real faiss IVF-Flat files, RVC's weighting and blending, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import ModelFormatError, VoiceError
from engine.voices.rvc.index import added_name_for, load_index, protect_unvoiced
from tests.rvc.helpers_frontend import build_ivf_flat_index

NLIST = 4


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Vectors around a few centres, like content features of one speaker's phones."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, dim)) * 2
    return (centres[rng.integers(0, 6, n)] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)


@pytest.fixture
def index_file(tmp_path):
    import faiss

    vectors = clustered(600, 256, seed=0)
    index = build_ivf_flat_index(vectors, nlist=NLIST)
    index.nprobe = NLIST  # probe every list, so the search is exact and comparable to brute force
    path = tmp_path / "added_IVF4_Flat_nprobe_1_test_v1.index"
    faiss.write_index(index, str(path))
    return path, vectors


def brute_force_retrieve(queries: np.ndarray, vectors: np.ndarray, k: int = 8) -> np.ndarray:
    d2 = ((queries[:, None, :].astype(np.float64) - vectors[None, :, :]) ** 2).sum(-1)  # squared L2
    nn = np.argsort(d2, axis=1)[:, :k]
    w = (1.0 / np.take_along_axis(d2, nn, axis=1)) ** 2  # RVC: np.square(1 / score), score = squared L2
    w /= w.sum(axis=1, keepdims=True)
    return (w[:, :, None] * vectors[nn]).sum(axis=1)


def test_load_reconstructs_the_stored_vectors(index_file):
    path, vectors = index_file
    idx = load_index(path, feature_dim=256)
    assert idx.dim == 256 and idx.vectors.shape == (600, 256)
    np.testing.assert_array_equal(idx.vectors, vectors)


def test_retrieval_matches_brute_force(index_file):
    path, vectors = index_file
    idx = load_index(path)
    queries = clustered(50, 256, seed=1)
    np.testing.assert_allclose(idx.retrieve(queries), brute_force_retrieve(queries, vectors), rtol=1e-4, atol=1e-4)


def test_blend_by_index_rate(index_file):
    path, vectors = index_file
    idx = load_index(path)
    feats = torch.from_numpy(clustered(30, 256, seed=2)).view(1, 30, 256)
    retrieved = brute_force_retrieve(feats[0].numpy(), vectors)
    out = idx.blend(feats, 0.75)
    assert isinstance(out, torch.Tensor) and out.shape == feats.shape and out.dtype == feats.dtype
    np.testing.assert_allclose(out[0].numpy(), 0.75 * retrieved + 0.25 * feats[0].numpy(), rtol=1e-4, atol=1e-4)
    assert idx.blend(feats, 0.0) is feats
    full = idx.blend(feats[0].numpy(), 1.0)
    np.testing.assert_allclose(full, retrieved, rtol=1e-4, atol=1e-4)
    # Blending pulls frames towards the training set.
    dist_before = np.min(((feats[0].numpy()[:, None] - vectors[None]) ** 2).sum(-1), axis=1)
    dist_after = np.min(((out[0].numpy()[:, None] - vectors[None]) ** 2).sum(-1), axis=1)
    assert np.median(dist_after) < np.median(dist_before)


def test_exact_match_stays_finite(index_file):
    path, vectors = index_file
    idx = load_index(path)
    out = idx.retrieve(vectors[:5])  # distance 0 to themselves: RVC would divide by zero
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, vectors[:5], atol=1e-4)


def test_rvc_style_nprobe_one_index_still_blends(tmp_path):
    import faiss

    vectors = clustered(400, 768, seed=3)
    index = build_ivf_flat_index(vectors, nlist=NLIST)
    index.nprobe = 1  # as RVC saves it
    path = tmp_path / "added_IVF4_Flat_nprobe_1_v2voice_v2.index"
    faiss.write_index(index, str(path))
    idx = load_index(path, feature_dim=768)
    out = idx.retrieve(clustered(20, 768, seed=4))
    assert out.shape == (20, 768) and np.all(np.isfinite(out))


def test_trained_but_not_added_index_names_the_added_file(tmp_path):
    import faiss

    vectors = clustered(300, 256, seed=5)
    trained = build_ivf_flat_index(vectors, nlist=NLIST, add=False)
    assert trained.ntotal == 0
    path = tmp_path / "trained_IVF4_Flat_nprobe_1_alice_v1.index"
    faiss.write_index(trained, str(path))
    faiss.write_index(build_ivf_flat_index(vectors, nlist=NLIST), str(tmp_path / "added_IVF4_Flat_nprobe_1_alice_v1.index"))
    with pytest.raises(VoiceError) as info:
        load_index(path)
    msg = str(info.value)
    assert "added_IVF4_Flat_nprobe_1_alice_v1.index" in msg and "same folder" in msg
    assert "\n" not in msg and msg.endswith(".")
    assert added_name_for("trained_IVF4_Flat_nprobe_1_alice_v1.index") == "added_IVF4_Flat_nprobe_1_alice_v1.index"


def test_dimension_mismatch_is_one_sentence(index_file):
    path, _ = index_file
    with pytest.raises(VoiceError) as info:
        load_index(path, feature_dim=768)
    msg = str(info.value)
    assert "256" in msg and "768" in msg and "v1" in msg and "v2" in msg and msg.endswith(".")


def test_not_an_index_file(tmp_path):
    path = tmp_path / "added_broken.index"
    path.write_bytes(b"not a faiss index at all" * 10)
    with pytest.raises(ModelFormatError) as info:
        load_index(path)
    assert "added_broken.index" in str(info.value)
    with pytest.raises(VoiceError):
        load_index(tmp_path / "missing.index")


def test_protect_keeps_unvoiced_frames_near_the_original():
    torch.manual_seed(0)
    feats, original = torch.randn(1, 6, 4), torch.randn(1, 6, 4)
    f0 = np.array([0.0, 120.0, 0.0, 0.5, 200.0, 1.0])  # RVC: F0 < 1 counts as unvoiced
    out = protect_unvoiced(feats, original, f0, protect=0.33)
    unvoiced = np.array([True, False, True, True, False, False])
    expected = feats.clone()
    expected[0, unvoiced] = 0.33 * feats[0, unvoiced] + 0.67 * original[0, unvoiced]
    torch.testing.assert_close(out, expected)
    assert protect_unvoiced(feats, original, f0, protect=0.5) is feats  # 0.5 switches it off, as in RVC
    torch.testing.assert_close(protect_unvoiced(feats, original, torch.zeros(1, 6), protect=0.0), original)
