"""An RVC voice's live block with every step on its synthesizer's torch device.

On a GPU the block's audio goes up once and comes back once: the ring buffers, resampling to
16 kHz, the content encoder, FCPE or RMVPE pitch, index retrieval (``cuda_ops.knn``), the noise, the
synthesizer (a CUDA graph when graphed), the loudness follow and SOLA (``cuda_ops.sola``) all take
and give tensors on that device. The steps are RVCVoice's (engine/voices/rvc/voice.py, whose
docstring draws the window); what differs from its numpy path:

* resampling to 16 kHz is a fixed windowed-sinc gather (``engine.dsp.resample.fixed_plan``, the
  live resampler's filter) instead of soxr;
* the content encoder always sees the whole window (the conv-feature cache is a CPU economy);
* noise comes from a generator on the device (on the CPU: the numpy path's draws, in its order);
* FCPE and RMVPE estimate on the device (``estimate_on_device``); the ``dsp`` tracker is host code,
  so its estimate is one more round trip a block, and ``RVCVoice.device_parts`` says so.

It runs where the synthesizer is on CUDA (``device_path=None``), or anywhere on request (tests
compare it with the numpy path on the CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.dsp.resample import fixed_plan
from engine.voices.rvc.f0 import fit_length
from engine.voices.rvc.voice import F16, PITCH_TAIL_EXTRA_16K, SR_16K


@dataclass
class DeviceState:
    in_ring: torch.Tensor  # model-rate input, (W + 2) * hop
    ring16: torch.Tensor  # 16 kHz input, W * 160
    f0_cache: torch.Tensor  # (W,) Hz before transposition
    noise_z: torch.Tensor  # (1, I, W)
    noise_nsf: torch.Tensor  # (1, 1, W * hop)
    phase0: torch.Tensor  # (1,) float64, NSF sine phase (cycles) at window frame 0
    generator: torch.Generator
    sola: dict
    calls: int = 0


class Gather:
    """A fixed resampling as a gather on one device: (n_in,) -> (n_out,)."""

    def __init__(self, idx: np.ndarray, w: np.ndarray, device: torch.device):
        self.idx = torch.from_numpy(idx).to(device)
        self.w = torch.from_numpy(w).to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x[self.idx] * self.w).sum(1)


class DeviceLive:
    """The per-geometry constants of one RVCVoice's device path, and its ``init_state``/``process``."""

    def __init__(self, voice: Any, device: torch.device):
        self.voice, self.device = voice, torch.device(device)
        v, dev = voice, self.device
        n, hop = v.hop_samples, v.frame
        # 16 kHz samples of the newest block plus one frame, from the block and one frame either side
        # (RVC's realtime recipe, as the numpy path): rows [F16, F16 + (B + 1) * F16) of the plan.
        idx, w = fixed_plan(n + 2 * hop, v.sample_rate, SR_16K)
        keep = slice(F16, F16 + (v.block_frames + 1) * F16)
        self.to_16k = Gather(idx[keep], w[keep], dev)
        # Loudness follow: gain per frame, interpolated at each sample (np.interp's clamping at the ends).
        out_len = v.return_frames * hop
        t = np.clip((np.arange(out_len) + 0.5) / hop - 0.5, 0.0, v.return_frames - 1)
        i0 = np.floor(t).astype(np.int64)
        self.gain_i0 = torch.from_numpy(i0).to(dev)
        self.gain_i1 = torch.from_numpy(np.minimum(i0 + 1, v.return_frames - 1)).to(dev)
        self.gain_w = torch.from_numpy((t - i0).astype(np.float32)).to(dev)
        self._unstretch: dict[int, Gather] = {}
        self._host_in = torch.empty(n, dtype=torch.float32, pin_memory=dev.type == "cuda")
        self._host_out = torch.empty(n, dtype=torch.float32, pin_memory=dev.type == "cuda")
        # Tests set this to compare devices: noise drawn by a CPU generator (the numpy path's draws)
        # and uploaded, one more copy a block.
        self.host_noise = False

    def init_state(self) -> DeviceState:
        v, dev = self.voice, self.device
        w, hop = v.window_frames, v.frame
        gen = torch.Generator(device="cpu" if self.host_noise else dev).manual_seed(v.seed)
        return DeviceState(
            in_ring=torch.zeros((w + 2) * hop, device=dev),
            ring16=torch.zeros(w * F16, device=dev),
            f0_cache=torch.zeros(w, device=dev),
            noise_z=self._randn((1, v.cfg.inter_channels, w), gen),
            noise_nsf=self._randn((1, 1, w * hop), gen),
            phase0=torch.zeros(1, dtype=torch.float64, device=dev),
            generator=gen,
            sola=v._sola.init_state(),
        )

    @torch.inference_mode()
    def process(self, block: np.ndarray, state: DeviceState, p: dict[str, Any]) -> np.ndarray:
        """block: (hop_samples,) float32 at the model's rate -> (hop_samples,) float32; p: every
        parameter, defaults filled in."""
        v = self.voice
        b, hop = v.block_frames, v.frame
        self._host_in.numpy()[:] = block  # the one upload
        x = self._host_in.to(self.device, non_blocking=True)
        self._push_input(x, state)
        frames = state.ring16.shape[0] // F16
        content = v.live_encoder.encode(state.ring16, v.cfg.version).float()
        feats, original = v._features((content, frames), p, device_index=True)
        f0 = None
        if v.cfg.f0:
            self._update_pitch(state, p["f0_method"])
            f0 = state.f0_cache * 2.0 ** (p["transpose_st"] / 12.0)
        v._shift_noise(state, self.device)
        audio, nsf_f0, formant = v._decode(feats, original, f0, p, state.noise_z, state.noise_nsf, state.phase0,
                                           v.skip_head, v.return_frames, v.live_synth)
        chunk = audio[0, 0].float()
        if formant != 0.0:
            chunk = self._unstretched(chunk, formant)
        chunk = self._mix_rms(chunk, state.in_ring, p["rms_mix_rate"])
        out, state.sola = v._sola.process(chunk, state.sola)
        if nsf_f0 is not None:  # carry the sine phase past the B frames that leave the window next call
            per_frame = ((nsf_f0[:b].double() / v.sample_rate) % 1.0 * hop) % 1.0
            state.phase0 = (state.phase0 + per_frame.sum()) % 1.0
        state.calls += 1
        self._host_out.copy_(out)  # the one download (waits for the block's work)
        return self._host_out.numpy().copy()

    # --- steps ---

    def _push_input(self, x: torch.Tensor, state: DeviceState) -> None:
        n, hop = x.shape[0], self.voice.frame
        state.in_ring = torch.cat([state.in_ring[n:], x])
        fresh = self.to_16k(state.in_ring[-(n + 2 * hop) :])
        r16, m = state.ring16, self.voice.block_frames * F16
        # the newest 16 kHz frame of the last call is rewritten now that the input after it is known
        state.ring16 = torch.cat([r16[m : r16.shape[0] - F16], fresh])

    def _update_pitch(self, state: DeviceState, method: str) -> None:
        b = self.voice.block_frames
        tail = state.ring16[-(b * F16 + PITCH_TAIL_EXTRA_16K) :]
        est = self.voice._estimator(method)
        if hasattr(est, "estimate_on_device"):
            f0 = est.estimate_on_device(tail)
        else:
            f0 = torch.from_numpy(np.asarray(est.estimate(tail), dtype=np.float32))
        f0 = fit_length(f0.to(self.device, torch.float32), tail.shape[0] // F16 + 1)
        fresh = f0[3:-1]  # drop the estimate's edge frames, as RVC does
        cache = state.f0_cache
        state.f0_cache = torch.cat([cache[b : cache.shape[0] - fresh.shape[0] + b], fresh])

    def _randn(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        return torch.randn(shape, generator=gen, device=gen.device).to(self.device)

    def _unstretched(self, audio: torch.Tensor, formant_st: float) -> torch.Tensor:
        """RVCVoice._unstretch on the device: upp_res samples a frame back to hop, R frames."""
        v = self.voice
        length = v.return_frames
        upp_res = int(math.floor(2.0 ** (formant_st / 12.0) * v.sample_rate / 100))
        x = audio[: length * upp_res]
        if x.shape[0] < length * upp_res:
            x = F.pad(x, (0, length * upp_res - x.shape[0]))
        if upp_res == v.frame:
            return x
        if upp_res not in self._unstretch:
            self._unstretch[upp_res] = Gather(*fixed_plan(length * upp_res, upp_res, v.frame), self.device)
        y = self._unstretch[upp_res](x)
        return F.pad(y, (0, max(0, length * v.frame - y.shape[0])))[: length * v.frame]

    def _mix_rms(self, out: torch.Tensor, ring: torch.Tensor, rate: float) -> torch.Tensor:
        """RVC's loudness follow (RVCVoice._mix_rms) on the device."""
        if rate >= 1.0:
            return out
        v = self.voice
        end = ring.shape[0] - v.lookahead_frames * v.frame
        src = ring[max(0, end - out.shape[0]) : end]
        gain = (frame_rms(src, v.frame) / frame_rms(out, v.frame).clamp_min(1e-3)) ** (1.0 - rate)
        g = gain[self.gain_i0] * (1.0 - self.gain_w) + gain[self.gain_i1] * self.gain_w
        return out * g


def frame_rms(x: torch.Tensor, frame: int) -> torch.Tensor:
    """RMS over 4 frames centred on each frame's start (RVCVoice's ``_frame_rms``), (n // frame,)."""
    n = x.shape[0] // frame
    if n == 0:
        return x.new_zeros(1)
    sq = F.pad(x[: n * frame].reshape(1, 1, -1), (2 * frame, 2 * frame), mode="reflect") ** 2
    return torch.sqrt(F.avg_pool1d(sq, 4 * frame, frame)[0, 0, :n] + 1e-12)
