"""Preallocated single-producer / single-consumer float32 ring with drop counters.

Positions are two ever-growing frame counts, ``written`` (advanced only by the producer) and
``read`` (advanced only by the consumer); the slot of frame ``i`` is ``i % capacity``::

        read                      written
         v                           v
    [....|###########################|......]   ### = frames available to the consumer
         <--------- written - read --->

NB: thread safety without locks. Each counter has exactly one writer thread; a reader of the other
side's counter sees either the old or the new value, both of which are safe (it under-estimates what
is available, never over-estimates), as long as the producer copies data *before* publishing
``written`` and each decision reads the other side's counter once. The counters live in one int64
array, ``state`` (indices ``*_FIELD``), so that the native audio callback
(engine/io/native_callback.c) can run either side of a ring without Python; an aligned int64 store
is atomic there and here. Depends on nothing in engine/.

Two write policies, one per direction of the live stream:

* ``write_overwrite`` (input ring, producer = audio callback): never refuses. When the consumer is
  behind by more than ``capacity`` the oldest frames are overwritten; the consumer notices on its
  next read, skips to the oldest frame still intact and counts the skipped frames in
  ``dropped_frames`` (pedalboard's dropped_input_frame_count idea).
* ``write`` (output ring, producer = worker): writes what fits and counts the rest in
  ``overflow_frames``; the consumer (audio callback) reads with ``read_into``, which always fills its
  whole buffer, zeros for what is missing, and counts the missing frames in ``underflow_frames``.
"""

from __future__ import annotations

import numpy as np

# RingBuffer.state, shared with engine/io/native_callback.c (keep both in step)
(WRITTEN_FIELD, READ_FIELD, DROPPED_FIELD, UNDERFLOW_FRAMES_FIELD, UNDERFLOW_EVENTS_FIELD, OVERFLOW_FRAMES_FIELD,
 WRITING_FIELD) = range(7)
STATE_FIELDS = 7


class RingBuffer:
    def __init__(self, capacity_frames: int, channels: int = 1):
        if capacity_frames <= 0 or channels <= 0:
            raise ValueError("capacity_frames and channels must be positive")
        self.capacity = int(capacity_frames)
        self.channels = int(channels)
        self._buf = np.zeros((self.capacity, self.channels), dtype=np.float32)
        self.state = np.zeros(STATE_FIELDS, dtype=np.int64)

    # Owners: written, overflow_frames: the producer; read, dropped_frames, underflow_*: the consumer.
    written = property(lambda self: int(self.state[WRITTEN_FIELD]))
    read = property(lambda self: int(self.state[READ_FIELD]))
    dropped_frames = property(lambda self: int(self.state[DROPPED_FIELD]))  # overwrite policy
    underflow_frames = property(lambda self: int(self.state[UNDERFLOW_FRAMES_FIELD]))
    underflow_events = property(lambda self: int(self.state[UNDERFLOW_EVENTS_FIELD]))  # short reads
    overflow_frames = property(lambda self: int(self.state[OVERFLOW_FRAMES_FIELD]))  # refusing policy
    # Where the producer's copy in progress will end (``written`` between copies): set before the
    # copy, so a reader can tell a copy that overwrote what it read from one that has not started.
    writing = property(lambda self: int(self.state[WRITING_FIELD]))

    # ---------------------------------------------------------------- both sides
    def available(self) -> int:
        return min(self.written - self.read, self.capacity)

    def free(self) -> int:
        return self.capacity - (self.written - self.read)

    # ---------------------------------------------------------------- producer
    def _copy_in(self, data: np.ndarray, n: int) -> None:
        start = self.written % self.capacity
        first = min(n, self.capacity - start)
        if data.ndim == 1:
            self._buf[start : start + first, 0] = data[:first]
            if first < n:
                self._buf[: n - first, 0] = data[first:n]
        else:
            self._buf[start : start + first] = data[:first]
            if first < n:
                self._buf[: n - first] = data[first:n]

    def write_overwrite(self, data: np.ndarray) -> None:
        """Append all of ``data`` ((n,) or (n, channels)), overwriting the oldest frames if full."""
        n = len(data)
        if n > self.capacity:
            # Only the newest `capacity` frames can survive; publish the skipped ones as written
            # so the consumer's overrun arithmetic counts them as dropped.
            self.state[WRITTEN_FIELD] += n - self.capacity
            data = data[n - self.capacity :]
            n = self.capacity
        self.state[WRITING_FIELD] = self.written + n
        self._copy_in(data, n)
        self.state[WRITTEN_FIELD] += n

    def write(self, data: np.ndarray) -> int:
        """Append what fits of ``data``; returns frames written, counts the rest as overflow."""
        n = min(len(data), self.free())
        if n < len(data):
            self.state[OVERFLOW_FRAMES_FIELD] += len(data) - n
        if n > 0:
            self.state[WRITING_FIELD] = self.written + n
            self._copy_in(data, n)
            self.state[WRITTEN_FIELD] += n
        return n

    # ---------------------------------------------------------------- consumer
    def _skip_overrun(self) -> None:
        # ``written`` is read once: the producer may advance it between two reads (the native
        # callback runs without the interpreter lock), and frames skipped past a second, newer
        # value would be lost without being counted
        written = self.written
        behind = written - self.read
        if behind > self.capacity:
            self.state[DROPPED_FIELD] += behind - self.capacity
            self.state[READ_FIELD] = written - self.capacity

    def _copy_out(self, out: np.ndarray, start_frame: int, n: int) -> None:
        start = start_frame % self.capacity
        first = min(n, self.capacity - start)
        if out.ndim == 1:
            out[:first] = self._buf[start : start + first, 0]
            if first < n:
                out[first:n] = self._buf[: n - first, 0]
        else:
            out[:first] = self._buf[start : start + first]
            if first < n:
                out[first:n] = self._buf[: n - first]

    def read_exact(self, out: np.ndarray) -> bool:
        """Fill ``out`` completely if enough frames are available; else leave it and return False.

        Used by the worker on the input ring (overwrite policy). If the producer lapped us while we
        copied, the copied frames may be torn: they are counted as dropped and the read retried.
        """
        n = len(out)
        for _ in range(3):
            self._skip_overrun()
            if self.written - self.read < n:
                return False
            start = self.read
            self._copy_out(out, start, n)
            # ``writing`` is claimed before a copy in, so it also counts a copy still under way
            # (the native callback's, which runs without the interpreter lock, or one the lock
            # interrupted): nothing copied out was being overwritten
            if self.writing - start <= self.capacity:
                self.state[READ_FIELD] = start + n
                return True
            # lapped during the copy: drop what may be torn and try again from the oldest intact
        return False

    def read_into(self, out: np.ndarray) -> int:
        """Fill all of ``out`` (audio-callback side): data where available, zeros for the rest."""
        n = len(out)
        self._skip_overrun()
        avail = min(self.written - self.read, n)
        if avail > 0:
            self._copy_out(out, self.read, avail)
            self.state[READ_FIELD] += avail
        if avail < n:
            out[avail:] = 0.0
            self.state[UNDERFLOW_FRAMES_FIELD] += n - avail
            self.state[UNDERFLOW_EVENTS_FIELD] += 1
        return avail
