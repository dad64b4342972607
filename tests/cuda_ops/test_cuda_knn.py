"""kNN retrieval on the device: the Triton kernels against their torch references, and the
references against faiss and the voice's faiss-cpu path (engine/voices/rvc/index.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cuda_ops import dispatch, knn

faiss = pytest.importorskip("faiss", reason="faiss-cpu is the reference these tests compare against (neural extra)")


def _clustered(n: int, d: int, seed: int, clusters: int = 6) -> np.ndarray:
    """Vectors in a few clusters (content features are clustered too), float32."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (clusters, d))
    return (centers[rng.integers(0, clusters, n)] + rng.normal(0, 1, (n, d))).astype(np.float32)


def _assert_same_neighbours(d_a, i_a, d_b, i_b, rtol=1e-5):
    """Distances agree; ids agree wherever the distance is not (near-)tied with a neighbour's."""
    d_a, d_b = np.asarray(d_a, np.float64), np.asarray(d_b, np.float64)
    i_a, i_b = np.asarray(i_a), np.asarray(i_b)
    np.testing.assert_allclose(d_a, d_b, rtol=rtol, atol=1e-3)
    gap = np.diff(d_b, axis=1)
    tied = np.zeros_like(d_b, dtype=bool)
    tied[:, 1:] |= gap < rtol * 10 * d_b[:, 1:] + 1e-3
    tied[:, :-1] |= gap < rtol * 10 * d_b[:, :-1] + 1e-3
    tied[:, -1] = True  # the k-th neighbour can tie with the (k+1)-th that is not shown
    assert (i_a[~tied] == i_b[~tied]).all()
    assert (~tied).mean() > 0.5  # the check above compared most of the ids


def test_flat_reference_equals_faiss_flat():
    v = _clustered(500, 24, 0)
    q = _clustered(30, 24, 1)
    flat = faiss.IndexFlatL2(24)
    flat.add(v)
    fd, fi = flat.search(q, 8)
    d, i = knn.knn_flat_reference(torch.from_numpy(q), torch.from_numpy(v), 8)
    _assert_same_neighbours(d, i, fd, fi)


@pytest.mark.parametrize("n,d", [(203, 40), (64, 16), (5, 8)])
def test_flat_kernel_matches_reference(kernel_device, n, d):
    """Odd sizes: a partial last tile, a channel count that is not a power of two, k > N."""
    v = torch.from_numpy(_clustered(n, d, 2)).to(kernel_device)
    q = torch.from_numpy(_clustered(19, d, 3)).to(kernel_device)
    d_ref, i_ref = knn.knn_flat_reference(q, v, 8)
    d_k, i_k = knn.knn_flat(q, v, 8, impl="kernel")
    assert d_k.shape == (19, 8) and i_k.dtype == torch.int64
    if n < 8:
        assert (i_k[:, n:] == -1).all() and torch.isinf(d_k[:, n:]).all()
        d_ref, i_ref, d_k, i_k = d_ref[:, :n], i_ref[:, :n], d_k[:, :n], i_k[:, :n]
    _assert_same_neighbours(d_k.cpu(), i_k.cpu(), d_ref.cpu(), i_ref.cpu())


@pytest.fixture(scope="module")
def ivf_index():
    v = _clustered(1200, 32, 4, clusters=10)
    index = faiss.index_factory(32, "IVF16,Flat")  # RVC's recipe: IVF<n>,Flat
    index.train(v)
    index.add(v)
    index.nprobe = 2
    return index, v


def test_ivf_reference_and_kernel_search_as_faiss_does(ivf_index, kernel_device):
    index, v = ivf_index
    q = _clustered(23, 32, 5, clusters=10)
    fd, fi = index.search(q, 8)
    dev_index = knn.DeviceIndex.from_faiss(index, v, kernel_device)
    assert dev_index.lists is not None and dev_index.nprobe == 2
    qt = torch.from_numpy(q).to(kernel_device)
    d_ref, i_ref = dev_index.search(qt, impl="reference")
    _assert_same_neighbours(d_ref.cpu(), i_ref.cpu(), fd, fi)
    d_k, i_k = dev_index.search(qt, impl="kernel")
    _assert_same_neighbours(d_k.cpu(), i_k.cpu(), fd, fi)


def test_ivf_with_one_probe_is_not_exact_and_we_follow_faiss(ivf_index):
    """RVC saves nprobe = 1: the answer is IVF's, not the exact one; the device index must agree
    with faiss, not with an exact search."""
    index, v = ivf_index
    index.nprobe = 1
    try:
        q = _clustered(40, 32, 6, clusters=10) * 0.3  # between clusters, where one probe misses
        fd, fi = index.search(q, 8)
        dev_index = knn.DeviceIndex.from_faiss(index, v, "cpu")
        d, i = dev_index.search(torch.from_numpy(q), impl="reference")
        _assert_same_neighbours(d, i, fd, fi)
        d_exact, _ = knn.knn_flat_reference(torch.from_numpy(q), torch.from_numpy(v), 8)
        assert (d_exact.numpy() < fd - 1e-3).any()  # the exact search finds closer vectors somewhere
    finally:
        index.nprobe = 2


def test_blend_kernel_matches_reference_and_the_faiss_cpu_path(kernel_device):
    from engine.voices.rvc.index import FeatureIndex

    v = _clustered(300, 48, 7)
    q = _clustered(17, 48, 8)
    q[0] = v[42]  # an exact match: 1/d^2 would be infinite without the floor
    flat = faiss.IndexFlatL2(48)
    flat.add(v)
    expected = FeatureIndex(flat, v).blend(q, 0.75)
    dev_index = knn.DeviceIndex.from_faiss(flat, v, kernel_device)
    qt = torch.from_numpy(q).to(kernel_device)
    ref = dev_index.blend(qt, 0.75, impl="reference").cpu().numpy()
    np.testing.assert_allclose(ref, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ref[0], 0.75 * v[42] + 0.25 * q[0], atol=1e-4)
    d2, ids = dev_index.search(qt, impl="reference")
    ids[3, 2:] = -1  # fewer than k found (IVF can do that): those weigh nothing
    ids[4, :] = -1  # none found: the frame is kept
    got = knn.blend(qt, d2, ids, dev_index.vectors, 0.75, impl="kernel")
    want = knn.blend_reference(qt, d2, ids, dev_index.vectors, 0.75)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[4], qt[4])


def test_dispatch_picks_reference_for_cpu_tensors_unless_forced(monkeypatch):
    x = torch.zeros(2, 4)
    assert dispatch.use_kernel(x, "auto") is False  # CPU tensors: the reference
    assert dispatch.use_kernel(x, "reference") is False
    monkeypatch.setenv(dispatch.ENV_IMPL, "reference")
    assert dispatch.use_kernel(x, "auto") is False
    with pytest.raises(ValueError):
        dispatch.use_kernel(x, "fast")


def test_forcing_the_kernel_where_it_cannot_run_says_why(monkeypatch):
    monkeypatch.setattr(dispatch, "kernel_mode", lambda: None)
    monkeypatch.setattr(dispatch, "triton_version", lambda: None)
    with pytest.raises(RuntimeError, match="Triton kernel for kNN search cannot run: Triton is not installed"):
        knn.knn_flat(torch.zeros(2, 4), torch.zeros(3, 4), impl="kernel")
    monkeypatch.setattr(dispatch, "kernel_mode", lambda: "compiled")
    monkeypatch.setattr(dispatch, "triton_version", lambda: "3.6")
    with pytest.raises(RuntimeError, match="not on cpu"):
        dispatch.use_kernel(torch.zeros(1), "kernel", "kNN search")


def _written_index(tmp_path, ivf_index):
    from engine.voices.rvc.index import load_index

    index, _v = ivf_index
    path = tmp_path / "added_IVF16_Flat_nprobe_2_x_v1.index"
    faiss.write_index(index, str(path))
    return load_index(path)


def test_a_loaded_voice_index_blends_the_same_on_a_device(tmp_path, ivf_index, kernel_device):
    """FeatureIndex.on_device: the copy a GPU voice searches gives the faiss-cpu blend."""
    feature_index = _written_index(tmp_path, ivf_index)
    feats = _clustered(30, 32, 11, clusters=10)
    want = feature_index.blend(feats, 0.6)
    dev_copy = feature_index.on_device(kernel_device)
    assert feature_index.on_device(kernel_device) is dev_copy  # built once
    assert feature_index.nbytes >= feature_index.vectors.nbytes + dev_copy.vectors.numel() * 4
    got = dev_copy.blend(torch.from_numpy(feats).to(kernel_device), 0.6, impl="kernel")
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA branch of FeatureIndex.blend needs a CUDA GPU (none here)")
def test_cuda_features_are_blended_on_the_gpu(tmp_path, ivf_index):
    feature_index = _written_index(tmp_path, ivf_index)
    feats = torch.from_numpy(_clustered(30, 32, 12, clusters=10)).view(1, 30, 32)
    want = feature_index.blend(feats.half().float(), 0.6)  # the same (fp16-rounded) queries on faiss-cpu
    got = feature_index.blend(feats.cuda().half(), 0.6)
    assert got.device.type == "cuda" and got.dtype == torch.float16
    torch.testing.assert_close(got.float().cpu(), want, rtol=2e-3, atol=2e-2)


def test_more_neighbours_than_a_tile_holds(kernel_device):
    v = torch.from_numpy(_clustered(300, 16, 13)).to(kernel_device)
    q = torch.from_numpy(_clustered(5, 16, 14)).to(kernel_device)
    d_ref, i_ref = knn.knn_flat_reference(q, v, 100)
    d_k, i_k = knn.knn_flat(q, v, 100, impl="kernel")
    _assert_same_neighbours(d_k.cpu(), i_k.cpu(), d_ref.cpu(), i_ref.cpu())


def test_auto_picks_the_kernel_for_cuda_tensors_when_triton_compiles(monkeypatch):
    """The CUDA branch of the dispatcher, exercised without a GPU (a stand-in with a CUDA device)."""
    from types import SimpleNamespace

    on_gpu = SimpleNamespace(device=torch.device("cuda", 0))
    monkeypatch.setattr(dispatch, "kernel_mode", lambda: "compiled")
    assert dispatch.use_kernel(on_gpu) is True and dispatch.kernel_can_take(on_gpu)
    assert dispatch.use_kernel(torch.zeros(1)) is False  # CPU tensors still take the reference
    assert dispatch.use_kernel(on_gpu, "reference") is False
    monkeypatch.setenv(dispatch.ENV_IMPL, "reference")  # the switch that turns every kernel off
    assert dispatch.use_kernel(on_gpu) is False
    monkeypatch.setattr(dispatch, "kernel_mode", lambda: "interpreted")
    monkeypatch.delenv(dispatch.ENV_IMPL)
    assert dispatch.use_kernel(on_gpu) is False  # interpreted kernels never run by default


def test_many_queries_are_searched_in_groups(kernel_device, monkeypatch):
    """A long song's frames against an index: the search runs in groups of queries with bounded
    scratch, and gives what one call would."""
    v = torch.from_numpy(_clustered(200, 16, 15)).to(kernel_device)
    q = torch.from_numpy(_clustered(70, 16, 16)).to(kernel_device)
    d_one, i_one = knn.knn_flat_reference(q, v, 8)
    monkeypatch.setattr(knn, "_CANDIDATES_PER_CALL", 16 * 4 * 8)  # 16 queries x 4 tiles x k per launch
    monkeypatch.setattr(knn, "_REF_QUERIES", 16)
    d_ref, i_ref = knn.knn_flat_reference(q, v, 8)
    assert torch.equal(d_ref, d_one) and torch.equal(i_ref, i_one)
    d_k, i_k = knn.knn_flat(q, v, 8, impl="kernel")
    _assert_same_neighbours(d_k.cpu(), i_k.cpu(), d_one.cpu(), i_one.cpu())
