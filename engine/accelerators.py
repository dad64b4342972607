"""Which torch device the models run on, and what accelerator the machine has.

Every function works without torch installed (``describe_accelerator()`` then says unavailable), so
health checks and the GUI can call them on any install.
"""

from __future__ import annotations

from typing import Any


def _torch():
    try:
        import torch
    except Exception:  # not installed, or a broken build (e.g. a CUDA wheel without its libraries)
        return None
    return torch


def cuda_available() -> bool:
    torch = _torch()
    if torch is None:
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:
        return False


def torch_device(prefer: str | None = None) -> "Any":
    """``torch.device('cuda')`` when a CUDA GPU is usable (or ``prefer`` names one), else CPU.

    ``prefer="cpu"`` forces the CPU; ``prefer="cuda:1"`` picks that GPU if it exists.
    """
    torch = _torch()
    if torch is None:
        raise RuntimeError("torch is not installed")
    if prefer:
        dev = torch.device(prefer)
        if dev.type == "cpu":
            return dev
        if dev.type == "cuda" and cuda_available():
            index = dev.index or 0
            if index < torch.cuda.device_count():
                return dev
        return torch.device("cpu")
    return torch.device("cuda") if cuda_available() else torch.device("cpu")


def use_fp16(device: Any) -> bool:
    """Half precision only on CUDA: CPU fp16 kernels are slow and less exact than fp32."""
    return getattr(device, "type", str(device).split(":")[0]) == "cuda"


def describe_accelerator() -> dict[str, Any]:
    """What the health check shows: ``{available, name, device_count, memory_total_bytes,
    memory_free_bytes, capability, torch_version, cuda_version, backend}``; never raises."""
    info: dict[str, Any] = {
        "available": False,
        "backend": "cpu",
        "name": None,
        "device_count": 0,
        "memory_total_bytes": None,
        "memory_free_bytes": None,
        "capability": None,
        "torch_version": None,
        "cuda_version": None,
    }
    torch = _torch()
    if torch is None:
        info["reason"] = "torch is not installed"
        return info
    info["torch_version"] = getattr(torch, "__version__", None)
    info["cuda_version"] = getattr(getattr(torch, "version", None), "cuda", None)
    if not cuda_available():
        info["reason"] = "no CUDA GPU visible to torch"
        return info
    try:
        info["available"] = True
        info["backend"] = "cuda"
        info["device_count"] = int(torch.cuda.device_count())
        props = torch.cuda.get_device_properties(0)
        info["name"] = props.name
        info["memory_total_bytes"] = int(props.total_memory)
        info["capability"] = f"{props.major}.{props.minor}"
        free, _total = torch.cuda.mem_get_info(0)
        info["memory_free_bytes"] = int(free)
    except Exception as exc:  # a driver error must not break a health probe
        info["reason"] = f"CUDA query failed: {exc}"
    return info
