"""Built-in voices: latency and compute per block, against a passthrough baseline in the same run.

    python benchmarks/bench_engine.py              # offline figures (one core) only
    python benchmarks/bench_engine.py --jack 60    # plus a 60 s live run and click latency through JACK

Compute is timed on the Pipeline (gate, gains, voice, limiter) exactly as the worker runs it, on
real speech, pinned to one CPU core. "natural" (gate and gains only) is the passthrough baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from engine.config import AudioConfig, ChainConfig  # noqa: E402
from engine.dsp.resample import resample  # noqa: E402
from engine.pipeline import Pipeline  # noqa: E402
from engine.voices.builtin import PRESETS, BuiltinVoice  # noqa: E402

SPEECH = ROOT / "tests" / "data" / "freesound136777_davidbain_M_xmas.wav"


def time_voice(name: str, block_ms: float, seconds: float = 10.0) -> dict:
    voice = BuiltinVoice(PRESETS[name])
    sr = voice.sample_rate
    hop = int(round(block_ms * sr / 1000))
    x, fsr = sf.read(SPEECH, dtype="float32")
    x = resample(x, fsr, sr)
    x = np.tile(x, int(np.ceil(seconds * sr / len(x))))[: int(seconds * sr)]
    pipe = Pipeline(voice, hop, ChainConfig())
    state = pipe.init_state()
    for i in range(20):  # warm caches
        _, state = pipe.process(x[i * hop:(i + 1) * hop], state)
    state = pipe.init_state()
    times = []
    for start in range(0, len(x) - hop + 1, hop):
        t0 = time.perf_counter()
        _, state = pipe.process(x[start:start + hop], state)
        times.append(1000 * (time.perf_counter() - t0))
    t = np.array(times)
    look_ms = 1000 * pipe.latency_samples / sr
    return {"voice": name, "block_ms": block_ms, "lookahead_ms": look_ms, "algorithmic_ms": block_ms + look_ms,
            "mean_ms": t.mean(), "p99_ms": np.percentile(t, 99), "max_ms": t.max(),
            "p99_load": np.percentile(t, 99) / block_ms}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--block-ms", type=float, default=AudioConfig().block_ms)
    ap.add_argument("--jack", type=float, default=0.0, metavar="SECONDS", help="also run live through JACK")
    args = ap.parse_args()
    original_cpus = None
    try:
        original_cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {sorted(original_cpus)[0]})
        pinned = "pinned to one core"
    except (AttributeError, OSError):
        pinned = "not pinned"
    print(f"Built-in voices at default settings, {args.block_ms:g} ms blocks, 48 kHz, {pinned}")
    print(f"{'voice':<16}{'algo latency':>13}{'look-ahead':>11}{'mean':>9}{'p99':>9}{'max':>9}{'p99/block':>11}")
    rows = [time_voice("natural", args.block_ms)] + [
        time_voice(n, args.block_ms) for n in PRESETS if n != "natural"]
    for r in rows:
        tag = "  (passthrough baseline)" if r["voice"] == "natural" else ""
        print(f"{r['voice']:<16}{r['algorithmic_ms']:>10.1f} ms{r['lookahead_ms']:>8.1f} ms"
              f"{r['mean_ms']:>6.2f} ms{r['p99_ms']:>6.2f} ms{r['max_ms']:>6.2f} ms{100 * r['p99_load']:>10.1f}%{tag}")
    if args.jack:
        from jack_loopback import measure

        if original_cpus:
            os.sched_setaffinity(0, original_cpus)  # the live run gets the machine as a user would

        print(f"\nLive through JACK (dummy driver, 48 kHz, 256-frame periods), {args.jack:g} s per voice:")
        print(f"{'voice':<16}{'measured e2e':>13}{'reported':>10}{'underflows':>11}{'overflows':>10}{'late':>6}{'p99':>9}")
        for name in ("natural", "deeper"):
            r = measure(name, seconds=args.jack)
            print(f"{name:<16}{r['measured_ms_median']:>10.1f} ms{r['reported_total_ms']:>7.1f} ms"
                  f"{r['underflows']:>11}{r['overflows']:>10}{r['late_blocks']:>6}{r['compute_ms_p99']:>6.2f} ms")


if __name__ == "__main__":
    main()
