"""RVC front-end speed on this machine: HuBERT-base content encoder, FCPE, RMVPE, index retrieval.

Prints milliseconds (median of several runs after a warm-up). Random weights: speed does not
depend on the values. Usage::

    python benchmarks/bench_frontend.py [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.voices.rvc.content import HubertModel, TorchContentEncoder  # noqa: E402
from engine.voices.rvc.f0 import E2E, FcpePitch, RmvpeMel, f0_frames  # noqa: E402
from engine.voices.rvc.index import FeatureIndex  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}")
    rng = np.random.default_rng(0)

    enc = TorchContentEncoder(HubertModel().eval())
    for seconds in (1.0, 2.8):
        x = (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
        for version in ("v1", "v2"):
            ms = timed(lambda: enc.encode(x, version), args.repeats)
            print(f"HuBERT-base {version} ({'layer 9 + final_proj' if version == 'v1' else 'layer 12'}), {seconds:.1f} s audio: {ms:7.1f} ms")

    fcpe = FcpePitch()
    for seconds in (0.256, 1.0, 2.8):
        x = (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
        print(f"FCPE, {seconds:.3f} s audio: {timed(lambda: fcpe.estimate(x), args.repeats):7.1f} ms")

    rmvpe = E2E().eval()
    mel = RmvpeMel()
    for n in (5120 - 160, 3 * 5120 - 160):  # frames a multiple of 32, as RVC realtime arranges
        x = torch.from_numpy((0.1 * rng.standard_normal(n)).astype(np.float32))[None]

        @torch.inference_mode()
        def run():
            return rmvpe(mel(x))

        print(f"RMVPE (full size), {n / 16000:.2f} s audio ({f0_frames(n)} frames): {timed(run, args.repeats):7.1f} ms")

    import faiss

    for dim, n_vectors in ((768, 50_000),):
        vectors = rng.standard_normal((n_vectors, dim)).astype(np.float32)
        index = faiss.index_factory(dim, "IVF256,Flat")
        index.train(vectors[:20_000])
        index.add(vectors)
        index.nprobe = 1
        fi = FeatureIndex(index, vectors)
        q = rng.standard_normal((140, dim)).astype(np.float32)  # 2.8 s of content frames
        print(f"index retrieval k=8, {n_vectors} x {dim} IVF256 nprobe 1, 140 frames: {timed(lambda: fi.retrieve(q), args.repeats):7.1f} ms")


if __name__ == "__main__":
    main()
