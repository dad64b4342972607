"""The step between a stream's rate and a voice's: resample in, cut whole voice hops, resample out.

Shared by the live worker (device rate) and the WebSocket stream (the client's rate)::

    mono at outer rate --StreamResampler--> fifo at voice rate --whole hops--> (the Pipeline runs)
    voice-rate output --StreamResampler--> outer rate

The input resampler starts ``D = to_voice.delay_samples`` outputs early, on the silence before
time 0 (see StreamResampler), so voice sample j carries outer time j - D::

    voice stream   |<-- D start-up samples -->|v0 v1 v2 ...        (align_start=False: live)
    voice stream   |v0 v1 v2 ...                                    (align_start=True: WebSocket)

A voice that works in frames (robot, whisper: STFT frames every H samples from its first input)
places its frames relative to the voice stream's start, so its output depends on D modulo H, not
only on the content. Offline conversion resamples without delay and frames from v0; a stream that
must equal it (the WebSocket's contract) drops the D start-up samples. The live worker keeps
them: its output ring's budget counts on each device read yielding its full share from the first
block, and live audio has no offline result to match.
"""

from __future__ import annotations

import numpy as np

from engine.dsp.resample import StreamResampler


class HopBridge:
    def __init__(self, outer_rate: int, voice_rate: int, hop: int, align_start: bool = False):
        self.to_voice = StreamResampler(outer_rate, voice_rate)
        self.from_voice = StreamResampler(voice_rate, outer_rate)
        self.hop = int(hop)
        self.fifo = np.zeros(0, dtype=np.float32)
        # Voice-rate samples of start-up still to drop (align_start), and the delay the voice sees.
        self._skip = self.to_voice.delay_samples if align_start else 0
        self.in_delay_samples = 0 if align_start else self.to_voice.delay_samples

    def hops(self, mono: np.ndarray) -> np.ndarray:
        """Resample ``mono`` to the voice's rate and return the whole hops now available (possibly
        none); the remainder waits for the next call."""
        v = self.to_voice.process(np.asarray(mono, dtype=np.float32))
        if self._skip:
            k = min(self._skip, len(v))
            v, self._skip = v[k:], self._skip - k
        fifo = np.concatenate([self.fifo, v]) if len(self.fifo) else v
        whole = (len(fifo) // self.hop) * self.hop
        self.fifo = fifo[whole:]
        return fifo[:whole]

    def back(self, y: np.ndarray) -> np.ndarray:
        """Voice-rate output back to the outer rate."""
        return self.from_voice.process(y)
