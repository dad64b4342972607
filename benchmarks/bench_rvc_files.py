"""RVC file conversion: the offline twin (what `autovoice convert` and song covers run) against the
live geometry, on the same audio in the same run.

Full-size RVC v2 40 kHz synthesizer and HuBERT base, random weights (timing does not depend on
them), DSP pitch (FCPE with --fcpe), real speech. For each way: seconds of compute per second of
audio, and how close the result is to the whole-signal conversion of the same voice (one window
over everything, the same noise per frame): SNR in dB. Prints figures; asserts nothing.

    python benchmarks/bench_rvc_files.py [--seconds 10] [--threads N] [--fcpe]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from engine.dsp.resample import resample  # noqa: E402
from engine.offline.convert import convert_signal  # noqa: E402
from engine.voices.rvc.voice import load_rvc_voice  # noqa: E402

SPEECH = ROOT / "tests" / "data" / "freesound136777_davidbain_M_xmas.wav"


def main() -> None:
    import soundfile as sf

    from soak_live import rvc_files

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--fcpe", action="store_true", help="FCPE pitch (default: the DSP tracker)")
    ap.add_argument("--preset", default="default", help="the live setting of the baseline")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    pth, hubert = rvc_files()
    voice = load_rvc_voice(pth, content_encoder_path=hubert, device="cpu", live_preset=a.preset)
    x, sr = sf.read(SPEECH, dtype="float32")
    x = resample(np.tile(x, 4), sr, voice.sample_rate)[: int(a.seconds * voice.sample_rate)]
    params = {"f0_method": "fcpe" if a.fcpe else "dsp"}
    mid = slice(voice.sample_rate, len(x) - voice.sample_rate // 10)
    print(f"{a.seconds:.0f} s of speech, {a.threads} threads, pitch {params['f0_method']}")
    print("| way | block | look-ahead | s per s of audio | SNR to the whole-signal conversion |")
    print("|---|---|---|---|---|")
    for name, twin in ((f"live geometry ({a.preset}; `offline_twin=False`)", False), ("offline twin (files, songs)", True)):
        v = voice.offline_twin() if twin else voice
        t0 = time.perf_counter()
        y = convert_signal(x, voice.sample_rate, voice, params, offline_twin=twin)
        per_s = (time.perf_counter() - t0) / a.seconds
        ref = v.convert_offline(x, params)
        snr = 10 * np.log10(np.sum(ref[mid] ** 2) / np.sum((ref[mid] - y[mid]) ** 2))
        print(f"| {name} | {v.block_frames * 10} ms | {v.lookahead_frames * 10} ms | {per_s:.2f} | {snr:.1f} dB |",
              flush=True)


if __name__ == "__main__":
    main()
