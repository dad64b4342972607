"""The processing chain around a voice, at the voice's sample rate, in fixed hops.

    block -> input gain -> noise gate -> voice ----------------> (1 - m) ---+--> output gain -> limiter
                                    \\-> delay(voice latency) -> m ---------/
                                                                 m: bypass mix, ramped over the crossfade

``Pipeline.process`` takes whole hops (``len(block) % hop_samples == 0``): the live worker reads
exactly one hop from the input ring, offline conversion pads the file to whole hops. All streaming
state lives in ``PipelineState`` (``init_state()`` / ``process(block, state) -> (out, state)``), so the
same loaded voice serves the live stream and a file conversion at once.

Settings (``chain``, ``params``) are replaced by reference between calls; gains and the bypass mix
ramp over one hop / the crossfade so a change never clicks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.config import ChainConfig
from engine.dsp.dynamics import GateState, NoiseGate, db_to_gain, soft_limit
from engine.params import default_params
from engine.voices.base import Voice


def hop_for(voice: Voice, block_ms: float) -> int:
    """Samples per Pipeline hop: the voice's own fixed hop (a neural voice's block), else ``block_ms``."""
    return voice.hop_samples or max(1, int(round(block_ms * voice.sample_rate / 1000.0)))


@dataclass
class PipelineState:
    voice: Any
    gate: GateState
    dry_delay: np.ndarray  # last `latency` gated input samples, to time-align the dry path
    in_gain: float
    out_gain: float
    bypass_mix: float
    nonfinite_blocks: int = 0
    extra: dict = field(default_factory=dict)


class Pipeline:
    def __init__(
        self,
        voice: Voice,
        hop_samples: int,
        chain: ChainConfig | None = None,
        params: dict[str, Any] | None = None,
        crossfade_samples: int | None = None,
    ):
        if voice.hop_samples is not None and hop_samples % voice.hop_samples:
            raise ValueError("hop must be a multiple of the voice's hop")
        self.voice = voice
        self.sample_rate = voice.sample_rate
        self.hop_samples = int(hop_samples)
        self.chain = chain or ChainConfig()
        self.params = {**default_params(voice.param_specs), **(params or {})}
        self.crossfade_samples = max(1, int(crossfade_samples if crossfade_samples is not None else hop_samples))
        self.gate = NoiseGate(self.sample_rate)

    @property
    def latency_samples(self) -> int:
        return int(self.voice.latency_samples)

    def init_state(self) -> PipelineState:
        return PipelineState(
            voice=self.voice.init_state(),
            gate=self.gate.init_state(),
            dry_delay=np.zeros(self.latency_samples, dtype=np.float32),
            in_gain=db_to_gain(self.chain.input_gain_db),
            out_gain=db_to_gain(self.chain.output_gain_db),
            bypass_mix=1.0 if self.chain.bypass else 0.0,
        )

    def reset(self) -> PipelineState:
        return self.init_state()

    def _ramp(self, start: float, end: float, n: int) -> np.ndarray | float:
        if start == end:
            return start
        return np.linspace(start, end, n, endpoint=False, dtype=np.float32)

    def process(self, block: np.ndarray, state: PipelineState) -> tuple[np.ndarray, PipelineState]:
        n = len(block)
        if n % self.hop_samples:
            raise ValueError(f"block of {n} samples is not a whole number of {self.hop_samples}-sample hops")
        x = np.asarray(block, dtype=np.float32)
        chain = self.chain  # NB: read once; the worker may swap it between calls, never during one

        g_in = db_to_gain(chain.input_gain_db)
        x = x * self._ramp(state.in_gain, g_in, n)
        state.in_gain = g_in
        x, state.gate = self.gate.process(x, state.gate, chain.gate_threshold_db)

        # Voice path, run in the voice's own hop if it has one.
        vh = self.voice.hop_samples or n
        wet_parts = []
        for start in range(0, n, vh):
            y, state.voice = self.voice.process(x[start : start + vh], state.voice, self.params)
            wet_parts.append(y)
        wet = wet_parts[0] if len(wet_parts) == 1 else np.concatenate(wet_parts)
        if not np.all(np.isfinite(wet)):
            # A voice that emits NaN/Inf must never reach the speakers: silence this block, count it.
            state.nonfinite_blocks += 1
            wet = np.where(np.isfinite(wet), wet, 0.0).astype(np.float32)

        # Dry path delayed by the voice's latency so that bypass toggles without a jump in time.
        lat = self.latency_samples
        if lat:
            joined = np.concatenate([state.dry_delay, x])
            dry, state.dry_delay = joined[:n], joined[n:]
        else:
            dry = x

        target = 1.0 if chain.bypass else 0.0
        if state.bypass_mix == target:
            mix = target
        else:
            step = n / self.crossfade_samples
            end = min(target, state.bypass_mix + step) if target > state.bypass_mix else max(target, state.bypass_mix - step)
            mix = self._ramp(state.bypass_mix, end, n)
            state.bypass_mix = end
        if isinstance(mix, float) and mix == 0.0:
            y = wet
        elif isinstance(mix, float) and mix == 1.0:
            y = dry
        else:
            y = wet * (1.0 - mix) + dry * mix

        g_out = db_to_gain(chain.output_gain_db)
        y = y * self._ramp(state.out_gain, g_out, n)
        state.out_gain = g_out
        return soft_limit(np.asarray(y, dtype=np.float32)), state
