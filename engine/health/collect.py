"""Counters -> HealthSnapshot: the one place the engine's telemetry is assembled.

The engine hands over what it has (the worker and its chain, the voice, the settings in effect);
this reads counters only, takes no lock and never waits, so the GUI's timers and the HTTP probes
can call it as often as they like. Duck-typed on purpose: health sits below the stream layer and
imports nothing from it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from engine.health.snapshot import HealthSnapshot

# A block whose p99 compute is above this share of its duration is about to be late.
LOAD_WARNING = 0.9
# The block size suggested keeps p99 compute at this share of the block.
SUGGESTED_LOAD = 0.7


def suggestion_for(p99_ms: float, block_ms: float) -> str:
    """One sentence: the block size that would fit."""
    fit = int(np.ceil(p99_ms / SUGGESTED_LOAD / 5.0) * 5)
    return (f"Conversion takes {p99_ms:.1f} ms per {block_ms:.0f} ms block (p99), too slow for real time: "
            f"raise the block size to about {fit} ms or choose a lighter voice.")


def _voice_hint(voice: Any, chain: Any) -> str | None:
    hint = getattr(voice, "hint", None)
    if chain is None or not callable(hint):
        return None
    return hint(getattr(chain.state, "voice", None))


def collect(
    *,
    worker: Any,
    voice: Any,
    voice_info: Any,
    audio: Any,
    accelerator: dict[str, Any],
    started_at: float,
    loading: bool,
    warmed_up: bool,
    last_error: str | None,
    device_error: str | None,
    gc_watch: Any = None,
    voice_device: dict[str, Any] | None = None,
) -> HealthSnapshot:
    w = worker
    chain = w.chain
    now = time.monotonic()
    comp = w.compute_ms.latest() if len(w.compute_ms) else np.zeros(1)
    mean, p99 = float(comp.mean()), float(np.percentile(comp, 99))
    stream = chain.stream if chain else None
    if chain is not None:
        algo, buf = chain.latency_ms()
        block_ms = 1000.0 * stream.burst_frames / stream.sample_rate  # what one voice call covers
        dev_ms = stream.device_latency_ms
    else:
        block_ms = audio.block_ms
        look = (voice.latency_samples / voice.sample_rate * 1000.0) if voice else 0.0
        algo, buf, dev_ms = block_ms + look, audio.prefill_ms, 0.0
    load = p99 / block_ms if block_ms else 0.0
    suggestion = None
    if chain is not None and len(w.compute_ms) >= 20 and load > LOAD_WARNING:
        # A voice that knows a lighter setting of its own (RVC's small-cpu preset) says so itself.
        own = getattr(voice, "suggestion", None)
        suggestion = (own(p99, block_ms) if callable(own) else None) or suggestion_for(p99, block_ms)
    counters = stream.counters if stream else None
    level_in_db, level_out_db = w.levels_db()
    return HealthSnapshot(
        time=time.time(),
        uptime_s=now - started_at,
        worker_alive=w.alive,
        worker_heartbeat_age_s=now - w.heartbeat,
        voice_name=voice_info.name if voice_info else None,
        voice_kind=voice_info.kind if voice_info else None,
        voice_loaded=voice is not None,
        warmed_up=warmed_up,
        voice_loading=loading,
        gpu_available=bool(accelerator.get("available")),
        gpu_name=accelerator.get("name"),
        running=chain is not None,
        devices_ok=device_error is None or chain is not None,
        input_device=stream.input_device.label if stream else None,
        output_device=stream.output_device.label if stream else None,
        monitor_device=stream.monitor_device.label if stream and stream.monitor_device else None,
        sample_rate=stream.sample_rate if stream else None,
        voice_sample_rate=voice.sample_rate if voice else None,
        last_error=last_error,
        block_ms=block_ms,
        algorithmic_latency_ms=algo,
        buffer_latency_ms=buf,
        device_latency_ms=dev_ms,
        total_latency_ms=algo + buf + dev_ms,
        compute_ms_mean=mean,
        compute_ms_p99=p99,
        compute_load=load,
        input_level_db=level_in_db,
        output_level_db=level_out_db,
        blocks_processed=w.blocks_processed,
        late_blocks=w.late_blocks,
        input_overflows=stream.in_ring.dropped_frames if stream else 0,
        output_underflows=stream.out_ring.underflow_events if stream else 0,
        output_underflow_frames=stream.out_ring.underflow_frames if stream else 0,
        device_xruns=(counters.device_xruns + stream.mon_counters.device_xruns) if stream else 0,
        latency_corrections=w.latency_corrections,
        nonfinite_blocks=chain.state.nonfinite_blocks if chain else 0,
        suggestion=suggestion,
        gc_collections=gc_watch.count if gc_watch else 0,
        gc_full_collections=gc_watch.full_collections if gc_watch else 0,
        gc_max_pause_ms=gc_watch.max_pause_ms if gc_watch else 0.0,
        adaptive_buffer=bool(audio.adaptive_buffer),
        buffer_growth_ms=chain.buffer_growth_ms() if chain is not None else 0.0,
        buffer_start_ms=1000.0 * stream.margin_frames / stream.sample_rate if chain is not None else None,
        buffer_note=chain.buffer_note() if chain is not None else None,
        voice_device=(voice_device or {}).get("device") if voice is not None else None,
        voice_device_note=(voice_device or {}).get("fallback_reason") or None,
        voice_parts=_parts_text(voice_device) if voice is not None else None,
        voice_hint=_voice_hint(voice, chain),
        worker_priority=w.priority.kind if chain is not None and w.priority else None,
        worker_priority_detail=w.priority.detail if chain is not None and w.priority else None,
        audio_callback=("native" if stream.native else "python") if stream else None,
        audio_callback_detail=(stream.callback_note or None) if stream else None,
    )


def _parts_text(voice_device: dict[str, Any] | None) -> str | None:
    """``{"content_encoder": "cuda:0", ...}`` -> "content encoder: cuda:0" lines, None without parts."""
    parts = (voice_device or {}).get("parts") or {}
    return "\n".join(f"{stage.replace('_', ' ')}: {where}" for stage, where in parts.items()) or None
