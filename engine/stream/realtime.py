"""RealtimeStream: the sounddevice stream(s) and the rings between them and the worker.

Data flows one way::

    mic -> [device in] -> input callback -> in_ring -> worker: one hop (block_ms) -> Pipeline
        -> out_ring (pre-filled) -> output callback -> [device out] -> speakers / virtual cable
                                 -> mon_ring (pre-filled) -> monitor callback -> headphones

End-to-end latency = device in + device out + block (the worker waits for a whole hop)
                     + the voice's look-ahead + resampler delays + prefill_ms (the margin that
                     absorbs compute jitter). The out ring starts with ``block + prefill`` of silence,
and the worker trims it back if a late block ever lets it grow (see Worker), so latency cannot drift.

Input and output on the same host API share one duplex PortAudio stream (one clock, no drift);
otherwise two streams are opened. The monitor is always its own stream.
"""

from __future__ import annotations

import threading
import time

from engine.config import AudioConfig
from engine.errors import DeviceError
from engine.io.callbacks import CallbackCounters, DuplexSide, InputSide, OutputSide
from engine.io.devices import DeviceInfo, sounddevice
from engine.io.native import NativeSides, native_wanted
from engine.io.portaudio import close_in_background
from engine.ringbuffer import RingBuffer

RING_SECONDS = 2.0
COMPUTE_HEADROOM = 1.5  # the margin covers the slowest measured block and half as much again


def margin_for_compute(compute_ms: float, read_hop_ms: float, bursts: bool) -> float:
    """The pre-fill beyond one burst (ms) for a voice whose slowest measured block took
    ``compute_ms``: that with headroom for what was not measured, and for a voice that delivers big
    bursts (``bursts``) a read hop of slack, since its burst lands on a read boundary (the stream
    adds any jitter and keeps at least ``prefill_ms``)."""
    return COMPUTE_HEADROOM * compute_ms + (read_hop_ms if bursts else 0.0)


def margin_for_period(margin_frames: int, period_frames: int, phase_frames: int) -> int:
    """The pre-fill beyond one burst (frames) that leaves the worker ``margin_frames`` from the
    moment a burst's input is complete until the output needs it, however the bursts fall against
    a device that moves audio in callbacks of ``period_frames``.

    The output takes whole periods, and a burst completes at a callback that has just taken one,
    so a ring pre-filled with M beyond the burst holds, at the worst phase, M - P + g frames then,
    and lasts P * floor((M + g) / P) from that callback (g, ``phase_frames``: the gcd of burst and
    period for one duplex stream, whose bursts complete only at those offsets; else 0, any phase).
    So M = P * ceil(margin / P) - g, at least P - g (the ring must outlast the callback itself),
    never less than the margin set: 10 ms at 48 kHz is already enough with 256-frame periods
    (480 = 2 * 256 - 32), while 1024-frame periods (PipeWire's default quantum) need 20.7 ms, and
    15 ms with 256-frame periods holds out no longer than 10 ms at its worst phase."""
    p = int(period_frames)
    if p <= 0:
        return margin_frames
    return max(margin_frames, p * max(1, -(-margin_frames // p)) - phase_frames)


def margin_step_above(margin_frames: int, period_frames: int, phase_frames: int) -> int:
    """The least pre-fill above ``margin_frames`` that holds out one period longer at the worst
    phase (see margin_for_period); one frame more without a known period."""
    p = int(period_frames)
    if p <= 0:
        return margin_frames + 1
    return p * ((margin_frames + phase_frames) // p + 1) - phase_frames


class RealtimeStream:
    def __init__(
        self,
        config: AudioConfig,
        input_device: DeviceInfo,
        output_device: DeviceInfo,
        monitor_device: DeviceInfo | None = None,
        burst_ms: float | None = None,
        margin_ms: float | None = None,
        jitter_ms: float = 0.0,
    ):
        """``burst_ms``: how much audio the voice delivers at once (its fixed hop; default the block).
        ``margin_ms``: pre-fill beyond one burst, covering compute time (default ``prefill_ms``).
        ``jitter_ms``: how much earlier or later than average a burst may be written (when the
        voice's hop is not a whole number of read hops); it is added to the margin."""
        self.config = config
        self.input_device = input_device
        self.output_device = output_device
        self.monitor_device = monitor_device
        self.sample_rate = self.rate_for(config, output_device)
        # The worker reads the input in hops of block_ms; the output ring must cover one voice burst
        # (a neural voice returns a whole 250 ms block at once) plus the margin.
        self.hop_frames, self.burst_frames, self.margin_frames, self.jitter_frames = self.ring_frames(
            config, self.sample_rate, burst_ms, margin_ms, jitter_ms)
        self.prefill_frames = self.burst_frames + self.margin_frames
        self.in_channels = max(1, min(2, input_device.max_input_channels))
        self.out_channels = max(1, min(2, output_device.max_output_channels))
        cap = int(RING_SECONDS * self.sample_rate)
        self.in_ring = RingBuffer(cap, self.in_channels)
        self.out_ring = RingBuffer(cap, 1)
        self.mon_ring = RingBuffer(cap, 1) if monitor_device else None
        self.counters = CallbackCounters()
        self.mon_counters = CallbackCounters()
        self._streams: list = []
        self._close_lock = threading.Lock()  # NB: guards close() only; never taken on the audio thread
        self.finished_unexpectedly = False
        self.started_at = 0.0
        self.device_latency_ms = 0.0
        self.duplex = False  # input and output in one stream (one clock, callbacks in step)
        # Which audio callback runs: the native one (True) or Python's, and why not the native one.
        self.native, self.callback_note = False, ""

    @staticmethod
    def ring_frames(config: AudioConfig, rate: int, burst_ms: float | None, margin_ms: float | None,
                    jitter_ms: float) -> tuple[int, int, int, int]:
        """(read hop, burst, margin, jitter) in frames at ``rate`` for the arguments of __init__."""
        def frames(ms: float) -> int:
            return int(round(ms * rate / 1000.0))

        hop = max(1, frames(config.block_ms))
        burst = max(hop, frames(burst_ms or 0.0))
        margin = config.prefill_ms if margin_ms is None else max(config.prefill_ms, margin_ms)
        # A burst written one read late must still find audio in the ring: the jitter comes on top.
        jitter = max(0.0, jitter_ms)
        return hop, burst, frames(margin + jitter), frames(jitter)

    @staticmethod
    def rate_for(config: AudioConfig, output_device: DeviceInfo) -> int:
        """The device rate a stream with this config runs at: the asked one, else the output's default."""
        return int(config.sample_rate or output_device.default_samplerate)

    # ------------------------------------------------------------------ open / close
    def _check(self, sd) -> None:
        checks = [("input", self.input_device, self.in_channels), ("output", self.output_device, self.out_channels)]
        if self.monitor_device:
            checks.append(("output", self.monitor_device, 1))
        for kind, dev, ch in checks:
            try:
                if kind == "input":
                    sd.check_input_settings(device=dev.index, channels=ch, samplerate=self.sample_rate, dtype="float32")
                else:
                    sd.check_output_settings(device=dev.index, channels=ch, samplerate=self.sample_rate, dtype="float32")
            except Exception as exc:  # noqa: BLE001 - PortAudio raises plain Exceptions
                raise DeviceError(
                    f"The {kind} device '{dev.label}' cannot run at {self.sample_rate} Hz with {ch} channel(s) "
                    f"({exc}); choose its default rate ({dev.default_samplerate:g} Hz) or another device."
                ) from None

    def _on_finished(self) -> None:
        # Called by PortAudio when a stream ends; if we did not ask for it the device went away.
        if not self._closing:
            self.finished_unexpectedly = True

    def start(self) -> None:
        sd = sounddevice()
        self._check(sd)
        self._closing = False
        # Pre-fill: the latency budget, stated in frames = hop + prefill_ms.
        import numpy as np

        silence = np.zeros(self.prefill_frames, dtype=np.float32)
        self.out_ring.write(silence)
        if self.mon_ring is not None:
            self.mon_ring.write(silence)
        self.native, self.callback_note = native_wanted()
        common = dict(samplerate=self.sample_rate, dtype="float32", latency=self.config.device_latency,
                      finished_callback=self._on_finished)
        try:
            opened_duplex = False
            if self.input_device.hostapi == self.output_device.hostapi:
                try:
                    s = self._open(sd, "duplex", (self.input_device.index, self.output_device.index),
                                   (self.in_channels, self.out_channels), self.in_ring, self.out_ring,
                                   self.counters, common)
                    lat = s.latency
                    self.device_latency_ms = 1000.0 * (lat[0] + lat[1])
                    opened_duplex = True
                except Exception:  # noqa: BLE001 - fall back to two streams below
                    opened_duplex = False
            self.duplex = opened_duplex
            if not opened_duplex:
                si = self._open(sd, "input", self.input_device.index, self.in_channels, self.in_ring, None,
                                self.counters, common)
                so = self._open(sd, "output", self.output_device.index, self.out_channels, None, self.out_ring,
                                self.counters, common)
                self.device_latency_ms = 1000.0 * (si.latency + so.latency)
            if self.monitor_device is not None:
                self._open(sd, "output", self.monitor_device.index, 1, None, self.mon_ring, self.mon_counters, common)
            self.started_at = time.monotonic()
            for s in self._streams:
                s.start()
        except DeviceError:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001
            self.close()
            raise DeviceError(
                f"The audio device could not be opened ({exc}); check that it is plugged in and not "
                "used exclusively by another program, then try again or pick another device."
            ) from None

    def _open(self, sd, kind: str, device, channels, in_ring: RingBuffer | None, out_ring: RingBuffer | None,
              counters: CallbackCounters, common: dict):
        """One PortAudio stream of ``kind`` ("duplex", "input", "output") on these rings: with the
        native callback (engine/io/native.py) when ``self.native``, else with the Python ones."""
        if self.native:
            out_channels = channels[1] if kind == "duplex" else channels
            sides = NativeSides(in_ring, out_ring, counters, out_channels if out_ring is not None else 1)
            # NB: sounddevice's _StreamBase takes a C callback and its userdata (rtmixer builds on
            # it too); the stream keeps ``sides`` (the C struct and the arrays it points at) alive.
            s = sd._StreamBase(kind=kind, device=device, channels=channels, callback=sides.callback,
                               userdata=sides.userdata, **common)
            s.autovoice_sides = sides
        else:
            inp = InputSide(in_ring, counters) if in_ring is not None else None
            out = OutputSide(out_ring, counters) if out_ring is not None else None
            if kind == "duplex":
                opener, callback = sd.Stream, DuplexSide(inp, out)
            else:
                opener, callback = (sd.InputStream, inp) if kind == "input" else (sd.OutputStream, out)
            s = opener(device=device, channels=channels, callback=callback, **common)
        self._streams.append(s)
        return s

    @property
    def active(self) -> bool:
        return bool(self._streams) and all(s.active for s in self._streams) and not self.finished_unexpectedly

    def close_soon(self, wait_s: float = 2.0) -> bool:
        """Close on a helper thread, waiting at most ``wait_s``; True if it finished.

        PortAudio's abort can block forever when the device or sound server has vanished
        (seen with a killed JACK server); the worker and control threads must never hang on it.
        """
        return close_in_background(self.close, wait_s)

    def close(self) -> None:
        with self._close_lock:
            self._closing = True
            streams, self._streams = self._streams, []
            for s in streams:
                try:
                    s.abort(ignore_errors=True)
                except Exception:  # noqa: BLE001 - a vanished device may fail to abort; close anyway
                    pass
                try:
                    s.close(ignore_errors=True)
                except Exception:  # noqa: BLE001
                    pass

    _closing = False
