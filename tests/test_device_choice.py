"""GPU selection and memory: the choice a user makes, the fall-back they can see, the fit check.

The CUDA answers are faked where no GPU exists (torch.cuda's query functions patched), so every
branch runs here; on a GPU machine the first test also checks the real answers."""

from __future__ import annotations

import pytest
import torch

from engine import accelerators as devices


@pytest.fixture(autouse=True)
def no_preference(monkeypatch):
    monkeypatch.delenv(devices.DEVICE_ENV, raising=False)
    devices.set_preferred_device(None)
    yield
    devices.set_preferred_device(None)


@pytest.fixture
def one_fake_gpu(monkeypatch):
    class Props:
        name, total_memory, major, minor = "Fake GPU", 8 * 2**30, 9, 0

    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d=None: (3 * 2**30, 8 * 2**30))


@pytest.mark.parametrize("spec,norm", [(None, "auto"), ("auto", "auto"), ("CPU", "cpu"), ("cuda", "cuda:0"),
                                       ("gpu", "cuda:0"), ("cuda:1", "cuda:1"), ("2", "cuda:2")])
def test_device_specs(spec, norm):
    assert devices.parse_device_spec(spec) == norm


def test_a_bad_device_spec_is_one_sentence():
    with pytest.raises(ValueError, match="'tpu' is not a device; use cpu, cuda or cuda:N"):
        devices.parse_device_spec("tpu")


def test_real_machine_choice():
    choice = devices.select_device()
    assert choice.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert choice.fallback_reason == ""  # auto never complains
    assert devices.select_device("cpu").device.type == "cpu"
    if not torch.cuda.is_available():
        forced = devices.select_device("cuda:0")
        assert forced.device.type == "cpu"
        assert forced.fallback_reason == "cuda:0 was asked for, but no CUDA GPU is visible to torch; running on the CPU."
        assert devices.list_gpus() == []


def test_preferred_device_applies_to_later_loads(monkeypatch):
    devices.set_preferred_device("cpu")
    assert devices.torch_device().type == "cpu"
    assert devices.select_device().requested == "cpu"
    devices.set_preferred_device(None)
    monkeypatch.setenv(devices.DEVICE_ENV, "cuda:0")
    assert devices.preferred_device() == "cuda:0"
    monkeypatch.setenv(devices.DEVICE_ENV, "nonsense")
    assert devices.preferred_device() is None  # a broken environment variable does not break loading


def test_missing_gpu_index_falls_back_visibly(one_fake_gpu):
    assert devices.select_device("cuda:0").device == torch.device("cuda:0")
    choice = devices.select_device("cuda:3")
    assert choice.device.type == "cpu"
    assert choice.fallback_reason == "There is no GPU 3 (this machine has 1: cuda:0 to cuda:0); running on the CPU."
    gpus = devices.list_gpus()
    assert gpus == [{"index": 0, "name": "Fake GPU", "memory_total_bytes": 8 * 2**30, "memory_free_bytes": 3 * 2**30}]


def test_fit_check_names_the_sizes(one_fake_gpu):
    gpu = torch.device("cuda:0")
    assert devices.fit_problem(gpu, 2 * 2**30) == ""
    assert devices.fit_problem(torch.device("cpu"), 10**15) == ""
    msg = devices.fit_problem(gpu, 5 * 2**30, "Voice 'alto'")
    assert msg == ("Voice 'alto' needs about 5.0 GiB on cuda:0 but only 3.0 GiB is free; running it on the CPU "
                   "instead (close other GPU programs or voices to use the GPU).")


def test_module_bytes_and_peak_off_cuda():
    m = torch.nn.Linear(10, 4)
    assert devices.module_bytes(m) == (40 + 4) * 4
    result, peak = devices.measure_peak_bytes(torch.device("cpu"), lambda: 7)
    assert result == 7 and peak is None
    assert devices.is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not devices.is_out_of_memory(RuntimeError("shape mismatch"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="peak VRAM is measured on a CUDA GPU only (none here)")
def test_peak_is_measured_on_cuda():
    dev = torch.device("cuda:0")
    _, peak = devices.measure_peak_bytes(dev, lambda: torch.empty(2**20, device=dev).fill_(1).sum())
    assert peak >= 4 * 2**20
