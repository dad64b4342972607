"""cuda_ops tests run every kernel: compiled on a CUDA GPU, else in Triton's CPU interpreter.

Triton decides interpreted-or-compiled when a kernel module is imported (cuda_ops imports them
lazily), so without a GPU this sets TRITON_INTERPRET=1 before any test here asks for a kernel.
A kernel test is skipped only when neither is possible (no Triton installed and no GPU), and the
skip says so.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def kernel_device() -> torch.device:
    """The device the kernels run on in this process (CUDA compiled, or CPU interpreted)."""
    from cuda_ops import dispatch

    mode = dispatch.kernel_mode()
    if mode is None:
        pytest.skip(f"Triton kernels cannot run here: {dispatch.why_no_kernel()}")
    return torch.device("cuda") if mode == "compiled" else torch.device("cpu")
