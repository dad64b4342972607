"""Garbage collection while streaming: no full collection may stall the worker.

With torch imported a process tracks ~170,000 container objects, and one full (generation 2)
collection walks all of them: ~75 ms measured on the 2-core CI machine, during which every
Python thread waits, the worker included. That is longer than a 10 ms block plus its 10 ms
safety margin, so one such pause is one audible gap (the stalls seen as ~one underflow every
40 s in issue 14's soak). Python's own answer (``gc.freeze``, made for exactly this) is used:

* when a stream starts, collect once (nothing is playing yet), then freeze everything that exists:
  later collections only look at objects created since, which the worker's steady state keeps
  few (fractions of a millisecond measured);
* after a voice is swapped in, freeze again (the new voice's objects join the frozen set, no
  collection, so no pause mid-stream);
* when the stream stops, unfreeze, so long-lived garbage can be found again.

Frozen objects are still freed by reference counting; only objects in reference cycles wait for
the unfreeze. :class:`GcWatch` records every collection's generation and pause so the health
snapshot (and the soak benchmark) can show what collections cost.
"""

from __future__ import annotations

import gc
import os
import threading
import time

import numpy as np

WATCH_CAPACITY = 4096


class GcWatch:
    """Counts collections and their pauses (a gc callback; cheap: two clock reads per collection)."""

    def __init__(self, capacity: int = WATCH_CAPACITY):
        self.at_s = np.zeros(capacity)  # time.monotonic() at the end of each collection
        self.pause_ms = np.zeros(capacity)
        self.generation = np.zeros(capacity, dtype=np.int8)
        self.count = 0
        self.full_collections = 0
        self.max_pause_ms = 0.0
        self._t0 = 0.0
        self._installed = False

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        ms = 1000.0 * (time.perf_counter() - self._t0)
        i = self.count % len(self.at_s)
        self.at_s[i] = time.monotonic()
        self.pause_ms[i] = ms
        self.generation[i] = info.get("generation", 0)
        self.count += 1
        if info.get("generation", 0) == 2:
            self.full_collections += 1
        if ms > self.max_pause_ms:
            self.max_pause_ms = ms

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._callback)
            self._installed = False

    def recent(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(end times, pauses in ms, generations) of the last collections, oldest first."""
        n = min(self.count, len(self.at_s))
        order = (np.arange(n) + max(0, self.count - len(self.at_s))) % len(self.at_s)
        return self.at_s[order].copy(), self.pause_ms[order].copy(), self.generation[order].copy()


class StreamingGc:
    """The policy above, for any number of streams (the engine has one; tests may open more).

    ``AUTOVOICE_STREAM_GC=0`` turns the freezing off (the collections are still watched): the soak
    benchmark's baseline, to show what the policy changes.
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = os.environ.get("AUTOVOICE_STREAM_GC", "1") != "0" if enabled is None else enabled
        self.watch = GcWatch()
        self._streams = 0
        self._lock = threading.Lock()  # NB: control threads only; the worker never calls these

    @property
    def active(self) -> bool:
        return self._streams > 0

    def stream_started(self) -> None:
        with self._lock:
            self._streams += 1
            if self._streams == 1:
                if self.enabled:
                    gc.collect()  # before the watch: this one runs while nothing plays yet
                self.watch.install()
            if self.enabled:
                gc.freeze()

    def voice_swapped(self) -> None:
        with self._lock:
            if self._streams and self.enabled:
                gc.freeze()

    def stream_stopped(self) -> None:
        with self._lock:
            if self._streams == 0:
                return
            self._streams -= 1
            if self._streams == 0 and self.enabled:
                gc.unfreeze()


#: The process's one policy: garbage collection is process-wide, whichever engine streams.
STREAMING_GC = StreamingGc()
