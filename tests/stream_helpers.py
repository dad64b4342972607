"""A live chain on an unstarted stream: the worker's own per-block code, fed by hand (no device)."""

from __future__ import annotations

from engine.config import AudioConfig
from engine.io.devices import DeviceInfo
from engine.stream.realtime import RealtimeStream
from engine.stream.worker import LiveChain


def fake_device(name: str) -> DeviceInfo:
    return DeviceInfo(0, name, "test", 1, 1, 48000.0, 5.0, 5.0, True, True)


def unstarted_stream(audio: AudioConfig) -> RealtimeStream:
    return RealtimeStream(audio, fake_device("in"), fake_device("out"))


def unstarted_chain(engine, **audio_changes) -> LiveChain:
    """The engine's current voice as the live worker would run it, at 48 kHz, on `unstarted_stream`."""
    audio = AudioConfig(sample_rate=48000, **audio_changes)
    return LiveChain(unstarted_stream(audio), engine._make_pipeline(audio))


def interruptible_child(block_sigint: bool = False):
    """A ``preexec_fn`` giving a child SIGINT at its default (Python then turns it into
    KeyboardInterrupt): a child inherits an ignored SIGINT, and a test run started in the
    background of a non-interactive shell (``make test &``, as the soak sessions ran it) has SIGINT
    ignored from the start (POSIX shells do that to background jobs; no test leaves it so:
    conftest.signals_left_as_found). ``block_sigint``: start it with SIGINT blocked too."""
    import signal

    def prepare() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_BLOCK if block_sigint else signal.SIG_UNBLOCK, {signal.SIGINT})

    return prepare
