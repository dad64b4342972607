"""Pitch accuracy of the built-in shifter beside rubberband and sox, judged by an independent tracker.

    python benchmarks/bench_pitch_accuracy.py                       # the recordings in ../shared/audio
    python benchmarks/bench_pitch_accuracy.py a.wav b.flac -t -7 4  # any recordings, any transpositions
    python benchmarks/bench_pitch_accuracy.py --no-ref              # ours only (no rubberband/sox)

For every clip and transposition N, the error is the median over 5 ms frames voiced in both of
1200 * log2(f0_out / (f0_in * 2^(N/12))), f0 from WORLD's harvest (pyworld) on 16 kHz copies of
input and output. "ours live" is the streaming path the live engine runs (engine.offline
convert_signal with the voice as loaded for live use); "ours file" is `autovoice convert`'s path.
rubberband runs as `rubberband -3 -F -p N` (R3 engine, formant preserving) and sox as
`sox in out pitch 100N`; both come from Debian's `rubberband-cli` and `sox` and the columns say
"missing" when a tool is not installed.

Also printed, per clip: "clicks", the number of 5 ms frames of the output whose high-band
(> 4 kHz) energy jumps 12 dB above both neighbours while the input's does not (a transient the
shifter made, such as a splice at a voicing change), for every column, so the reference tools
give its baseline; "buzz", the share of the input's unvoiced frames (breath, fricatives, silence)
that the tracker hears as voiced in the output (a pitch imposed on noise: the metallic buzz of
a shifter on breathy voices); and at the end the voice's latency and its
compute per 10 ms block against a passthrough baseline in the same run.

Harvest results of the inputs and of the reference tools are cached under --cache (keyed by the
file's contents), so a rerun costs only our own conversions.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.offline.convert import convert_signal  # noqa: E402
from engine.voices.builtin import PRESETS, BuiltinVoice  # noqa: E402

DEFAULT_AUDIO = ROOT.parent / "shared" / "audio"
TRACK_RATE = 16000
FRAME_MS = 5.0


F0_FLOOR_HZ = 40.0  # --f0-floor: 30 measures a ~75 Hz voice at -12 st (37.5 Hz), at some risk of reading breath


def harvest(x: np.ndarray, sample_rate: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyworld imports pkg_resources
        import pyworld
    y = soxr.resample(np.asarray(x, np.float64), sample_rate, TRACK_RATE) if sample_rate != TRACK_RATE else np.asarray(x, np.float64)
    f0, _ = pyworld.harvest(np.ascontiguousarray(y), TRACK_RATE, f0_floor=F0_FLOOR_HZ, f0_ceil=1100.0, frame_period=FRAME_MS)
    return f0


def cached_harvest(x: np.ndarray, sample_rate: int, cache: Path | None) -> np.ndarray:
    if cache is None:
        return harvest(x, sample_rate)
    tag = str(sample_rate) + ("" if F0_FLOOR_HZ == 40.0 else f"/{F0_FLOOR_HZ:g}")
    key = hashlib.sha1(np.ascontiguousarray(x, np.float32).tobytes() + tag.encode()).hexdigest()
    path = cache / f"harvest_{key}.npy"
    if path.exists():
        return np.load(path)
    f0 = harvest(x, sample_rate)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, f0)
    return f0


def median_error_cents(f_in: np.ndarray, f_out: np.ndarray, semitones: float) -> tuple[float, int]:
    n = min(len(f_in), len(f_out))
    a, b = f_in[:n], f_out[:n]
    both = (a > 0) & (b > 0)
    if both.sum() < 20:
        return float("nan"), int(both.sum())
    cents = 1200 * np.log2(b[both] / (a[both] * 2 ** (semitones / 12)))
    return float(np.median(cents)), int(both.sum())


def highband_db(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Energy above 4 kHz per 5 ms frame, in dB (floor -100)."""
    hop = int(sample_rate * FRAME_MS / 1000)
    n = len(x) // hop
    spec = np.fft.rfft(x[: n * hop].reshape(n, hop) * np.hanning(hop), axis=1)
    freqs = np.fft.rfftfreq(hop, 1 / sample_rate)
    e = np.sum(np.abs(spec[:, freqs > 4000]) ** 2, axis=1)
    return 10 * np.log10(e + 1e-10)


def count_clicks(x_in: np.ndarray, y_out: np.ndarray, sample_rate: int) -> int:
    """Frames where the output's high band spikes 12 dB over both neighbours and the input's does not."""
    if sample_rate < 12000:
        return 0
    a, b = highband_db(x_in, sample_rate), highband_db(y_out, sample_rate)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    # Pulses laid further apart (-12 st) make the high band rise and fall at the new pitch; a click
    # is energy the input had nowhere near that moment.
    a_near = np.maximum(np.maximum(a, np.roll(a, 1)), np.roll(a, -1))

    def spikes(e):
        s = np.zeros(n, bool)
        s[1:-1] = (e[1:-1] > e[:-2] + 12) & (e[1:-1] > e[2:] + 12) & (e[1:-1] > -60)
        return s

    sa = spikes(a)
    near = sa | np.roll(sa, 1) | np.roll(sa, -1)
    return int(np.sum(spikes(b) & ~near & (b > a_near + 6)))


def buzz_percent(f_in: np.ndarray, f_out: np.ndarray) -> float:
    """Of the frames unvoiced in the input, the percentage voiced in the output."""
    n = min(len(f_in), len(f_out))
    unvoiced = f_in[:n] == 0
    return 100.0 * float(np.mean(f_out[:n][unvoiced] > 0)) if unvoiced.any() else 0.0


def run_tool(cmd: list[str]) -> bool:
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def reference_output(tool: str, x: np.ndarray, sample_rate: int, semitones: float, tmp: Path) -> np.ndarray | None:
    exe = {"rubberband": "rubberband", "sox": "sox"}[tool]
    if shutil.which(exe) is None:
        return None
    src, dst = tmp / "in.wav", tmp / f"{tool}.wav"
    sf.write(src, x, sample_rate, subtype="FLOAT")
    if tool == "rubberband":
        ok = run_tool([exe, "-q", "-3", "-F", "-p", f"{semitones:g}", str(src), str(dst)])
    else:
        ok = run_tool([exe, str(src), str(dst), "pitch", f"{100 * semitones:g}"])
    if not ok:
        return None
    y, _ = sf.read(dst, dtype="float32")
    return y.mean(axis=1) if y.ndim > 1 else y


def load(path: Path, seconds: float) -> tuple[np.ndarray, int]:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if seconds > 0:
        x = x[: int(seconds * sr)]
    peak = np.max(np.abs(x))
    return (0.5 * x / peak if peak > 0 else x).astype(np.float32), sr


def ours(x: np.ndarray, sr: int, semitones: float, offline: bool) -> np.ndarray:
    """The file path is convert_signal as `autovoice convert` runs it; the live path is the same
    Pipeline with the voice exactly as the live stream holds it (no file-conversion twin)."""
    voice = BuiltinVoice(PRESETS["deeper"])
    return convert_signal(x, sr, voice, params={"transpose_st": float(semitones), "formant_st": 0.0}, offline_twin=offline)


def compute_per_block(block_ms: float = 10.0, seconds: float = 10.0) -> list[tuple[str, float, float, float]]:
    """(label, latency ms, mean ms, p99 ms) per 10 ms block through the Pipeline, passthrough first."""
    from engine.config import ChainConfig
    from engine.pipeline import Pipeline

    x, sr = load(ROOT / "tests" / "data" / "freesound136777_davidbain_M_xmas.wav", 0)
    rows = []
    for name in ("natural", "deeper", "giant", "male-to-female"):
        voice = BuiltinVoice(PRESETS[name])
        v = soxr.resample(x, sr, voice.sample_rate).astype(np.float32)
        v = np.tile(v, int(np.ceil(seconds * voice.sample_rate / len(v))))[: int(seconds * voice.sample_rate)]
        hop = int(round(block_ms * voice.sample_rate / 1000))
        pipe = Pipeline(voice, hop, ChainConfig())
        state = pipe.init_state()
        times = []
        for start in range(0, len(v) - hop + 1, hop):
            c0 = time.thread_time()
            _, state = pipe.process(v[start : start + hop], state)
            times.append(1000 * (time.thread_time() - c0))
        t = np.array(times[20:])
        rows.append((name, block_ms + 1000 * voice.latency_samples / voice.sample_rate, t.mean(), np.percentile(t, 99)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help=f"recordings (default: speech and singing in {DEFAULT_AUDIO})")
    ap.add_argument("-t", "--transpose", type=float, nargs="+", default=[-12, -7, 4, 12])
    ap.add_argument("--seconds", type=float, default=12.0, help="use the first S seconds of each clip (0 = all)")
    ap.add_argument("--no-ref", action="store_true", help="skip rubberband and sox")
    ap.add_argument("--no-file", action="store_true", help="skip the file-conversion (offline) path")
    ap.add_argument("--no-compute", action="store_true", help="skip the compute-per-block table")
    ap.add_argument("--f0-floor", type=float, default=40.0, help="harvest's floor in Hz (default 40)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "autovoice_bench_cache")
    args = ap.parse_args()
    global F0_FLOOR_HZ
    F0_FLOOR_HZ = args.f0_floor
    files = args.files or sorted((DEFAULT_AUDIO / "speech").glob("*.wav")) + sorted((DEFAULT_AUDIO / "singing").glob("*.wav"))
    if not files:
        sys.exit(f"No recordings given and none found in {DEFAULT_AUDIO}; pass WAV/FLAC files as arguments.")
    tools = [] if args.no_ref else ["rubberband", "sox"]
    for tool in tools:
        if shutil.which(tool) is None:
            print(f"NOTE: `{tool}` is not installed (Debian: apt-get install {'rubberband-cli' if tool == 'rubberband' else 'sox'}); its column reads 'missing'.")
    cols = ["ours live"] + ([] if args.no_file else ["ours file"]) + tools
    print(f"median error in cents (harvest, {F0_FLOOR_HZ:g} Hz floor, {FRAME_MS:g} ms frames voiced in both); clicks = spurious high-band transients")
    print(f"{'clip':<44}{'N':>5}" + "".join(f"{c:>12}" for c in cols) + f"{'clicks ' + '/'.join(c.replace('ours ', '') for c in cols):>34}"
          + f"{'buzz % ' + '/'.join(c.replace('ours ', '') for c in cols):>34}")
    worst = {c: 0.0 for c in cols}
    total_clicks = {c: 0 for c in cols}
    buzz = {c: [] for c in cols}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for path in files:
            x, sr = load(path, args.seconds)
            f_in = cached_harvest(x, sr, args.cache)
            for n in args.transpose:
                cells, clicks, buzzes = [], [], []
                for col in cols:
                    if col.startswith("ours"):
                        y = ours(x, sr, n, offline=col == "ours file")
                        f_out = harvest(y, sr)
                    else:
                        y = reference_output(col, x, sr, n, tmp)
                        if y is None:
                            cells.append(f"{'missing':>12}")
                            clicks.append("-")
                            buzzes.append("-")
                            continue
                        f_out = cached_harvest(y, sr, args.cache)
                    clicks.append(str(count_clicks(x, y, sr)))
                    total_clicks[col] += int(clicks[-1])
                    buzz[col].append(buzz_percent(f_in, f_out))
                    buzzes.append(f"{buzz[col][-1]:.1f}")
                    err, _ = median_error_cents(f_in, f_out, n)
                    worst[col] = max(worst[col], abs(err)) if np.isfinite(err) else worst[col]
                    cells.append(f"{err:>+12.1f}")
                print(f"{path.stem[:43]:<44}{n:>+5g}" + "".join(cells) + f"{'/'.join(clicks):>34}" + f"{'/'.join(buzzes):>34}", flush=True)
    print(f"{'worst |median error|':<49}" + "".join(f"{worst[c]:>12.1f}" for c in cols))
    print(f"{'clicks, all clips':<49}" + "".join(f"{total_clicks[c]:>12d}" for c in cols))
    print(f"{'buzz %, mean over clips':<49}" + "".join(f"{np.mean(buzz[c]) if buzz[c] else 0.0:>12.1f}" for c in cols))
    if not args.no_compute:
        print("\nlatency and compute per 10 ms block (thread CPU time, Pipeline as the live worker runs it)")
        print(f"{'voice':<26}{'algorithmic latency':>20}{'mean':>9}{'p99':>9}")
        for name, lat, mean, p99 in compute_per_block():
            tag = " (passthrough baseline)" if name == "natural" else ""
            print(f"{name + tag:<26}{lat:>17.1f} ms{mean:>6.2f} ms{p99:>6.2f} ms")


if __name__ == "__main__":
    main()
