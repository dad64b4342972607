"""Audio device listing and selection (PortAudio through python-sounddevice).

A device is named on the command line or in settings by its index or by a case-insensitive
substring of its name (as in sounddevice's examples); a name that matches several devices is
narrowed to an exact match, then to the default host API, before we give up and list the choices.
Depends on nothing else in engine/ but errors and io.portaudio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.errors import DeviceError
from engine.io.portaudio import portaudio_wedged


def sounddevice():
    """Import sounddevice, turning a missing PortAudio into one sentence."""
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio shared library not found
        raise DeviceError(
            "The PortAudio library is not installed, so no audio device can be used "
            "(on Debian/Ubuntu: sudo apt-get install libportaudio2); file conversion still works."
        ) from exc
    return sd


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    default_low_input_latency_ms: float
    default_low_output_latency_ms: float
    is_default_input: bool
    is_default_output: bool

    @property
    def label(self) -> str:
        return f"{self.name} ({self.hostapi})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"label": self.label}


def _defaults(sd) -> tuple[int, int]:
    try:
        din, dout = sd.default.device
    except Exception:  # noqa: BLE001 - PortAudio may have no default at all
        return -1, -1
    try:
        din = int(din) if din is not None else -1
        dout = int(dout) if dout is not None else -1
    except (TypeError, ValueError):
        return -1, -1
    if din < 0 or dout < 0:
        try:
            if din < 0:
                din = int(sd.query_devices(kind="input")["index"])
        except Exception:  # noqa: BLE001
            pass
        try:
            if dout < 0:
                dout = int(sd.query_devices(kind="output")["index"])
        except Exception:  # noqa: BLE001
            pass
    return din, dout


def list_devices(refresh: bool = False) -> list[DeviceInfo]:
    """All devices PortAudio sees. ``refresh`` re-scans (PortAudio only rescans on re-init)."""
    sd = sounddevice()
    if refresh:
        if portaudio_wedged():
            raise DeviceError(
                "An audio device vanished while in use and the audio system has not let go of it; "
                "restart AutoVoice to scan devices again (file conversion still works)."
            )
        try:
            sd._terminate()
            sd._initialize()
        except Exception:  # noqa: BLE001 - a failed rescan still leaves the old list usable
            pass
    hostapis = sd.query_hostapis()
    din, dout = _defaults(sd)
    out = []
    for dev in sd.query_devices():
        idx = int(dev["index"])
        out.append(
            DeviceInfo(
                index=idx,
                name=str(dev["name"]),
                hostapi=str(hostapis[dev["hostapi"]]["name"]),
                max_input_channels=int(dev["max_input_channels"]),
                max_output_channels=int(dev["max_output_channels"]),
                default_samplerate=float(dev["default_samplerate"]),
                default_low_input_latency_ms=float(dev["default_low_input_latency"]) * 1000.0,
                default_low_output_latency_ms=float(dev["default_low_output_latency"]) * 1000.0,
                is_default_input=idx == din,
                is_default_output=idx == dout,
            )
        )
    return out


def resolve_device(spec: str | int | None, kind: str, devices: list[DeviceInfo] | None = None) -> DeviceInfo:
    """Find the device meant by ``spec`` ("input" or "output" ``kind``), or raise DeviceError."""
    if kind not in ("input", "output"):
        raise ValueError(kind)
    devices = list_devices() if devices is None else devices
    capable = [d for d in devices if (d.max_input_channels if kind == "input" else d.max_output_channels) > 0]
    if not capable:
        raise DeviceError(
            f"No audio {kind} device was found on this machine; connect one (or start a sound "
            "server) and press refresh, or use file conversion instead."
        )
    if spec is None or spec == "" or spec == "default":
        for d in capable:
            if (d.is_default_input if kind == "input" else d.is_default_output):
                return d
        return capable[0]
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().lstrip("-").isdigit()):
        idx = int(spec)
        for d in devices:
            if d.index == idx:
                if d in capable:
                    return d
                raise DeviceError(
                    f"Device {idx} ({d.label}) has no {kind} channels; run 'autovoice devices' to "
                    f"see which devices can be used for {kind}."
                )
        raise DeviceError(f"There is no audio device number {idx}; run 'autovoice devices' to list them.")
    needle = str(spec).lower()
    matches = [d for d in capable if needle in d.name.lower() or needle in d.label.lower()]
    if len(matches) > 1:
        exact = [d for d in matches if d.name.lower() == needle]
        if len(exact) == 1:
            return exact[0]
        default_api = next((d.hostapi for d in capable if d.is_default_input or d.is_default_output), None)
        same_api = [d for d in matches if d.hostapi == default_api]
        if len(same_api) == 1:
            return same_api[0]
        names = "; ".join(f"{d.index}: {d.label}" for d in matches[:6])
        raise DeviceError(f"'{spec}' matches several {kind} devices ({names}); give the number instead.")
    if not matches:
        raise DeviceError(
            f"No {kind} device matches '{spec}' (it may be unplugged); run 'autovoice devices' to list them."
        )
    return matches[0]
