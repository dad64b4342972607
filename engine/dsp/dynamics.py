"""Gain, noise gate and output safety limiter: block-wise and vectorised (worker thread only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


SILENCE_DB = -120.0  # the level reported for silence (and for no signal at all)


def level_db(x: np.ndarray, floor_db: float = SILENCE_DB) -> float:
    """RMS level in dBFS."""
    if len(x) == 0:
        return floor_db
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return max(floor_db, 20.0 * np.log10(rms + 1e-12))


def peak_db(x: np.ndarray, floor_db: float = SILENCE_DB) -> float:
    if len(x) == 0:
        return floor_db
    return max(floor_db, 20.0 * np.log10(float(np.max(np.abs(x))) + 1e-12))


@dataclass
class GateState:
    gain: float = 1.0
    hold_left: int = 0


class NoiseGate:
    """Opens above ``threshold_db``, closes 6 dB below it after a hold time, with ramps.

    Levels are measured over ``frame`` sub-blocks (~2.5 ms) so the gate follows speech onsets
    without a per-sample Python loop; gain moves linearly within each sub-block (no clicks).
    """

    HYSTERESIS_DB = 6.0

    def __init__(self, sample_rate: int, attack_ms: float = 2.0, release_ms: float = 80.0, hold_ms: float = 60.0):
        self.frame = max(1, int(sample_rate * 0.0025))
        self.attack_step = self.frame / max(1.0, attack_ms * 1e-3 * sample_rate)
        self.release_step = self.frame / max(1.0, release_ms * 1e-3 * sample_rate)
        self.hold_frames = int(round(hold_ms * 1e-3 * sample_rate / self.frame))

    def init_state(self) -> GateState:
        return GateState()

    def process(self, x: np.ndarray, state: GateState, threshold_db: float) -> tuple[np.ndarray, GateState]:
        if threshold_db <= -100.0 or len(x) == 0:
            state.gain, state.hold_left = 1.0, 0
            return x, state
        out = np.empty_like(x)
        open_thr = db_to_gain(threshold_db)
        close_thr = db_to_gain(threshold_db - self.HYSTERESIS_DB)
        g = state.gain
        for start in range(0, len(x), self.frame):
            seg = x[start : start + self.frame]
            rms = float(np.sqrt(np.mean(np.square(seg, dtype=np.float64))))
            if rms >= open_thr:
                target, state.hold_left = 1.0, self.hold_frames
            elif rms >= close_thr or state.hold_left > 0:
                target = 1.0 if g > 0.5 or state.hold_left > 0 else 0.0
                state.hold_left = max(0, state.hold_left - 1)
            else:
                target = 0.0
            step = self.attack_step if target > g else self.release_step
            g_end = min(target, g + step) if target > g else max(target, g - step)
            out[start : start + len(seg)] = seg * np.linspace(g, g_end, len(seg), endpoint=False, dtype=np.float32)
            g = g_end
        state.gain = g
        return out, state


def soft_limit(x: np.ndarray, knee: float = 0.89) -> np.ndarray:
    """Leave samples below ``knee`` untouched and bend the rest smoothly towards +-1 (never above)."""
    a = np.abs(x)
    over = a > knee
    if not np.any(over):
        return x
    y = x.copy()
    room = 1.0 - knee
    y[over] = np.sign(x[over]) * (knee + room * np.tanh((a[over] - knee) / room))
    return y
