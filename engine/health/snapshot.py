"""Telemetry flows outward only: counters -> HealthSnapshot, read by the GUI's timers and the HTTP probes.

Liveness is not readiness:
* live  = the process answers and the engine's worker thread has beaten its heart recently;
* ready = a voice is loaded and warmed up (and, when a live stream is required, it runs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

HEARTBEAT_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class HealthSnapshot:
    time: float
    uptime_s: float
    worker_alive: bool
    worker_heartbeat_age_s: float
    # voice
    voice_name: str | None
    voice_kind: str | None
    voice_loaded: bool
    warmed_up: bool
    voice_loading: bool
    # accelerator
    gpu_available: bool
    gpu_name: str | None
    # live stream
    running: bool
    devices_ok: bool
    input_device: str | None
    output_device: str | None
    monitor_device: str | None
    sample_rate: int | None
    voice_sample_rate: int | None
    last_error: str | None
    # latency, all in ms
    block_ms: float
    algorithmic_latency_ms: float  # block + voice look-ahead + resampler delays
    buffer_latency_ms: float  # output ring pre-fill (safety margin against compute jitter), growth included
    device_latency_ms: float  # what PortAudio reports for input + output
    total_latency_ms: float
    # compute
    compute_ms_mean: float
    compute_ms_p99: float
    compute_load: float  # p99 compute / block duration; > 1 means inference is late
    # levels, dBFS
    input_level_db: float
    output_level_db: float
    # counters since the stream started
    blocks_processed: int
    late_blocks: int
    input_overflows: int  # input frames dropped because the worker fell behind
    output_underflows: int  # output callbacks that had to play (partly) silence
    output_underflow_frames: int
    device_xruns: int  # over/underruns PortAudio itself reported
    latency_corrections: int
    nonfinite_blocks: int
    suggestion: str | None  # e.g. a larger block when compute does not fit
    # garbage collection since the process started streaming (see engine/stream/gc_policy.py)
    gc_collections: int = 0
    gc_full_collections: int = 0
    gc_max_pause_ms: float = 0.0
    # adaptive safety margin (AudioConfig.adaptive_buffer): how far it has grown above what was set
    adaptive_buffer: bool = False
    buffer_growth_ms: float = 0.0
    buffer_start_ms: float | None = None  # the margin the stream opened with
    # why the margin in effect (less growth) is not that one: a neural voice's is set again from
    # its live blocks, a device's long callbacks need more (engine/stream/worker.py, _fit_margins)
    buffer_note: str | None = None
    # where the loaded voice runs ("cpu", "cuda:0"); why not where it was asked to, if it is not
    voice_device: str | None = None
    voice_device_note: str | None = None
    # where each stage of a neural voice's block runs, one "stage: device" per line (None: no stages)
    voice_parts: str | None = None
    # a setting of the voice's own that would serve this speaker better (a longer look-ahead for a
    # very low voice), from what the voice hears while it streams
    voice_hint: str | None = None
    # the conversion thread's scheduling while it streams: "realtime", "raised" or "normal", and why
    worker_priority: str | None = None
    worker_priority_detail: str | None = None
    # which audio callback moves the samples while it streams: "native" (C, never waits for
    # Python) or "python", and why not the native one
    audio_callback: str | None = None
    audio_callback_detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_live(s: HealthSnapshot) -> bool:
    return s.worker_alive and s.worker_heartbeat_age_s < HEARTBEAT_TIMEOUT_S


def readiness(s: HealthSnapshot, require_stream: bool = False) -> dict[str, bool]:
    checks = {"voice_loaded": s.voice_loaded, "warmed_up": s.warmed_up, "worker_alive": is_live(s)}
    if require_stream:
        checks["stream_running"] = s.running
    return checks


def is_ready(s: HealthSnapshot, require_stream: bool = False) -> bool:
    return all(readiness(s, require_stream).values())
