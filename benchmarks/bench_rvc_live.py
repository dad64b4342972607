"""RVC live conversion cost per block: RVC's own per-block work vs AutoVoice's, alternating, same weights.

Full-size v2 40 kHz synthesizer and full-size HuBERT-base (random weights: the timing does not
depend on the values), FCPE pitch from torchfcpe's bundled model, real speech. For each setting the
reference block and our block run one after the other, on the same audio, in this process, so a
busy machine slows both alike; the ratio of the two medians is the figure to read, the ms are
what this machine gave at that moment.

The reference (:class:`RvcReferenceBlock`) is RVC's realtime per-block work written out step by
step (public RVC WebUI code, ``rvc_for_realtime.infer`` and ``gui_v1``'s audio callback): resample
the new block to 16 kHz, the content encoder over the whole 16 kHz window in float32, the last
feature repeated and x2, FCPE on the newest ``block + 800`` samples into a pitch cache, then the
synthesizer with ``skip_head``/``return_length``. It uses our synthesizer module (the same work as
RVC's, a little faster: the relative-attention gather), so the ratio is if anything conservative.

    python benchmarks/bench_rvc_live.py [--threads N] [--blocks 250,100,50] [--count 8] [--quality]

``--quality`` also prints how far the ``default`` live setting's output is from the ``exact`` one's
(the same comparison tests/rvc/test_live_speed.py bounds with small models).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "rvc"))

from tiny_models import full_config, randomize_  # noqa: E402

from engine.dsp.resample import resample  # noqa: E402
from engine.voices.rvc.content import TorchContentEncoder, features_to_f0_rate  # noqa: E402
from engine.voices.rvc.f0 import f0_to_coarse, load_pitch_estimator  # noqa: E402
from engine.voices.rvc.hubert import HubertModel, hubert_base_config  # noqa: E402
from engine.voices.rvc.synthesizer import build_synthesizer  # noqa: E402
from engine.voices.rvc.voice import RVCVoice  # noqa: E402

SPEECH = ROOT / "tests" / "data" / "freesound136777_davidbain_M_xmas.wav"
SR = 40000


class RvcReferenceBlock:
    """RVC's realtime per-block work (see the module docstring), for timing side by side."""

    def __init__(self, synth, encoder, pitch, block_ms: float, extra_ms: float, crossfade_ms: float):
        self.synth, self.encoder, self.pitch = synth, encoder, pitch
        self.b = int(round(block_ms / 10))
        self.x, self.c, self.s = int(round(extra_ms / 10)), int(round(crossfade_ms / 10)), 1
        self.w = self.x + self.c + self.s + self.b
        self.hop = SR // 100
        self.ring = np.zeros((self.w + 2) * self.hop, np.float32)
        self.ring16 = np.zeros(self.w * 160, np.float32)
        self.f0 = np.zeros(self.w)

    @torch.inference_mode()
    def process(self, block: np.ndarray) -> np.ndarray:
        n, b = len(block), self.b
        self.ring[:-n] = self.ring[n:]
        self.ring[-n:] = block
        fresh = resample(self.ring[-(n + 2 * self.hop) :], SR, 16000)[160 : 160 + (b + 1) * 160]
        self.ring16[: -b * 160] = self.ring16[b * 160 :]
        self.ring16[-len(fresh) :] = fresh
        feats = self.encoder.encode(self.ring16, "v2")  # whole window, float32
        feats = features_to_f0_rate(feats, self.w)
        tail = self.ring16[-(b * 160 + 800) :]
        f0 = self.pitch.estimate(tail)
        self.f0[:-b] = self.f0[b:]
        self.f0[-(len(f0) - 4) :] = f0[3:-1]
        pitch = torch.from_numpy(f0_to_coarse(self.f0)).long()[None]
        pitchf = torch.from_numpy(self.f0).float()[None]
        audio = self.synth.infer(feats, torch.tensor([self.w]), pitch, pitchf, torch.tensor([0]),
                                 skip_head=self.x, return_length=b + self.c + self.s)
        return audio[0, 0].numpy()


def alternate(ref: RvcReferenceBlock, voice: RVCVoice, x: np.ndarray, count: int, params: dict):
    """(reference ms, ours ms) per block, the two run back to back on the same input block."""
    state = voice.init_state()
    hop = voice.hop_samples
    t_ref, t_ours = [], []
    for i in range(count + 2):
        block = x[(i * hop) % (len(x) - hop) :][:hop]
        t0 = time.perf_counter()
        ref.process(block)
        t1 = time.perf_counter()
        _, state = voice.process(block, state, params)
        t2 = time.perf_counter()
        if i >= 2:  # the first calls pay one-off costs (allocator, oneDNN primitives, the cache fill)
            t_ref.append(1000 * (t1 - t0))
            t_ours.append(1000 * (t2 - t1))
    return t_ref, t_ours


def quality(synth, encoder, pitch, x: np.ndarray, params: dict, preset: str = "default", seconds: float = 6.0) -> dict:
    """How far ``preset``'s live output is from the ``exact`` live output on the same speech."""
    from engine.voices.rvc.presets import live_preset

    pr = live_preset(preset)
    geometry = dict(block_ms=pr.block_ms or 250.0, extra_ms=pr.extra_ms or 2500.0, crossfade_ms=pr.crossfade_ms or 50.0)
    outs = {}
    for name in ("exact", preset):
        v = RVCVoice(synth, encoder, pitch_estimators=pitch, live_preset=name, **geometry)
        st = v.init_state()
        n = int(seconds * SR) // v.hop_samples
        chunks = []
        for i in range(n):
            o, st = v.process(x[i * v.hop_samples : (i + 1) * v.hop_samples], st, params)
            chunks.append(o)
        outs[name] = np.concatenate(chunks)[SR:]  # skip the first second (the window filling)
    a, b = outs["exact"], outs[preset]
    err = a - b
    return {
        "snr_db": 10 * np.log10(np.sum(a**2) / max(np.sum(err**2), 1e-20)),
        "max_abs": float(np.max(np.abs(err))),
        "rms_exact": float(np.sqrt(np.mean(a**2))),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--blocks", default="250,100,50")
    ap.add_argument("--count", type=int, default=8, help="timed blocks per setting")
    ap.add_argument("--quality", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    synth = randomize_(build_synthesizer(full_config("v2", True, SR)), seed=0).eval()
    torch.manual_seed(0)
    encoder = TorchContentEncoder(HubertModel(hubert_base_config()).eval())
    pitch = {"fcpe": load_pitch_estimator("fcpe")}
    x, sr = sf.read(SPEECH, dtype="float32")
    x = resample(np.tile(x, 3), sr, SR)
    params = {"transpose_st": 0.0, "index_rate": 0.0, "protect": 0.33, "rms_mix_rate": 0.25, "f0_method": "fcpe",
              "speaker_id": 0}
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, CPU, {args.threads} threads, load average {load:.2f} on {os.cpu_count()} cores; "
          "v2 40k synthesizer + HuBERT-base, full size; FCPE")
    print("ratio: median over blocks of (our block / RVC's block run just before it); RTF: our median / block")
    print(f"{'setting':>22} {'latency':>8} {'RVC ms':>8} {'ours ms':>8} {'ratio':>6} {'RTF ours':>8}")
    rows = [(f"default, {b} ms", dict(live_preset="default", block_ms=float(b))) for b in args.blocks.split(",")]
    rows.append(("small-cpu", dict(live_preset="small-cpu")))
    for label, kw in rows:
        voice = RVCVoice(synth, encoder, pitch_estimators=pitch, extra_ms=2500, crossfade_ms=50, **kw)
        block_ms = voice.block_frames * 10.0
        ref = RvcReferenceBlock(synth, encoder, pitch["fcpe"], block_ms, voice.extra_frames * 10.0,
                                voice.crossfade_frames * 10.0)
        t_ref, t_ours = alternate(ref, voice, x, args.count, params)
        mr, mo = statistics.median(t_ref), statistics.median(t_ours)
        ratio = statistics.median(o / r for o, r in zip(t_ours, t_ref))
        latency_ms = block_ms + 1000 * voice.latency_samples / voice.sample_rate
        print(f"{label:>22} {latency_ms:>6.0f}ms {mr:>6.0f}ms {mo:>6.0f}ms {ratio:>6.2f} {mo / block_ms:>8.2f}"
              f"   (conv cache {voice.feature_cache}, int8 encoder {voice.encoder_int8}, bf16 decoder {voice.decoder_bf16})")
    if args.quality:
        for preset in ("default", "small-cpu"):
            q = quality(synth, encoder, pitch, x, params, preset)
            print(f"quality {preset} vs exact, 6 s of speech: SNR {q['snr_db']:.1f} dB, max |diff| {q['max_abs']:.3f} "
                  f"(output RMS {q['rms_exact']:.3f})")


if __name__ == "__main__":
    main()
