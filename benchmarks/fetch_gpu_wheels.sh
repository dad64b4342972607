#!/usr/bin/env bash
# Download, on a machine with internet, the wheels benchmarks/gpu_check.sh needs on the GPU machine
# (Python 3.12, x86_64, no internet; it already has torch 2.11 + CUDA 13, Triton 3.6, numpy and
# onnxruntime 1.30 CPU). About 30 MB: under the 64 MiB that a device run may carry.
#
#   benchmarks/fetch_gpu_wheels.sh [DEST]        (default: ./wheels, git-ignored)
#
# FCPE (torchfcpe, a 40 MB wheel of weights) does not fit beside them; without it the figures use the
# DSP pitch tracker (under 1 ms a block on the CPU, so the per-block figures barely move) and the
# JSON says so. WITH_FCPE=1 adds it and leaves out onnx (9 MB; only the ONNX tests need it, and
# they skip without it), which keeps the whole under 64 MiB (~62 MB; the tree is ~2 MB).
set -euo pipefail
dest=${1:-wheels}
py=${PYTHON:-python3}
platforms=(--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)
"$py" -m pip download -q --dest "$dest" --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" --no-deps \
    soundfile cffi pycparser soxr faiss-cpu platformdirs \
    $([ "${WITH_FCPE:-0}" = 1 ] || echo onnx protobuf ml_dtypes) typing_extensions \
    pytest pytest-timeout iniconfig pluggy packaging pygments
if [ "${WITH_FCPE:-0}" = 1 ]; then
    "$py" -m pip download -q --dest "$dest" --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" --no-deps "torchfcpe==0.0.4" einops local-attention hyper-connections
fi
du -sh "$dest"
