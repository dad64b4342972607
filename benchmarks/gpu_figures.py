"""The figures of the CUDA engine, each beside the CPU's, in one JSON (benchmarks/gpu_check.sh runs it).

    python benchmarks/gpu_figures.py --out figures.json [--cpu-only] [--threads N]
        [--blocks 250,100,50,20] [--count 5] [--index-sizes 10000,100000,1000000]

* live: ms per block and RTF (ms / block_ms; < 1 keeps up) of the whole streaming RVC voice at each
  block size (extra 2500 ms, crossfade min(50 ms, block)): CPU fp32, and on CUDA fp16 with CUDA
  graphs on and off, and with the host path (numpy rings, soxr, SOLA on the CPU) for comparison;
* copies_per_100ms_block: host<->device copies and syncs the CUDA profiler sees per live block,
  device path against host path;
* offline: ms per second of audio as file conversion runs it (convert_signal, the offline twin);
* index: ms to search (and blend) one 250 ms block's frames (16 x 768) against RVC-like IVF indexes
  of each size (nlist = min(16 sqrt(N), N / 39), nprobe 1, as RVC trains them): faiss-cpu beside
  the GPU copy (``cuda_ops.knn.DeviceIndex``, same lists), plus the GPU's exact search;
* vram: weights and measured peak bytes per loaded voice (a live 250 ms voice, 1 s offline);
* cuda_ops: each kernel against its reference (benchmarks/bench_cuda_ops.py).

Models are RVC's full-size v2 40 kHz synthesizer and a HuBERT-base-sized content encoder with
random weights (timing does not depend on the values), built by the code (tests/rvc/tiny_models.py);
pitch by FCPE (torchfcpe's bundled model) when installed, else the DSP tracker (the JSON says which).
Index vectors are drawn around their list's centroid, so building a 1M index needs no k-means.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "rvc"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tiny_models import full_config, randomize_  # noqa: E402

from cuda_ops import dispatch, knn  # noqa: E402
from engine import accelerators as devices  # noqa: E402
from engine.dsp.resample import resample  # noqa: E402
from engine.voices.rvc.content import HubertModel, TorchContentEncoder, hubert_base_config  # noqa: E402
from engine.voices.rvc.synthesizer import build_synthesizer  # noqa: E402
from engine.voices.rvc.voice import RVCVoice  # noqa: E402

SPEECH = ROOT / "tests" / "data" / "freesound136777_davidbain_M_xmas.wav"
SR = 40000
PARAMS = {"transpose_st": 0.0, "index_rate": 0.0, "protect": 0.33, "rms_mix_rate": 0.25, "speaker_id": 0}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _speech() -> np.ndarray:
    import soundfile as sf

    x, sr = sf.read(SPEECH, dtype="float32")
    return resample(np.tile(x, 3), sr, SR)


class Models:
    """The full-size synthesizer + content encoder + pitch tracker on one device and dtype."""

    def __init__(self, dev: torch.device, half: bool):
        dtype = torch.float16 if half else torch.float32
        self.dev, self.dtype = dev, dtype
        self.synth = randomize_(build_synthesizer(full_config("v2", True, SR)), seed=0).to(dev, dtype).eval()
        hubert = HubertModel(hubert_base_config()).to(dev, dtype).eval()
        self.encoder = TorchContentEncoder(hubert, device=dev, dtype=dtype)
        self.pitch_method = "fcpe"
        try:
            from engine.voices.rvc.f0 import load_pitch_estimator

            self.pitch = {"fcpe": load_pitch_estimator("fcpe", device=str(dev))}
        except Exception as exc:  # torchfcpe not carried to this machine
            self.pitch_method, self.pitch = "dsp", {}
            self.pitch_note = f"FCPE unavailable ({str(exc).splitlines()[0][:120]}); DSP pitch"

    def voice(self, block_ms: float, graphs: bool, device_path: bool | None = None) -> RVCVoice:
        from cuda_ops.graphs import GraphedSynthesizer

        synth = GraphedSynthesizer(self.synth, enabled=graphs) if self.dev.type == "cuda" else self.synth
        # the crossfade cannot exceed the block (RVCVoice does not check: SOLA fails on it)
        v = RVCVoice(synth, self.encoder, pitch_estimators=self.pitch, block_ms=block_ms, extra_ms=2500,
                     crossfade_ms=min(50.0, block_ms), device_path=device_path)
        v.memory = devices.VoiceMemory(str(self.dev), devices.module_bytes(self.synth) + devices.module_bytes(self.encoder.model))
        return v


def live_ms(voice: RVCVoice, x: np.ndarray, count: int, params: dict) -> float:
    state = voice.init_state()
    hop = voice.hop_samples
    times = []
    for i in range(count + 3):  # the first calls pay one-off costs (allocator, graph capture, cuDNN)
        block = x[(i * hop) % (len(x) - hop):][:hop]
        t0 = time.perf_counter()
        _, state = voice.process(block, state, params)
        _sync(next(voice.synth.parameters()).device)
        if i >= 3:
            times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def live_section(models: Models, blocks: list[float], count: int, x: np.ndarray, graphs: bool,
                 device_path: bool | None = None) -> dict:
    params = dict(PARAMS, f0_method=models.pitch_method)
    out = {}
    for block_ms in blocks:
        voice = models.voice(block_ms, graphs, device_path)
        ms = live_ms(voice, x, count, params)
        entry = {"ms": round(ms, 2), "rtf": round(ms / block_ms, 3)}
        if graphs and models.dev.type == "cuda":
            g = voice.synth.graph
            entry.update(graph_captures=g.captures, graph_replays=g.replays, eager_reason=g.eager_reason)
        out[f"{block_ms:g}"] = entry
    return out


def transfers_per_block(voice: RVCVoice, x: np.ndarray, params: dict, blocks: int = 5) -> dict:
    """Host<->device copies and syncs the CUDA profiler sees per steady live block."""
    from torch.profiler import ProfilerActivity, profile

    state = voice.init_state()
    hop = voice.hop_samples
    for i in range(3):
        _, state = voice.process(x[i * hop : (i + 1) * hop], state, params)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(3, 3 + blocks):
            _, state = voice.process(x[i * hop : (i + 1) * hop], state, params)
        torch.cuda.synchronize()
    counts = {"htod": 0, "dtoh": 0, "dtod": 0, "stream_syncs": 0}
    for ev in prof.events():
        name = ev.name
        if "Memcpy HtoD" in name:
            counts["htod"] += 1
        elif "Memcpy DtoH" in name:
            counts["dtoh"] += 1
        elif "Memcpy DtoD" in name:
            counts["dtod"] += 1
        elif name in ("cudaStreamSynchronize", "cudaDeviceSynchronize"):
            counts["stream_syncs"] += 1
    return {k: round(v / blocks, 2) for k, v in counts.items()}


def offline_ms(models: Models, x: np.ndarray, count: int, seconds: float = 5.0) -> float:
    """ms per second of audio as file conversion runs it (convert_signal: the voice's offline twin)."""
    from engine.offline.convert import convert_signal

    voice = models.voice(250, True)
    params = dict(PARAMS, f0_method=models.pitch_method)
    clip = x[SR : SR + int(seconds * SR)]
    times = []
    for i in range(count + 1):  # the first pays the twin's graph capture and the allocator
        t0 = time.perf_counter()
        convert_signal(clip, SR, voice, params)
        _sync(models.dev)
        if i:
            times.append(1000 * (time.perf_counter() - t0) / seconds)
    return statistics.median(times)


def vram_section(models: Models, x: np.ndarray) -> dict:
    live = models.voice(250, True)
    params = dict(PARAMS, f0_method=models.pitch_method)
    peak_live = live.measure_peak_memory(params)
    from engine.offline.convert import convert_signal

    _, peak_offline = devices.measure_peak_bytes(models.dev, lambda: convert_signal(x[SR : 2 * SR], SR, models.voice(250, True), params))
    return {"weights_bytes": live.memory.weights_bytes, "live_250ms_peak_bytes": peak_live,
            "offline_1s_peak_bytes": peak_offline}


# --- index ---------------------------------------------------------------------------------------


def rvc_nlist(n: int) -> int:
    return max(1, min(int(16 * math.sqrt(n)), n // 39))


def build_ivf(n: int, d: int = 768, seed: int = 0):
    """An IndexIVFFlat shaped as RVC builds one, vectors drawn around their list's centroid (so
    the list of each vector is known without k-means). Returns (index, queries (16, d))."""
    import faiss
    from faiss.contrib.ivf_tools import add_preassigned

    gen = torch.Generator().manual_seed(seed)
    nlist = rvc_nlist(n)
    centroids = torch.randn(nlist, d, generator=gen).numpy()
    index = faiss.index_factory(d, f"IVF{nlist},Flat")
    index.quantizer.add(centroids)
    index.is_trained = True
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        labels = torch.randint(0, nlist, (m,), generator=gen).numpy()
        vecs = (centroids[labels] + 0.3 * torch.randn(m, d, generator=gen).numpy()).astype(np.float32)
        add_preassigned(index, vecs, labels)
    index.nprobe = 1
    queries = (index.reconstruct_n(0, 16) + 0.3 * torch.randn(16, d, generator=gen).numpy()).astype(np.float32)
    return index, queries


def _median_ms(fn, dev: torch.device, repeats: int) -> float:
    for _ in range(2):
        fn()
    _sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def index_section(sizes: list[int], cuda: torch.device | None, repeats: int) -> dict:
    from engine.voices.rvc.index import FeatureIndex

    out = {}
    for n in sizes:
        t0 = time.perf_counter()
        index, queries = build_ivf(n)
        entry = {"nlist": rvc_nlist(n), "nprobe": 1, "build_s": round(time.perf_counter() - t0, 1)}
        entry["faiss_cpu_search_ms"] = round(_median_ms(lambda: index.search(queries, 8), torch.device("cpu"), repeats), 3)
        vectors = index.reconstruct_n(0, index.ntotal)
        fi = FeatureIndex(index, vectors)
        entry["faiss_cpu_blend_ms"] = round(_median_ms(lambda: fi.blend(queries, 0.5), torch.device("cpu"), repeats), 3)
        if cuda is None:
            entry["gpu_search_ms"] = entry["gpu_blend_ms"] = entry["gpu_exact_search_ms"] = None
        else:
            dev_index = knn.DeviceIndex.from_faiss(index, vectors, cuda)
            q = torch.from_numpy(queries).to(cuda)
            entry["gpu_search_ms"] = round(_median_ms(lambda: dev_index.search(q), cuda, repeats), 3)
            entry["gpu_blend_ms"] = round(_median_ms(lambda: dev_index.blend(q, 0.5), cuda, repeats), 3)
            entry["gpu_exact_search_ms"] = round(
                _median_ms(lambda: knn.knn_flat(q, dev_index.vectors, 8, dev_index.norms), cuda, repeats), 3)
            fd, fi_ids = index.search(queries, 8)
            d2, ids = dev_index.search(q)
            entry["gpu_ids_equal_faiss"] = float((ids.cpu().numpy() == fi_ids).mean())
            entry["gpu_device_bytes"] = dev_index.nbytes
            del dev_index, q
            torch.cuda.empty_cache()
        out[str(n)] = entry
        del index, vectors, fi
        gc.collect()
    return out


# --- the whole ----------------------------------------------------------------------------------


def machine() -> dict:
    import os

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "triton": dispatch.triton_version(), "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "accelerator": devices.describe_accelerator()}
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
    except Exception as exc:
        info["onnxruntime"] = f"not importable ({exc})"
    try:
        import faiss

        info["faiss"] = faiss.__version__
    except Exception:
        info["faiss"] = None
    return info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cpu-only", action="store_true", help="skip the CUDA half even when a GPU is there")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--blocks", default="250,100,50,20")
    ap.add_argument("--count", type=int, default=5, help="timed blocks per setting")
    ap.add_argument("--index-sizes", default="10000,100000,1000000")
    ap.add_argument("--cpu-index-sizes", default=None, help="index sizes for the CPU run (default: --index-sizes)")
    ap.add_argument("--tests-log", type=Path, help="pytest output to quote (its summary line)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except Exception:
        pass
    blocks = [float(b) for b in args.blocks.split(",")]
    cuda = torch.device("cuda:0") if torch.cuda.is_available() and not args.cpu_only else None
    x = _speech()
    result: dict = {"machine": machine(), "settings": {"blocks_ms": blocks, "count": args.count, "extra_ms": 2500,
                                                        "crossfade_ms": "min(50, block_ms)", "model": "RVC v2 40k full size + HuBERT base, random weights"}}
    if args.tests_log and args.tests_log.is_file():
        lines = [ln for ln in args.tests_log.read_text().splitlines() if ln.strip()]
        result["tests"] = lines[-1] if lines else ""

    def stamp(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    stamp("CPU: building models")
    cpu = Models(torch.device("cpu"), half=False)
    result["pitch"] = cpu.pitch_method
    if hasattr(cpu, "pitch_note"):
        result["pitch_note"] = cpu.pitch_note
    stamp("CPU: live blocks")
    live = {"cpu_fp32": live_section(cpu, blocks, args.count, x, graphs=False)}
    stamp("CPU: file conversion, ms per second of audio")
    offline = {"cpu_fp32_ms_per_s": round(offline_ms(cpu, x, 1), 1)}
    vram = {"cpu": {"weights_bytes": devices.module_bytes(cpu.synth) + devices.module_bytes(cpu.encoder.model), "peak_bytes": None}}
    del cpu
    gc.collect()
    if cuda is not None:
        stamp("CUDA: building fp16 models")
        gpu = Models(cuda, half=True)
        stamp("CUDA: live blocks, graphs on")
        live["cuda_fp16_graphs"] = live_section(gpu, blocks, args.count, x, graphs=True)
        stamp("CUDA: live blocks, graphs off")
        live["cuda_fp16_eager"] = live_section(gpu, blocks, args.count, x, graphs=False)
        stamp("CUDA: live blocks, graphs on, host path (numpy rings, soxr, SOLA on the host)")
        live["cuda_fp16_graphs_host_path"] = live_section(gpu, blocks, args.count, x, graphs=True, device_path=False)
        stamp("CUDA: copies per block")
        params = dict(PARAMS, f0_method=gpu.pitch_method)
        try:
            result["copies_per_100ms_block"] = {
                "device_path": transfers_per_block(gpu.voice(100, True), x, params),
                "host_path": transfers_per_block(gpu.voice(100, True, device_path=False), x, params)}
        except Exception as exc:  # the profiler is a figure, not a requirement
            result["copies_per_100ms_block"] = f"profiler failed: {type(exc).__name__}: {str(exc)[:200]}"
        stamp("CUDA: file conversion, ms per second of audio")
        offline["cuda_fp16_ms_per_s"] = round(offline_ms(gpu, x, args.count), 1)
        stamp("CUDA: peak VRAM")
        vram["cuda_fp16"] = vram_section(gpu, x)
        del gpu
        gc.collect()
        torch.cuda.empty_cache()
    result["live"] = {block: {name: live[name][block] for name in live} for block in live["cpu_fp32"]}
    result["offline_ms_per_s_of_audio"] = offline
    result["vram"] = vram
    sizes = [int(s) for s in (args.cpu_index_sizes if cuda is None and args.cpu_index_sizes else args.index_sizes).split(",")]
    stamp(f"index search at {sizes}")
    result["index_16_queries"] = index_section(sizes, cuda, repeats=20)
    stamp("cuda_ops kernels")
    from bench_cuda_ops import run as bench_ops

    result["cuda_ops"] = {"cpu": bench_ops(torch.device("cpu"), 10, [10000, 100000])}
    if cuda is not None:
        result["cuda_ops"]["cuda"] = bench_ops(cuda, 50, [10000, 100000, 1000000])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    stamp(f"wrote {args.out}")
    print(json.dumps({k: result[k] for k in ("live", "offline_ms_per_s_of_audio", "index_16_queries")}, indent=1, default=str))


if __name__ == "__main__":
    main()
