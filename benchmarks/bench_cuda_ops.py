"""cuda_ops: each Triton kernel against its pure-torch reference, at the live block's sizes.

    python benchmarks/bench_cuda_ops.py [--device cuda] [--json out.json] [--repeats 20] [--threads N]

Sizes are those of a v2 40 kHz voice at RVC's realtime defaults (250 ms block, 50 ms crossfade,
10 ms search): kNN over the decoded frames (16 queries of 768 channels) against 10k/100k vectors,
the NSF source of one decoded chunk (31 frames x 400 samples), SOLA over 2000 + 400 samples.
On a machine without a GPU it prints the reference figures and says the kernels need one
(Triton's CPU interpreter runs them for the parity tests, but its speed means nothing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cuda_ops import dispatch, knn, nsf, sola  # noqa: E402


def time_ms(fn, device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn()`` in ms (device-synchronised), after two warm-up calls."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def cases(device: torch.device, sizes: list[int]):
    """(name, reference callable, kernel callable) at live-block sizes, inputs on ``device``."""
    gen = torch.Generator().manual_seed(0)
    out = []
    q = torch.randn(16, 768, generator=gen).to(device)
    for n in sizes:
        v = torch.randn(n, 768, generator=gen).to(device)
        vn = knn.squared_norms(v)
        out.append((f"knn_flat_{n // 1000}k_ms", lambda v=v, vn=vn: knn.knn_flat_reference(q, v, 8, vn),
                    lambda v=v, vn=vn: knn.knn_flat_kernel(q, v, 8, vn)))
        d2, ids = knn.knn_flat_reference(q, v, 8, vn)
        out.append((f"blend_{n // 1000}k_ms", lambda v=v, d2=d2, ids=ids: knn.blend_reference(q, d2, ids, v, 0.5),
                    lambda v=v, d2=d2, ids=ids: knn.blend_kernel(q, d2, ids, v, 0.5)))
    t, upp, head, length = 311, 400, 280, 31
    f0 = (120 + 80 * torch.rand(1, t, generator=gen)).to(device)
    noise = torch.randn(1, 1, length * upp, generator=gen).to(device)
    w, b = torch.full((1, 1), 0.9, device=device), torch.zeros(1, device=device)
    ph = torch.zeros(1, dtype=torch.float64, device=device)
    out.append(("nsf_source_ms", lambda: nsf.nsf_source_reference(f0, upp, 40000, w, b, noise, ph, head, length),
                lambda: nsf.nsf_source_kernel(f0, upp, 40000, w, b, noise, ph, head, length)))
    hop, c, s = 10000, 2000, 400
    chunk = torch.randn(hop + c + s, generator=gen).to(device)
    tail = torch.randn(c, generator=gen).to(device)
    fi = torch.linspace(0, 1, c).to(device)
    fo = 1 - fi
    out.append(("sola_step_ms", lambda: sola.sola_step(chunk, tail, fi, fo, hop, s, impl="reference"),
                lambda: sola.sola_step(chunk, tail, fi, fo, hop, s, impl="kernel")))
    return out


def run(device: torch.device, repeats: int, sizes: list[int]) -> dict:
    can_kernel = dispatch.kernel_mode() == "compiled" and device.type == "cuda"
    figures = {}
    for name, ref, ker in cases(device, sizes):
        entry = {"reference_ms": round(time_ms(ref, device, repeats), 4)}
        entry["kernel_ms"] = round(time_ms(ker, device, repeats), 4) if can_kernel else None
        figures[name] = entry
    return {"device": str(device), "kernels": "compiled" if can_kernel else f"not run: {dispatch.why_no_kernel() or 'the kernels need a CUDA GPU'}",
            "triton": dispatch.triton_version(), "figures": figures}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="CPU threads (on a shared machine, fewer than the cores avoids OpenMP spin-waits)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = run(device, args.repeats, [int(s) for s in args.sizes.split(",")])
    print(f"cuda_ops on {device} (torch {torch.__version__}, {torch.get_num_threads()} threads, triton {result['triton']}); "
          f"kernels: {result['kernels']}")
    print(f"{'op':>20} {'reference':>11} {'kernel':>11} {'speed-up':>9}")
    for name, e in result["figures"].items():
        k = e["kernel_ms"]
        print(f"{name:>20} {e['reference_ms']:>9.3f}ms {('%9.3fms' % k) if k is not None else '    (GPU)':>11} "
              f"{('%8.1fx' % (e['reference_ms'] / k)) if k else '':>9}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
