"""Helpers shared by the desktop app's tests (imported by conftest.py and the tests)."""

from __future__ import annotations

from engine.io.devices import DeviceInfo


def make_engine(voice: str | None = None):
    from engine.api import Engine

    engine = Engine(load_default_voice=True)
    if voice is not None and engine.voice_name != voice:
        engine.load_voice(voice).result()
    return engine


def open_window(qtbot, engine):
    from autovoice_desktop.controller import EngineController
    from autovoice_desktop.main_window import MainWindow

    controller = EngineController(engine)
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.voice_list.count() > 0 and window.param_controls is not None, timeout=10000)
    qtbot.waitUntil(lambda: not controller.busy, timeout=10000)
    return window


def fake_devices() -> list[DeviceInfo]:
    """Two duplex devices, as PortAudio would list them (for tests that must not need a sound server)."""

    def dev(i, name, default):
        return DeviceInfo(index=i, name=name, hostapi="Fake API", max_input_channels=2, max_output_channels=2,
                          default_samplerate=48000.0, default_low_input_latency_ms=5.0,
                          default_low_output_latency_ms=5.0, is_default_input=default, is_default_output=default)

    return [dev(0, "Studio Interface", True), dev(1, "USB Headset", False)]
