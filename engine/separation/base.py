"""What a separator is: a song in, vocals and accompaniment out, same length, rate and channels."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from engine.errors import AutoVoiceError

ProgressFn = Callable[[float], None]  # fraction of this separation done, 0..1


class SeparationCancelled(AutoVoiceError):
    pass


class MonoMixError(AutoVoiceError):
    """The stereo separator was given a mix with no stereo image."""


@dataclass
class Stems:
    """``vocals`` and ``accompaniment``: (n, channels) float32 at ``sample_rate``; they sum to the song."""

    vocals: np.ndarray
    accompaniment: np.ndarray
    sample_rate: int


class Separator(Protocol):
    name: str
    note: str | None  # a sentence the user should see (e.g. why this separator was chosen)

    @property
    def cache_id(self) -> str:
        """Changes whenever the separator would give different stems (name, weights, version)."""
        ...

    def separate(self, mix: np.ndarray, sample_rate: int, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> Stems:
        """``mix``: (n, channels) float32 -> Stems of the same shape and rate."""
        ...


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise SeparationCancelled("The separation was cancelled; nothing was written.")
