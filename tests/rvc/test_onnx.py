"""ONNX: our export runs in onnxruntime and matches torch (same prior and NSF noise); both public
contracts are recognised by their input names; anything else gets one sentence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import ModelFormatError
from engine.voices.rvc.export import export_pth_to_onnx
from engine.voices.rvc.onnx_model import detect_contract, load_onnx_synthesizer
from tiny_models import random_inputs, write_tiny_onnx, write_tiny_pth

TOLERANCE = 1e-4  # float32 kernels differ between torch and onnxruntime in summation order only


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export each tiny variant once per module: {(contract, version, f0, sr): (path, torch model)}."""
    cache: dict = {}
    folder = tmp_path_factory.mktemp("onnx")

    def get(contract, version, f0, sample_rate):
        key = (contract, version, f0, sample_rate)
        if key not in cache:
            name = f"{contract}_{version}_{int(f0)}_{sample_rate}.onnx"
            cache[key] = write_tiny_onnx(folder / name, version, f0, sample_rate, contract=contract)
        return cache[key]

    return get


def _compare(exported, contract, version, f0, sample_rate):
    path, model = exported(contract, version, f0, sample_rate)
    onnx_model = load_onnx_synthesizer(path, pin_noise=True)
    assert (onnx_model.contract, onnx_model.f0, onnx_model.sample_rate) == (contract, f0, sample_rate)
    assert onnx_model.version == version
    frames = 93  # not the export's example length: the time axis is dynamic
    hop = sample_rate // 100
    x = random_inputs(frames, model.cfg.feature_dim, seed=4)
    gen = torch.Generator().manual_seed(11)
    noise_z = torch.randn(1, model.cfg.inter_channels, frames, generator=gen)
    noise_nsf = torch.randn(1, 1, frames * hop, generator=gen)
    ours = model.infer(
        x["phone"], x["phone_lengths"], x["pitch"] if f0 else None, x["nsff0"] if f0 else None, x["sid"],
        noise_z=noise_z, noise_nsf=noise_nsf,
    ).numpy()
    theirs = onnx_model.infer(
        x["phone"].numpy(), x["phone_lengths"].numpy(), x["pitch"].numpy(), x["nsff0"].numpy(), 1,
        noise_z=noise_z.numpy(), noise_nsf=noise_nsf.numpy(),
    )
    assert theirs.shape == ours.shape == (1, 1, frames * hop)
    assert np.abs(ours).max() > 1e-2
    assert np.abs(theirs - ours).max() < TOLERANCE


@pytest.mark.parametrize(
    "contract,version,f0,sample_rate",
    [("rvc", "v2", True, 40000), ("rvc", "v1", False, 32000), ("wokada", "v2", True, 48000), ("wokada", "v1", False, 40000)],
)
def test_onnx_matches_torch(exported, contract, version, f0, sample_rate):
    _compare(exported, contract, version, f0, sample_rate)


def test_unpinned_model_runs_on_cpu_here_and_reports_its_provider(exported):
    path, _ = exported("rvc", "v2", True, 40000)
    model = load_onnx_synthesizer(path)
    assert model.providers and model.providers[-1] == "CPUExecutionProvider"
    assert model.provider in ("CUDAExecutionProvider", "CPUExecutionProvider")
    x = random_inputs(30, 768)
    audio = model.infer(x["phone"].numpy(), None, x["pitch"].numpy(), x["nsff0"].numpy(), 0)
    assert audio.shape == (1, 1, 30 * 400) and np.isfinite(audio).all()


def test_rate_of_a_file_without_metadata_is_probed(exported, tmp_path):
    """RVC's own exporter writes no metadata; samples per frame x 100 gives the rate."""
    import onnx

    proto = onnx.load(str(exported("wokada", "v2", True, 48000)[0]))
    del proto.metadata_props[:]
    path = tmp_path / "plain.onnx"
    onnx.save(proto, str(path))
    model = load_onnx_synthesizer(path)
    assert model.sample_rate == 48000 and model.metadata == {}


def test_wokada_metadata_is_read(exported):
    path, _ = exported("wokada", "v1", False, 40000)
    model = load_onnx_synthesizer(path)
    assert '"samplingRate": 40000' in model.metadata["metadata"]
    assert model.sample_rate == 40000 and model.feature_dim == 256 and not model.f0


def test_export_from_pth(tmp_path):
    pth = write_tiny_pth(tmp_path / "voice.pth", "v2", True, 40000)
    out = export_pth_to_onnx(pth, tmp_path / "voice.onnx")
    model = load_onnx_synthesizer(out)
    assert (model.contract, model.sample_rate, model.metadata["info"]) == ("rvc", 40000, "tiny test model")


def test_contract_detection():
    assert detect_contract(["phone", "phone_lengths", "pitch", "pitchf", "ds", "rnd"]) == ("rvc", True)
    assert detect_contract(["feats", "p_len", "sid"]) == ("wokada", False)
    assert detect_contract(["feats", "p_len", "pitch", "pitchf", "sid", "skip_head", "return_length", "formant_length"]) == ("wokada", True)
    with pytest.raises(ModelFormatError, match="neither RVC's export"):
        detect_contract(["source", "f0"], "hifigan.onnx")


def test_onnx_of_another_model_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ModelFormatError, match=r"relu\.onnx is an ONNX model with inputs x"):
        load_onnx_synthesizer(path)
    junk = tmp_path / "junk.onnx"
    junk.write_text("not onnx at all")
    with pytest.raises(ModelFormatError, match="not a readable ONNX model"):
        load_onnx_synthesizer(junk)
