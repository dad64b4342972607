"""POST /api/v1/convert, after the guard has admitted it: upload -> temp file -> offline conversion -> WAV.

    multipart 'file' (spooled by the form parser, at most max_upload_bytes: see guard.py)
      -> private temp folder / upload<ext>      (the client's file name is never used as a path)
      -> probe_audio: not audio? 415; truncated? 422; longer than max_audio_s? 413
      -> decode_audio (truncated in any format, NaN, odd rate: 422; float peaks above full scale
         normalised, X-AutoVoice-Input-Gain-dB says by how much) -> Engine.convert_audio (cancellable)
      -> WAV in memory, the input's rate, length and channel count

The conversion runs on a small executor of its own (``max_conversions`` threads): a request that
times out sets the cancel event, which ``convert_signal`` checks every second of audio, so a
stuck request frees its thread instead of piling up.
"""

from __future__ import annotations

import io
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf

from engine.api import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, READ_EXTENSIONS, Engine, VoiceInfo, decode_audio, probe_audio
from engine.errors import AudioFileError, NotAudioError

MAX_CHANNELS = 8
ACCEPTED_PART_TYPES = ("application/octet-stream", "application/ogg")


class RequestFailed(Exception):
    """An HTTP error with its status and one sentence (rendered as {"error": ...})."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, outcome: str = "bad_request"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.outcome = outcome


def part_type_ok(content_type: str | None) -> bool:
    ct = (content_type or "").split(";")[0].strip().lower()
    return ct == "" or ct.startswith("audio/") or ct in ACCEPTED_PART_TYPES


def display_name(filename: str | None) -> str:
    """The client's file name reduced to a harmless base name (for messages and the download name)."""
    base = PureWindowsPath(filename or "").name  # strips both / and \ folders
    base = re.sub(r"[^A-Za-z0-9._ -]+", "_", base).strip(" .")[:80]
    return base or "upload"


def download_name(filename: str | None, voice: str) -> str:
    stem = Path(display_name(filename)).stem or "audio"
    safe_voice = re.sub(r"[^A-Za-z0-9._-]+", "_", voice)
    return f"{stem}_{safe_voice}.wav".replace(" ", "_")


@dataclass(frozen=True)
class Converted:
    wav: bytes
    sample_rate: int
    channels: int
    frames: int
    elapsed_s: float
    input_gain_db: float = 0.0  # float input above full scale was scaled down by this (engine.offline.files)

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def convert_upload(
    upload: BinaryIO,
    filename: str | None,
    engine: Engine,
    info: VoiceInfo,
    params: dict[str, Any],
    max_audio_s: float,
    cancel: threading.Event,
) -> Converted:
    t0 = time.perf_counter()
    shown = display_name(filename)
    suffix = Path(shown).suffix.lower()
    ext = suffix if suffix in READ_EXTENSIONS else ""
    with tempfile.TemporaryDirectory(prefix="autovoice-upload-") as folder:
        path = Path(folder) / f"upload{ext}"
        with open(path, "wb") as fh:
            upload.seek(0)
            shutil.copyfileobj(upload, fh, 1 << 20)
        if path.stat().st_size == 0:
            raise RequestFailed(422, "The uploaded file is empty (0 bytes); send the audio in the 'file' field.")
        try:
            head = probe_audio(path)
        except NotAudioError:
            raise RequestFailed(
                415, f"'{shown}' is not audio AutoVoice can decode; send WAV, FLAC, OGG or MP3.",
                outcome="unsupported_media_type") from None
        except AudioFileError as exc:  # audio, but cut short
            raise RequestFailed(422, str(exc).replace(path.name, shown)) from None
        if head.frames is None:
            raise RequestFailed(
                422, f"'{shown}' does not state its length, so it cannot be checked against this server's limits; "
                "re-encode it (e.g. with ffmpeg or sox) and send it again.")
        if not MIN_SAMPLE_RATE <= head.sample_rate <= MAX_SAMPLE_RATE:
            raise RequestFailed(
                422, f"'{shown}' has a sample rate of {head.sample_rate} Hz; send {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz "
                "(44100 or 48000 are typical).")
        # Decoded size, not upload size, is what costs memory: a tiny FLAC of 8-channel 192 kHz silence
        # decodes to gigabytes. Allow what max_audio_s of 48 kHz stereo would take.
        budget = int(max_audio_s * 48000 * 2)
        if head.frames * head.channels > budget:
            raise RequestFailed(
                413, f"'{shown}' decodes to {head.frames * head.channels / 1e6:.0f} million samples "
                f"({head.channels} channels at {head.sample_rate} Hz), more than this server's limit of "
                f"{budget / 1e6:.0f} million; send it shorter, at 48 kHz or in stereo.", outcome="too_large")
        if head.sample_rate > 0 and head.frames / head.sample_rate > max_audio_s:
            raise RequestFailed(
                413, f"'{shown}' lasts {head.frames / head.sample_rate:.0f} s, longer than this server's limit of "
                f"{max_audio_s:g} s; split it into shorter files.", outcome="too_large")
        if head.channels > MAX_CHANNELS:
            raise RequestFailed(422, f"'{shown}' has {head.channels} channels; AutoVoice converts up to {MAX_CHANNELS}.")
        try:
            decoded = decode_audio(path)
        except AudioFileError as exc:
            raise RequestFailed(422, str(exc).replace(path.name, shown).replace(str(path), shown)) from None
    data, sr = decoded.samples, decoded.sample_rate
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    y = engine.convert_audio(mono, sr, info, params, cancel=cancel)
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.repeat(y[:, None], data.shape[1], axis=1), -1.0, 1.0), sr, format="WAV", subtype="PCM_24")
    return Converted(buf.getvalue(), sr, data.shape[1], len(y), time.perf_counter() - t0, decoded.gain_db)
