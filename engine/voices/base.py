"""What a voice is, for the engine.

A voice is a streaming mono processor at its own sample rate::

    state = voice.init_state()
    out, state = voice.process(block, state, params)    # block: (n,) float32 -> out: (n,) float32

* ``out`` has exactly as many samples as ``block``; the output is the converted input delayed by
  ``voice.latency_samples`` (the voice's look-ahead, at ``voice.sample_rate``).
* Voices with ``hop_samples`` set are only ever called with blocks of exactly that many samples
  (the pipeline buffers for them); voices with ``hop_samples = None`` accept any length, and
  processing a signal in chunks of any sizes gives the same samples as one call on the whole.
* ``params`` is a plain ``dict`` of the values named by ``voice.param_specs``; a voice reads what it
  needs and ignores the rest. Parameters may change between calls and must not click when they do.
* ``process`` runs on the engine's worker thread, never on the audio callback. It may allocate.

Heavy objects (model weights) live on the voice; everything that changes per call lives in ``state``,
so one loaded voice can serve the live stream and an offline conversion at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from engine.params import ParamSpec  # the voice contract names it (param_specs)


@dataclass(frozen=True)
class VoiceInfo:
    """What a list of voices shows about one voice, without loading it."""

    name: str
    kind: str  # "builtin" or "rvc"
    description: str
    params: tuple[ParamSpec, ...] = field(default_factory=tuple)
    path: str | None = None  # model file, for installed voices


@runtime_checkable
class Voice(Protocol):
    name: str
    sample_rate: int
    latency_samples: int
    hop_samples: int | None
    param_specs: tuple[ParamSpec, ...]

    def init_state(self) -> Any: ...

    def process(
        self, block: np.ndarray, state: Any, params: dict[str, Any]
    ) -> tuple[np.ndarray, Any]: ...
