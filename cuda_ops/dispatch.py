"""Which implementation of a cuda_ops function runs: the Triton kernel or the pure-torch reference.

Rules, in order:

1. ``impl="reference"`` (or ``AUTOVOICE_CUDA_OPS=reference``) always runs the torch reference.
2. ``impl="kernel"`` (or ``AUTOVOICE_CUDA_OPS=kernel``) demands the kernel and raises one sentence
   when it cannot run on the given tensors.
3. Otherwise (``impl="auto"``): the kernel for CUDA tensors when Triton compiles for this GPU, the
   reference for everything else.

Triton decides at *decoration* time whether a kernel is compiled or interpreted
(``TRITON_INTERPRET=1``), so the kernel modules are imported lazily, on first use: a test that sets
``TRITON_INTERPRET=1`` before that runs every kernel on CPU tensors through the interpreter. In
interpreter mode the kernels take CPU tensors only; compiled, CUDA tensors only.
"""

from __future__ import annotations

import functools
import os
from typing import Literal

import torch

Impl = Literal["auto", "kernel", "reference"]
ENV_IMPL = "AUTOVOICE_CUDA_OPS"


@functools.lru_cache(maxsize=1)
def triton_version() -> str | None:
    """The installed Triton's version, or None when it cannot be imported."""
    try:
        import triton
    except Exception:
        return None
    return str(getattr(triton, "__version__", "unknown"))


def interpreting() -> bool:
    """True when Triton kernels run in its CPU interpreter (``TRITON_INTERPRET=1`` at first import)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def kernel_mode() -> str | None:
    """``"interpreted"``, ``"compiled"`` (a CUDA GPU and Triton) or None (no kernel can run here)."""
    if triton_version() is None:
        return None
    if interpreting():
        return "interpreted"
    try:
        return "compiled" if torch.cuda.is_available() else None
    except Exception:
        return None


def why_no_kernel() -> str:
    """One sentence saying why kernels cannot run in this process ('' when they can)."""
    if triton_version() is None:
        return "Triton is not installed (pip install triton; it ships with torch's CUDA wheels)"
    if kernel_mode() is None:
        return "no CUDA GPU is visible and TRITON_INTERPRET=1 was not set"
    return ""


def kernel_can_take(tensor: torch.Tensor) -> bool:
    """Whether the kernels, in this process' mode, can run on ``tensor``'s device."""
    mode = kernel_mode()
    if mode == "compiled":
        return tensor.device.type == "cuda"
    if mode == "interpreted":
        return tensor.device.type == "cpu"
    return False


def kernels_forced() -> bool:
    """``AUTOVOICE_CUDA_OPS=kernel``: callers that take the cuda_ops route only on CUDA take it anyway
    (so the kernels' call sites run in the interpreter on the CPU)."""
    return os.environ.get(ENV_IMPL) == "kernel"


def use_kernel(tensor: torch.Tensor, impl: Impl = "auto", op: str = "this op") -> bool:
    """Decide for one call. ``tensor`` is the call's main input (its device decides)."""
    impl = (os.environ.get(ENV_IMPL) or impl) if impl == "auto" else impl
    if impl == "reference":
        return False
    if impl == "kernel":
        if not kernel_can_take(tensor):
            reason = why_no_kernel() or (
                f"kernels run on {'CPU' if kernel_mode() == 'interpreted' else 'CUDA'} tensors in this process, "
                f"not on {tensor.device.type}"
            )
            raise RuntimeError(f"The Triton kernel for {op} cannot run: {reason}.")
        return True
    if impl != "auto":
        raise ValueError(f"impl must be 'auto', 'kernel' or 'reference', not {impl!r}")
    return kernel_mode() == "compiled" and tensor.device.type == "cuda"
