"""CUDA graphs for the fixed-shape live block: capture once per block geometry, replay per block.

A live voice calls its synthesizer with the same shapes every block (the window, the decoded
frames and the noise rings are fixed by block_ms / extra_ms / crossfade_ms), so the hundreds of
kernel launches of one decode can be recorded once and replayed. ``GraphedCall`` keeps one graph
for the current *key* (geometry + input shapes and dtypes): a new key (a settings change) drops it
and captures again. Inputs are copied into the graph's static buffers before each replay; the
output is cloned out, so a caller can keep it across blocks.

Off the GPU, when disabled (``enabled=False`` or ``AUTOVOICE_CUDA_GRAPHS=0``), or when capture
fails (an op that syncs with the host, say), the call runs eagerly; ``eager_reason`` says why.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Sequence

import torch

ENV_SWITCH = "AUTOVOICE_CUDA_GRAPHS"


def graphs_enabled_by_env() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "off", "false", "no")


class GraphedCall:
    """``fn(*tensors) -> tensor`` run through a CUDA graph per key.

    NB: a GraphedCall belongs to one stream of blocks (one worker thread); its static buffers are
    shared by every replay.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], enabled: bool = True, warmup_calls: int = 2):
        self.fn = fn
        self.enabled = bool(enabled) and graphs_enabled_by_env()
        self.warmup_calls = int(warmup_calls)
        self.captures = 0  # how many graphs were recorded (a test and the health view read it)
        self.replays = 0
        self.eager_reason = "" if self.enabled else "CUDA graphs are switched off"
        self._key: Any = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static_in: list[torch.Tensor] = []
        self._static_out: torch.Tensor | None = None
        self._failed_keys: set = set()

    def reset(self) -> None:
        """Drop the captured graph (the next call captures again)."""
        self._key, self._graph, self._static_in, self._static_out = None, None, [], None

    def __call__(self, key: Any, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """key: hashable geometry (ints); tensors: the call's inputs, all on one device."""
        if not self.enabled or not tensors or tensors[0].device.type != "cuda":
            if self.enabled and tensors:
                self.eager_reason = "CUDA graphs need CUDA tensors"
            return self.fn(*tensors)
        full_key = (key, tuple((tuple(t.shape), t.dtype, t.device) for t in tensors))
        if full_key in self._failed_keys:
            return self.fn(*tensors)
        if full_key != self._key:
            try:
                self._capture(full_key, tensors)
            except Exception as exc:  # capture can fail on ops that sync; run eagerly, say why
                self.reset()
                self._failed_keys.add(full_key)
                self.eager_reason = f"CUDA graph capture failed ({str(exc).splitlines()[0][:160]}); running eagerly"
                return self.fn(*tensors)
        for dst, src in zip(self._static_in, tensors):
            dst.copy_(src)
        self._graph.replay()
        self.replays += 1
        return self._static_out.clone()

    def _capture(self, full_key: Any, tensors: Sequence[torch.Tensor]) -> None:
        self.reset()
        static_in = [t.detach().clone() for t in tensors]
        side = torch.cuda.Stream(device=static_in[0].device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture (allocator, cuDNN/cuBLAS choices)
            for _ in range(self.warmup_calls):
                self.fn(*static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self.fn(*static_in)
        self._key, self._graph, self._static_in, self._static_out = full_key, graph, static_in, out
        self.captures += 1
        self.eager_reason = ""


class GraphedSynthesizer(torch.nn.Module):
    """A SynthesizerTrn whose ``infer`` replays a CUDA graph when shapes repeat (the live block).

    Same ``infer`` signature and result as the wrapped model. Calls without explicit noise
    (``noise_z``/``noise_nsf`` None) run eagerly: a replayed graph would repeat its random draw.
    """

    def __init__(self, synth: torch.nn.Module, enabled: bool = True):
        super().__init__()
        self.inner = synth
        self.cfg = synth.cfg
        self._graphed = GraphedCall(self._run, enabled)
        self._static: dict[str, Any] = {}
        # the wrapped model's own default (cuda_ops does not import the engine: imports point down)
        self._flow_context_default = inspect.signature(synth.infer).parameters["flow_context"].default

    @property
    def sample_rate(self) -> int:
        return self.inner.sample_rate

    @property
    def hop_samples(self) -> int:
        return self.inner.hop_samples

    @property
    def emb_g(self) -> torch.nn.Module:
        """The speaker embedding, whose dtype callers give the inputs (as on the wrapped model)."""
        return self.inner.emb_g

    @property
    def graph(self) -> GraphedCall:
        return self._graphed

    def _run(self, phone, lengths, pitch, nsff0, sid, noise_z, noise_nsf, phase0):
        s = self._static
        return self.inner.infer(phone, lengths, pitch, nsff0, sid, s["skip_head"], s["return_length"],
                                noise_z=noise_z, noise_nsf=noise_nsf, sine_phase0=phase0,
                                flow_context=s["flow_context"], decoder_context=s["decoder_context"],
                                formant_length=s["formant_length"])

    @torch.inference_mode()
    def infer(self, phone, phone_lengths, pitch, nsff0, sid, skip_head=None, return_length=None, *,
              noise_z=None, noise_nsf=None, generator=None, sine_phase0=None, flow_context=None,
              decoder_context: int = 0, formant_length: int | None = None) -> torch.Tensor:
        """See SynthesizerTrn.infer; phone: (B, T, C) ... -> audio (B, 1, return_length * hop)."""
        flow_context = self._flow_context_default if flow_context is None else int(flow_context)
        t = phone.shape[1]
        head = 0 if skip_head is None else int(skip_head)
        length = t - head if return_length is None else int(return_length)
        f0_model = bool(self.cfg.f0)
        needs_eager = noise_z is None or (f0_model and (noise_nsf is None or sine_phase0 is None)) or generator is not None
        if needs_eager:
            return self.inner.infer(phone, phone_lengths, pitch, nsff0, sid, head, length, noise_z=noise_z,
                                    noise_nsf=noise_nsf, generator=generator, sine_phase0=sine_phase0,
                                    flow_context=flow_context, decoder_context=decoder_context,
                                    formant_length=formant_length)
        formant_length = None if formant_length is None else int(formant_length)
        key = (head, length, flow_context, decoder_context, formant_length)  # a formant change captures anew
        self._static.update(skip_head=head, return_length=length, flow_context=flow_context,
                            decoder_context=decoder_context, formant_length=formant_length)
        dev = phone.device
        if not f0_model:  # keep the positional layout: dummies stand in for the pitch inputs
            dummy = torch.zeros(1, device=dev)
            pitch, nsff0, noise_nsf, sine_phase0 = dummy, dummy, dummy, dummy
        fn_args = (phone, phone_lengths, pitch, nsff0, sid, noise_z.to(dev), noise_nsf.to(dev), sine_phase0.to(dev))
        return self._graphed(key, fn_args)
