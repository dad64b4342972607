"""RVCVoice: an RVC model as a streaming voice (the engine's Voice protocol, engine/voices/base.py).

Each call takes one block at the model's sample rate and converts a window of the most recent input,
as RVC's realtime GUI does, but decodes only the new part (partial decoding), keeps pitch and noise
per absolute frame, and splices consecutive outputs with SOLA. Frames are 10 ms (100 frames/s, 160
samples at 16 kHz, ``hop = sample_rate / 100`` samples at the model rate)::

    window (W frames, newest on the right)        W = X + C + S + B
    |<------------- X extra ------------->|<C>|<S>|<------ B block ------>|
                               |<-- L -->|                            (L = look-ahead, 0 by default)
    decoded (R = B + C + S frames):   [skip_head = X - L, X - L + R); the flow also runs on 24
           frames either side (its exact reach), the decoder on ``decoder_context_ms`` either side
    SOLA:  chunk of R frames -> B frames out; C frames kept to crossfade into the next call,
           S frames of search for the best splice offset.

* content features: HuBERT's transformer on the whole 16 kHz window (that is the model's context),
  as RVC does. Its conv front end is local (frame t reads samples [320 t, 320 t + 400)) but for the
  first layer's group norm over the window, so the ``default`` and ``small-cpu`` live settings keep
  its output in a cache at 50 frames/s and compute only the newest F = B / 2 + 3 frames, normalised
  with the current window's statistics; older frames keep the statistics of the window they were
  new in (the ``exact`` setting recomputes everything)::

      conv cache      [.......... frames of earlier blocks ..........|<- F fresh ->]
      conv input                                            [1 frame +|<- F fresh ->]
      transformer     [................... the whole window ...........................]

  Retrieval blending runs on decoded frames only, then x2 to 100 frames/s;
* pitch: estimated only on the newest ``B * 160 + 800`` samples; frames 3..-1 of that estimate go to a
  per-frame cache (as RVC does), older frames keep their values; transposition is applied at
  synthesis, so changing it takes effect at once;
* noise for the prior and the NSF source is drawn once per absolute frame (rings that shift with the
  window), and the NSF sine phase is carried between calls, so the overlap that SOLA crossfades is
  the same signal in both calls;
* formant (``formant_st``, RVC's realtime semantics): with factor = 2^(formant/12), pitch is taken
  ``formant`` semitones lower, the decoder is stretched from R to R2 = ceil(R * factor) frames (NSF F0
  scaled by R2 / R so the stretched sine keeps that pitch), and its output resampled from
  floor(factor * sr / 100) to sr / 100 samples per frame: R frames again, every frequency times
  ~factor, so the spectral envelope moves by ``formant`` semitones and the pitch lands back on the
  transposed one. 0 takes the plain path, bit for bit;
* latency: the output is the input delayed by ``(C + S + L) * hop`` samples (plus the one block the
  pipeline buffers before calling us).

Parameters arrive validated by the engine (``ParamSpec.validate`` at the edge) and are trusted here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.dsp.resample import resample
from engine.dsp.sola import Sola
from engine.errors import ConfigError, VoiceError
from engine.voices.base import ParamSpec
from engine.voices.rvc.f0 import fit_length
from engine.voices.rvc.presets import (
    DEFAULT_PRESET,
    LIVE_PRESETS,
    cpu_has_native_bf16,
    live_preset,
    suggest_preset,
)
from engine.voices.rvc.versions import feature_dim

FRAME_MS = 10
SR_16K = 16000
F16 = 160  # 16 kHz samples per frame
PITCH_TAIL_EXTRA_16K = 800  # RVC realtime: pitch on block + 800 samples (50 ms) of the newest input
SOLA_SEARCH_FRAMES = 1  # 10 ms, as RVC
C16 = 320  # 16 kHz samples per content frame (50 frames/s)
CONV_REFRESH_MS = 1000.0  # every cached conv frame gets the current window's statistics at least this often
FORMANT_RANGE_ST = 2.0  # RVC's realtime GUI: -2..2 in steps of 0.05
# File conversion (offline_twin): long blocks that see past the flow's +-24 frames and decode past
# the decoder's ~+-11.
OFFLINE_BLOCK_MS = 1000.0
OFFLINE_LOOKAHEAD_MS = 300.0
OFFLINE_DECODER_CONTEXT_MS = 120.0
_PART_ORDER = ("resampling", "content_encoder", "pitch", "index", "synthesizer", "sola")  # the block's order


def _round_frames(ms: float, multiple: int = 1) -> int:
    frames = int(round(float(ms) / FRAME_MS))
    return max(multiple, int(math.ceil(frames / multiple)) * multiple)


def rvc_param_specs(speakers: int = 1, f0: bool = True, formant: bool = True) -> tuple[ParamSpec, ...]:
    presets = ", ".join(f"{p.name}: {p.description}" for p in LIVE_PRESETS.values())
    specs = [
        ParamSpec("transpose_st", "Transpose", 0.0, -24.0, 24.0, 1.0, "st", help="Pitch shift in semitones.",
                  aliases=("transpose",)),
        ParamSpec("formant_st", "Formant", 0.0, -FORMANT_RANGE_ST, FORMANT_RANGE_ST, 0.05, "st", aliases=("formant",),
                  help="Moves the voice's resonances (vocal-tract size) without changing pitch: + smaller/brighter, - bigger/darker (RVC's formant)."),
        ParamSpec("index_rate", "Index rate", 0.5, 0.0, 1.0, 0.05,
                  help="How much of the voice's retrieval index to blend into the content (needs an index)."),
        ParamSpec("protect", "Protect consonants", 0.33, 0.0, 0.5, 0.01,
                  help="Keeps unvoiced sounds from the input; 0.5 turns it off."),
        ParamSpec("rms_mix_rate", "Loudness follow", 0.25, 0.0, 1.0, 0.05,
                  help="0: output loudness follows the input's envelope; 1: the model's own loudness."),
        ParamSpec("f0_method", "Pitch tracker", "fcpe", choices=("fcpe", "rmvpe", "dsp"),
                  help="fcpe needs nothing extra; rmvpe needs rmvpe.pt."),
        ParamSpec("speaker_id", "Speaker", 0.0, 0.0, float(max(speakers - 1, 0)), 1.0),
        ParamSpec("block_ms", "Block", 250.0, 20.0, 1000.0, 20.0, "ms", help="Applies when the voice is loaded.", reloads=True),
        ParamSpec("extra_ms", "Context", 2500.0, 200.0, 5000.0, 100.0, "ms", help="Applies when the voice is loaded.", reloads=True),
        ParamSpec("crossfade_ms", "Crossfade", 50.0, 10.0, 500.0, 10.0, "ms", help="Applies when the voice is loaded.", reloads=True),
        ParamSpec("live_preset", "Live setting", DEFAULT_PRESET, choices=tuple(LIVE_PRESETS), reloads=True,
                  help=f"Applies when the voice is loaded; a preset's own block/context/crossfade replace the values above. {presets}"),
    ]
    if not formant:
        specs = [s for s in specs if s.name != "formant_st"]
    if not f0:
        specs = [s for s in specs if s.name not in ("transpose_st", "protect", "f0_method")]
    return tuple(specs)


@dataclass
class _State:
    in_ring: np.ndarray  # model-rate input, (W + 2) * hop samples (2 frames of resampling margin)
    ring16: np.ndarray  # 16 kHz input, W * 160
    f0_cache: np.ndarray  # (W,) Hz before transposition
    noise_z: torch.Tensor  # (1, I, W)
    noise_nsf: torch.Tensor  # (1, 1, W * hop)
    phase0: float  # NSF sine phase (cycles) at window frame 0
    generator: torch.Generator
    sola: dict
    conv50: np.ndarray | None = None  # (512, W // 2 - 1) the encoder's conv features at 50 frames/s (cached paths)
    refresh_at: int = 0  # next cached conv frame the rolling refresh recomputes
    conv_sums: tuple[np.ndarray, np.ndarray] | None = None  # (512, W // 2) first-conv sums per frame
    calls: int = 0


class RVCVoice:
    """A loaded RVC model as a streaming voice. Heavy objects live here; per-stream data in the state."""

    def __init__(
        self,
        synthesizer: Any,
        content_encoder: Any,
        *,
        pitch_estimators: dict[str, Any] | None = None,
        index: Any = None,
        name: str = "rvc",
        block_ms: float = 250.0,
        extra_ms: float = 2500.0,
        crossfade_ms: float = 50.0,
        lookahead_ms: float = 0.0,
        decoder_context_ms: float = 0.0,
        models_dir: str | Path | None = None,
        seed: int = 0,
        live_preset: str = DEFAULT_PRESET,
        feature_cache: bool | None = None,
        encoder_int8: bool | None = None,
        decoder_bf16: bool | None = None,
        device_path: bool | None = None,
    ):
        """``live_preset`` names how the live path does its work (``presets.LIVE_PRESETS``); its own
        block/extra/crossfade, where it has them, replace the ones given. ``feature_cache``,
        ``encoder_int8`` and ``decoder_bf16`` override the preset's choices (for tests and benchmarks). ``device_path``:
        run the live block on the synthesizer's device end to end (engine/voices/rvc/device_live.py);
        None: where that device is a GPU."""
        preset = _preset_or_refuse(live_preset)
        self.live_preset = preset.name
        block_ms = preset.block_ms if preset.block_ms is not None else block_ms
        extra_ms = preset.extra_ms if preset.extra_ms is not None else extra_ms
        crossfade_ms = preset.crossfade_ms if preset.crossfade_ms is not None else crossfade_ms
        feature_cache = preset.feature_cache if feature_cache is None else bool(feature_cache)
        encoder_int8 = preset.encoder_int8 if encoder_int8 is None else bool(encoder_int8)
        decoder_bf16 = preset.decoder_bf16 if decoder_bf16 is None else bool(decoder_bf16)
        self.synth = synthesizer
        # a torch SynthesizerTrn has .cfg; an OnnxSynthesizer gets the few fields we read
        cfg = synthesizer.cfg if hasattr(synthesizer, "cfg") else _OnnxCfg(synthesizer)
        self.cfg = cfg
        self.encoder = content_encoder
        self.index = index
        if index is not None:
            index.check_dim(cfg.feature_dim)
        self.name = name
        self.sample_rate = int(cfg.sample_rate)
        self.frame = self.sample_rate // 100  # model samples per frame (= decoder hop)
        self.models_dir = models_dir
        self.seed = int(seed)
        self._estimators: dict[str, Any] = dict(pitch_estimators or {})
        # Even frame counts keep every window on the 20 ms HuBERT grid of the absolute stream.
        self.block_frames = _round_frames(block_ms, 2)
        self.extra_frames = _round_frames(extra_ms, 2)
        self.crossfade_frames = _round_frames(crossfade_ms, 1)
        self.lookahead_frames = int(round(float(lookahead_ms) / FRAME_MS)) if lookahead_ms else 0
        self.search_frames = SOLA_SEARCH_FRAMES
        # decoder frames beyond each end of the decoded chunk (costs decoder time; RVC uses none)
        self.decoder_context_frames = int(round(float(decoder_context_ms) / FRAME_MS))
        if self.extra_frames < self.lookahead_frames + 2:
            raise ConfigError("Context (extra_ms) must exceed the look-ahead by at least 20 ms.")
        s = self.search_frames + self.crossfade_frames  # keep the window a multiple of 20 ms
        if s % 2:
            self.search_frames += 1
        self.window_frames = self.extra_frames + self.crossfade_frames + self.search_frames + self.block_frames
        self.return_frames = self.block_frames + self.crossfade_frames + self.search_frames
        self.skip_head = self.extra_frames - self.lookahead_frames
        self.hop_samples = self.block_frames * self.frame
        self.latency_samples = (self.crossfade_frames + self.search_frames + self.lookahead_frames) * self.frame
        self._sola = Sola(self.hop_samples, self.crossfade_frames * self.frame, self.search_frames * self.frame)
        self._partial = hasattr(synthesizer, "infer") and isinstance(synthesizer, torch.nn.Module)
        self._constants: dict[tuple[int, str], torch.Tensor] = {}
        self._twin: RVCVoice | None = None  # offline_twin()
        self.device_choice: Any = None  # engine.accelerators.DeviceChoice, set by load_rvc_voice
        self.memory: Any = None  # engine.accelerators.VoiceMemory, set by load_rvc_voice
        self.supports_formant = self._partial or bool(getattr(synthesizer, "supports_formant", False))
        self.param_specs = rvc_param_specs(cfg.spk_embed_dim, cfg.f0, self.supports_formant)
        self._defaults = {spec.name: spec.default for spec in self.param_specs}
        for name, value in (("transpose_st", 0.0), ("formant_st", 0.0), ("protect", 0.5), ("f0_method", "fcpe")):
            self._defaults.setdefault(name, value)  # what a model without those controls runs with
        self._defaults["live_preset"] = self.live_preset

        # Conv-feature cache (see the module docstring): F fresh frames from (F + 1) * 320 samples.
        self.fresh_frames = self.block_frames // 2 + 3
        old_frames = self.window_frames // 2 - 1 - self.fresh_frames
        # The refresh pointer moves R frames right a block while the frames move B / 2 left, so each
        # is recomputed within old / (R + B / 2) blocks: R for CONV_REFRESH_MS of stream.
        blocks = max(CONV_REFRESH_MS / (self.block_frames * FRAME_MS), 1.0)
        self.refresh_frames = max(0, min(old_frames, math.ceil(old_frames / blocks) - self.block_frames // 2))
        # The cache keeps its frames in numpy: a CPU encoder's (on a GPU the whole window is cheap).
        on_cpu = getattr(content_encoder, "device", torch.device("cpu")).type == "cpu"
        self.feature_cache = bool(feature_cache) and hasattr(content_encoder, "conv_features") and on_cpu
        # The live path's models: the float ones (offline, exact) unless the preset trades precision.
        self.live_encoder = content_encoder
        if encoder_int8 and hasattr(content_encoder, "int8"):
            self.live_encoder = content_encoder.int8()
        self.encoder_int8 = self.live_encoder is not content_encoder
        self.live_synth = synthesizer
        if decoder_bf16 and self._partial and cpu_has_native_bf16() and next(synthesizer.parameters()).device.type == "cpu":
            self.live_synth = _with_decoder_in(synthesizer, torch.bfloat16)
        self.decoder_bf16 = self.live_synth is not synthesizer
        self.device_live = None
        if self._partial:
            dev = next(synthesizer.parameters()).device
            if device_path or (device_path is None and dev.type == "cuda"):
                enc_dev = getattr(self.live_encoder, "device", None)
                if enc_dev is None or torch.device(enc_dev) != dev:
                    if device_path:
                        raise ConfigError(f"The device path needs the content encoder on {dev}, where the voice is.")
                else:
                    from engine.voices.rvc.device_live import DeviceLive

                    self.device_live = DeviceLive(self, dev)

    # --- the Voice protocol ---

    def init_state(self) -> Any:
        if self.device_live is not None:
            return self.device_live.init_state()
        w, hop = self.window_frames, self.frame
        gen = torch.Generator().manual_seed(self.seed)
        return _State(
            in_ring=np.zeros((w + 2) * hop, np.float32),
            ring16=np.zeros(w * F16, np.float32),
            f0_cache=np.zeros(w),
            noise_z=torch.randn(1, self.cfg.inter_channels, w, generator=gen),
            noise_nsf=torch.randn(1, 1, w * hop, generator=gen),
            phase0=0.0,
            generator=gen,
            sola=self._sola.init_state(),
        )

    def process(self, block: np.ndarray, state: _State, params: dict[str, Any]) -> tuple[np.ndarray, _State]:
        """block: (hop_samples,) float32 at ``sample_rate`` -> (hop_samples,) float32."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        if block.shape[0] != self.hop_samples:
            raise ValueError(f"RVCVoice takes blocks of {self.hop_samples} samples, got {block.shape[0]}")
        p = {**self._defaults, **params}  # validated at the edge; trusted here
        if self.device_live is not None:
            return self.device_live.process(block, state, p), state
        b, hop = self.block_frames, self.frame
        self._push_input(block, state)
        feats, original = self._features(self._live_content(state), p)  # (1, W, C) each
        f0 = None
        if self.cfg.f0:
            self._update_pitch(state, p["f0_method"])
            f0 = state.f0_cache * 2.0 ** (p["transpose_st"] / 12.0)
        self._shift_noise(state)
        chunk, nsf_f0 = self._run_synth(
            feats, original, f0, p, state.noise_z, state.noise_nsf, state.phase0, self.skip_head, self.return_frames,
            synth=self.live_synth,
        )
        chunk = self._mix_rms(chunk, state.in_ring, p["rms_mix_rate"])
        out, state.sola = self._sola.process(chunk, state.sola)
        if nsf_f0 is not None:  # carry the sine phase past the B frames that leave the window next call
            per_frame = ((nsf_f0[:b] / self.sample_rate) % 1.0 * hop) % 1.0
            state.phase0 = float((state.phase0 + per_frame.sum()) % 1.0)
        state.calls += 1
        return out.astype(np.float32), state

    @property
    def cpu_bound_live(self) -> bool:
        """Whether the live block keeps CPU cores busy for most of its time: everywhere but a torch
        model on a GPU (an ONNX voice's content encoder runs on the CPU). The stream's worker then
        takes a raised nice value instead of real-time priority (engine/stream/priority.py)."""
        return not (self._partial and next(self.synth.parameters()).device.type == "cuda")

    @property
    def pitch_trackers_loaded(self) -> tuple[str, ...]:
        """The pitch trackers loaded so far (each loads on first use)."""
        return tuple(self._estimators)

    def device_parts(self) -> dict[str, str]:
        """Where each stage of the live block runs, for the app and ``/health``."""
        from engine.accelerators import device_of

        synth_dev = device_of(self.synth)
        pitch = {}
        for name, est in self._estimators.items():
            where = device_of(est)
            if self.device_live is not None and not hasattr(est, "estimate_on_device") and where != synth_dev:
                where += " (its estimate goes through the host each block)"
            pitch[name] = where
        parts = {
            "content_encoder": device_of(self.encoder),
            "pitch": ", ".join(f"{k}: {v}" for k, v in sorted(pitch.items())) or "not loaded yet",
            "synthesizer": synth_dev,
        }
        if self.device_live is None:
            on_cuda = synth_dev.startswith("cuda")
            parts.update(resampling="cpu (soxr)", sola="cpu (numpy)",
                         index="none" if self.index is None else f"{synth_dev} (device copy)" if on_cuda else "cpu (faiss)")
        else:
            from cuda_ops.dispatch import use_kernel

            dev = self.device_live.device
            kernels = "Triton" if use_kernel(torch.empty(0, device=dev)) else "torch"
            parts.update(resampling=f"{dev} (windowed sinc)", sola=f"{dev} ({kernels})",
                         index="none" if self.index is None else f"{dev} (device copy, {kernels})")
        return dict(sorted(parts.items(), key=lambda kv: _PART_ORDER.index(kv[0])))

    def measure_peak_memory(self, params: dict[str, Any] | None = None) -> int | None:
        """Convert two silent blocks on a fresh state; the peak device bytes (None off CUDA) go to
        ``memory.peak_bytes``. Call it off the audio thread (it is one warm-up)."""
        from engine import accelerators as devices

        dev = next(self.synth.parameters()).device if self._partial else torch.device("cpu")
        params = dict(params or {})
        if self.cfg.f0:
            params.setdefault("f0_method", "dsp")  # the pitch tracker is not what is measured

        def run() -> None:
            state = self.init_state()
            for _ in range(2):
                self.process(np.zeros(self.hop_samples, np.float32), state, params)

        _, peak = devices.measure_peak_bytes(dev, run)
        if self.memory is not None:
            self.memory.peak_bytes = peak
        return peak

    # --- offline ---

    def offline_twin(self) -> "RVCVoice":
        """The same voice for file and song conversion, where latency costs nothing: the same models,
        index, pitch trackers and noise, in blocks of OFFLINE_BLOCK_MS that see OFFLINE_LOOKAHEAD_MS
        ahead (so the newest frames get their right-hand context, as in a whole-file conversion)
        and decode OFFLINE_DECODER_CONTEXT_MS either side, with the live setting's economies (its
        conv cache, int8 encoder, bfloat16 decoder) but not its geometry. Longer blocks also mean
        less of the context re-encoded per second of audio (benchmarks/bench_rvc_files.py)."""
        if self._twin is None:  # NB: a benign race; two threads would build equal twins
            synth = self.synth
            graph = getattr(synth, "graph", None)
            if graph is not None:  # a CUDA graph serves one thread: conversions get their own
                from cuda_ops.graphs import GraphedSynthesizer

                synth = GraphedSynthesizer(synth.inner, enabled=graph.enabled)
            twin = RVCVoice(
                synth, self.encoder, index=self.index, name=self.name,
                block_ms=OFFLINE_BLOCK_MS, extra_ms=max(self.extra_frames * FRAME_MS, OFFLINE_LOOKAHEAD_MS + 100),
                crossfade_ms=self.crossfade_frames * FRAME_MS, lookahead_ms=OFFLINE_LOOKAHEAD_MS,
                decoder_context_ms=OFFLINE_DECODER_CONTEXT_MS, models_dir=self.models_dir, seed=self.seed,
                # the live setting's economies without its geometry (small-cpu's would replace the block)
                live_preset="exact", feature_cache=self.feature_cache, encoder_int8=self.encoder_int8,
                decoder_bf16=self.decoder_bf16, device_path=self.device_live is not None,
            )
            twin._estimators = self._estimators  # shared: a tracker loads once for both
            twin.device_choice, twin.memory, twin._twin = self.device_choice, self.memory, twin
            self._twin = twin
        return self._twin

    def convert_offline(self, audio: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        """Whole-signal conversion with the same components: (n,) at ``sample_rate`` -> (n,), aligned
        with the input (no latency). One window over everything, no partial decoding; the noise of
        every frame is the noise the live path gives that frame, so the two can be compared."""
        p = {**self._defaults, **self._validated(params or {})}
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        frames = int(math.ceil(len(x) / self.frame / 2)) * 2
        padded = np.zeros(frames * self.frame, np.float32)
        padded[: len(x)] = x
        x16 = resample(padded, self.sample_rate, SR_16K)[: frames * F16]
        x16 = np.pad(x16, (0, frames * F16 - len(x16)))
        feats, original = self._features((self._encode(self.encoder, x16), frames), p, blend_from=0)
        f0 = None
        if self.cfg.f0:
            est = self._estimator(p["f0_method"]).estimate(x16)
            f0 = fit_length(est, frames) * 2.0 ** (p["transpose_st"] / 12.0)
        noise_z, noise_nsf = self._offline_noise(frames)
        audio_out, _ = self._run_synth(feats, original, f0, p, noise_z, noise_nsf, 0.0, 0, frames)
        audio_out = self._mix_rms(audio_out, padded, p["rms_mix_rate"], whole=True)
        return audio_out[: len(x)]

    def _offline_noise(self, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The live path's noise for absolute frames [0, frames): same generator, same draw order
        (the initial window covers frames [-W, 0), then B new frames per block)."""
        gen = torch.Generator().manual_seed(self.seed)
        w, b, hop = self.window_frames, self.block_frames, self.frame
        torch.randn(1, self.cfg.inter_channels, w, generator=gen)
        torch.randn(1, 1, w * hop, generator=gen)
        zs, ns = [], []
        for _ in range(int(math.ceil(frames / b))):
            zs.append(torch.randn(1, self.cfg.inter_channels, b, generator=gen))
            ns.append(torch.randn(1, 1, b * hop, generator=gen))
        return torch.cat(zs, 2)[:, :, :frames], torch.cat(ns, 2)[:, :, : frames * hop]

    # --- steps ---

    def _validated(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` checked against this voice's specs: the edge for direct callers of
        :meth:`convert_offline` (the engine validates before it calls; the live path trusts)."""
        specs = {spec.name: spec for spec in self.param_specs}
        return {k: specs[k].validate(v) if k in specs else v for k, v in params.items()}

    def suggestion(self, compute_ms_p99: float, block_ms: float) -> str | None:
        """One sentence naming a lighter live setting when this one cannot keep up, else None."""
        return suggest_preset(self.live_preset, compute_ms_p99, block_ms)

    def _push_input(self, block: np.ndarray, state: _State) -> None:
        n = len(block)
        ring = state.in_ring
        ring[:-n] = ring[n:]
        ring[-n:] = block
        # Resample the new block with one frame of margin on each side (RVC's realtime recipe): the
        # margin absorbs the resampler's edge; the newest 16 kHz frame is rewritten on the next call.
        fresh = resample(ring[-(n + 2 * self.frame) :], self.sample_rate, SR_16K)
        fresh = fresh[F16 : F16 + (self.block_frames + 1) * F16]
        r16 = state.ring16
        m = self.block_frames * F16
        r16[:-m] = r16[m:]
        r16[-len(fresh) :] = fresh

    def _encode(self, encoder: Any, x16: np.ndarray) -> torch.Tensor:
        """(N,) 16 kHz -> (1, T, C) float32 on the CPU at 50 frames/s, T = (N - 400) // 320 + 1."""
        return encoder.encode(x16, self.cfg.version).float().cpu()

    def _live_content(self, state: _State) -> tuple[torch.Tensor, int]:
        """This block's content features over the window at 50 frames/s, (1, W // 2 - 1, C), and the
        window's frame count at 100 frames/s; the conv half from the cache when the setting keeps one."""
        frames = len(state.ring16) // F16
        enc = self.live_encoder
        if not self.feature_cache:
            return self._encode(enc, state.ring16), frames
        if state.conv50 is None:  # first block: the whole window once, to fill the cache
            state.conv50 = enc.conv_features(state.ring16)[0].numpy().copy()
            state.conv_sums = enc.first_conv_sums(state.ring16)
        else:
            n, cache, shift, r16 = self.fresh_frames, state.conv50, self.block_frames // 2, state.ring16
            cache[:, :-shift] = cache[:, shift:]  # numpy copes with the overlap
            stats = None
            if state.conv_sums is not None:  # the group norm's statistics, kept per frame
                s1, s2 = state.conv_sums
                s1[:, :-shift], s2[:, :-shift] = s1[:, shift:], s2[:, shift:]
                new1, new2 = enc.first_conv_sums(r16[-(shift + 2) * C16 :])
                s1[:, -(shift + 2) :], s2[:, -(shift + 2) :] = new1, new2
                _, kernel, stride = enc.model.cfg.conv_layers[0]
                stats = enc.stats_from_sums(s1, s2, (len(r16) - kernel) // stride + 1)
            cache[:, -n:] = enc.conv_features(r16[-(n + 1) * C16 :], stats)[0, :, -n:].numpy()
            # Rolling refresh: R older frames a block get the current statistics, so none is more
            # than ~CONV_REFRESH_MS of stream behind (speech after a pause changes them most).
            if not self.refresh_frames:
                return enc.encode_conv(torch.from_numpy(cache), self.cfg.version).cpu(), frames
            old, r = cache.shape[1] - n, self.refresh_frames
            a = state.refresh_at % max(old - r, 1)
            cache[:, a : a + r] = enc.conv_features(r16[a * C16 : (a + r) * C16 + 80], stats)[0].numpy()
            state.refresh_at = a + r
        return enc.encode_conv(torch.from_numpy(state.conv50), self.cfg.version).cpu(), frames

    def _features(
        self, content: tuple[torch.Tensor, int], p: dict[str, Any], blend_from: int | None = None,
        device_index: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(content features (1, T, C) at 50 frames/s, frames at 100 frames/s) -> content features
        (1, frames, C) at 100 frames/s after retrieval blending, and the features before retrieval
        when consonant protection needs them (else None). ``device_index``: search the index's copy
        on the features' device (always so on CUDA), not faiss."""
        from engine.voices.rvc.content import features_to_f0_rate

        feats, frames = content
        if self._partial:  # ONNX synthesizers take numpy; a torch one takes them on its own device
            feats = feats.to(next(self.synth.parameters()).device)
        original = feats
        if self.index is not None and p["index_rate"] > 0:
            start = (self.skip_head if blend_from is None else blend_from) // 2
            blended = feats.clone()
            blended[:, start:] = self.index.blend(feats[:, start:], p["index_rate"], on_device=device_index)
            feats = blended
        protect = self.cfg.f0 and p["protect"] < 0.5 and feats is not original
        return features_to_f0_rate(feats, frames), (features_to_f0_rate(original, frames) if protect else None)

    def _estimator(self, method: str) -> Any:
        if method not in self._estimators:
            from engine.voices.rvc.f0 import load_pitch_estimator

            dev = next(self.synth.parameters()).device if self._partial else "cpu"  # FCPE/RMVPE beside the model
            self._estimators[method] = load_pitch_estimator(method, self.models_dir, device=dev)
        return self._estimators[method]

    def _update_pitch(self, state: _State, method: str) -> None:
        b = self.block_frames
        tail = state.ring16[-(b * F16 + PITCH_TAIL_EXTRA_16K) :]
        f0 = fit_length(self._estimator(method).estimate(tail), len(tail) // F16 + 1)
        cache = state.f0_cache
        cache[:-b] = cache[b:]
        fresh = f0[3:-1]  # drop the estimate's edge frames, as RVC does
        cache[-len(fresh) :] = fresh

    def _shift_noise(self, state: Any, device: torch.device | None = None) -> None:
        """The noise rings move B frames left; the new frames are drawn by the state's generator (on
        its own device) and land on ``device`` (default: the generator's)."""
        b, hop, gen = self.block_frames, self.frame, state.generator

        def fresh(*shape: int) -> torch.Tensor:
            x = torch.randn(shape, generator=gen, device=gen.device)
            return x if device is None else x.to(device)

        z = state.noise_z
        state.noise_z = torch.cat([z[:, :, b:], fresh(1, z.shape[1], b)], dim=2)
        n = state.noise_nsf
        state.noise_nsf = torch.cat([n[:, :, b * hop :], fresh(1, 1, b * hop)], dim=2)

    def _run_synth(self, feats, original, f0, p, noise_z, noise_nsf, phase0, head, length, synth=None):
        """Decode frames [head, head + length) of the window -> ((length * hop,) float32, the NSF F0
        the decoder was given (frames,) or None). ``f0``: (frames,) Hz after transposition."""
        from engine.voices.rvc.f0 import f0_to_coarse
        from engine.voices.rvc.index import protect_unvoiced

        synth = self.synth if synth is None else synth
        if self._partial:
            audio, nsf_f0, formant = self._decode(feats, original, f0, p, noise_z, noise_nsf, phase0, head, length, synth)
            audio = audio[0, 0].float().cpu().numpy()
            return (audio if formant == 0.0 else self._unstretch(audio, length, formant)), nsf_f0
        # ONNX contracts have no partial decoding: decode the window, keep the part we need
        frames = feats.shape[1]
        formant = float(p.get("formant_st", 0.0)) if self.supports_formant else 0.0
        frames2 = None if formant == 0.0 else int(math.ceil(frames * 2.0 ** (formant / 12.0)))
        pitch = pitchf = nsf_f0 = None
        if f0 is not None:
            if frames2 is not None:  # pitch taken ``formant`` lower, as in the torch path
                f0 = f0 * 2.0 ** (-formant / 12.0)
            if original is not None:
                feats = protect_unvoiced(feats, original, torch.from_numpy(f0).float(), p["protect"])
            pitch = torch.from_numpy(f0_to_coarse(f0)).long().unsqueeze(0)
            nsf_f0 = f0 if frames2 is None else f0 * (frames2 / frames)
            pitchf = torch.from_numpy(nsf_f0).float().unsqueeze(0)
        audio = synth.infer(
            feats.numpy(), None, None if pitch is None else pitch.numpy(),
            None if pitchf is None else pitchf.numpy(), int(p.get("speaker_id", 0)), noise_z=noise_z.numpy(),
            **({} if frames2 is None else {"formant_length": frames2}),
        )[0, 0]
        if frames2 is not None:
            audio = self._unstretch(audio, frames, formant)
        return audio[head * self.frame : (head + length) * self.frame], nsf_f0

    def _decode(self, feats, original, f0, p, noise_z, noise_nsf, phase0, head, length, synth):
        """A torch synthesizer's decode of frames [head, head + length), everything on its device
        -> (audio (1, 1, n) there, stretched when the formant moves; the NSF F0 it was given, of
        f0's kind, or None; the formant in semitones). ``f0``: (frames,) Hz after transposition,
        numpy or a tensor; ``phase0``: the NSF sine phase, a float or a (1,) float64 tensor."""
        from engine.voices.rvc.f0 import f0_to_coarse
        from engine.voices.rvc.index import protect_unvoiced

        dev = next(synth.parameters()).device
        dtype = synth.emb_g.weight.dtype
        frames = feats.shape[1]
        formant = float(p.get("formant_st", 0.0)) if self.supports_formant else 0.0
        length2 = None
        if formant != 0.0:  # RVC's return_length2
            length2 = int(math.ceil(length * 2.0 ** (formant / 12.0)))
            if f0 is not None:
                f0 = f0 * 2.0 ** (-formant / 12.0)
        pitch = pitchf = nsf_f0 = None
        if f0 is not None:
            f0_t = f0 if isinstance(f0, torch.Tensor) else torch.from_numpy(f0)
            if original is not None:
                feats = protect_unvoiced(feats, original, f0_t.float(), p["protect"])
            pitch = f0_to_coarse(f0_t).to(dev).unsqueeze(0)
            nsf_f0 = f0 if length2 is None else f0 * (length2 / length)
            pitchf = (nsf_f0 if isinstance(nsf_f0, torch.Tensor) else torch.from_numpy(nsf_f0)).float().to(dev).unsqueeze(0)
        if pitch is not None and not isinstance(phase0, torch.Tensor):
            phase0 = torch.tensor([phase0], dtype=torch.float64, device=dev)
        audio = synth.infer(
            feats.to(dev, dtype),
            self._constant(frames, dev),
            pitch,
            pitchf,
            self._constant(int(p.get("speaker_id", 0)), dev),
            skip_head=head,
            return_length=length,
            noise_z=noise_z.to(dev),
            noise_nsf=None if pitch is None else noise_nsf.to(dev),
            sine_phase0=None if pitch is None else phase0.to(dev),
            decoder_context=self.decoder_context_frames if length2 is None else 0,
            formant_length=length2,
        )
        return audio, nsf_f0, formant

    def _constant(self, value: int, dev: torch.device) -> torch.Tensor:
        """A (1,) int64 tensor on ``dev``, made once: per-block inputs that rarely change (the window's
        frame count, the speaker) cost no host-to-device copy."""
        key = (int(value), str(dev))
        if key not in self._constants:
            self._constants[key] = torch.tensor([int(value)], device=dev)
        return self._constants[key]

    def _unstretch(self, audio: np.ndarray, length: int, formant_st: float) -> np.ndarray:
        """RVC's resampling back after a stretched decode: the first ``length * upp_res`` samples,
        upp_res = floor(factor * sr / 100), from upp_res to sr / 100 samples per frame -> (length * hop,)."""
        upp_res = int(math.floor(2.0 ** (formant_st / 12.0) * self.sample_rate / 100))
        x = np.asarray(audio, dtype=np.float32)[: length * upp_res]
        x = np.pad(x, (0, length * upp_res - len(x)))
        y = resample(x, upp_res, self.frame) if upp_res != self.frame else x
        return np.pad(y, (0, max(0, length * self.frame - len(y))))[: length * self.frame].astype(np.float32)

    def _mix_rms(self, out: np.ndarray, source: np.ndarray, rate: float, whole: bool = False) -> np.ndarray:
        """RVC's loudness follow: out *= (rms_in / rms_out) ** (1 - rate), frame RMS over 4 frames."""
        if rate >= 1.0:
            return out
        if whole:
            src = source[: len(out)]
        else:  # the input samples the decoded chunk came from
            end = len(source) - self.lookahead_frames * self.frame  # the ring ends where the window ends
            src = source[max(0, end - len(out)) : end]
        rms_in = _frame_rms(src, self.frame)
        rms_out = np.maximum(_frame_rms(out, self.frame), 1e-3)
        gain = (rms_in / rms_out) ** (1.0 - rate)
        t = (np.arange(len(out)) + 0.5) / self.frame - 0.5
        gain_s = np.interp(t, np.arange(len(gain)), gain)
        return (out * gain_s).astype(np.float32)


def _frame_rms(x: np.ndarray, frame: int) -> np.ndarray:
    n = len(x) // frame
    if n == 0:
        return np.zeros(1)
    padded = np.pad(x[: n * frame].astype(np.float64), (2 * frame, 2 * frame), mode="reflect")
    sq = np.convolve(padded**2, np.ones(4 * frame) / (4 * frame), mode="same")
    return np.sqrt(sq[2 * frame : 2 * frame + n * frame : frame][:n] + 1e-12)


def load_rvc_voice(
    model_path: str | Path,
    *,
    content_encoder_path: str | Path | None = None,
    models_dir: str | Path | None = None,
    index_path: str | Path | None = None,
    device: str | None = None,
    cuda_graphs: bool = True,
    live_preset: str = DEFAULT_PRESET,
    **geometry: float,
) -> RVCVoice:
    """Open an RVC voice from its ``.pth`` (or ``.onnx``), the content encoder and optional index.

    ``device``: ``cpu`` / ``cuda`` / ``cuda:N`` (None: ``engine.accelerators.preferred_device()``, else a
    GPU when there is one). A GPU that is missing or too full gives a CPU voice whose
    ``device_choice.fallback_reason`` says why; ``memory`` (engine.accelerators.VoiceMemory) says what it
    holds there. ``cuda_graphs``: replay the live block's decode as a CUDA graph (on CUDA only;
    ``AUTOVOICE_CUDA_GRAPHS=0`` turns it off too).

    Raises VoiceError / ModelFormatError in one sentence when a file is missing or wrong.
    """
    from engine.voices.rvc.content import find_content_encoder, load_content_encoder

    from engine import accelerators as devices

    path = Path(model_path)
    choice = None
    if path.suffix.lower() == ".onnx":
        from engine.voices.rvc.onnx_model import load_onnx_synthesizer

        synth = load_onnx_synthesizer(path)
        dev = "cpu"  # the content encoder; onnxruntime places the synthesizer itself
        on_gpu = synth.provider == "CUDAExecutionProvider"
        choice = devices.DeviceChoice(torch.device("cuda:0" if on_gpu else "cpu"), "onnxruntime", synth.fallback_reason)
    else:
        from engine.voices.rvc.checkpoint import load_synthesizer

        choice = devices.select_device(device)
        synth, dev = _load_on(choice, lambda d: load_synthesizer(path, device=d)[0], path, content_encoder_path)
    version = synth.cfg.version if hasattr(synth, "cfg") else synth.version
    if content_encoder_path is None:
        if models_dir is None:
            raise VoiceError("RVC voices need a content encoder (hubert_base.pt): pass its path or a models folder.")
        content_encoder_path = find_content_encoder(models_dir, version)
    half = torch.float16 if devices.use_fp16(dev) else torch.float32
    try:
        encoder = load_content_encoder(content_encoder_path, device=dev, dtype=half)
    except Exception as exc:
        if choice is None or torch.device(dev).type != "cuda" or not devices.is_out_of_memory(exc):
            raise
        choice.fallback_reason = (f"The content encoder does not fit in {dev}'s free memory next to the voice; "
                                  "running the voice on the CPU.")
        dev = torch.device("cpu")
        synth = synth.float().to(dev)
        encoder = load_content_encoder(content_encoder_path, device=dev)
    index = None
    if index_path is not None:
        from engine.voices.rvc.index import load_index

        index = load_index(index_path, feature_dim(version))
    if cuda_graphs and torch.device(dev).type == "cuda":
        from cuda_ops.graphs import GraphedSynthesizer

        synth = GraphedSynthesizer(synth)
    voice = RVCVoice(synth, encoder, index=index, name=path.stem, models_dir=models_dir, live_preset=live_preset, **geometry)
    voice.device_choice = choice or devices.DeviceChoice(torch.device("cpu"), "cpu")
    voice.memory = _memory_of(voice, dev)
    if voice.device_choice.fallback_reason:
        voice.memory.notes.append(voice.device_choice.fallback_reason)
    return voice


def _load_on(choice: Any, load: Any, path: Path, encoder_path: Any) -> tuple[Any, Any]:
    """Load with ``load(device)`` on the chosen device; when it cannot fit on the GPU, say so in
    ``choice.fallback_reason`` and load on the CPU."""
    from engine import accelerators as devices

    dev = choice.device
    if dev.type == "cuda":
        # fp16 weights are about half the fp32 file; the content encoder and one block's activations
        # come on top (measured peak is reported once the voice has run: RVCVoice.memory)
        files = path.stat().st_size + (Path(encoder_path).stat().st_size if encoder_path and Path(encoder_path).is_file() else 0)
        problem = devices.fit_problem(dev, files + 512 * 2**20, f"Voice '{path.stem}'")
        if problem:
            choice.fallback_reason, choice.device = problem, torch.device("cpu")
            return load(torch.device("cpu")), torch.device("cpu")
        try:
            synth = load(dev)
            return synth, next(synth.parameters()).device
        except Exception as exc:
            if not devices.is_out_of_memory(exc):
                raise
            torch.cuda.empty_cache()
            choice.fallback_reason = f"Voice '{path.stem}' does not fit in {dev}'s free memory; running it on the CPU."
            choice.device = torch.device("cpu")
            dev = choice.device
    synth = load(dev)
    return synth, next(synth.parameters()).device


def _memory_of(voice: "RVCVoice", dev: Any) -> Any:
    from engine import accelerators as devices

    weights = 0
    for part in (voice.synth, getattr(voice.encoder, "model", None)):
        if isinstance(part, torch.nn.Module):
            weights += devices.module_bytes(part)
    index_bytes = int(getattr(voice.index, "nbytes", 0) or 0) if voice.index is not None else 0
    return devices.VoiceMemory(device=str(dev), weights_bytes=weights, index_bytes=index_bytes)


def _preset_or_refuse(name: str):
    try:
        return live_preset(name)
    except KeyError:
        raise ConfigError(f"Live setting {name!r} is unknown; choose one of {', '.join(LIVE_PRESETS)}.") from None


def _with_decoder_in(synth: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A shallow copy of ``synth`` (sharing every weight) whose decoder runs in ``dtype``; its NSF
    source stays float32 (the sine phase needs it) and the audio comes back as float32."""
    import copy

    live = copy.copy(synth)
    live._modules = dict(synth._modules)
    live.dec = _CastDecoder(copy.deepcopy(synth.dec).to(dtype), getattr(synth.dec, "m_source", None), dtype)
    return live


class _CastDecoder(torch.nn.Module):
    """The decoder in another dtype behind the float32 interface ``SynthesizerTrn.infer`` calls."""

    def __init__(self, dec: torch.nn.Module, m_source: torch.nn.Module | None, dtype: torch.dtype):
        super().__init__()
        self.inner, self.dtype = dec, dtype
        if m_source is not None:  # models without pitch have no NSF source
            self.m_source = m_source

    def forward(self, x: torch.Tensor, g: torch.Tensor | None, source: torch.Tensor | None) -> torch.Tensor:
        """x: (B, I, L), g: (B, G, 1), source: (B, 1, L * hop) -> (B, 1, L * hop) float32"""
        cast = (lambda t: None if t is None else t.to(self.dtype))
        return self.inner(cast(x), cast(g), cast(source)).float()


class _OnnxCfg:
    """The few config fields RVCVoice reads, for an ONNX synthesizer."""

    def __init__(self, synth: Any):
        self.sample_rate = synth.sample_rate
        self.f0 = synth.f0
        self.version = synth.version
        self.feature_dim = synth.feature_dim
        self.inter_channels = synth._inter_channels()
        self.spk_embed_dim = 1
