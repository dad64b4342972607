"""SOLA: splice consecutive, independently computed output windows without clicks.

Used by voices that recompute a window with context for each block (neural voices), whose
consecutive outputs disagree slightly where they overlap. Each call gets ``hop + crossfade +
search`` fresh samples; the start of the new chunk is shifted by up to ``search`` samples to the
offset that best correlates with the tail kept from the previous call, then crossfaded over
``crossfade`` samples with equal-power windows::

    previous tail      [==== crossfade ====]
    new chunk     [.. search ..][==== crossfade ====][......... hop - crossfade .........][kept tail]
                      ^ best offset

``process`` also takes a torch tensor (a chunk decoded on the GPU, say): then the search and the
crossfade run on the tensor's device through ``cuda_ops.sola`` (a Triton kernel on CUDA), in
float32, and the result stays there.
"""

from __future__ import annotations

import numpy as np


class Sola:
    def __init__(self, hop: int, crossfade: int, search: int):
        self.hop, self.crossfade, self.search = int(hop), int(crossfade), int(search)
        t = np.linspace(0.0, 1.0, self.crossfade, endpoint=False) + 0.5 / max(1, self.crossfade)
        self.fade_in = np.sin(0.5 * np.pi * t).astype(np.float32) ** 2
        self.fade_out = 1.0 - self.fade_in

    @property
    def chunk_samples(self) -> int:
        return self.hop + self.crossfade + self.search

    def init_state(self) -> dict:
        return {"tail": None}

    def process(self, chunk, state: dict):
        """chunk: (hop + crossfade + search,) numpy or torch -> (hop,) of the same kind."""
        if not isinstance(chunk, np.ndarray) and type(chunk).__module__.startswith("torch"):
            return self._process_torch(chunk, state)
        c, s, h = self.crossfade, self.search, self.hop
        tail = state["tail"]
        offset = 0
        if tail is not None and c > 0 and s > 0:
            # Normalised cross-correlation of the tail against every candidate offset.
            region = chunk[: c + s].astype(np.float64)
            num = np.correlate(region, tail.astype(np.float64), mode="valid")
            energy = np.convolve(region * region, np.ones(c), mode="valid")
            offset = int(np.argmax(num / np.sqrt(energy + 1e-8)))
        out = chunk[offset : offset + h].astype(np.float32).copy()
        if tail is not None and c > 0:
            out[:c] = out[:c] * self.fade_in + tail * self.fade_out
        state["tail"] = chunk[offset + h : offset + h + c].astype(np.float32).copy()
        return out, state

    def _process_torch(self, chunk, state: dict):
        import torch

        from cuda_ops.sola import sola_step

        fades = state.get("fades")
        if fades is None or fades[0].device != chunk.device:
            fades = (torch.from_numpy(self.fade_in).to(chunk.device), torch.from_numpy(self.fade_out).to(chunk.device))
            state["fades"] = fades
        tail = state["tail"]
        if tail is not None and not isinstance(tail, torch.Tensor):
            tail = torch.from_numpy(np.ascontiguousarray(tail)).to(chunk.device)
        out, state["tail"], _offset = sola_step(chunk.float(), tail, fades[0], fades[1], self.hop, self.search)
        return out, state
