"""Mixes whose stems are known: real a-cappella singing over a synthesised band, panned as studios pan.

Lead vocal in the centre; bass and kick in the centre (as on most records); snare slightly off
centre; keys 60 % left, a plucked guitar 55 % right, hi-hats 35 % right. Constant-power pan law.
Everything is seeded, so a mix is the same on every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from engine.dsp.resample import resample


def pan(x: np.ndarray, position: float) -> np.ndarray:
    """Constant-power pan: position -1 (left) .. 0 (centre) .. +1 (right) -> (n, 2)."""
    angle = (position + 1.0) * np.pi / 4.0
    return np.stack([x * np.cos(angle), x * np.sin(angle)], axis=1) * np.sqrt(2.0)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def load_vocals(path: Path, sample_rate: int, seconds: float | None = None) -> np.ndarray:
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if seconds is not None:
        x = x[: int(seconds * sr)]
    x = resample(x, sr, sample_rate)
    return (x * (0.1 / _rms(x))).astype(np.float32)  # -20 dBFS RMS


def band(n: int, sample_rate: int, seed: int = 0, bpm: float = 96.0) -> np.ndarray:
    """(n, 2) synthesised accompaniment: keys, guitar, bass, drums; chords A - E - F#m - D."""
    rng = np.random.default_rng(seed)
    sr = sample_rate
    t = np.arange(n) / sr
    beat = 60.0 / bpm
    out = np.zeros((n, 2))
    chords = [(57, 61, 64), (52, 56, 59), (54, 57, 61), (50, 54, 57)]  # MIDI notes
    hz = lambda m: 440.0 * 2 ** ((m - 69) / 12)  # noqa: E731
    bar = 4 * beat
    keys = np.zeros(n)
    bass = np.zeros(n)
    for b0 in np.arange(0.0, n / sr, bar):
        chord = chords[int(round(b0 / bar)) % len(chords)]
        i0, i1 = int(b0 * sr), min(n, int((b0 + bar) * sr))
        tt = t[i0:i1] - b0
        env = np.exp(-tt / 1.5) * (1 - np.exp(-tt / 0.01))
        for m in chord:
            f0 = hz(m)
            for k in range(1, 9):
                keys[i0:i1] += env * np.sin(2 * np.pi * f0 * k * tt + rng.uniform(0, 2 * np.pi)) / k ** 1.3
        for q in range(4):  # bass on every beat: root, an octave below the chord
            j0 = int((b0 + q * beat) * sr)
            j1 = min(n, j0 + int(beat * sr))
            if j0 >= n:
                break
            tq = t[j0:j1] - (b0 + q * beat)
            f0 = hz(chord[0] - 24)
            bass[j0:j1] += np.exp(-tq / 0.4) * (np.sin(2 * np.pi * f0 * tq) + 0.3 * np.sin(4 * np.pi * f0 * tq))
    guitar = np.zeros(n)
    step = beat / 2
    for s_i, s0 in enumerate(np.arange(0.0, n / sr, step)):
        chord = chords[int(s0 // bar) % len(chords)]
        f0 = hz(chord[s_i % 3] + 12)
        period = max(2, int(round(sr / f0)))
        length = min(n - int(s0 * sr), int(step * 2 * sr))
        if length <= 0:
            break
        buf = rng.uniform(-1, 1, period)
        pluck = np.empty(length)
        for j in range(length):  # Karplus-Strong
            pluck[j] = buf[j % period]
            buf[j % period] = 0.996 * 0.5 * (buf[j % period] + buf[(j + 1) % period])
        j0 = int(s0 * sr)
        guitar[j0:j0 + length] += pluck
    kick, snare, hats = np.zeros(n), np.zeros(n), np.zeros(n)
    for q, q0 in enumerate(np.arange(0.0, n / sr, beat)):
        j0 = int(q0 * sr)
        ln = min(n - j0, int(0.3 * sr))
        tq = np.arange(ln) / sr
        if q % 2 == 0:
            kick[j0:j0 + ln] += np.sin(2 * np.pi * (50 * tq + 70 * 0.05 * (1 - np.exp(-tq / 0.05)))) * np.exp(-tq / 0.12)
        else:
            snare[j0:j0 + ln] += (rng.standard_normal(ln) * 0.6 + np.sin(2 * np.pi * 185 * tq)) * np.exp(-tq / 0.07)
        for h in (0.0, 0.5):
            k0 = j0 + int(h * beat * sr)
            lh = min(n - k0, int(0.05 * sr))
            if lh > 0:
                noise = np.diff(rng.standard_normal(lh + 1))
                hats[k0:k0 + lh] += noise * np.exp(-np.arange(lh) / sr / 0.015)
    for sig, level, position in ((keys, 0.05, -0.6), (guitar, 0.05, 0.55), (bass, 0.08, 0.0),
                                 (kick, 0.09, 0.0), (snare, 0.05, 0.1), (hats, 0.02, 0.35)):
        out += pan(sig * (level / _rms(sig)), position)
    return out.astype(np.float32)


def stereo_reverb(x: np.ndarray, sample_rate: int, wet_db: float, t60_s: float = 1.2, seed: int = 1) -> np.ndarray:
    """(n, 2): ``x`` dry in the centre plus a decorrelated stereo tail ``wet_db`` below it (a plate/hall send)."""
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(seed)
    m = int(t60_s * sample_rate)
    decay = np.exp(-6.9 * np.arange(m) / m)
    tails = [fftconvolve(x, rng.standard_normal(m) * decay)[: len(x)] for _ in range(2)]
    wet = np.stack(tails, axis=1)
    wet *= (_rms(x) / _rms(wet)) * 10 ** (wet_db / 20)
    return np.stack([x, x], axis=1) + wet


def known_mix(vocals_path: Path, sample_rate: int = 44100, seconds: float | None = None,
              accompaniment_db: float = 3.0, seed: int = 0,
              vocal_reverb_db: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mix, vocals, accompaniment), each (n, 2); the band ``accompaniment_db`` louder than the voice.

    ``vocal_reverb_db``: the voice also gets a stereo reverb that much below the dry voice; the
    vocal stem then includes it (as a multitrack's vocal stem includes its effects)."""
    v = load_vocals(vocals_path, sample_rate, seconds)
    if vocal_reverb_db is None:
        vocals = pan(v, 0.0) / np.sqrt(2.0)  # centre: the same signal in both channels
    else:
        vocals = stereo_reverb(v, sample_rate, vocal_reverb_db)
    acc = band(len(v), sample_rate, seed=seed)
    acc *= (_rms(vocals) / _rms(acc)) * 10 ** (accompaniment_db / 20)
    mix = vocals + acc
    peak = float(np.max(np.abs(mix)))
    if peak > 0.95:
        scale = 0.95 / peak
        mix, vocals, acc = mix * scale, vocals * scale, acc * scale
    return mix.astype(np.float32), vocals.astype(np.float32), acc.astype(np.float32)
