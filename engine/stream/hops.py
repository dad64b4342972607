"""The step between a stream's rate and a voice's: resample in, cut whole voice hops, resample out.

Shared by the live worker (device rate) and the WebSocket stream (the client's rate)::

    mono at outer rate --StreamResampler--> fifo at voice rate --whole hops--> (the Pipeline runs)
    voice-rate output --StreamResampler--> outer rate
"""

from __future__ import annotations

import numpy as np

from engine.dsp.resample import StreamResampler


class HopBridge:
    def __init__(self, outer_rate: int, voice_rate: int, hop: int):
        self.to_voice = StreamResampler(outer_rate, voice_rate)
        self.from_voice = StreamResampler(voice_rate, outer_rate)
        self.hop = int(hop)
        self.fifo = np.zeros(0, dtype=np.float32)

    def hops(self, mono: np.ndarray) -> np.ndarray:
        """Resample ``mono`` to the voice's rate and return the whole hops now available (possibly
        none); the remainder waits for the next call."""
        v = self.to_voice.process(np.asarray(mono, dtype=np.float32))
        fifo = np.concatenate([self.fifo, v]) if len(self.fifo) else v
        whole = (len(fifo) // self.hop) * self.hop
        self.fifo = fifo[whole:]
        return fifo[:whole]

    def back(self, y: np.ndarray) -> np.ndarray:
        """Voice-rate output back to the outer rate."""
        return self.from_voice.process(y)
