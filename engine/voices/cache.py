"""Loaded voices for one-off conversions (HTTP requests, file conversions, WebSocket streams).

A conversion names a voice and may override some of its settings. The voice object is reused when
the name and the settings that shape it (``ParamSpec.reloads``: a neural voice's block geometry)
match, so a neural model is not reloaded per request; a small LRU keeps the last few. A voice
object holds only weights; every conversion has its own streaming state, so sharing one between
threads is safe (engine/voices/base.py).
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path
from typing import Any

from engine.params import reload_keys
from engine.voices.base import Voice, VoiceInfo
from engine.voices.registry import load_voice

CACHE_SIZE = 2


def voice_key(info: VoiceInfo, params: dict[str, Any]) -> tuple:
    """What makes two loads of a voice the same object: its name and its reloading settings."""
    return (info.name, tuple((k, params.get(k)) for k in reload_keys(info.params)))


class VoiceCache:
    def __init__(self, base: Path | None = None, size: int = CACHE_SIZE):
        self.base = base
        self.size = size
        self._voices: collections.OrderedDict[tuple, Voice] = collections.OrderedDict()
        self._lock = threading.Lock()  # NB: guards the LRU and serialises loads (one model loading at a time)

    def get(self, info: VoiceInfo, params: dict[str, Any]) -> Voice:
        """The voice for ``info`` built with ``params``' reloading settings (may take seconds: call off any event loop)."""
        key = voice_key(info, params)
        with self._lock:
            if key in self._voices:
                self._voices.move_to_end(key)
                return self._voices[key]
            voice = load_voice(info.name, self.base, params)
            self._voices[key] = voice
            while len(self._voices) > self.size:
                self._voices.popitem(last=False)
            return voice

    def forget(self, name: str) -> None:
        """Drop every cached load of ``name`` (it was removed or re-imported)."""
        with self._lock:
            for key in [k for k in self._voices if k[0] == name]:
                del self._voices[key]
