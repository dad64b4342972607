"""ONNX voices on the device: I/O binding gives the plain run's audio, and a CUDA request that
onnxruntime cannot honour is visible, not silent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="onnx is not installed (the neural extra has it; gpu_check.sh may run without)")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the neural extra has it)")

from tiny_models import random_inputs, write_tiny_onnx  # noqa: E402

from engine.voices.rvc.onnx_model import CUDA_PROVIDER, load_onnx_synthesizer  # noqa: E402


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    return write_tiny_onnx(tmp_path_factory.mktemp("onnx") / "v2.onnx", "v2", True, 40000, contract="rvc")


def _run(model, x, noise_z, noise_nsf):
    return model.infer(x["phone"].numpy(), x["phone_lengths"].numpy(), x["pitch"].numpy(), x["nsff0"].numpy(), 1,
                       noise_z=noise_z, noise_nsf=noise_nsf)


def test_io_binding_gives_the_plain_runs_audio(onnx_file):
    path, _ = onnx_file
    model = load_onnx_synthesizer(path, pin_noise=True)
    x = random_inputs(41, 768, seed=3)
    rng = np.random.default_rng(0)
    noise_z = rng.standard_normal((1, 8, 41)).astype(np.float32)
    noise_nsf = rng.standard_normal((1, 1, 41 * 400)).astype(np.float32)
    model.use_io_binding = False
    plain = _run(model, x, noise_z, noise_nsf)
    model.use_io_binding = True  # on by default only when the session runs on CUDA
    bound = _run(model, x, noise_z, noise_nsf)
    assert bound.shape == plain.shape == (1, 1, 41 * 400) and np.abs(plain).max() > 1e-2
    np.testing.assert_array_equal(bound, plain)


def test_cuda_request_that_falls_back_says_so(onnx_file, caplog):
    import onnxruntime as ort

    path, _ = onnx_file
    model = load_onnx_synthesizer(path, providers=[CUDA_PROVIDER, "CPUExecutionProvider"])
    if CUDA_PROVIDER in model.providers:
        assert model.fallback_reason == "" and model.use_io_binding
        return
    assert model.providers == ["CPUExecutionProvider"] and not model.use_io_binding
    assert model.fallback_reason.startswith("v2.onnx: onnxruntime could not start CUDA (the session uses CPUExecutionProvider)")
    assert model.fallback_reason in caplog.text
    if CUDA_PROVIDER not in ort.get_available_providers():  # the CPU build: auto never asks for CUDA
        assert load_onnx_synthesizer(path).fallback_reason == ""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="ONNX on the GPU needs a CUDA GPU (none here)")
def test_onnx_on_cuda_matches_torch(onnx_file):
    import onnxruntime as ort

    if CUDA_PROVIDER not in ort.get_available_providers():
        pytest.skip("this onnxruntime is the CPU build (install onnxruntime-gpu in place of onnxruntime)")
    path, torch_model = onnx_file
    model = load_onnx_synthesizer(path, pin_noise=True)
    assert model.providers[0] == CUDA_PROVIDER and model.use_io_binding
    x = random_inputs(41, 768, seed=3)
    gen = torch.Generator().manual_seed(1)
    noise_z = torch.randn(1, 8, 41, generator=gen)
    noise_nsf = torch.randn(1, 1, 41 * 400, generator=gen)
    ours = torch_model.infer(x["phone"], x["phone_lengths"], x["pitch"], x["nsff0"], x["sid"],
                             noise_z=noise_z, noise_nsf=noise_nsf).numpy()
    theirs = _run(model, x, noise_z.numpy(), noise_nsf.numpy())
    assert np.abs(theirs - ours).max() < 1e-3
