"""Swapping the voice mid-stream (what the app and the API do live) never leaves a silent gap: the old
voice plays until the new one's look-ahead has passed, then they crossfade. Runs the worker's own
per-block code on a stream object whose rings are fed by hand (no device needed)."""

import numpy as np
import pytest

from engine.api import Engine
from engine.config import AudioConfig
from engine.stream.worker import LiveChain, Worker
from tests.stream_helpers import unstarted_stream


@pytest.mark.parametrize("quick", [False, True])
def test_a_voice_swap_has_no_silent_gap(quick):
    engine = Engine(load_default_voice=False)
    worker = Worker()
    try:
        audio = AudioConfig(sample_rate=48000)
        engine.load_voice("deeper").result()
        first = engine._make_pipeline(audio)
        engine.load_voice("higher").result()
        second = engine._make_pipeline(audio)
        assert second.latency_samples > 0  # a voice with look-ahead: the case that used to gap

        stream = unstarted_stream(audio)
        chain = LiveChain(stream, first)
        hop = stream.hop_frames
        t = np.arange(48000 * 2) / 48000
        x = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
        blocks = []
        engine.load_voice("child").result()
        third = engine._make_pipeline(audio)
        for i in range(len(x) // hop):
            if i == 60:
                chain.swap_pipeline(second)
            if i == 61 and quick:  # a second swap before the first new voice is heard
                chain.swap_pipeline(third)
            chain.in_block[:, 0] = x[i * hop : (i + 1) * hop]
            before = stream.out_ring.written
            worker._process(chain)
            out = np.zeros((stream.out_ring.written - before, 1), np.float32)
            stream.out_ring.read_into(out)
            blocks.append(out[:, 0])
        rms = np.array([np.sqrt(np.mean(b**2)) for b in blocks])
        steady = np.median(rms[40:60])
        # Every block from well after start-up on carries voice: no block falls silent at the swap.
        assert rms[40:].min() > 0.3 * steady, np.round(rms[55:75] / steady, 2)
        assert chain.fade_from is None  # the old voice was released after the crossfade
    finally:
        worker.shutdown()
        engine.close()
