"""Damaged audio files made from real speech, for the offline and the HTTP tests alike: each format
cut short, and a float file with absurd sample values."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

# name -> (extension, soundfile format, subtype, rate or None for the signal's own)
FORMATS = {
    "wav": (".wav", "WAV", "PCM_16", None),
    "wav-float": (".wav", "WAV", "FLOAT", None),
    "flac": (".flac", "FLAC", "PCM_16", None),
    "ogg-vorbis": (".ogg", "OGG", "VORBIS", None),
    "ogg-opus": (".ogg", "OGG", "OPUS", 48000),
    "mp3": (".mp3", "MP3", "MPEG_LAYER_III", None),
    "aiff": (".aiff", "AIFF", "PCM_16", None),
}


def encode(x: np.ndarray, sr: int, name: str) -> tuple[bytes, str]:
    """(file bytes, extension) of ``x`` in the format ``name`` (see FORMATS)."""
    ext, fmt, subtype, rate = FORMATS[name]
    if rate is not None and rate != sr:
        import soxr

        x, sr = soxr.resample(x, sr, rate).astype(np.float32), rate
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue(), ext


def without_length_header(mp3: bytes) -> bytes:
    """An MP3 whose first frame (the Xing/Info header with the frame count) is removed, as older
    encoders and streams write them: its length can then only be estimated."""
    from engine.offline.files import _mpeg_frame

    first = _mpeg_frame(mp3[:4])
    assert first is not None and (b"Xing" in mp3[: first[0]] or b"Info" in mp3[: first[0]])
    return mp3[first[0] :]


def cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def huge_float_wav(x: np.ndarray, sr: int, scale: float = 1e30) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, (np.asarray(x, np.float64) * scale).astype(np.float32), sr, format="WAV", subtype="FLOAT")
    return buf.getvalue()
