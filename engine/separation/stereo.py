"""A separator that needs no download: centre-panned vocals against side content.

Studios pan the lead vocal to the centre (equal in both channels) and spread most instruments
across the stereo field. In each STFT bin the centre-ness of the content is the normalised
cross-power of the two channels::

    c = 2 Re(L R*) / (|L|^2 + |R|^2)      1: identical in both (centre), 0: one side only or
                                          uncorrelated (stereo reverb), <0: out of phase

averaged over a few neighbouring bins so that it measures the bin's content, not its noise. The
vocal mask is c mapped through a soft threshold, then refined by two spectral facts: voice lives
above ~120 Hz (the centre-panned bass and kick do not), and sung notes are steady across time
while drum hits are steady across frequency (median-filter harmonic/percussive split of the
centre signal). Vocals = mask * each channel; accompaniment = song - vocals, so the stems sum to
the song exactly.

Limits, stated to the user: it cannot separate a mono mix (nothing tells the voice from the rest;
it refuses and names the Demucs model), centre-panned instruments (bass above 120 Hz, snare,
a centred piano) leak into the vocals, and stereo reverb on the voice stays in the accompaniment.
"""

from __future__ import annotations

import threading

import numpy as np
from scipy.ndimage import median_filter, uniform_filter
from scipy.signal import istft, stft

from engine.separation.base import MonoMixError, ProgressFn, Stems, check_cancel

NFFT_MS = 93.0  # ~4096 samples at 44.1 kHz: resolves the harmonics of a sung note
HOP_FRACTION = 0.25
CENTRE_LOW = 0.80  # centre-ness below which a bin is all accompaniment (tuned on the vocadito 10 mix)
CENTRE_HIGH = 0.97  # ... above which it is all vocals (as far as panning tells)
VOICE_LOW_HZ = (90.0, 160.0)  # mask ramps in over this band
HARMONIC_FRAMES = 17  # median filter lengths for the harmonic/percussive split
PERCUSSIVE_BINS = 17
MONO_SIDE_DB = -40.0  # side energy this far below the mid: a mono mix
CHUNK_S = 20.0  # processed in chunks (with overlap) to bound memory and report progress
MONO_SEPARATOR_HINT = ("install the Demucs htdemucs model (autovoice song --fetch-model) and use "
                       "--separator htdemucs")


def side_level_db(mix: np.ndarray) -> float:
    """Energy of (L-R)/2 relative to (L+R)/2 in dB; -inf for a mono mix."""
    if mix.ndim != 2 or mix.shape[1] < 2:
        return -np.inf
    mid = 0.5 * (mix[:, 0] + mix[:, 1])
    side = 0.5 * (mix[:, 0] - mix[:, 1])
    em, es = float(np.dot(mid, mid)), float(np.dot(side, side))
    if es <= 0.0:
        return -np.inf
    return 10.0 * np.log10(es / max(em, 1e-20))


class StereoSeparator:
    name = "stereo"
    cache_id = "stereo-v1"

    def __init__(self, fallback_note: str | None = None):
        # Chosen by "auto" because the Demucs model is missing: say so once, with how to get it.
        self.note = (f"Using the stereo separator, which needs no download but is less clean; {fallback_note[:1].lower()}"
                     f"{fallback_note[1:]}") if fallback_note else None

    def separate(self, mix: np.ndarray, sample_rate: int, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> Stems:
        mix = np.asarray(mix, dtype=np.float32)
        if mix.ndim != 2 or mix.shape[1] < 2:
            raise MonoMixError("This song is mono, and the stereo separator needs a stereo mix (the voice in the "
                               f"centre, instruments to the sides); {MONO_SEPARATOR_HINT}.")
        if side_level_db(mix) < MONO_SIDE_DB:
            raise MonoMixError("Both channels of this song carry the same signal (a mono mix in a stereo file), so the "
                               f"stereo separator cannot tell the voice from the instruments; {MONO_SEPARATOR_HINT}.")
        n = len(mix)
        nfft = int(2 ** np.round(np.log2(NFFT_MS * sample_rate / 1000.0)))
        hop = int(nfft * HOP_FRACTION)
        chunk = max(nfft * 8, int(CHUNK_S * sample_rate) // hop * hop)
        pad = nfft * 2  # context either side of a chunk; its result is cross-faded away
        vocals = np.zeros((n, 2), np.float32)
        starts = list(range(0, n, chunk))
        for i, start in enumerate(starts):
            check_cancel(cancel)
            a, b = max(0, start - pad), min(n, start + chunk + pad)
            v = self._separate_block(mix[a:b, :2], sample_rate, nfft, hop)
            vocals[start:min(n, start + chunk)] = v[start - a:start - a + min(chunk, n - start)]
            if progress:
                progress((i + 1) / len(starts))
        if mix.shape[1] > 2:
            full = np.zeros_like(mix)
            full[:, :2] = vocals
            vocals = full
        return Stems(vocals, (mix - vocals).astype(np.float32), sample_rate)

    @staticmethod
    def _separate_block(x: np.ndarray, sr: int, nfft: int, hop: int) -> np.ndarray:
        f, _, spec = stft(x.T, fs=sr, window="hann", nperseg=nfft, noverlap=nfft - hop, boundary="even",
                          padded=True)
        L, R = spec[0], spec[1]  # (freqs, frames)
        cross = uniform_filter(np.real(L * np.conj(R)), size=(3, 3))
        power = uniform_filter(np.abs(L) ** 2 + np.abs(R) ** 2, size=(3, 3))
        centre = 2.0 * cross / np.maximum(power, 1e-12)
        m_pan = np.clip((centre - CENTRE_LOW) / (CENTRE_HIGH - CENTRE_LOW), 0.0, 1.0)
        m_pan = m_pan * m_pan * (3.0 - 2.0 * m_pan)  # smoothstep: no hard edges, fewer artefacts
        lo, hi = VOICE_LOW_HZ
        m_freq = np.clip((f - lo) / (hi - lo), 0.0, 1.0)[:, None]
        mid = np.abs(0.5 * (L + R))
        harm = median_filter(mid, size=(1, HARMONIC_FRAMES))
        perc = median_filter(mid, size=(PERCUSSIVE_BINS, 1))
        m_harm = harm ** 2 / np.maximum(harm ** 2 + perc ** 2, 1e-20)
        mask = m_pan * m_freq * np.sqrt(m_harm)
        _, y = istft(spec * mask[None], fs=sr, window="hann", nperseg=nfft, noverlap=nfft - hop, boundary=True)
        y = y.T[: len(x)]
        if len(y) < len(x):
            y = np.concatenate([y, np.zeros((len(x) - len(y), 2))])
        return y.astype(np.float32)
