"""Device choice and the accelerator description used by health checks."""

from __future__ import annotations

import sys

import torch

from engine import accelerators as devices

KEYS = {"available", "name", "device_count", "memory_total_bytes", "memory_free_bytes", "backend"}


def test_describe_accelerator_matches_torch():
    info = devices.describe_accelerator()
    assert KEYS <= set(info)
    assert info["available"] == torch.cuda.is_available()
    if info["available"]:
        assert info["device_count"] >= 1 and info["memory_total_bytes"] > 0 and info["name"]
    else:
        assert info["device_count"] == 0 and info["reason"]


def test_describe_accelerator_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    info = devices.describe_accelerator()
    assert info["available"] is False and info["reason"] == "torch is not installed"
    assert devices.cuda_available() is False


def test_device_choice_and_half_precision_only_on_cuda():
    dev = devices.torch_device()
    assert dev.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert devices.torch_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert devices.torch_device("cuda:0").type == "cpu"  # falls back rather than failing later
    assert devices.use_fp16(torch.device("cuda")) and not devices.use_fp16(torch.device("cpu"))
