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


@dataclass(frozen=True)
class ParamSpec:
    """One user-facing control of a voice; the GUI and CLI build their controls from these."""

    name: str  # key in the params dict, with its unit in the name: "transpose_st", "index_rate"
    label: str
    default: float | str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    unit: str = ""
    choices: tuple[str, ...] = ()  # non-empty for a choice parameter (default is then a str)
    help: str = ""

    def validate(self, value: Any) -> float | str:
        """Return ``value`` coerced to this parameter's type, or raise ConfigError in one sentence."""
        from engine.errors import ConfigError

        if self.choices:
            if value not in self.choices:
                raise ConfigError(
                    f"{self.label} must be one of {', '.join(self.choices)}, not {value!r}."
                )
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.label} must be a number, not {value!r}.") from None
        if not np.isfinite(number):
            raise ConfigError(f"{self.label} must be a finite number, not {value!r}.")
        lo = -np.inf if self.minimum is None else self.minimum
        hi = np.inf if self.maximum is None else self.maximum
        if not lo <= number <= hi:
            raise ConfigError(
                f"{self.label} must be between {self.minimum:g} and {self.maximum:g}{self.unit and ' ' + self.unit}, not {number:g}."
            )
        return number


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


def default_params(specs: tuple[ParamSpec, ...]) -> dict[str, Any]:
    return {spec.name: spec.default for spec in specs}
