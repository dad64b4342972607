"""Prometheus metrics, all named ``autovoice_*``, in one registry per app (tests build several apps).

Three sources:
* the HTTP layer and the conversion/stream handlers observe their own counters and histograms;
* the live stream's per-block compute times come from the engine worker's ring of recent timings,
  copied into a histogram by ``sync_live_blocks`` twice a second (the ring holds 1000 blocks, 10 s at
  10 ms blocks, far more than the half second between copies);
* everything the engine already counts (xruns, latency, voice state, GPU memory) is read at scrape
  time by ``EngineCollector``, so /metrics shows the same numbers as the health probes.
"""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from engine.health.snapshot import is_live
from engine.server.system import gpu_devices

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (name, type, help) of what EngineCollector reports; described even when absent (no GPU) so that
# dashboards and tests can check names against one list.
ENGINE_METRICS: tuple[tuple[str, str, str], ...] = (
    ("autovoice_live", "gauge", "1 while the engine's worker heartbeat is alive (the liveness probe)"),
    ("autovoice_ready", "gauge", "1 while the readiness probe answers 200"),
    ("autovoice_voice_loaded", "gauge", "1 when a voice is loaded and warmed up"),
    ("autovoice_live_stream_running", "gauge", "1 while the real-time device stream runs (serve --live)"),
    ("autovoice_live_blocks", "counter", "Blocks the live stream has converted since it started"),
    ("autovoice_live_late_blocks", "counter", "Live blocks whose conversion took longer than the block lasts"),
    ("autovoice_live_input_overflow_frames", "counter", "Input frames dropped because the worker fell behind"),
    ("autovoice_live_output_underflows", "counter", "Output callbacks that had to play silence (xruns heard as clicks)"),
    ("autovoice_live_output_underflow_frames", "counter", "Frames of silence played because output was missing"),
    ("autovoice_live_device_xruns", "counter", "Over/underruns the audio system itself reported"),
    ("autovoice_live_latency_corrections", "counter", "Times the worker trimmed the output buffer back to its budget"),
    ("autovoice_live_latency_seconds", "gauge", "Live latency by part: algorithmic, buffer, device, total"),
    ("autovoice_live_compute_load", "gauge", "p99 block compute time over block duration (above 1: too slow for real time)"),
    ("autovoice_gpu_available", "gauge", "1 when torch sees a CUDA GPU"),
    ("autovoice_gpu_devices", "gauge", "CUDA devices visible to torch"),
    ("autovoice_gpu_memory_total_bytes", "gauge", "Memory of each GPU"),
    ("autovoice_gpu_memory_used_bytes", "gauge", "GPU memory in use by every process (total minus free)"),
    ("autovoice_gpu_memory_allocated_bytes", "gauge", "GPU memory held by this process's tensors"),
    ("autovoice_gpu_memory_reserved_bytes", "gauge", "GPU memory reserved by this process's caching allocator"),
)

COUNTER_FIELDS = {
    "autovoice_live_blocks": "blocks_processed",
    "autovoice_live_late_blocks": "late_blocks",
    "autovoice_live_input_overflow_frames": "input_overflows",
    "autovoice_live_output_underflows": "output_underflows",
    "autovoice_live_output_underflow_frames": "output_underflow_frames",
    "autovoice_live_device_xruns": "device_xruns",
    "autovoice_live_latency_corrections": "latency_corrections",
}


class EngineCollector:
    def __init__(self, engine: Any, ready: Callable[[], bool]):
        self.engine = engine
        self.ready = ready  # the readiness probe's own answer, so both always agree

    def describe(self):
        for name, kind, doc in ENGINE_METRICS:
            yield (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc)

    def collect(self):
        docs = {name: doc for name, _, doc in ENGINE_METRICS}
        s = self.engine.snapshot()

        def gauge(name: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, docs[name], labels=list(labels or {}))
            g.add_metric(list((labels or {}).values()), float(value))
            return g

        yield gauge("autovoice_live", is_live(s))
        yield gauge("autovoice_ready", self.ready())
        yield gauge("autovoice_voice_loaded", s.voice_loaded and s.warmed_up)
        yield gauge("autovoice_live_stream_running", s.running)
        for name, field in COUNTER_FIELDS.items():
            c = CounterMetricFamily(name, docs[name])
            c.add_metric([], float(getattr(s, field)))
            yield c
        lat = GaugeMetricFamily("autovoice_live_latency_seconds", docs["autovoice_live_latency_seconds"], labels=["part"])
        if s.running:
            for part, ms in (("algorithmic", s.algorithmic_latency_ms), ("buffer", s.buffer_latency_ms),
                             ("device", s.device_latency_ms), ("total", s.total_latency_ms)):
                lat.add_metric([part], ms / 1000.0)
        yield lat
        yield gauge("autovoice_live_compute_load", s.compute_load if s.running else 0.0)

        accel = self.engine.accelerator()
        yield gauge("autovoice_gpu_available", bool(accel.get("available")))
        yield gauge("autovoice_gpu_devices", int(accel.get("device_count") or 0))
        devices = gpu_devices(accel)
        for name, key in (("autovoice_gpu_memory_total_bytes", "memory_total_bytes"),
                          ("autovoice_gpu_memory_used_bytes", "memory_used_bytes"),
                          ("autovoice_gpu_memory_allocated_bytes", "memory_allocated_bytes"),
                          ("autovoice_gpu_memory_reserved_bytes", "memory_reserved_bytes")):
            g = GaugeMetricFamily(name, docs[name], labels=["device", "name"])
            for d in devices:
                g.add_metric([str(d["index"]), d["name"]], float(d[key]))
            yield g


class Metrics:
    def __init__(self, engine: Any, ready: Callable[[], bool]):
        self.engine = engine
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total, ...
        self.requests = Counter("autovoice_http_requests", "HTTP requests answered, by route and status",
                                ["method", "route", "status"], registry=r)
        self.request_seconds = Histogram("autovoice_http_request_duration_seconds",
                                         "Time to answer an HTTP request (upload and conversion included)",
                                         ["method", "route"], registry=r)
        self.conversions = Counter("autovoice_conversions", "File conversions by outcome "
                                   "(ok, bad_request, too_large, busy, timeout, error)", ["outcome"], registry=r)
        self.conversion_seconds = Histogram("autovoice_conversion_duration_seconds",
                                            "Time to decode, convert and encode one uploaded file",
                                            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300), registry=r)
        self.converted_audio_seconds = Counter("autovoice_converted_audio_seconds",
                                               "Seconds of audio converted, by source (file, stream)", ["source"], registry=r)
        self.conversions_in_flight = Gauge("autovoice_conversions_in_flight",
                                           "File conversions running now (a timed-out one counts until it has stopped)",
                                           registry=r)
        self.block_compute_seconds = Histogram(
            "autovoice_block_compute_seconds", "Compute time per converted block, by source (live, stream)", ["source"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0), registry=r)
        self.stream_frame_latency_seconds = Histogram(
            "autovoice_stream_frame_latency_seconds",
            "WebSocket stream: time from a frame's arrival to its converted samples being sent (queueing included)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=r)
        self.stream_sessions = Gauge("autovoice_stream_sessions", "WebSocket stream sessions open now", registry=r)
        self.stream_sessions_total = Counter("autovoice_stream_sessions_opened", "WebSocket stream sessions, by outcome "
                                             "(ok, refused, error)", ["outcome"], registry=r)
        self.stream_frames = Counter("autovoice_stream_frames", "WebSocket audio messages, by direction (in, out)",
                                     ["direction"], registry=r)
        self.stream_queue_high_water = Gauge("autovoice_stream_queue_high_water_frames",
                                             "Most frames any stream session has held waiting for conversion", registry=r)
        self.rejected = Counter("autovoice_rejected_requests", "Requests refused before any work, by reason "
                                "(unauthorized, foreign_host, foreign_origin, too_large, unsupported_media_type, busy, upload_timeout)", ["reason"],
                                registry=r)
        r.register(EngineCollector(engine, ready))
        self._seen_blocks = 0

    def sync_live_blocks(self) -> None:
        """Copy the live worker's block timings since the last call into the block compute histogram."""
        n, recent = self.engine.live_block_times()
        if n < self._seen_blocks:  # a restarted stream resets its counters
            self._seen_blocks = 0
        new = n - self._seen_blocks
        self._seen_blocks = n
        if new <= 0:
            return
        h = self.block_compute_seconds.labels("live")
        for ms in recent[-new:]:
            h.observe(float(ms) / 1000.0)

    def render(self) -> bytes:
        self.sync_live_blocks()
        return generate_latest(self.registry)


def metric_names(metrics: Metrics) -> set[str]:
    """Every family name this app can expose (counters without their _total suffix)."""
    return {f.name for f in metrics.registry.collect()} | {name for name, _, _ in ENGINE_METRICS}
