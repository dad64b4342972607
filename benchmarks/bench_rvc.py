"""RVC synthesizer timings: full window vs partial decoding, torch vs onnxruntime, and one live block.

Random weights at RVC's real full size (v2, 40 kHz, ~27 M parameters; no model download needed).
Prints numbers; asserts nothing. Run: python benchmarks/bench_rvc.py [--threads N] [--repeats N]

Reference point (shared/PLATFORM_NOTES.md, RVC's own code on this kind of 2-core machine, 2.81 s
window at 250 ms blocks): full decode 1721 ms, partial decode 200 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "rvc"))
from tiny_models import full_config, randomize_, random_inputs  # noqa: E402

from engine.voices.rvc.synthesizer import build_synthesizer  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN primitive creation per shape)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-onnx", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = full_config("v2", True, 40000)
    model = randomize_(build_synthesizer(cfg), seed=0)
    # RVC realtime defaults: extra 2.5 s, crossfade 50 ms, SOLA search 10 ms, block 250 ms
    block, extra, cross, search = 25, 250, 5, 1
    frames = extra + cross + search + block
    ret = block + cross + search
    x = random_inputs(frames, cfg.feature_dim)
    args_ = (x["phone"], x["phone_lengths"], x["pitch"], x["nsff0"], x["sid"])
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, v2 40k full size, window {frames} frames "
          f"({frames / 100:.2f} s), returned {ret} frames")
    full = timed(lambda: model.infer(*args_, generator=gen), args.repeats)
    part = timed(lambda: model.infer(*args_, skip_head=extra, return_length=ret, generator=gen), args.repeats)
    part_dc = timed(lambda: model.infer(*args_, skip_head=extra, return_length=ret, generator=gen,
                                        decoder_context=12), args.repeats)
    enc = timed(lambda: model.enc_p(x["phone"], x["pitch"], x["phone_lengths"]), args.repeats)
    print(f"  full decode            {full:8.1f} ms")
    print(f"  partial decode         {part:8.1f} ms   (text encoder alone {enc:.1f} ms)")
    print(f"  partial + 12 dec ctx   {part_dc:8.1f} ms")
    if not args.no_onnx:
        from engine.voices.rvc.export import export_onnx
        from engine.voices.rvc.onnx_model import load_onnx_synthesizer

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "v2_40k.onnx"
            t = time.perf_counter()
            export_onnx(model, path)
            print(f"  onnx export            {1000 * (time.perf_counter() - t):8.1f} ms")
            onnx_model = load_onnx_synthesizer(path)
            feeds = [a.numpy() for a in args_[:4]]
            ort = timed(lambda: onnx_model.infer(*feeds, 0), args.repeats)
            print(f"  onnxruntime full       {ort:8.1f} ms   ({onnx_model.provider})")


if __name__ == "__main__":
    main()
