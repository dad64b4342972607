"""Character effects for the built-in voices (robot, whisper, radio): pure numpy/scipy, streaming."""

from __future__ import annotations

import numpy as np
from scipy import signal

from engine.dsp.stft import StftState, StreamingStft


class Robot:
    """Monotone robot: every STFT frame keeps its magnitudes and gets zero phase.

    Zero-phase frames repeated every ``hop`` samples make a buzz at sample_rate / hop Hz that
    replaces the speaker's pitch while the spectral envelope (the words) stays.
    """

    def __init__(self, sample_rate: int, buzz_hz: float = 110.0):
        n_fft = 1 << int(np.ceil(np.log2(0.02 * sample_rate)))  # ~20 ms frames
        hop = int(round(sample_rate / buzz_hz))
        hop = min(hop, n_fft // 2)
        self._stft = StreamingStft(n_fft, hop, self._frame)
        self.latency_samples = self._stft.latency_samples

    @staticmethod
    def _frame(spec: np.ndarray, state: StftState) -> np.ndarray:
        # Zero phase centres each frame's energy on its first sample; rolling by N/2 (a linear
        # phase) puts it mid-window where the synthesis window is largest.
        mag = np.abs(spec)
        k = np.arange(len(spec))
        return mag * np.where(k % 2 == 0, 1.0, -1.0)

    def init_state(self):
        return self._stft.init_state()

    def process(self, x, state):
        return self._stft.process(x, state)


class Whisper:
    """Whisper: magnitudes kept, phases randomised (a seeded generator, so runs are repeatable)."""

    def __init__(self, sample_rate: int, seed: int = 1234):
        n_fft = 1 << int(np.ceil(np.log2(0.016 * sample_rate)))
        self._stft = StreamingStft(n_fft, n_fft // 4, self._frame)
        self.latency_samples = self._stft.latency_samples
        self._seed = seed

    @staticmethod
    def _frame(spec: np.ndarray, state: StftState) -> np.ndarray:
        rng = state.extra["rng"]
        return np.abs(spec) * np.exp(2j * np.pi * rng.random(len(spec)))

    def init_state(self):
        st = self._stft.init_state()
        st.extra["rng"] = np.random.default_rng(self._seed)
        return st

    def process(self, x, state):
        return self._stft.process(x, state)


class Radio:
    """Telephone/radio band (300-3400 Hz, 4th-order Butterworth) with gentle saturation. No latency."""

    latency_samples = 0

    def __init__(self, sample_rate: int, low_hz: float = 300.0, high_hz: float = 3400.0, drive: float = 2.5):
        high_hz = min(high_hz, 0.45 * sample_rate)
        self._sos = signal.butter(4, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
        self._drive = drive

    def init_state(self):
        return np.zeros((self._sos.shape[0], 2))

    def process(self, x, state):
        y, state = signal.sosfilt(self._sos, np.asarray(x, dtype=np.float64), zi=state)
        y = np.tanh(self._drive * y) / np.tanh(self._drive)
        return y.astype(np.float32), state
