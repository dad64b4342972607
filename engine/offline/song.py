"""Song conversion: separate the vocals, convert them with a voice, mix them back.

    song (n, ch) at sr
      |-- separate ----> vocals (n, ch) + accompaniment (n, ch)      [cached by content + separator]
      |-- pitch -------> accompaniment moved by --key (phase vocoder, polyphonic); vocals moved by
      |                  --transpose + --key inside the voice (formant-preserving), or by the
      |                  PSOLA shifter first for a voice without a transpose setting
      |-- convert -----> mono vocals -> voice -> re-panned with each channel's vocal level
      '-- mix ---------> converted vocals at the original vocals' loudness (ITU-R BS.1770,
                         pyloudnorm) + --vocals-db, accompaniment + --accomp-db, summed; peaks
                         that would pass -0.3 dBFS go through a 5 ms look-ahead limiter (never clipped)
    -> (n, ch) at sr: the song's length, rate and channel count

Nothing is written until every stage has finished, and then atomically (engine.offline.files),
so a cancelled or failed song leaves no partial output and no stems.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.config import ChainConfig
from engine.dsp.resample import resample
from engine.errors import AudioFileError, AutoVoiceError, ConfigError
from engine.offline.convert import ConversionCancelled, convert_signal
from engine.offline.files import output_format, read_audio, write_audio
from engine.separation.base import SeparationCancelled, Separator, Stems
from engine.voices.base import Voice

STAGES = ("separate", "pitch", "convert", "mix")
MAX_DURATION_S = 20 * 60.0
SILENT_PEAK_DB = -60.0  # a song whose loudest sample is below this is treated as silent
VOCALS_ABSENT_LUFS = -60.0  # separated vocals quieter than this: an instrumental, nothing to convert
PEAK_CEILING = 10 ** (-0.3 / 20)  # -0.3 dBFS: headroom for lossy encoders' overshoot
CACHE_KEEP_SONGS = 8


class SongCancelled(AutoVoiceError):
    pass


@dataclass(frozen=True)
class SongOptions:
    transpose_st: float = 0.0  # vocals only
    key_st: float = 0.0  # the whole song
    vocals_db: float = 0.0  # on top of the loudness match
    accomp_db: float = 0.0
    separator: str = "auto"
    stems_dir: str | None = None
    max_duration_s: float = MAX_DURATION_S
    use_cache: bool = True

    def validated(self) -> "SongOptions":
        for name, lo, hi, what in (("transpose_st", -24.0, 24.0, "--transpose (semitones)"),
                                   ("key_st", -12.0, 12.0, "--key (semitones)"),
                                   ("vocals_db", -40.0, 20.0, "--vocals-db"),
                                   ("accomp_db", -40.0, 20.0, "--accomp-db"),
                                   ("max_duration_s", 1.0, 6 * 3600.0, "the longest song (seconds)")):
            value = getattr(self, name)
            try:
                ok = lo <= float(value) <= hi
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ConfigError(f"{what[:1].upper()}{what[1:]} must be between {lo:g} and {hi:g}, not {value!r}.")
        return self


def transpose_warning(transpose_st: float) -> str | None:
    """A sentence when a vocals-only transpose leaves the song's key (anything but whole octaves)."""
    if abs(transpose_st) < 1e-9 or abs(transpose_st / 12.0 - round(transpose_st / 12.0)) < 1e-9:
        return None
    return (f"--transpose {transpose_st:g} moves only the vocals, {transpose_st:g} semitones away from the song's key "
            f"(only multiples of 12 stay in key); use --key {transpose_st:g} to move the whole song instead.")


@dataclass(frozen=True)
class StageProgress:
    stage: str  # one of STAGES
    index: int  # 0-based position of the stage in STAGES
    fraction: float  # of this stage, 0..1
    stage_elapsed_s: float
    eta_s: float | None  # time left in this stage; None until it can be estimated
    cached: bool = False  # the stems came from the cache

    @property
    def overall(self) -> float:
        return (self.index + self.fraction) / len(STAGES)


ProgressFn = Callable[[StageProgress], None]


@dataclass(frozen=True)
class SongResult:
    input_path: str
    output_path: str
    duration_s: float
    sample_rate: int
    channels: int
    separator: str
    cache_hit: bool
    stems: dict[str, str]
    warnings: list[str]
    stage_seconds: dict[str, float]
    vocals_match_db: float  # gain applied to the converted vocals to match the original's loudness
    mix_gain_db: float  # <= 0: the deepest gain reduction the peak limiter applied
    elapsed_s: float = 0.0


# ---------------------------------------------------------------------- stems cache
def song_key(data: np.ndarray, sample_rate: int) -> str:
    """The song's content (decoded samples and rate), so a renamed or re-tagged file still hits."""
    h = hashlib.sha256()
    h.update(f"{sample_rate}:{data.shape}".encode())
    h.update(np.ascontiguousarray(data, dtype=np.float32).tobytes())
    return h.hexdigest()[:32]


class StemCache:
    """Separated stems on disk: ``<dir>/<song key>-<separator cache id>/{vocals,accompaniment}.npy``.

    Entries are written to a temporary folder and renamed into place, so a reader never sees half
    of one; the least recently used beyond ``keep`` are deleted.
    """

    def __init__(self, folder: Path, keep: int = CACHE_KEEP_SONGS):
        self.folder = Path(folder)
        self.keep = keep

    def _entry(self, key: str, separator_id: str) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in separator_id)
        return self.folder / f"{key}-{safe}"

    def get(self, key: str, separator_id: str, sample_rate: int, shape: tuple[int, int]) -> Stems | None:
        entry = self._entry(key, separator_id)
        try:
            vocals = np.load(entry / "vocals.npy", allow_pickle=False)
            acc = np.load(entry / "accompaniment.npy", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if vocals.shape != shape or acc.shape != shape:
            return None
        os.utime(entry)  # most recently used
        return Stems(vocals.astype(np.float32), acc.astype(np.float32), sample_rate)

    def put(self, key: str, separator_id: str, stems: Stems) -> None:
        entry = self._entry(key, separator_id)
        tmp: Path | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.folder))
            np.save(tmp / "vocals.npy", stems.vocals, allow_pickle=False)
            np.save(tmp / "accompaniment.npy", stems.accompaniment, allow_pickle=False)
            if entry.exists():
                shutil.rmtree(entry, ignore_errors=True)
            os.replace(tmp, entry)
        except OSError:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            return  # a cache that cannot be written only costs time next run
        self.prune()

    def prune(self) -> None:
        try:
            entries = sorted((p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                             key=lambda p: p.stat().st_mtime, reverse=True)
        except OSError:
            return
        for old in entries[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------- DSP pieces
def shift_polyphonic(x: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Pitch-shift a polyphonic signal (n,) by ``semitones``, same length, time-aligned.

    PSOLA (the voice shifter) needs one pitch per moment; an accompaniment has many, so it is
    stretched in time by a phase vocoder (frames centred at k*ha read, at k*hs written, each
    bin's phase advanced by its measured frequency) and resampled back to its length. Formants
    are not a property of a band, so none are preserved here.
    """
    if abs(semitones) < 1e-6 or len(x) == 0:
        return np.asarray(x, np.float32)
    nfft = int(2 ** np.round(np.log2(0.093 * sample_rate)))
    ha = nfft // 4
    hs = int(round(ha * 2 ** (semitones / 12.0)))
    win = np.hanning(nfft + 1)[:-1]
    n = len(x)
    xp = np.concatenate([np.zeros(nfft // 2), np.asarray(x, np.float64), np.zeros(nfft)])
    frames = 1 + (len(xp) - nfft) // ha
    out = np.zeros(frames * hs + nfft)
    norm = np.zeros_like(out)
    omega = 2 * np.pi * np.arange(nfft // 2 + 1) * ha / nfft
    prev_phase = None
    acc_phase = None
    block = 256  # frames per FFT batch: bounds memory on long songs
    for f0 in range(0, frames, block):
        idx = np.arange(f0, min(frames, f0 + block))
        segs = np.lib.stride_tricks.sliding_window_view(xp, nfft)[idx * ha] * win
        spec = np.fft.rfft(segs, axis=1)
        mag, phase = np.abs(spec), np.angle(spec)
        synth = np.empty_like(phase)
        for j in range(len(idx)):
            if prev_phase is None:
                acc_phase = phase[j].copy()
            else:
                d = phase[j] - prev_phase - omega
                d -= 2 * np.pi * np.round(d / (2 * np.pi))
                acc_phase = acc_phase + (omega + d) * (hs / ha)
            prev_phase = phase[j]
            synth[j] = acc_phase
        frames_out = np.fft.irfft(mag * np.exp(1j * synth), n=nfft, axis=1) * win
        for j, k in enumerate(idx):
            out[k * hs:k * hs + nfft] += frames_out[j]
            norm[k * hs:k * hs + nfft] += win ** 2
    out /= np.maximum(norm, 1e-3 * norm.max())
    start = (nfft // 2) * hs // ha  # frame 0's centre, in stretched time
    stretched = out[start:]
    import soxr

    y = soxr.resample(stretched.astype(np.float32), float(hs), float(ha), quality="HQ")
    return _fit1(y.astype(np.float32), n)


def _fit1(y: np.ndarray, n: int) -> np.ndarray:
    return y[:n] if len(y) >= n else np.concatenate([y, np.zeros(n - len(y), y.dtype)])


LIMITER_WINDOW_MS = 5.0  # attack = release = this; short enough to touch only the peaks


def limit_peaks(x: np.ndarray, sample_rate: int, ceiling: float = PEAK_CEILING) -> tuple[np.ndarray, float]:
    """A look-ahead peak limiter on (n, ch): returns (y, deepest gain in dB); |y| <= ceiling everywhere.

    Per sample the gain that would just reach the ceiling, r = min(1, ceiling / max|x|), is
    spread by a minimum filter of W+1 samples and smoothed by a W+1-sample moving average, both
    centred: every value averaged around n is a minimum over a window containing n, so g[n] <= r[n]
    (never over the ceiling), and the gain glides down and up over W instead of jumping. Unlike
    turning the whole song down, only the few milliseconds around each peak change.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    peak = np.max(np.abs(x), axis=1) if x.ndim == 2 else np.abs(x)
    if peak.size == 0 or float(peak.max()) <= ceiling:
        return x, 0.0
    r = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    w = max(1, int(sample_rate * LIMITER_WINDOW_MS / 1000))
    spread = minimum_filter1d(r, size=2 * w + 1, mode="nearest")
    g = uniform_filter1d(spread, size=2 * w + 1, mode="nearest")
    g = np.minimum(g, r)  # float rounding in the moving average must not leave a sample over
    y = (x * (g[:, None] if x.ndim == 2 else g)).astype(np.float32)
    return y, float(_db(float(g.min())))


def integrated_lufs(x: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness of (n, ch); -inf for silence or audio shorter than one 400 ms block."""
    import pyloudnorm

    if len(x) < int(0.4 * sample_rate) + 1 or not np.any(x):
        return -np.inf
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(pyloudnorm.Meter(sample_rate).integrated_loudness(np.asarray(x, np.float64)))


def _db(x: float) -> float:
    return 20.0 * np.log10(max(x, 1e-12))


# ---------------------------------------------------------------------- the pipeline
class _Stages:
    """Turns per-stage fractions into StageProgress with an ETA, and checks for cancellation."""

    def __init__(self, progress: ProgressFn | None, cancel: threading.Event | None):
        self.progress, self.cancel = progress, cancel
        self.seconds: dict[str, float] = {}
        self._stage, self._t0 = STAGES[0], time.perf_counter()

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise SongCancelled("The song conversion was cancelled; nothing was written.")

    def begin(self, stage: str) -> None:
        self.check()
        self._stage, self._t0 = stage, time.perf_counter()
        self.report(0.0)

    def report(self, fraction: float, cached: bool = False) -> None:
        elapsed = time.perf_counter() - self._t0
        eta = elapsed * (1 - fraction) / fraction if fraction >= 0.02 else None
        if self.progress:
            self.progress(StageProgress(self._stage, STAGES.index(self._stage), min(1.0, fraction), elapsed, eta, cached))

    def end(self, cached: bool = False) -> None:
        self.seconds[self._stage] = time.perf_counter() - self._t0
        self.report(1.0, cached)


def check_song(data: np.ndarray, sr: int, name: str, max_duration_s: float) -> None:
    """One sentence for a song that cannot be converted: too many channels, too long, silent."""
    n, ch = data.shape
    if ch > 2:
        raise AudioFileError(f"'{name}' has {ch} channels; song conversion takes mono or stereo songs, so mix it "
                             "down to stereo first.")
    dur = n / sr
    if dur > max_duration_s:
        raise AudioFileError(f"'{name}' is {dur / 60:.1f} minutes long, over the {max_duration_s / 60:g}-minute limit "
                             "for one song; cut it into parts or raise the limit.")
    if dur < 1.0:
        raise AudioFileError(f"'{name}' is only {dur:.2f} s long; song conversion needs at least 1 s of audio.")
    peak = float(np.max(np.abs(data)))
    if peak <= 10 ** (SILENT_PEAK_DB / 20):
        raise AudioFileError(f"'{name}' is silent (its loudest sample is {_db(peak):.0f} dBFS); choose the song "
                             "itself, not an empty export.")


def _check_length_before_decoding(src: Path, max_duration_s: float) -> None:
    """Refuse a song that is too long from its header, before decoding hours of audio into memory."""
    import soundfile as sf

    try:
        info = sf.info(str(src))
    except Exception:  # noqa: BLE001 - unreadable: read_audio says why in one sentence
        return
    if 0 < info.frames < 2**62 and info.duration > max_duration_s:
        raise AudioFileError(f"'{src.name}' is {info.duration / 60:.1f} minutes long, over the {max_duration_s / 60:g}-minute "
                             "limit for one song; cut it into parts or raise the limit.")


def stem_paths(src: Path, stems_dir: Path, voice_name: str) -> dict[str, Path]:
    return {"vocals": stems_dir / f"{src.stem}_vocals.wav",
            "converted_vocals": stems_dir / f"{src.stem}_vocals_{voice_name}.wav",
            "accompaniment": stems_dir / f"{src.stem}_accompaniment.wav"}


def convert_song(
    src: str | Path,
    dst: str | Path,
    voice: Voice,
    voice_name: str,
    params: dict[str, Any],
    options: SongOptions,
    separator: Separator,
    chain: ChainConfig | None = None,
    cache: StemCache | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> SongResult:
    """Convert one song file into ``dst``; see the module docstring. Errors are one sentence."""
    t_start = time.perf_counter()
    src, dst = Path(src), Path(dst)
    options = options.validated()
    output_format(dst)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise AudioFileError(f"The output '{dst}' is the song itself; choose another output name.")
    stems_dir = Path(options.stems_dir) if options.stems_dir else None
    _check_length_before_decoding(src, options.max_duration_s)
    data, sr = read_audio(src)
    check_song(data, sr, src.name, options.max_duration_s)
    n, ch = data.shape
    stages = _Stages(progress, cancel)
    warnings: list[str] = []
    if getattr(separator, "note", None):
        warnings.append(separator.note)
    tw = transpose_warning(options.transpose_st)
    if tw:
        warnings.append(tw)

    try:
        # -- separate
        stages.begin("separate")
        key = song_key(data, sr)
        stems = cache.get(key, separator.cache_id, sr, data.shape) if (cache and options.use_cache) else None
        hit = stems is not None
        if stems is None:
            stems = separator.separate(data, sr, progress=stages.report, cancel=cancel)
            stages.check()
            if cache is not None:
                cache.put(key, separator.cache_id, stems)
        stages.end(cached=hit)

        # -- pitch
        stages.begin("pitch")
        accomp = stems.accompaniment
        if abs(options.key_st) > 1e-9:
            accomp = np.stack([shift_polyphonic(accomp[:, c], sr, options.key_st) for c in range(ch)], axis=1)
            stages.report(0.5)
        vocal_shift = options.transpose_st + options.key_st
        specs = {s.name for s in getattr(voice, "param_specs", ())}
        params = dict(params)
        mono = stems.vocals.mean(axis=1) if ch > 1 else stems.vocals[:, 0]
        if abs(vocal_shift) > 1e-9:
            if "transpose_st" in specs:
                total = float(params.get("transpose_st", 0.0)) + vocal_shift
                if not -24.0 <= total <= 24.0:
                    raise ConfigError(f"The voice's own transpose plus --transpose and --key is {total:g} semitones, "
                                      "outside -24..24; choose smaller amounts.")
                params["transpose_st"] = total
            else:
                mono = _psola_shift(mono, sr, vocal_shift)
        stages.end()

        # -- convert
        stages.begin("convert")
        vocal_lufs = integrated_lufs(stems.vocals, sr)
        if vocal_lufs < VOCALS_ABSENT_LUFS:
            warnings.append(f"The separator found almost no vocals in '{src.name}' ({vocal_lufs:.0f} LUFS), so "
                            "the result is essentially the accompaniment.")
        converted = convert_signal(mono, sr, voice, params=params, chain=chain,
                                   progress=stages.report, cancel=cancel)
        # Re-pan: each channel gets the converted voice at the level the original voice had there.
        mono_rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64)))) or 1.0
        gains = [float(np.sqrt(np.mean(np.square(stems.vocals[:, c], dtype=np.float64)))) / mono_rms
                 for c in range(ch)]
        new_vocals = np.stack([converted * g for g in gains], axis=1).astype(np.float32)
        stages.end()

        # -- mix
        stages.begin("mix")
        conv_lufs = integrated_lufs(new_vocals, sr)
        match_db = 0.0
        if np.isfinite(vocal_lufs) and np.isfinite(conv_lufs) and vocal_lufs > VOCALS_ABSENT_LUFS:
            match_db = float(np.clip(vocal_lufs - conv_lufs, -30.0, 30.0))
        new_vocals = new_vocals * np.float32(10 ** ((match_db + options.vocals_db) / 20))
        accomp_out = accomp * np.float32(10 ** (options.accomp_db / 20))
        mix = new_vocals + accomp_out
        mix, mix_gain_db = limit_peaks(mix, sr)
        if mix_gain_db < -0.05:
            warnings.append(f"Peaks of the mix were limited (by up to {-mix_gain_db:.1f} dB, for a few ms each) so "
                            "that it does not clip.")
        stages.check()
        written: dict[str, str] = {}
        if stems_dir is not None:
            try:
                stems_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise AudioFileError(f"The stems folder '{stems_dir}' cannot be created ({exc.strerror}); "
                                     "choose another one.") from None
            paths = stem_paths(src, stems_dir, voice_name)
            for label, audio in (("vocals", stems.vocals), ("converted_vocals", new_vocals),
                                 ("accompaniment", accomp_out)):
                a = audio
                apeak = float(np.max(np.abs(a))) if a.size else 0.0
                if apeak > PEAK_CEILING:  # a stem alone may peak above full scale: scale that file, never clip it
                    a = a * np.float32(PEAK_CEILING / apeak)
                write_audio(paths[label], a, sr)
                written[label] = str(paths[label])
        write_audio(dst, mix, sr)
        stages.end()
    except (ConversionCancelled, SeparationCancelled):
        raise SongCancelled("The song conversion was cancelled; nothing was written.") from None
    return SongResult(str(src), str(dst), n / sr, sr, ch, separator.name, hit, written, warnings,
                      dict(stages.seconds), match_db, mix_gain_db, time.perf_counter() - t_start)


def _psola_shift(x: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Formant-preserving shift of a monophonic voice (the built-in PSOLA shifter), time-aligned."""
    from engine.dsp.pitchshift import PitchShifter

    ps = PitchShifter(sr)
    lat = ps.latency_samples
    state = ps.init_state()
    y, _ = ps.process(np.concatenate([x, np.zeros(lat, np.float32)]).astype(np.float64), state,
                      float(np.clip(semitones, -24, 24)), 0.0)
    return np.asarray(y[lat:lat + len(x)], np.float32)


def song_output_path(src: Path, out: Path, voice_name: str, many: bool) -> Path:
    """``out`` itself, or ``out/<stem>_<voice>.<ext>`` when ``out`` is a folder."""
    if many or out.is_dir() or str(out).endswith(("/", "\\")):
        ext = src.suffix.lower() if src.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3") else ".wav"
        return out / f"{src.stem}_{voice_name}{ext}"
    return out


def expand_song_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given; a folder contributes its audio files (sorted, not recursive)."""
    from engine.offline.files import READ_EXTENSIONS

    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in READ_EXTENSIONS))
        else:
            out.append(p)
    return out


__all__ = ["STAGES", "SongOptions", "SongResult", "StageProgress", "StemCache", "SongCancelled", "convert_song",
           "transpose_warning", "shift_polyphonic", "integrated_lufs", "song_output_path", "expand_song_inputs",
           "check_song"]
