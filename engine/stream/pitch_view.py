"""The pitch of the live input and output, for a display, tracked on a thread of the engine's own.

A display asks for two rolling tracks (one value per ``hop_s``, NaN where unvoiced) and reads them
on its timer; it never computes them, so a GUI thread does not hold the GIL for pitch tracking, and
nothing is computed at all while no display wants it (a hidden window turns it off).

Tracking the whole 2 s view each time would cost ~70 ms of CPU per signal, so each update analyses
only what arrived since the last one (plus context) and appends those frames. How many frames
arrived is taken from the clock, with the remainder carried, so the track does not drift.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

from engine.dsp.pitch import track_f0

PITCH_HOP_S = 0.010  # one pitch value per 10 ms on the display
VIEW_SECONDS = 2.0
UPDATE_S = 0.09
# Pitch frames this close to the newest sample see the zero padding past the end: skip them and
# show pitch this much behind the waveform (a display delay, not an audio one).
EDGE_S = 0.03
CONTEXT_S = 0.06

AudioSource = Callable[[float], "tuple[np.ndarray, np.ndarray, int]"]  # seconds -> (input, output, rate)


class PitchTrack:
    """A rolling track of ``seconds / hop_s`` values (bookkeeping only)."""

    def __init__(self, seconds: float = VIEW_SECONDS, hop_s: float = PITCH_HOP_S):
        self.hop_s = hop_s
        self.n = int(round(seconds / hop_s))
        self.values = np.full(self.n, np.nan)

    def reset(self) -> None:
        self.values = np.full(self.n, np.nan)

    def append(self, f0: np.ndarray) -> None:
        k = len(f0)
        if k == 0:
            return
        vals = np.where(f0 > 0, f0, np.nan)
        new = np.empty(self.n)
        if k >= self.n:
            new[:] = vals[-self.n:]
        else:
            new[:-k] = self.values[k:]
            new[-k:] = vals
        self.values = new  # NB: swapped by reference, so a reader never sees a half-shifted track


class PitchView:
    """Tracks pitch of ``source``'s audio while enabled and ``running()``; readers call :meth:`tracks`."""

    def __init__(self, source: AudioSource, running: Callable[[], bool], update_s: float = UPDATE_S):
        self._source = source
        self._running = running
        self._update_s = update_s
        self.input = PitchTrack()
        self.output = PitchTrack()
        self._enabled = threading.Event()
        self._closed = threading.Event()
        self._last_t: float | None = None
        self._carry_s = 0.0
        self._thread: threading.Thread | None = None

    def enable(self, on: bool) -> None:
        """Start (or pause) tracking; the thread is only created the first time it is wanted."""
        if on:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="autovoice-pitch-view", daemon=True)
                self._thread.start()
            self._enabled.set()
        else:
            self._enabled.clear()
            self._last_t = None

    @property
    def enabled(self) -> bool:
        return self._enabled.is_set()

    def tracks(self) -> tuple[np.ndarray, np.ndarray]:
        """(input, output) pitch in Hz, oldest first, NaN where unvoiced or not tracked."""
        return self.input.values.copy(), self.output.values.copy()

    def close(self) -> None:
        self._closed.set()
        self._enabled.set()  # wake the thread so it can leave
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _frames_due(self, now: float) -> int:
        if self._last_t is None:
            self._last_t = now
            return 0
        elapsed = now - self._last_t + self._carry_s
        self._last_t = now
        k = int(elapsed / PITCH_HOP_S)
        self._carry_s = elapsed - k * PITCH_HOP_S
        return min(k, self.input.n)

    def _run(self) -> None:
        while not self._closed.is_set():
            self._enabled.wait()
            if self._closed.wait(self._update_s):
                return
            if not self._enabled.is_set():
                continue
            if not self._running():
                self.input.reset()
                self.output.reset()
                self._last_t = None
                continue
            self.update(time.monotonic())

    def update(self, now: float) -> None:
        """One update: analyse the audio that arrived since the last one."""
        k = self._frames_due(now)
        if k <= 0:
            return
        a_in, a_out, sr = self._source(k * PITCH_HOP_S + EDGE_S + CONTEXT_S)
        hop = int(round(PITCH_HOP_S * sr))
        skip = int(round(EDGE_S / PITCH_HOP_S))
        for track, audio in ((self.input, a_in), (self.output, a_out)):
            if len(audio) < hop:
                continue
            f0 = track_f0(audio, sr, hop)
            usable = f0[: max(0, len(f0) - skip)]
            track.append(usable[-k:])
