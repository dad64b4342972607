"""A stream session: a client's PCM through the same streaming Pipeline as live mode.

Used by the WebSocket API (engine/server/stream.py) through ``Engine.open_stream``. At the client's
rate ``sr_c`` and the voice's ``sr_v`` (as the live worker)::

    frame -> HopBridge (resample sr_c -> sr_v, whole hops) -> Pipeline
          -> HopBridge (resample back) -> drop the first L samples -> frame

Output sample i is input sample i converted: the first ``latency_samples`` L (the voice's
look-ahead and the resamplers' delay) are held back, and :meth:`flush` returns them at the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.config import ChainConfig
from engine.pipeline import Pipeline, hop_for
from engine.stream.hops import HopBridge
from engine.voices.base import Voice

BLOCK_MS = 10.0  # hop for voices without their own, as the live stream's default block


class StreamSession:
    """One client's streaming conversion; ``process`` and ``flush`` run on one thread at a time."""

    def __init__(self, voice: Voice, params: dict[str, Any], chain: ChainConfig, sample_rate: int):
        sr_v = voice.sample_rate
        hop = hop_for(voice, BLOCK_MS)
        self.pipeline = Pipeline(voice, hop, chain=chain, params=params)
        self.state = self.pipeline.init_state()
        self.sample_rate = int(sample_rate)
        # align_start: the voice's frames fall where offline conversion puts them (see HopBridge).
        self.bridge = HopBridge(sample_rate, sr_v, hop, align_start=True)
        # Content delay at the client's rate: the voice's look-ahead at sr_v, then the resampler
        # out (see StreamResampler: a causal filter delay_samples late).
        self.latency_samples = int(round((self.bridge.in_delay_samples + self.pipeline.latency_samples)
                                         * sample_rate / sr_v + self.bridge.from_voice.delay_samples))
        self._to_drop = self.latency_samples
        self.samples_in = 0
        self.samples_out = 0

    def _run(self, mono: np.ndarray) -> np.ndarray:
        x = self.bridge.hops(mono)
        if len(x) == 0:
            return np.zeros(0, dtype=np.float32)
        y, self.state = self.pipeline.process(x, self.state)
        out = self.bridge.back(y)
        if self._to_drop:
            k = min(self._to_drop, len(out))
            out, self._to_drop = out[k:], self._to_drop - k
        return out

    def process(self, mono: np.ndarray) -> np.ndarray:
        self.samples_in += len(mono)
        out = self._run(mono)
        # Never more than what came in (zero-padding in flush is the only source of extra samples).
        out = out[: max(0, self.samples_in - self.samples_out)]
        self.samples_out += len(out)
        return out

    def flush(self) -> np.ndarray:
        """Push silence through until every input sample has its converted sample."""
        parts = []
        pad = np.zeros(self.latency_samples + 2 * self.pipeline.hop_samples + 64, dtype=np.float32)
        for _ in range(64):  # bounded: each round yields about len(pad) samples
            missing = self.samples_in - self.samples_out
            if missing <= 0:
                break
            out = self._run(pad)[:missing]
            self.samples_out += len(out)
            parts.append(out)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
