"""RVC live conversion cost per block: the whole streaming voice, full-size models, real speech.

Full-size v2 40 kHz synthesizer and full-size HuBERT-base (random weights: the timing does not
depend on the values), FCPE pitch from torchfcpe's bundled model, RVC's realtime defaults
(extra 2.5 s, crossfade 50 ms) at blocks of 250, 100 and 50 ms, with and without partial decoding,
all in the same run. Prints ms per block and the real-time factor (compute / block; < 1 keeps up).

    python benchmarks/bench_rvc_live.py [--threads N] [--blocks 250,100,50] [--device cuda]

Reference on this kind of 2-core machine (shared/PLATFORM_NOTES.md, RVC's own code, same sizes,
2 threads, before pitch estimation): 516 ms per 250 ms block, 447 ms at 100 ms, 412 ms at 50 ms.
"""

from __future__ import annotations

import argparse
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
from engine.voices.rvc.content import HubertModel, TorchContentEncoder, hubert_base_config  # noqa: E402
from engine.voices.rvc.f0 import load_pitch_estimator  # noqa: E402
from engine.voices.rvc.synthesizer import build_synthesizer  # noqa: E402
from engine.voices.rvc.voice import RVCVoice  # noqa: E402

SPEECH = ROOT / "tests" / "data" / "freesound136777_davidbain_M_xmas.wav"


class FullWindowDecode:
    """The synthesizer decoding the whole window every block (what RVC did before skip_head)."""

    def __init__(self, synth):
        self.synth = synth
        self.cfg = synth.cfg

    def infer(self, phone, lengths, pitch, pitchf, sid, noise_z=None, **_):
        dev = next(self.synth.parameters()).device
        dtype = next(self.synth.parameters()).dtype

        def t(a, d=None):
            return None if a is None else torch.as_tensor(a).to(dev, d) if d else torch.as_tensor(a).to(dev)

        out = self.synth.infer(t(phone, dtype), torch.tensor([phone.shape[1]], device=dev), t(pitch), t(pitchf),
                               torch.tensor([int(sid)], device=dev), noise_z=t(noise_z, dtype))
        return out.float().cpu().numpy()


def run(voice: RVCVoice, x: np.ndarray, params: dict, blocks: int) -> list[float]:
    state = voice.init_state()
    hop = voice.hop_samples
    times = []
    for i in range(blocks + 2):
        block = x[(i * hop) % (len(x) - hop):][:hop]
        t0 = time.perf_counter()
        _, state = voice.process(block, state, params)
        if i >= 2:  # the first calls pay one-off costs (allocator, oneDNN primitives)
            times.append(1000 * (time.perf_counter() - t0))
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--blocks", default="250,100,50")
    ap.add_argument("--count", type=int, default=6, help="timed blocks per setting")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    half = dev.type == "cuda"
    dtype = torch.float16 if half else torch.float32
    synth = randomize_(build_synthesizer(full_config("v2", True, 40000)), seed=0).to(dev, dtype).eval()
    hubert = HubertModel(hubert_base_config()).to(dev, dtype).eval()
    encoder = TorchContentEncoder(hubert, device=dev, dtype=dtype)
    pitch = {"fcpe": load_pitch_estimator("fcpe", device=str(dev))}
    x, sr = sf.read(SPEECH, dtype="float32")
    x = resample(np.tile(x, 3), sr, 40000)
    params = {"transpose_st": 0.0, "index_rate": 0.0, "protect": 0.33, "rms_mix_rate": 0.25, "f0_method": "fcpe",
              "speaker_id": 0}
    print(f"torch {torch.__version__} on {dev} ({'fp16' if half else 'fp32'}), {args.threads} threads; "
          "v2 40k synthesizer + HuBERT-base, full size; FCPE; extra 2500 ms, crossfade 50 ms")
    print(f"{'block':>8} {'decoding':>9} {'mean':>9} {'median':>9} {'max':>9} {'RTF':>6}")
    for block_ms in [float(b) for b in args.blocks.split(",")]:
        for partial in (False, True):
            model = synth if partial else FullWindowDecode(synth)
            voice = RVCVoice(model, encoder, pitch_estimators=pitch, block_ms=block_ms, extra_ms=2500, crossfade_ms=50)
            t = run(voice, x, params, args.count)
            med = statistics.median(t)
            print(f"{block_ms:>6.0f}ms {'partial' if partial else 'full':>9} {statistics.mean(t):>7.1f}ms "
                  f"{med:>7.1f}ms {max(t):>7.1f}ms {med / block_ms:>6.2f}")


if __name__ == "__main__":
    main()
