"""The native audio callback (native_callback.c): the same work as callbacks.py without Python.

A PortAudio stream whose callback is Python takes the interpreter lock every period; while the
worker holds the lock (converting a block) the callback waits, and when the host takes away the CPU
of a thread holding it the wait grows to milliseconds: an underflow. The C callback copies the same
bytes into and out of the same rings and bumps the same counters, and never waits for anything.

It is built at install time (setup.py) where a C compiler is found; without it, or with
``AUTOVOICE_NATIVE_CALLBACK=0`` (a diagnostic switch, the soak's baseline), streams run the Python
callbacks and ``CALLBACK_KIND`` says which and why.
"""

from __future__ import annotations

import os
import platform

import numpy as np

from engine.io.callbacks import ARRIVALS, CallbackCounters
from engine.ringbuffer import RingBuffer

try:
    from engine.io._native_callback import ffi, lib
except ImportError as exc:  # not built: no C compiler at install time
    ffi = lib = None
    _why_not = f"the native callback is not built ({exc}); reinstall with a C compiler to get it"
else:
    _why_not = ""


# Where the rings' lock-free hand-over holds with the Python side's plain stores (total store
# order); elsewhere (64-bit Arm) the Python side would need barriers it does not have yet.
ORDERED_MACHINES = ("x86_64", "amd64")


def native_wanted() -> tuple[bool, str]:
    """(use the C callback, and if not why not, one sentence)."""
    if lib is None:
        return False, _why_not
    machine = platform.machine()
    if machine.lower() not in ORDERED_MACHINES:
        return False, (f"the native callback runs on x86-64 processors only for now, and this one is {machine}: "
                       "its hand-over of samples without locks is only checked there")
    if os.environ.get("AUTOVOICE_NATIVE_CALLBACK", "1") == "0":
        return False, "the native callback is turned off (AUTOVOICE_NATIVE_CALLBACK=0)"
    return True, ""


class NativeSides:
    """The C callback's view of one stream's rings and counters; ``callback`` and ``userdata`` go
    to sounddevice's _StreamBase. ``in_ring`` or ``out_ring`` may be None (one-way streams).

    NB: the arrays are Python's (RingBuffer.state, CallbackCounters.state...); this object keeps
    them and the C struct alive for as long as the stream holds it."""

    def __init__(self, in_ring: RingBuffer | None, out_ring: RingBuffer | None, counters: CallbackCounters,
                 out_channels: int = 1):
        if out_ring is not None and out_ring.channels != 1:
            raise ValueError("the native callback plays a mono output ring")
        self._keep = [counters.state, counters.arrival_s, counters.arrival_written]
        self.sides = ffi.new("struct av_sides *")
        for field, ring in (("in", in_ring), ("out", out_ring)):
            if ring is not None:
                self._fill_ring(getattr(self.sides, field), ring)
        self.sides.out_channels = out_channels
        self.sides.counters = self._pointer("int64_t *", counters.state)
        self.sides.arrival_s = self._pointer("double *", counters.arrival_s)
        self.sides.arrival_written = self._pointer("int64_t *", counters.arrival_written)
        self.sides.arrivals = ARRIVALS
        self.callback = ffi.addressof(lib, "av_callback")
        self.userdata = self.sides

    def _pointer(self, ctype: str, array: np.ndarray):
        assert array.flags.c_contiguous and array.flags.writeable
        self._keep.append(array)
        return ffi.cast(ctype, ffi.from_buffer(array))

    def _fill_ring(self, view, ring: RingBuffer) -> None:
        view.buf = self._pointer("float *", ring._buf)
        view.state = self._pointer("int64_t *", ring.state)
        view.capacity = ring.capacity
        view.channels = ring.channels
