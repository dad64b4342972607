"""Voices for HTTP conversions and WebSocket streams.

A request names a voice and may override some of its settings. The voice object is the engine's
loaded one when that fits (same name, same buffer geometry), otherwise one loaded here and kept in
a small LRU, so a neural model is not reloaded per request. A voice object holds only weights;
every conversion and stream has its own streaming state, so sharing one between threads is safe
(engine/voices/base.py).

Names are checked by ``engine.voices.registry`` (a strict pattern, no '..') before they touch the
file system, so a voice name from a request can never point outside the voices folder.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from engine.config import ChainConfig
from engine.errors import VoiceError
from engine.pipeline import Pipeline, hop_for
from engine.voices.base import Voice, VoiceInfo
from engine.voices.registry import RELOAD_PARAMS, check_voice_name, get_info, load_voice

CACHE_SIZE = 2


class UnknownVoice(VoiceError):
    """A well-formed name that is not installed (HTTP 404)."""


class VoiceProvider:
    def __init__(self, engine: Any, cache_size: int = CACHE_SIZE):
        self.engine = engine
        self._cache: collections.OrderedDict[tuple, Voice] = collections.OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # NB: guards the cache and serialises loads (one model in memory at a time)

    def default_name(self) -> str:
        return self.engine.voice_name or self.engine.settings.voice

    def info(self, name: str | None) -> VoiceInfo:
        name = self.default_name() if name in (None, "") else name
        check_voice_name(name)  # VoiceError (422) for anything that is not a plain name
        try:
            return get_info(name, self.engine.data_dir)
        except VoiceError as exc:
            raise UnknownVoice(str(exc)) from None

    def params(self, info: VoiceInfo, overrides: dict[str, Any]) -> dict[str, Any]:
        """The voice's saved values (as `autovoice convert` uses them) with ``overrides`` validated on top."""
        clean = self.engine.validate_params(info, overrides)
        return {**self.engine.voice_params(info.name), **clean}

    def chain(self) -> ChainConfig:
        return replace(self.engine.settings.chain, bypass=False)

    def voice(self, info: VoiceInfo, params: dict[str, Any]) -> Voice:
        """A loaded voice (may take seconds for a neural model: call off the event loop)."""
        current = self.engine.loaded_voice_for(info.name, params)
        if current is not None:
            return current
        key = (info.name, tuple((k, params.get(k)) for k in RELOAD_PARAMS))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            voice = load_voice(info.name, self.engine.data_dir, params)
            self._cache[key] = voice
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return voice


class SynthesizerCheck:
    """Whether the conversion pipeline is built and warmed up on the engine's current voice.

    The engine warms the voice itself; this builds the same ``Pipeline`` the conversions and streams
    use around it and runs a few hops through it (finite output of the right length), once per voice
    object, in the background so a probe never waits for it.
    """

    def __init__(self, engine: Any, executor: ThreadPoolExecutor):
        self.engine = engine
        self.executor = executor
        self._voice: Voice | None = None  # held, so that a new voice can never reuse its id
        self._future: Future | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    def _run(self, voice: Voice, chain: ChainConfig) -> bool:
        hop = hop_for(voice, 10.0)
        pipe = Pipeline(voice, hop, chain=chain)
        state = pipe.init_state()
        rng = np.random.default_rng(1)
        for _ in range(3):
            x = (0.05 * rng.standard_normal(hop)).astype(np.float32)
            y, state = pipe.process(x, state)
            if y.shape != x.shape or not np.all(np.isfinite(y)):
                raise RuntimeError(f"the pipeline returned {y.shape} samples, some not finite, for {x.shape}")
        return True

    def ready(self) -> bool:
        voice = self.engine.voice
        if voice is None or not self.engine.warmed_up:
            return False
        with self._lock:
            if self._voice is not voice or self._future is None:
                self._voice = voice
                self._future = self.executor.submit(self._run, voice, replace(self.engine.settings.chain, bypass=False))
            fut = self._future
        if not fut.done():
            return False
        exc = fut.exception()
        self.error = None if exc is None else f"The conversion pipeline failed its warm-up on voice '{self.engine.voice_name}' ({exc})."
        return exc is None
