"""Song covers: separation quality per separator, and seconds per minute of song for each stage.

    python benchmarks/bench_song.py                       # both parts
    python benchmarks/bench_song.py --quality-only
    python benchmarks/bench_song.py --demucs-weights ~/.local/share/AutoVoice/models/955717e8-8726e21a.th

Quality: real a-cappella singing (../shared/audio/singing, or --singing DIR) over a synthesised
band (tests/separation/mixes.py: vocal, bass and kick in the centre, keys and guitar to the
sides), SDR and SI-SDR of the vocals and the accompaniment for each separator, against the
unprocessed mixture as the baseline estimate. htdemucs is measured only with its real weights.

Timing: the real stereo song from tests/data, looped to --seconds, through engine.offline.song
stage by stage (stereo separator, and htdemucs at full size with random weights: its cost does
not depend on the weights), with the built-in 'deeper' voice, --key 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.separation.metrics import sdr_db, si_sdr_db  # noqa: E402
from engine.separation.stereo import StereoSeparator  # noqa: E402
from tests.separation.mixes import known_mix  # noqa: E402

SINGING = ROOT.parent / "shared" / "audio" / "singing"
CLIPS = (("vocadito_10_S7_English.wav", None), ("vocadito_1_S1_Tagalog.wav", 30.0))


def quality(singing: Path, demucs_weights: Path | None) -> None:
    separators = {"stereo": StereoSeparator()}
    if demucs_weights is not None:
        from engine.separation.demucs import DemucsSeparator

        separators["htdemucs"] = DemucsSeparator.from_file(demucs_weights)
    print("separation quality (dB; higher is better; baseline = the mixture itself as the estimate)")
    print(f"{'clip':<40} {'separator':<10} {'voc SDR':>8} {'voc SI-SDR':>10} {'acc SDR':>8} {'acc SI-SDR':>10}")
    for (name, seconds), wet in [(c, w) for c in CLIPS for w in (None, -10.0)]:
        path = singing / name
        if not path.is_file():
            print(f"{name}: not found in {singing}; skipped")
            continue
        mix, voc, acc = known_mix(path, 44100, seconds, vocal_reverb_db=wet)
        name = name.replace(".wav", "") + (" dry" if wet is None else f" +reverb {wet:g} dB")
        rows = [("mixture", mix, mix)]
        for sname, sep in separators.items():
            st = sep.separate(mix, 44100)
            rows.append((sname, st.vocals, st.accompaniment))
        for sname, v, a in rows:
            print(f"{name[:40]:<40} {sname:<10} {sdr_db(voc, v):8.2f} {si_sdr_db(voc, v):10.2f} "
                  f"{sdr_db(acc, a):8.2f} {si_sdr_db(acc, a):10.2f}")
    if demucs_weights is None:
        print("htdemucs: not measured (no weight file given: --demucs-weights PATH)")


def timing(seconds: float) -> None:
    import torch

    from engine.offline.song import SongOptions, convert_song
    from engine.separation.demucs import DemucsSeparator
    from engine.voices.registry import load_voice

    torch.set_num_threads(int(os.environ.get("AUTOVOICE_BENCH_THREADS", "2")))
    x, sr = sf.read(ROOT / "tests" / "data" / "StevenMBryant_SlowMotionDream_excerpt_stereo44k.mp3",
                    dtype="float32", always_2d=True)
    n = int(seconds * sr)
    song = np.tile(x, (int(np.ceil(n / len(x))), 1))[:n]
    from demucs_infer.htdemucs import HTDemucs

    torch.manual_seed(0)
    full = HTDemucs(sources=["drums", "bass", "other", "vocals"])  # the htdemucs architecture, full size
    print(f"\nstage timing, seconds per minute of song ({seconds:.0f} s stereo 44.1 kHz song, "
          f"{torch.get_num_threads()} torch threads, {'GPU' if torch.cuda.is_available() else 'CPU'})")
    print(f"{'separator':<10} {'separate':>9} {'pitch (--key 2)':>16} {'convert (deeper)':>17} {'mix':>6} {'total':>7}")
    voice = load_voice("deeper")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "song.wav"
        sf.write(src, song, sr, subtype="FLOAT")
        for label, sep in (("stereo", StereoSeparator()),
                           ("htdemucs", DemucsSeparator(full, "random-weights"))):
            t0 = time.perf_counter()
            r = convert_song(src, Path(tmp) / "out.wav", voice, "deeper", {}, SongOptions(key_st=2.0, separator=label),
                             sep)
            total = time.perf_counter() - t0
            per_min = {k: v * 60.0 / seconds for k, v in r.stage_seconds.items()}
            print(f"{label:<10} {per_min['separate']:9.1f} {per_min['pitch']:16.1f} {per_min['convert']:17.1f} "
                  f"{per_min['mix']:6.1f} {total * 60.0 / seconds:7.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--singing", type=Path, default=SINGING)
    ap.add_argument("--demucs-weights", type=Path)
    ap.add_argument("--seconds", type=float, default=30.0, help="song length for the timing part")
    ap.add_argument("--quality-only", action="store_true")
    ap.add_argument("--timing-only", action="store_true")
    args = ap.parse_args()
    if not args.timing_only:
        quality(args.singing, args.demucs_weights)
    if not args.quality_only:
        timing(args.seconds)


if __name__ == "__main__":
    main()
