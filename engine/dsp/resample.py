"""Sample-rate conversion (soxr), whole-signal and streaming."""

from __future__ import annotations

import numpy as np
import soxr


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Whole-signal resampling, (n,) or (n, ch); output length is round(n * to / from)."""
    if from_rate == to_rate:
        return np.asarray(x, dtype=np.float32)
    return soxr.resample(np.asarray(x, dtype=np.float32), from_rate, to_rate, quality="HQ").astype(np.float32)


class StreamResampler:
    """Chunked mono resampling for the live path.

    soxr's stream mode emits output delayed by its filter; ``delay_samples`` (in the output rate)
    is measured once at construction with an impulse, so the engine can report true latency.
    """

    def __init__(self, from_rate: int, to_rate: int):
        self.from_rate, self.to_rate = int(from_rate), int(to_rate)
        self.identity = self.from_rate == self.to_rate
        self._stream = None if self.identity else self._new()
        self.delay_samples = 0 if self.identity else self._measure_delay()

    def _new(self):
        return soxr.ResampleStream(self.from_rate, self.to_rate, 1, dtype="float32", quality="HQ")

    def _measure_delay(self) -> int:
        probe = self._new()
        n = self.from_rate // 10
        x = np.zeros(n, dtype=np.float32)
        x[n // 4] = 1.0
        y = np.concatenate([probe.resample_chunk(x), probe.resample_chunk(np.zeros(n, np.float32))])
        expected = (n // 4) * self.to_rate / self.from_rate
        return max(0, int(round(int(np.argmax(np.abs(y))) - expected)))

    def process(self, x: np.ndarray) -> np.ndarray:
        if self.identity:
            return x
        return self._stream.resample_chunk(np.asarray(x, dtype=np.float32))

    def reset(self) -> None:
        if not self.identity:
            self._stream = self._new()
