#!/usr/bin/env bash
# The CUDA engine on a GPU machine: the GPU tests, then every figure into one JSON.
#
# Target: the GPU machine lent to this project (one NVIDIA H200, 16 cores, Python 3.12, torch 2.11 +
# CUDA 13, Triton 3.6, onnxruntime 1.30 CPU build, no internet). What it lacks comes as wheels:
#
#   1. Here (with internet):      benchmarks/fetch_gpu_wheels.sh wheels      (~30 MB, git-ignored)
#   2. Run it there, carrying them: run(command="benchmarks/gpu_check.sh", carry=["wheels"],
#      timeout_s=540). The device tool copies the working tree (tracked and untracked files) plus
#      the carried folder; results go to $OUT and come back.
#
# Steps: the wheels go to a folder on PYTHONPATH beside the machine's own torch/Triton (--no-index),
# the GPU tests run (cuda_ops kernels compiled, CUDA graphs replay == eager, the GPU
# voice, ONNX on CUDA where onnxruntime-gpu is present), then benchmarks/gpu_figures.py writes
# $OUT/gpu_figures.json: per-block ms and RTF at 250/100/50/20 ms (CPU fp32; CUDA fp16 with graphs
# on and off), ms per second of audio converted as files are, index search ms at 10k/100k/1M vectors (faiss-cpu vs GPU),
# peak VRAM per voice, the kernels against their references. Logs: $OUT/*.log.
#
#   benchmarks/gpu_check.sh [OUT_DIR]            (default: $OUT, else ./gpu_check_out)
#   CPU_ONLY=1 benchmarks/gpu_check.sh           the CPU half (any machine; uses the current python)
#
# Budget: ~3-5 min on the H200 (model builds, 1M-vector index, CPU half on 16 cores). Knobs:
# BLOCKS (250,100,50,20), COUNT (timed blocks, 5), INDEX_SIZES (10000,100000,1000000),
# CPU_INDEX_SIZES (default INDEX_SIZES), THREADS (CPU threads, default all), PYTHON.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu_check_out}}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ "${CPU_ONLY:-0}" = 1 ] && py=.venv/bin/python

if [ "${CPU_ONLY:-0}" != 1 ] && [ -d wheels ]; then
    # the machine's torch + Triton stay; exactly the carried wheels go to a folder of their own
    # (--no-deps: their dependencies are carried too, numpy and torch are the machine's)
    site=/tmp/autovoice-gpu-site
    "$py" -m pip install -q --no-index --no-deps --target "$site" wheels/*.whl >"$out/pip.log" 2>&1 \
        || { echo "wheel install failed, see $out/pip.log"; tail -5 "$out/pip.log"; }
    export PYTHONPATH="$PYTHONPATH:$site"
fi

"$py" - <<'PY' | tee "$out/environment.log"
import importlib
for name in ("torch", "triton", "numpy", "soxr", "soundfile", "faiss", "onnx", "onnxruntime", "pytest", "torchfcpe"):
    try:
        m = importlib.import_module(name) if name != "torchfcpe" else importlib.util.find_spec(name)
        print(f"{name:12s} {getattr(m, '__version__', 'present') if m else 'MISSING'}")
    except Exception as exc:
        print(f"{name:12s} MISSING ({type(exc).__name__}: {str(exc)[:80]})")
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY

status=0
if [ "${CPU_ONLY:-0}" != 1 ]; then
    # every test that has a CUDA branch; on the GPU none of them may skip for want of CUDA
    "$py" -m pytest -q -rs -p no:cacheprovider \
        tests/cuda_ops tests/test_device_choice.py tests/rvc/test_voice_device.py tests/rvc/test_device_live.py tests/rvc/test_onnx_device.py \
        tests/rvc/test_devices.py tests/rvc/test_index.py tests/rvc/test_synthesizer.py 2>&1 | tee "$out/tests.log"
    status=${PIPESTATUS[0]}
fi

cpu_only_flag=()
[ "${CPU_ONLY:-0}" = 1 ] && cpu_only_flag=(--cpu-only)
"$py" benchmarks/gpu_figures.py --out "$out/gpu_figures.json" "${cpu_only_flag[@]}" \
    --blocks "${BLOCKS:-250,100,50,20}" --count "${COUNT:-5}" \
    --index-sizes "${INDEX_SIZES:-10000,100000,1000000}" --cpu-index-sizes "${CPU_INDEX_SIZES:-${INDEX_SIZES:-10000,100000,1000000}}" \
    ${THREADS:+--threads "$THREADS"} --tests-log "$out/tests.log" 2>&1 | tee "$out/figures.log"
fig=${PIPESTATUS[0]}
echo "tests exit $status, figures exit $fig; JSON: $out/gpu_figures.json"
[ "$status" = 0 ] && [ "$fig" = 0 ]
