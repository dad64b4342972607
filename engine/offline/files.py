"""Reading and writing audio files, with one sentence for everything that can go wrong.

Reads are checked, because libsndfile decodes what is there and says nothing: a file cut short is
refused in every format, by what its container declares against what is present (WAV and AIFF
data chunks, FLAC's and Xing MP3s' sample counts), by where its last unit ends (the last Ogg
page, the last MP3 frame) and by decoder errors (FLAC's lost sync); float samples above full
scale are normalised to it, never clipped (see decode_audio).

Writes are atomic (temp file beside the target, then ``os.replace``): a failed or cancelled
conversion never leaves a partial output file, and never touches an existing one.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.config import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from engine.errors import AudioFileError, NotAudioError

READ_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
WRITE_FORMATS = {
    ".wav": ("WAV", "PCM_24"),
    ".flac": ("FLAC", "PCM_24"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
    ".aiff": ("AIFF", "PCM_24"),
    ".aif": ("AIFF", "PCM_24"),
}


def _iff_chunk(path: Path, containers: tuple[bytes, ...], forms: tuple[bytes, ...], wanted: bytes,
               byteorder: str) -> tuple[bytes, int, int] | None:
    """(container id, declared length, bytes present after its header) of the first ``wanted`` chunk
    of an IFF-style file, or None if the file is no such container or has no such chunk.

    RIFF/WAVE and FORM/AIFF share the layout (a 12-byte head, then id + length chunks padded to an
    even length) and differ only in the ids and the byte order of the lengths, so one walk serves both.
    """
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in containers or head[8:12] not in forms:
            return None
        size = path.stat().st_size
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk = fh.read(8)
            cid, length = chunk[:4], int.from_bytes(chunk[4:8], byteorder)
            if cid == wanted:
                return head[:4], length, size - (pos + 8)
            pos += 8 + length + (length & 1)
    return None


def _riff_shortfall(path: Path) -> tuple[int, int] | None:
    """For a RIFF/WAVE file: (declared data bytes, present data bytes) if the data chunk is cut short.

    libsndfile quietly reads what is there, so a half-copied WAV would otherwise convert to a
    shorter file without a word.
    """
    found = _iff_chunk(path, (b"RIFF", b"RF64"), (b"WAVE",), b"data", "little")
    if found is None:
        return None
    container, length, present = found
    # RF64 keeps the real data length in its ds64 chunk (this field reads 0xFFFFFFFF), so only a
    # plain RIFF length is compared.
    if container == b"RIFF" and length != 0xFFFFFFFF and length > present:
        return length, present
    return None


def _aiff_shortfall(path: Path) -> tuple[int, int] | None:
    """For an AIFF/AIFC file: (declared, present) sound-data bytes if its SSND chunk is cut short
    (libsndfile, as for WAV, reads what is there and says nothing)."""
    found = _iff_chunk(path, (b"FORM",), (b"AIFF", b"AIFC"), b"SSND", "big")
    if found is None:
        return None
    _, length, present = found
    return (length, present) if 0 < length != 0xFFFFFFFF and length > present else None


def _ogg_cut(path: Path) -> str | None:
    """Why an Ogg file (Vorbis, Opus, FLAC in Ogg) is cut short, or None.

    Ogg states no total length up front; decoders play the complete pages there are, and
    libsndfile reports the length from the last complete page, so declared and decoded length
    agree on a half file. What a cut leaves behind is structural: a last page that ends beyond
    the end of the file, or a logical stream without its end-of-stream page::

        page = "OggS" | version | flags (0x02 first, 0x04 last) | granule | serial | seq | crc
               | n segments | n lacing bytes (sum = body length) | body
    """
    size = path.stat().st_size
    open_streams: set[int] = set()
    pos = 0
    with open(path, "rb") as fh:
        while pos < size:
            fh.seek(pos)
            head = fh.read(27)
            if len(head) < 27:
                return "its last Ogg page is cut off"
            if head[:4] != b"OggS":
                return None  # not a page (trailing tag or junk): no verdict rather than a wrong one
            flags, serial, segments = head[5], int.from_bytes(head[14:18], "little"), head[26]
            lacing = fh.read(segments)
            if len(lacing) < segments:
                return "its last Ogg page is cut off"
            end = pos + 27 + segments + sum(lacing)
            if end > size:
                return "its last Ogg page is cut off"
            if flags & 0x02:
                open_streams.add(serial)
            if flags & 0x04:
                open_streams.discard(serial)
            pos = end
    return "its Ogg stream ends without its final page" if open_streams else None


_MPEG_BITRATES_KBPS = {  # (MPEG-1?, layer) -> kbit/s by index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES_HZ = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mpeg_frame(h: bytes) -> tuple[int, int] | None:
    """(frame bytes, samples per frame) of the MPEG audio frame whose header is ``h``, or None."""
    if len(h) < 4 or h[0] != 0xFF or (h[1] & 0xE0) != 0xE0:
        return None
    version, layer_bits = (h[1] >> 3) & 3, (h[1] >> 1) & 3
    rate_index, bitrate_index, padding = (h[2] >> 2) & 3, h[2] >> 4, (h[2] >> 1) & 1
    if version == 1 or layer_bits == 0 or rate_index == 3 or bitrate_index in (0, 15):
        return None  # reserved values, or free format (length not in the header)
    layer = 4 - layer_bits
    mpeg1 = version == 3
    kbps = _MPEG_BITRATES_KBPS[(mpeg1, layer)][bitrate_index - 1]
    rate = _MPEG_RATES_HZ[version][rate_index]
    if layer == 1:
        return (12 * kbps * 1000 // rate + padding) * 4, 384
    per_frame = 144 if (layer == 2 or mpeg1) else 72
    return per_frame * kbps * 1000 // rate + padding, (1152 if per_frame == 144 else 576)


MP3_SLACK_SAMPLES = 2 * 1152 + 1152  # encoder delay and padding (LAME: 576 + 529 + up to a frame), and a frame


def _mp3_walk(path: Path) -> tuple[str | None, int | None]:
    """(why the MP3 is cut short or None, samples its frames hold or None when it declares its
    length or cannot be walked).

    An MP3 with a Xing/Info/VBRI header declares its frame count, so a shortfall shows as declared
    > decoded. Without one the length is estimated from the file size: a cut then shows only as a
    last frame that ends beyond the end of the file, and a variable-bitrate file's estimate can be
    short of what its frames hold (libsndfile then stops reading early, without a word).
    """
    data = path.read_bytes()
    size = len(data)
    pos = 0
    if data[:3] == b"ID3" and size >= 10:  # ID3v2 tag: syncsafe size, optional footer
        pos = 10 + ((data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F))
        pos += 10 if data[5] & 0x10 else 0
    if size >= 128 and data[size - 128 : size - 125] == b"TAG":  # ID3v1 at the end
        size -= 128
    first = _mpeg_frame(data[pos : pos + 4])
    declares = first is not None and any(tag in data[pos : pos + first[0]] for tag in (b"Xing", b"Info", b"VBRI"))
    frames = samples = 0
    while pos + 4 <= size:
        frame = _mpeg_frame(data[pos : pos + 4])
        if frame is None:
            break  # a tag or junk after the audio: what came before is all there is
        if pos + frame[0] > size:
            return ("its last MP3 frame is cut off" if frames else None), None
        pos += frame[0]
        frames += 1
        samples += frame[1]
    return None, (None if declares or frames == 0 else samples)


def _cut_short(path: Path, container: str) -> str | None:
    """Why the file at ``path`` (libsndfile's container name) is truncated, or None."""
    if container in ("WAV", "WAVEX", "RF64"):
        short = _riff_shortfall(path)
    elif container == "AIFF":
        short = _aiff_shortfall(path)
    elif container == "OGG":
        return _ogg_cut(path)
    elif container in ("MP3", "MPEG"):
        return _mp3_walk(path)[0]
    else:
        return None
    return None if short is None else f"its header promises {short[0]} bytes of audio but only {short[1]} are there"


def _sniff_container(path: Path) -> str | None:
    """libsndfile's container name from the first bytes, for files it cannot even open."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:3] == b"ID3" or _mpeg_frame(head[:4]) is not None:
        return "MP3"
    return None


def truncation(path: str | os.PathLike) -> str | None:
    """Why a file that libsndfile cannot open is a truncated one (e.g. "its last Ogg page is cut
    off"), or None: a cut file should be called truncated, not "not audio"."""
    p = Path(path)
    container = _sniff_container(p)
    return _cut_short(p, container) if container else None


UNKNOWN_LENGTH_FRAMES = 1 << 62  # libsndfile reports 2**63 - 1 frames for a stream without a length


@dataclass(frozen=True)
class AudioProbe:
    """What a file's header says, read without decoding it (to check limits before paying for that)."""

    frames: int | None  # None: the format does not state its length
    channels: int
    sample_rate: int


def probe_audio(path: str | os.PathLike) -> AudioProbe:
    """A file's header: NotAudioError if it is no audio at all, AudioFileError (one sentence) if it is
    audio that libsndfile cannot open because it is cut short."""
    p = Path(path)
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        cut = truncation(p)
        if cut is not None:  # audio, but cut short: say so rather than "not audio"
            raise AudioFileError(f"'{p.name}' is truncated: {cut}; copy or export the file again.") from None
        raise NotAudioError(f"'{p.name}' is not audio AutoVoice can decode; send WAV, FLAC, OGG or MP3.") from None
    frames = None if info.frames >= UNKNOWN_LENGTH_FRAMES else int(info.frames)
    return AudioProbe(frames, int(info.channels), int(info.samplerate))


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # (n, channels) float32, within [-1, 1]
    sample_rate: int
    gain_db: float = 0.0  # applied to bring float samples above full scale down to it (0: none)


def decode_audio(path: str | os.PathLike) -> DecodedAudio:
    """Decode a whole file, checked: missing, empty, not audio, truncated in any format, NaN or
    infinite samples, unsupported rate -> AudioFileError in one sentence.

    Float files can hold samples beyond full scale (a DAW's headroom, or garbage such as 1e30);
    they are normalised, not clipped or refused: scaled down so the peak sits at full scale, and
    ``gain_db`` says by how much, for the caller to tell the user.
    """
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
        f = sf.SoundFile(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        cut = truncation(p)
        if cut is not None:
            raise AudioFileError(f"'{p.name}' is truncated: {cut}; copy or export the file again.") from None
        reason = str(exc).split(":")[-1].strip() or "unrecognised format"
        raise AudioFileError(
            f"'{p.name}' is not an audio file AutoVoice can read ({reason}); use WAV, FLAC, OGG or MP3."
        ) from None
    with f:
        sr = int(f.samplerate)
        declared = f.frames
        container = f.format
        try:
            data = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            # e.g. FLAC "decoder lost sync": the decoder stopped part-way
            reason = str(exc).split(":")[-1].strip() or "decoder error"
            raise AudioFileError(
                f"'{p.name}' could not be decoded to the end ({reason}), so it is truncated or damaged; "
                "copy or export the file again."
            ) from None
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioFileError(
            f"'{p.name}' has a sample rate of {sr} Hz, which is not supported; resample it to "
            f"a rate between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz (44100 or 48000 are typical)."
        )
    if len(data) == 0:
        raise AudioFileError(f"'{p.name}' contains no audio samples; export or record it again.")
    cut = _cut_short(p, container)
    if cut is not None:
        raise AudioFileError(f"'{p.name}' is truncated: {cut}; copy or export the file again.")
    if container in ("MP3", "MPEG"):
        held = _mp3_walk(p)[1]
        if held is not None and held > len(data) + MP3_SLACK_SAMPLES:
            raise AudioFileError(
                f"'{p.name}' could be decoded only in part ({len(data)} of about {held} samples: it does not state "
                "its length); re-encode it, e.g. with ffmpeg, and try again."
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
    peak = float(np.max(np.abs(data)))
    gain_db = 0.0
    if peak > 1.0:
        data = (data.astype(np.float64) / peak).astype(np.float32)  # float64: 1e38 / 1e38 stays finite
        gain_db = -20.0 * float(np.log10(peak))
    return DecodedAudio(data, sr, gain_db)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Return ``(samples (n, channels) float32, sample_rate)`` or raise AudioFileError (see decode_audio)."""
    decoded = decode_audio(path)
    return decoded.samples, decoded.sample_rate


def scaled_note(name: str, gain_db: float) -> str:
    """The sentence telling the user that decode_audio normalised a file."""
    return (f"'{name}' has float samples above full scale (peak {-gain_db:+.1f} dBFS); it was scaled down by "
            f"{-gain_db:.1f} dB to full scale before conversion.")


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
