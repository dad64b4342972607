"""Engine settings, with their units in their names, validated at the edge.

Everything a user can set reaches the engine through ``AudioConfig.validated()`` or a voice's
``ParamSpec.validate()``; past that point values are trusted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from engine.errors import ConfigError
from engine.params import ParamSpec, resolve_params

#: Sample rates a device or file may run at. Outside this, conversion quality or the resamplers
#: break down, so we refuse early with a sentence instead of producing garbage.
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000

DEFAULT_VOICE = "deeper"


@dataclass(frozen=True)
class AudioConfig:
    """How the live stream runs.

    Latency budget (see engine/stream/realtime.py for the diagram):
    ``block_ms`` (the worker's hop) + the voice's look-ahead + ``prefill_ms`` (output ring pre-fill,
    the safety margin that absorbs compute jitter) + the devices' own latency.
    """

    input_device: str | int | None = None  # None: the system default
    output_device: str | int | None = None
    monitor_device: str | int | None = None  # optional second output (headphones)
    sample_rate: int | None = None  # None: the output device's default rate
    block_ms: float = 10.0
    crossfade_ms: float = 5.0  # crossfade used when settings or voices change mid-stream
    prefill_ms: float = 10.0
    device_latency: str = "low"  # passed to PortAudio: "low" or "high"
    # After an underflow keep its silence as extra margin (engine/stream/worker.py: ADAPTIVE_*, told
    # in ADAPTIVE_BUFFER_SUMMARY), shown in the readout; False: a fixed latency, every gap trimmed
    # back at once.
    adaptive_buffer: bool = True
    # While streaming, run the conversion thread at real-time priority where the OS allows it (else
    # a raised nice value); see engine/stream/priority.py. False: normal priority.
    realtime_priority: bool = True

    def validated(self) -> "AudioConfig":
        if not 2.5 <= self.block_ms <= 1000.0:
            raise ConfigError(f"Block size must be between 2.5 and 1000 ms, not {self.block_ms:g} ms.")
        if not 0.0 <= self.crossfade_ms <= min(self.block_ms, 100.0):
            raise ConfigError(
                f"Crossfade must be between 0 ms and the block size ({self.block_ms:g} ms), "
                f"not {self.crossfade_ms:g} ms."
            )
        if not 0.0 <= self.prefill_ms <= 1000.0:
            raise ConfigError(f"Output pre-fill must be between 0 and 1000 ms, not {self.prefill_ms:g} ms.")
        if self.sample_rate is not None and not MIN_SAMPLE_RATE <= int(self.sample_rate) <= MAX_SAMPLE_RATE:
            raise ConfigError(
                f"Sample rate {self.sample_rate} Hz is not supported; use a rate between "
                f"{MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz (44100 or 48000 are safest)."
            )
        if not isinstance(self.adaptive_buffer, bool):
            raise ConfigError(f"Adaptive buffer must be true or false, not {self.adaptive_buffer!r}.")
        if not isinstance(self.realtime_priority, bool):
            raise ConfigError(f"Real-time priority must be true or false, not {self.realtime_priority!r}.")
        if self.device_latency not in ("low", "high"):
            raise ConfigError(f"Device latency must be 'low' or 'high', not {self.device_latency!r}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AudioConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}).validated()

    def with_changes(self, **changes: Any) -> "AudioConfig":
        return replace(self, **changes).validated()


#: The chain's settings as user-facing controls: their one home (ranges, steps, help); the GUI
#: builds its controls from these and ChainConfig validates against them.
CHAIN_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("gate_threshold_db", "Noise gate", -60.0, -100.0, 0.0, 1.0, "dB", aliases=("gate",),
              help="Input quieter than this is muted (room noise, keyboard). -100 dB turns the gate off."),
    ParamSpec("input_gain_db", "Input gain", 0.0, -40.0, 40.0, 0.5, "dB", aliases=("input_gain",),
              help="Gain before the voice."),
    ParamSpec("output_gain_db", "Output gain", 0.0, -40.0, 40.0, 0.5, "dB", aliases=("output_gain",),
              help="Gain after the voice."),
)


@dataclass(frozen=True)
class ChainConfig:
    """The processing around the voice, shared by every voice."""

    input_gain_db: float = 0.0
    output_gain_db: float = 0.0
    gate_threshold_db: float = -60.0  # -inf-like floor: at -100 the gate never closes
    bypass: bool = False

    def validated(self) -> "ChainConfig":
        clean = resolve_params(CHAIN_SPECS, {s.name: getattr(self, s.name) for s in CHAIN_SPECS}, "The chain")
        if not isinstance(self.bypass, bool):
            raise ConfigError(f"Bypass must be true or false, not {self.bypass!r}.")
        return replace(self, **clean)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ChainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}).validated()


@dataclass
class AppSettings:
    """What survives a restart (written by engine.settings)."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    voice: str = DEFAULT_VOICE
    voice_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per voice name
    gui: dict[str, Any] = field(default_factory=dict)  # window geometry etc., opaque to the engine
    # Where neural voices run: "auto" (a GPU when torch sees one), "cpu" or "cuda:N";
    # checked by engine.accelerators.parse_device_spec at the edge.
    compute_device: str = "auto"
