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

* content features: HuBERT on the whole 16 kHz window (that is the model's context), retrieval
  blending only on decoded frames, x2 to 100 frames/s;
* pitch: estimated only on the newest ``B * 160 + 800`` samples; frames 3..-1 of that estimate go to a
  per-frame cache (as RVC does), older frames keep their values; transposition is applied at
  synthesis, so changing it takes effect at once;
* noise for the prior and the NSF source is drawn once per absolute frame (rings that shift with the
  window), and the NSF sine phase is carried between calls, so the overlap that SOLA crossfades is
  the same signal in both calls;
* latency: the output is the input delayed by ``(C + S + L) * hop`` samples (plus the one block the
  pipeline buffers before calling us).
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

FRAME_MS = 10
SR_16K = 16000
F16 = 160  # 16 kHz samples per frame
PITCH_TAIL_EXTRA_16K = 800  # RVC realtime: pitch on block + 800 samples (50 ms) of the newest input
SOLA_SEARCH_FRAMES = 1  # 10 ms, as RVC


def _round_frames(ms: float, multiple: int = 1) -> int:
    frames = int(round(float(ms) / FRAME_MS))
    return max(multiple, int(math.ceil(frames / multiple)) * multiple)


def rvc_param_specs(speakers: int = 1, f0: bool = True) -> tuple[ParamSpec, ...]:
    specs = [
        ParamSpec("transpose_st", "Transpose", 0.0, -24.0, 24.0, 1.0, "st", help="Pitch shift in semitones.",
                  aliases=("transpose",)),
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
    ]
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
    ):
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
        self.param_specs = rvc_param_specs(cfg.spk_embed_dim, cfg.f0)
        self._partial = hasattr(synthesizer, "infer") and isinstance(synthesizer, torch.nn.Module)
        self.device_choice: Any = None  # engine.accelerators.DeviceChoice, set by load_rvc_voice
        self.memory: Any = None  # engine.accelerators.VoiceMemory, set by load_rvc_voice

    # --- the Voice protocol ---

    def init_state(self) -> _State:
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
        p = self._params(params)
        b, hop = self.block_frames, self.frame
        self._push_input(block, state)
        feats, original = self._features(state.ring16, p)  # (1, W, C) each
        f0 = None
        if self.cfg.f0:
            self._update_pitch(state, p["f0_method"])
            f0 = state.f0_cache * 2.0 ** (p["transpose_st"] / 12.0)
        self._shift_noise(state)
        chunk = self._run_synth(
            feats, original, f0, p, state.noise_z, state.noise_nsf, state.phase0, self.skip_head, self.return_frames
        )
        chunk = self._mix_rms(chunk, state.in_ring, p["rms_mix_rate"])
        out, state.sola = self._sola.process(chunk, state.sola)
        if f0 is not None:  # carry the sine phase past the B frames that leave the window next call
            per_frame = ((f0[:b] / self.sample_rate) % 1.0 * hop) % 1.0
            state.phase0 = float((state.phase0 + per_frame.sum()) % 1.0)
        state.calls += 1
        return out.astype(np.float32), state

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

    def convert_offline(self, audio: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        """Whole-signal conversion with the same components: (n,) at ``sample_rate`` -> (n,), aligned
        with the input (no latency). One window over everything, no partial decoding; the noise of
        every frame is the noise the live path gives that frame, so the two can be compared."""
        p = self._params(params or {})
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        frames = int(math.ceil(len(x) / self.frame / 2)) * 2
        padded = np.zeros(frames * self.frame, np.float32)
        padded[: len(x)] = x
        x16 = resample(padded, self.sample_rate, SR_16K)[: frames * F16]
        x16 = np.pad(x16, (0, frames * F16 - len(x16)))
        feats, original = self._features(x16, p, blend_from=0)
        f0 = None
        if self.cfg.f0:
            est = self._estimator(p["f0_method"]).estimate(x16)
            f0 = _fit(est, frames) * 2.0 ** (p["transpose_st"] / 12.0)
        noise_z, noise_nsf = self._offline_noise(frames)
        audio_out = self._run_synth(feats, original, f0, p, noise_z, noise_nsf, 0.0, 0, frames)
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

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for spec in self.param_specs:
            out[spec.name] = spec.validate(params.get(spec.name, spec.default))
        out.setdefault("transpose_st", 0.0)
        out.setdefault("protect", 0.5)
        out.setdefault("f0_method", "fcpe")
        return out

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

    def _features(
        self, x16: np.ndarray, p: dict[str, Any], blend_from: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N,) 16 kHz, N = frames * 160 -> content features (1, frames, C) at 100 frames/s, and the
        features before retrieval when consonant protection needs them (else None)."""
        from engine.voices.rvc.content import features_to_f0_rate

        frames = len(x16) // F16
        feats = self.encoder.encode(x16, self.cfg.version).float()  # (1, T, C) at 50 frames/s
        if not self._partial:  # ONNX synthesizers take numpy; a torch one keeps them on its device
            feats = feats.cpu()
        original = feats
        if self.index is not None and p["index_rate"] > 0:
            start = (self.skip_head if blend_from is None else blend_from) // 2
            blended = feats.clone()
            blended[:, start:] = self.index.blend(feats[:, start:], p["index_rate"])
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
        f0 = _fit(self._estimator(method).estimate(tail), len(tail) // F16 + 1)
        cache = state.f0_cache
        cache[:-b] = cache[b:]
        fresh = f0[3:-1]  # drop the estimate's edge frames, as RVC does
        cache[-len(fresh) :] = fresh

    def _shift_noise(self, state: _State) -> None:
        b, hop, gen = self.block_frames, self.frame, state.generator
        z = state.noise_z
        state.noise_z = torch.cat([z[:, :, b:], torch.randn(1, z.shape[1], b, generator=gen)], dim=2)
        n = state.noise_nsf
        state.noise_nsf = torch.cat([n[:, :, b * hop :], torch.randn(1, 1, b * hop, generator=gen)], dim=2)

    def _run_synth(self, feats, original, f0, p, noise_z, noise_nsf, phase0, head, length) -> np.ndarray:
        """Decode frames [head, head + length) of the window -> (length * hop,) float32."""
        from engine.voices.rvc.f0 import f0_to_coarse
        from engine.voices.rvc.index import protect_unvoiced

        frames = feats.shape[1]
        sid = int(p.get("speaker_id", 0))
        pitch = pitchf = None
        if f0 is not None:
            if original is not None:
                feats = protect_unvoiced(feats, original, torch.from_numpy(f0).float(), p["protect"])
            pitch = torch.from_numpy(f0_to_coarse(f0)).long().unsqueeze(0)
            pitchf = torch.from_numpy(f0).float().unsqueeze(0)
        if self._partial:
            dev = next(self.synth.parameters()).device
            dtype = next(self.synth.parameters()).dtype
            audio = self.synth.infer(
                feats.to(dev, dtype),
                torch.tensor([frames], device=dev),
                None if pitch is None else pitch.to(dev),
                None if pitchf is None else pitchf.to(dev),
                torch.tensor([sid], device=dev),
                skip_head=head,
                return_length=length,
                noise_z=noise_z.to(dev),
                noise_nsf=None if pitch is None else noise_nsf.to(dev),
                sine_phase0=None if pitch is None else torch.tensor([phase0], dtype=torch.float64, device=dev),
                decoder_context=self.decoder_context_frames,
            )
            return audio[0, 0].float().cpu().numpy()
        # ONNX contracts have no partial decoding: decode the window, keep the part we need
        audio = self.synth.infer(
            feats.numpy(), None, None if pitch is None else pitch.numpy(),
            None if pitchf is None else pitchf.numpy(), sid, noise_z=noise_z.numpy(),
        )
        return audio[0, 0, head * self.frame : (head + length) * self.frame]

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


def _fit(f0: np.ndarray, n: int) -> np.ndarray:
    f0 = np.asarray(f0, dtype=np.float64).reshape(-1)
    if len(f0) >= n:
        return f0[:n]
    return np.pad(f0, (0, n - len(f0)), mode="edge") if len(f0) else np.zeros(n)


def load_rvc_voice(
    model_path: str | Path,
    *,
    content_encoder_path: str | Path | None = None,
    models_dir: str | Path | None = None,
    index_path: str | Path | None = None,
    device: str | None = None,
    cuda_graphs: bool = True,
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

        index = load_index(index_path, 256 if version == "v1" else 768)
    if cuda_graphs and torch.device(dev).type == "cuda":
        from cuda_ops.graphs import GraphedSynthesizer

        synth = GraphedSynthesizer(synth)
    voice = RVCVoice(synth, encoder, index=index, name=path.stem, models_dir=models_dir, **geometry)
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


class _OnnxCfg:
    """The few config fields RVCVoice reads, for an ONNX synthesizer."""

    def __init__(self, synth: Any):
        self.sample_rate = synth.sample_rate
        self.f0 = synth.f0
        self.version = synth.version
        self.feature_dim = synth.feature_dim
        self.inter_channels = synth._inter_channels()
        self.spk_embed_dim = 1
