"""Named live settings for RVC voices, and the engine-side rule that suggests a lighter one.

A live preset fixes how much work one block costs. Costs and quality below were measured on the
2-core CPU of README.md's benchmark (full-size v2 40 kHz synthesizer, HuBERT-base, FCPE;
``benchmarks/bench_rvc_live.py``):

``exact``
    RVC's own per-block work: the content encoder runs over the whole window (extra + block) in
    float32 every block. Output equals what RVC computes.
``default``
    RVC's geometry (block 250 ms, extra 2.5 s, crossfade 50 ms), but the content encoder's conv
    front end (a quarter of its cost, and local: 400 samples per frame) runs on the new audio only,
    older frames' conv features coming from a cache; its transformer still sees the whole window,
    with its linear layers in int8; and the decoder runs in bfloat16 where the CPU computes it
    natively (``avx512_bf16`` / AMX). About half of ``exact``'s time per block; what changes, by how
    much, is measured by the benchmark and bounded by tests/rvc/test_live_speed.py.
``small-cpu``
    For machines where ``default`` cannot keep up: ``default``'s choices with 500 ms blocks (fewer
    re-decoded crossfade frames per second of audio), 1.5 s of context and a 40 ms crossfade. About
    250 ms more latency; the shorter context costs a little quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class LivePreset:
    """How an RVC voice does its per-block work. ``None`` geometry means "the voice's own setting"."""

    name: str
    description: str
    block_ms: float | None = None
    extra_ms: float | None = None
    crossfade_ms: float | None = None
    feature_cache: bool = False  # conv features of audio already seen are reused (their norm stats drift)
    encoder_int8: bool = False  # int8 dynamic quantisation of the encoder's linear layers (CPU only)
    decoder_bf16: bool = False  # the decoder in bfloat16 where the CPU computes it natively


LIVE_PRESETS: dict[str, LivePreset] = {
    p.name: p
    for p in (
        LivePreset(
            "default",
            "RVC's geometry at about half its CPU time per block: cached conv features, int8 encoder, bfloat16 decoder where native.",
            feature_cache=True,
            encoder_int8=True,
            decoder_bf16=True,
        ),
        LivePreset(
            "exact",
            "RVC's own per-block work (encoder over the whole window, float32): the reference, and the slowest.",
        ),
        LivePreset(
            "small-cpu",
            "For small CPUs: default's choices with 500 ms blocks, 1.5 s of context and a 40 ms crossfade.",
            block_ms=500.0,
            extra_ms=1500.0,
            crossfade_ms=40.0,
            feature_cache=True,
            encoder_int8=True,
            decoder_bf16=True,
        ),
    )
}
DEFAULT_PRESET = "default"
SMALL_CPU_PRESET = "small-cpu"

#: compute per block above this share of the block counts as "cannot keep up" (the engine's own rule)
KEEP_UP_LOAD = 0.9


def live_preset(name: str) -> LivePreset:
    """The preset called ``name``; the name was validated at the edge (its ParamSpec's choices)."""
    return LIVE_PRESETS[name]


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (x86 avx512_bf16 or AMX), read from /proc/cpuinfo.
    Elsewhere (macOS, ARM, old x86) bfloat16 would be emulated and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def suggest_preset(preset: str, compute_ms_p99: float, block_ms: float) -> str | None:
    """One sentence suggesting the ``small-cpu`` live setting when the current one cannot keep up
    (p99 compute above 90 % of the block), or None. Engine-side: the fronts show what it returns."""
    if block_ms <= 0 or compute_ms_p99 <= KEEP_UP_LOAD * block_ms or preset == SMALL_CPU_PRESET:
        return None
    small = LIVE_PRESETS[SMALL_CPU_PRESET]
    return (
        f"Conversion takes {compute_ms_p99:.0f} ms per {block_ms:.0f} ms block, too slow for real time: "
        f"choose the live setting '{SMALL_CPU_PRESET}' ({small.block_ms:.0f} ms blocks, about "
        f"{small.block_ms - block_ms:+.0f} ms of latency) or a GPU."
    )
