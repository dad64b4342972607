"""Which torch device the models run on, and what accelerator the machine has.

Every function works without torch installed (``describe_accelerator()`` then says unavailable), so
health checks and the GUI can call them on any install.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

#: ``cpu``, ``cuda`` or ``cuda:N``: the device neural voices load on unless a caller names one
#: (the CLI's ``--device`` and the app's GPU choice set it through ``set_preferred_device``).
DEVICE_ENV = "AUTOVOICE_DEVICE"
_preferred: str | None = None
_preferred_lock = threading.Lock()


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

    ``prefer="cpu"`` forces the CPU; ``prefer="cuda:1"`` picks that GPU if it exists. Without
    ``prefer``, the preferred device (``set_preferred_device`` / ``AUTOVOICE_DEVICE``) applies.
    """
    torch = _torch()
    if torch is None:
        raise RuntimeError("torch is not installed")
    prefer = prefer or preferred_device()
    if prefer and prefer != "auto":
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


# --- choosing a GPU, and what fits on it ----------------------------------------------------------


def parse_device_spec(spec: str | None) -> str:
    """Normalise ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` / ``gpu`` / ``N``; ValueError in one sentence otherwise."""
    text = ("auto" if spec is None else str(spec)).strip().lower()
    if text in ("", "auto"):
        return "auto"
    if text == "cpu":
        return "cpu"
    if text in ("cuda", "gpu"):
        return "cuda:0"
    if text.isdigit():
        return f"cuda:{int(text)}"
    for prefix in ("cuda:", "gpu:"):
        if text.startswith(prefix) and text[len(prefix):].isdigit():
            return f"cuda:{int(text[len(prefix):])}"
    raise ValueError(f"'{spec}' is not a device; use cpu, cuda or cuda:N (N = the GPU's number, from 0).")


def set_preferred_device(spec: str | None) -> str:
    """Make ``spec`` the default device for voices loaded from now on; returns it normalised."""
    global _preferred
    norm = parse_device_spec(spec)
    with _preferred_lock:  # NB: read by loader threads; a str swap is atomic, the lock keeps it obvious
        _preferred = None if norm == "auto" else norm
    return norm


def preferred_device() -> str | None:
    """The device set by ``set_preferred_device``, else ``AUTOVOICE_DEVICE``, else None (auto)."""
    with _preferred_lock:
        if _preferred is not None:
            return _preferred
    env = os.environ.get(DEVICE_ENV)
    if env:
        try:
            norm = parse_device_spec(env)
        except ValueError:
            return None
        return None if norm == "auto" else norm
    return None


def list_gpus() -> list[dict[str, Any]]:
    """``[{index, name, memory_total_bytes, memory_free_bytes}]`` for every visible CUDA GPU; [] without."""
    if not cuda_available():
        return []
    torch = _torch()
    out = []
    for i in range(int(torch.cuda.device_count())):
        entry: dict[str, Any] = {"index": i, "name": None, "memory_total_bytes": None, "memory_free_bytes": None}
        try:
            props = torch.cuda.get_device_properties(i)
            entry["name"] = props.name
            entry["memory_total_bytes"] = int(props.total_memory)
            entry["memory_free_bytes"] = int(torch.cuda.mem_get_info(i)[0])
        except Exception:
            pass
        out.append(entry)
    return out


@dataclass
class DeviceChoice:
    """Where a voice runs, and why not where it was asked to (``fallback_reason``, '' if it was)."""

    device: Any  # torch.device
    requested: str
    fallback_reason: str = ""

    @property
    def label(self) -> str:
        return str(self.device)


def select_device(spec: str | None = None) -> DeviceChoice:
    """The device for ``spec`` (None: the preferred device, else auto), falling back to the CPU with
    a sentence the user can see when that GPU cannot be used."""
    torch = _torch()
    if torch is None:
        raise RuntimeError("torch is not installed")
    requested = parse_device_spec(spec if spec is not None else (preferred_device() or "auto"))
    if requested == "cpu":
        return DeviceChoice(torch.device("cpu"), requested)
    if not cuda_available():
        why = "" if requested == "auto" else f"{requested} was asked for, but no CUDA GPU is visible to torch; running on the CPU."
        return DeviceChoice(torch.device("cpu"), requested, why)
    index = 0 if requested == "auto" else int(requested.split(":")[1])
    count = int(torch.cuda.device_count())
    if index >= count:
        return DeviceChoice(torch.device("cpu"), requested,
                            f"There is no GPU {index} (this machine has {count}: cuda:0 to cuda:{count - 1}); running on the CPU.")
    return DeviceChoice(torch.device(f"cuda:{index}"), requested)


def free_bytes(device: Any) -> int | None:
    """Free memory on a CUDA device (None for the CPU or when it cannot be read)."""
    if getattr(device, "type", "cpu") != "cuda":
        return None
    torch = _torch()
    try:
        return int(torch.cuda.mem_get_info(device)[0])
    except Exception:
        return None


def fit_problem(device: Any, needed_bytes: int, what: str = "The model") -> str:
    """'' when ``needed_bytes`` fit in the device's free memory, else the sentence to show."""
    free = free_bytes(device)
    if free is None or needed_bytes <= free:
        return ""
    return (f"{what} needs about {needed_bytes / 2**30:.1f} GiB on {device} but only {free / 2**30:.1f} GiB is free; "
            f"running it on the CPU instead (close other GPU programs or voices to use the GPU).")


def module_bytes(module: Any) -> int:
    """Bytes held by a torch module's parameters and buffers."""
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        total += t.numel() * t.element_size()
    return total


def is_out_of_memory(exc: BaseException) -> bool:
    torch = _torch()
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None) if torch is not None else None
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower()


@dataclass
class VoiceMemory:
    """What a loaded voice holds on its device: weights (synthesizer + content encoder), the
    retrieval index, and the peak allocated while converting (``measure_peak``)."""

    device: str
    weights_bytes: int = 0
    index_bytes: int = 0
    peak_bytes: int | None = None  # measured on CUDA; None until measured or on the CPU
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"device": self.device, "weights_bytes": self.weights_bytes, "index_bytes": self.index_bytes,
                "peak_bytes": self.peak_bytes, "notes": list(self.notes)}


def measure_peak_bytes(device: Any, fn: Callable[[], Any]) -> tuple[Any, int | None]:
    """Run ``fn()`` and return (its result, peak CUDA bytes allocated on ``device`` meanwhile);
    the peak is None off CUDA."""
    torch = _torch()
    if torch is None or getattr(device, "type", "cpu") != "cuda":
        return fn(), None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    torch.cuda.synchronize(device)
    return result, int(torch.cuda.max_memory_allocated(device))


def describe_voice_device(voice: Any) -> dict[str, Any]:
    """What the app and ``/health`` show for a loaded voice: ``{parts, device, requested,
    fallback_reason, memory, cuda_graphs}``; ``parts`` names the device of each stage of a neural
    voice (``{}`` for built-in ones, which run on the CPU); memory: VoiceMemory.as_dict() or None."""
    choice = getattr(voice, "device_choice", None)
    memory = getattr(voice, "memory", None)
    synth = getattr(voice, "synth", None)
    graph = getattr(synth, "graph", None)
    return {
        "parts": _parts(voice),
        "device": str(choice.device) if choice is not None else "cpu",
        "requested": choice.requested if choice is not None else "cpu",
        "fallback_reason": choice.fallback_reason if choice is not None else "",
        "memory": memory.as_dict() if memory is not None else None,
        "cuda_graphs": None if graph is None else {"enabled": graph.enabled, "captures": graph.captures,
                                                   "replays": graph.replays, "eager_reason": graph.eager_reason},
    }


def device_of(obj: Any) -> str:
    """Where a model (its parameters), a tensor holder (``.device``) or an onnxruntime session runs."""
    params = getattr(obj, "parameters", None)
    if callable(params):
        try:
            return str(next(iter(params())).device)
        except StopIteration:
            pass
    for attr in ("device",):
        if getattr(obj, attr, None) is not None:
            return str(getattr(obj, attr))
    providers = getattr(obj, "providers", None)
    if providers:
        return "cuda (onnxruntime)" if providers[0] == "CUDAExecutionProvider" else "cpu (onnxruntime)"
    return "cpu"


def _parts(voice: Any) -> dict[str, str]:
    """Device per stage of a neural voice (its ``device_parts()``); {} for voices without stages."""
    parts = getattr(voice, "device_parts", None)
    return parts() if callable(parts) else {}
