"""File conversion: the same Pipeline as the live stream, run over the whole signal.

    file (sr_f, ch) -> downmix -> resample to sr_v -> pad [x | latency + rounding zeros]
        -> Pipeline in chunks of whole hops -> drop the first `latency` samples -> resample to sr_f
        -> exactly the input's length, copied to every input channel

Built-in voices are streaming-exact, so the result equals processing the file in one call; neural
voices use their own segmenting (see engine/voices/rvc).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.config import ChainConfig
from engine.dsp.resample import resample
from engine.errors import AudioFileError, AutoVoiceError
from engine.offline.files import decode_audio, output_format, scaled_note, write_audio
from engine.pipeline import Pipeline, hop_for
from engine.voices.base import Voice

CHUNK_SECONDS = 1.0
OFFLINE_BLOCK_MS = 20.0

ProgressFn = Callable[[float], None]  # fraction done in [0, 1]


class ConversionCancelled(AutoVoiceError):
    pass


@dataclass(frozen=True)
class ConvertResult:
    input_path: str
    output_path: str
    duration_s: float
    sample_rate: int
    channels: int
    elapsed_s: float
    note: str | None = None  # one sentence the user should see (e.g. the input was scaled down)

    @property
    def realtime_factor(self) -> float:
        return self.elapsed_s / self.duration_s if self.duration_s else 0.0


def convert_signal(
    x: np.ndarray,
    sample_rate: int,
    voice: Voice,
    params: dict[str, Any] | None = None,
    chain: ChainConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    offline_twin: bool = True,
) -> np.ndarray:
    """Convert mono ``x`` (n,) at ``sample_rate``; returns (n,) float32 at the same rate, time-aligned.

    ``offline_twin``: use the voice's file-conversion twin where it has one (the same sound, free
    to look further ahead); False runs exactly what a live stream runs.
    """
    n = len(x)
    twin = getattr(voice, "offline_twin", None) if offline_twin else None
    voice = twin() if callable(twin) else voice
    v = resample(np.asarray(x, dtype=np.float32), sample_rate, voice.sample_rate)
    hop = hop_for(voice, OFFLINE_BLOCK_MS)
    pipe = Pipeline(voice, hop, chain=chain, params=params)
    lat = pipe.latency_samples
    total = len(v) + lat
    total += (-total) % hop
    padded = np.zeros(total, dtype=np.float32)
    padded[: len(v)] = v
    chunk = max(hop, (int(CHUNK_SECONDS * voice.sample_rate) // hop) * hop)
    state = pipe.init_state()
    out = np.empty(total, dtype=np.float32)
    for start in range(0, total, chunk):
        if cancel is not None and cancel.is_set():
            raise ConversionCancelled("The conversion was cancelled; no output file was written.")
        out[start : start + chunk], state = pipe.process(padded[start : start + chunk], state)
        if progress:
            progress(min(1.0, (start + chunk) / total))
    y = out[lat : lat + len(v)]
    y = resample(y, voice.sample_rate, sample_rate)
    if len(y) < n:
        y = np.concatenate([y, np.zeros(n - len(y), dtype=np.float32)])
    return y[:n]


def output_path_for(src: Path, out: Path, voice_name: str, many: bool) -> Path:
    """Where the converted ``src`` goes: ``out`` itself, or ``out/<stem>_<voice><ext>`` for a folder."""
    if many or out.is_dir() or str(out).endswith(("/", "\\")):
        ext = src.suffix.lower() if src.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3") else ".wav"
        return out / f"{src.stem}_{voice_name}{ext}"
    return out


def convert_file(
    src: str | Path,
    dst: str | Path,
    voice: Voice,
    params: dict[str, Any] | None = None,
    chain: ChainConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> ConvertResult:
    src, dst = Path(src), Path(dst)
    output_format(dst)  # refuse an unwritable extension before spending time converting
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise AudioFileError(f"The output '{dst}' is the input file itself; choose another output name.")
    t0 = time.perf_counter()
    decoded = decode_audio(src)
    data, sr = decoded.samples, decoded.sample_rate
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    y = convert_signal(mono, sr, voice, params=params, chain=chain, progress=progress, cancel=cancel)
    write_audio(dst, np.repeat(y[:, None], data.shape[1], axis=1), sr)
    note = scaled_note(src.name, decoded.gain_db) if decoded.gain_db else None
    return ConvertResult(str(src), str(dst), len(mono) / sr, sr, data.shape[1], time.perf_counter() - t0, note)
