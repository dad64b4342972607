"""Streaming STFT -> per-frame function -> overlap-add, equal chunked or whole.

Framing (N = n_fft, H = hop, P = N - H zeros pre-padded so the first frame ends after H samples)::

    padded input  |<- P zeros ->|x0 x1 ...
    frame k       [k*H ........ k*H+N)          processed once the input reaches real index k*H+H
    emits         [k*H - P, k*H - P + H)        real positions now fully overlap-added

A position is final once no later frame covers it; the caller's output lags the input by
``latency_samples = N - 1``, which is the smallest delay that lets every call return exactly as
many samples as it was given, whatever the chunk sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class StftState:
    pending: np.ndarray  # input not yet framed (< N samples)
    ola: np.ndarray  # (N,) overlap-add accumulator aligned with the next frame
    out_queue: np.ndarray  # emitted samples not yet returned
    frame_index: int = 0
    extra: dict = field(default_factory=dict)  # for the frame function's own state


class StreamingStft:
    def __init__(self, n_fft: int, hop: int, frame_fn: Callable[[np.ndarray, StftState], np.ndarray]):
        """``frame_fn(spectrum (N//2+1,) complex, state) -> spectrum`` is applied to every frame."""
        if not 0 < hop <= n_fft // 2:
            raise ValueError("hop must be in (0, n_fft/2]")
        self.n_fft = n_fft
        self.hop = hop
        self.frame_fn = frame_fn
        # sqrt-Hann analysis and synthesis. Output sample j of each emitted hop is the sum of the
        # frames that overlap it, weighted by win^2 at j, j + hop, j + 2 hop...; dividing by that
        # sum per sample makes the overlap-add exact for any hop, not only divisors of n_fft
        # (the robot voice's hop is 436 of 2048).
        win = np.sqrt(np.hanning(n_fft + 1)[:-1]).astype(np.float64)
        cover = np.zeros(hop)
        for k in range(0, n_fft, hop):
            seg = win[k : k + hop] ** 2
            cover[: len(seg)] += seg
        self.window = win
        self.synth_window = win
        self._inv_cover = 1.0 / cover
        self.latency_samples = n_fft - 1

    def init_state(self) -> StftState:
        n, h = self.n_fft, self.hop
        return StftState(
            pending=np.zeros(n - h, dtype=np.float64),
            ola=np.zeros(n, dtype=np.float64),
            out_queue=np.zeros(self.latency_samples - (n - h), dtype=np.float64),
        )

    def process(self, x: np.ndarray, state: StftState) -> tuple[np.ndarray, StftState]:
        n, h = self.n_fft, self.hop
        buf = np.concatenate([state.pending, np.asarray(x, dtype=np.float64)])
        emitted = [state.out_queue]
        pos = 0
        while len(buf) - pos >= n:
            frame = buf[pos : pos + n] * self.window
            spec = self.frame_fn(np.fft.rfft(frame), state)
            state.ola += np.fft.irfft(spec, n) * self.synth_window
            emitted.append(state.ola[:h] * self._inv_cover)
            state.ola = np.concatenate([state.ola[h:], np.zeros(h)])
            state.frame_index += 1
            pos += h
        state.pending = buf[pos:]
        queue = np.concatenate(emitted)
        out = queue[: len(x)]
        state.out_queue = queue[len(x) :]
        return out.astype(np.float32), state
