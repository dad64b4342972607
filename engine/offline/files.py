"""Reading and writing audio files, with one sentence for everything that can go wrong.

Writes are atomic (temp file beside the target, then ``os.replace``): a failed or cancelled
conversion never leaves a partial output file, and never touches an existing one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.config import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from engine.errors import AudioFileError

READ_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
WRITE_FORMATS = {
    ".wav": ("WAV", "PCM_24"),
    ".flac": ("FLAC", "PCM_24"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
    ".aiff": ("AIFF", "PCM_24"),
    ".aif": ("AIFF", "PCM_24"),
}


def _riff_shortfall(path: Path) -> tuple[int, int] | None:
    """For a RIFF/WAVE file: (declared data bytes, present data bytes) if the data chunk is cut short.

    libsndfile quietly reads what is there, so a half-copied WAV would otherwise convert to a
    shorter file without a word.
    """
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            return None
        size = path.stat().st_size
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk = fh.read(8)
            cid, length = chunk[:4], int.from_bytes(chunk[4:8], "little")
            if cid == b"data":
                present = size - (pos + 8)
                if head[:4] == b"RIFF" and length != 0xFFFFFFFF and length > present:
                    return length, present
                return None
            pos += 8 + length + (length & 1)
    return None


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Return ``(samples (n, channels) float32, sample_rate)`` or raise AudioFileError."""
    p = Path(path)
    if not p.exists():
        raise AudioFileError(f"The input file '{p}' does not exist; check the path.")
    if p.is_dir():
        raise AudioFileError(f"'{p}' is a folder, not an audio file; give the files inside it.")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise AudioFileError(f"The input file '{p}' cannot be read ({exc.strerror}).") from None
    if size == 0:
        raise AudioFileError(f"The input file '{p}' is empty (0 bytes); export or record it again.")
    try:
        with sf.SoundFile(str(p)) as f:
            sr = int(f.samplerate)
            declared = f.frames
            data = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = str(exc).split(":")[-1].strip() or "unrecognised format"
        raise AudioFileError(
            f"'{p.name}' is not an audio file AutoVoice can read ({reason}); use WAV, FLAC, OGG or MP3."
        ) from None
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioFileError(
            f"'{p.name}' has a sample rate of {sr} Hz, which is not supported; resample it to "
            f"a rate between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz (44100 or 48000 are typical)."
        )
    if len(data) == 0:
        raise AudioFileError(f"'{p.name}' contains no audio samples; export or record it again.")
    short = _riff_shortfall(p) if p.suffix.lower() in (".wav", ".wave") or sf.info(str(p)).format == "WAV" else None
    if short is not None:
        raise AudioFileError(
            f"'{p.name}' is truncated: its header promises {short[0]} bytes of audio but only {short[1]} are there; "
            "copy or export the file again."
        )
    if declared > 0 and len(data) < declared:
        raise AudioFileError(
            f"'{p.name}' is truncated: it declares {declared} samples but only {len(data)} could be read; "
            "copy or export the file again."
        )
    if not np.all(np.isfinite(data)):
        raise AudioFileError(
            f"'{p.name}' contains invalid samples (NaN or infinity), so it cannot be converted; "
            "re-export it from your editor as 16- or 24-bit PCM."
        )
    return data, sr


def output_format(path: Path) -> tuple[str, str]:
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioFileError(
            f"Cannot write '{path.name}': the extension '{path.suffix}' is not supported; "
            f"use one of {', '.join(WRITE_FORMATS)}."
        )
    return fmt


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_audio(path: str | os.PathLike, data: np.ndarray, sample_rate: int) -> None:
    """Write ``data`` ((n,) or (n, ch)) atomically; the format follows the extension."""
    p = Path(path)
    fmt, subtype = output_format(p)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise AudioFileError(f"The output folder '{folder}' does not exist; create it or choose another.")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=p.suffix, dir=folder)
    os.close(fd)
    try:
        sf.write(tmp, np.clip(data, -1.0, 1.0), int(sample_rate), format=fmt, subtype=subtype)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a normal file follows the umask
        os.replace(tmp, p)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioFileError(f"Could not write '{p}' ({exc}); check the folder's permissions and free space.") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
