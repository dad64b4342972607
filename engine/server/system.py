"""Machine facts for /health and /metrics: memory, CPU and GPU memory, each query never raising."""

from __future__ import annotations

import sys
from typing import Any


def gpu_devices(accel: dict[str, Any]) -> list[dict[str, Any]]:
    """Per visible CUDA device: name and memory (bytes), queried now; [] without a GPU.

    Reads torch only when the engine already found a GPU at start, so a CPU install never pays for
    (or crashes on) a CUDA query.
    """
    if not accel.get("available"):
        return []
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    out = []
    try:
        for i in range(int(torch.cuda.device_count())):
            free, total = torch.cuda.mem_get_info(i)
            out.append({
                "index": i,
                "name": torch.cuda.get_device_name(i),
                "memory_total_bytes": int(total),
                "memory_used_bytes": int(total - free),
                "memory_allocated_bytes": int(torch.cuda.memory_allocated(i)),  # by this process's tensors
                "memory_reserved_bytes": int(torch.cuda.memory_reserved(i)),  # held by its caching allocator
            })
    except Exception:  # noqa: BLE001 - a driver error must not break a probe or a scrape
        return out
    return out


def system_status(accel: dict[str, Any]) -> dict[str, Any]:
    import psutil

    devices = gpu_devices(accel)
    proc = psutil.Process()
    return {
        "memory_percent": float(psutil.virtual_memory().percent),
        "cpu_percent": float(psutil.cpu_percent(interval=None)),  # since the previous call (primed at start)
        "process_rss_bytes": int(proc.memory_info().rss),
        "gpu": {
            "available": bool(accel.get("available")),
            "device_count": int(accel.get("device_count") or 0),
            "name": accel.get("name"),
            "cuda_version": accel.get("cuda_version"),
            "torch_version": accel.get("torch_version"),
            "reason": accel.get("reason"),
            "devices": devices,
        },
    }
