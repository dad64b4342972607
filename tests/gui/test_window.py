"""The desktop window against a real Engine (offscreen Qt, settings in a tmp folder)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from engine.errors import DeviceError

from gui_helpers import fake_devices, make_engine, open_window

DATA = Path(__file__).resolve().parents[1] / "data"
SPEECH = DATA / "freesound136777_davidbain_M_xmas.wav"  # real male speech, 44.1 kHz (see tests/data/CREDITS.md)


def settings_file() -> dict:
    return json.loads((Path(os.environ["AUTOVOICE_CONFIG_DIR"]) / "settings.json").read_text())


def test_window_builds_with_the_voices_and_their_controls(window):
    assert window.windowTitle() == "AutoVoice"
    names = [window.voice_list.item(i).data(Qt.UserRole) for i in range(window.voice_list.count())]
    assert {"natural", "deeper", "robot", "whisper"} <= set(names)
    # The default voice is selected and its ParamSpecs became controls with the engine's values.
    assert window.voice_list.currentItem().data(Qt.UserRole) == window.controller.engine.voice_name == "deeper"
    assert set(window.param_controls) == {"transpose_st", "formant_st", "lookahead_ms"}
    assert window.param_controls["transpose_st"].value() == pytest.approx(-4.0)
    assert set(window.chain_controls) == {"gate_threshold_db", "input_gain_db", "output_gain_db"}


def test_transpose_and_chain_controls_reach_the_engine(window, qtbot):
    engine = window.controller.engine
    window.param_controls["transpose_st"].spin.setValue(3.0)
    qtbot.waitUntil(lambda: engine.voice_params()["transpose_st"] == pytest.approx(3.0), timeout=5000)
    # The slider edits the same number (step 0.1 st from -24 st: position 215 is -2.5 st).
    window.param_controls["formant_st"].slider.setValue(window.param_controls["formant_st"]._to_slider(-2.5))
    qtbot.waitUntil(lambda: engine.voice_params()["formant_st"] == pytest.approx(-2.5), timeout=5000)
    window.chain_controls["gate_threshold_db"].spin.setValue(-40.0)
    qtbot.waitUntil(lambda: engine.settings.chain.gate_threshold_db == pytest.approx(-40.0), timeout=5000)
    # Saved per voice by the engine.
    qtbot.waitUntil(lambda: window.controller.wait_idle() and
                    settings_file()["voice_params"]["deeper"]["transpose_st"] == pytest.approx(3.0))
    window.bypass_button.click()
    qtbot.waitUntil(lambda: engine.settings.chain.bypass is True, timeout=5000)
    assert window.bypass_action.isChecked()


def test_switching_voice_rebuilds_controls_and_a_bad_voice_is_one_message(window, qtbot):
    engine = window.controller.engine
    items = {window.voice_list.item(i).data(Qt.UserRole): window.voice_list.item(i)
             for i in range(window.voice_list.count())}
    window.voice_list.setCurrentItem(items["robot"])
    qtbot.waitUntil(lambda: engine.voice_name == "robot" and not window.controller.busy, timeout=10000)
    qtbot.waitUntil(lambda: window.param_controls == {} and window.no_params.isVisibleTo(window), timeout=5000)

    window.controller.load_voice("no-such-voice")
    qtbot.waitUntil(lambda: window.message_banner.isVisible(), timeout=5000)
    text = window.message_banner.label.text()
    assert "no voice called 'no-such-voice'" in text and "Traceback" not in text
    assert engine.voice_name == "robot"
    assert window.voice_list.currentItem().data(Qt.UserRole) == "robot"


def test_status_and_performance_panels_reflect_the_snapshot(window, qtbot):
    real = window.controller.engine.snapshot()
    s = replace(real, gpu_available=True, gpu_name="NVIDIA H200", running=True, sample_rate=48000,
                input_device="Mic (ALSA)", output_device="CABLE Input (WASAPI)", last_error="The output device vanished.",
                compute_ms_p99=14.0, compute_ms_mean=9.0, block_ms=10.0, compute_load=1.4, blocks_processed=500,
                output_underflows=7, suggestion="Conversion takes 14.0 ms per 10 ms block (p99), too slow for real time.",
                voice_device="cuda:0", voice_device_note=None,
                voice_parts="resampling: cuda:0 (windowed sinc)\ncontent encoder: cuda:0\nsola: cuda:0 (Triton)",
                audio_callback="python", audio_callback_detail="the native callback is turned off (AUTOVOICE_NATIVE_CALLBACK=0)",
                buffer_latency_ms=20.7, buffer_note="raised to outlast the device's 1024-frame callbacks; opened with 10 ms")
    window.controller.snapshotUpdated.emit(s)
    sp, pp = window.status_panel, window.performance
    assert sp.values["compute"].text() == "cuda:0" and sp.dots["compute"].property("state") == "ok"
    assert sp.values["compute"].toolTip().splitlines()[1] == "content encoder: cuda:0"  # each stage, on hover
    assert sp.values["gpu"].text() == "NVIDIA H200"
    assert sp.dots["gpu"].property("state") == "ok"
    assert sp.values["error"].text() == "The output device vanished."
    assert sp.values["running"].text() == "running at 48000 Hz"
    assert "CABLE Input (WASAPI)" in sp.values["devices"].text()
    assert pp.compute_bar.property("late") is True
    assert pp.compute_bar.value() == 1000
    assert "14.00 ms of 10.0 ms" in pp.compute_bar.format()
    assert pp.fields["underflows"].text() == "7"
    assert pp.fields["buffer"].text() == "20.7 ms (raised to outlast the device's 1024-frame callbacks; opened with 10 ms)"
    assert pp.fields["callback"].text() == "python" and "AUTOVOICE_NATIVE_CALLBACK=0" in pp.fields["callback"].toolTip()
    assert pp.suggestion.isVisible() and "too slow" in pp.suggestion.text()

    ok = replace(s, gpu_available=False, gpu_name=None, last_error=None, compute_load=0.3, suggestion=None,
                 voice_loaded=False, warmed_up=False)
    window.controller.snapshotUpdated.emit(ok)
    assert pp.compute_bar.property("late") is False
    assert not pp.suggestion.isVisible()
    assert sp.values["gpu"].text().startswith("none")
    assert sp.values["error"].text() == "none"
    assert sp.dots["ready"].property("state") == "warn"

    # And the 1 s timer feeds the real engine's snapshot back in.
    qtbot.waitUntil(lambda: sp.values["voice"].text().startswith("deeper"), timeout=5000)
    assert sp.values["live"].text() == "alive"


def test_convert_dialog_converts_a_real_file(window, qtbot, tmp_path):
    src = tmp_path / "in" / SPEECH.name
    src.parent.mkdir()
    shutil.copy(SPEECH, src)
    out_dir = tmp_path / "out"
    dlg = window.open_convert_dialog()
    dlg.add_files([src])
    dlg.output_edit.setText(str(out_dir))
    assert dlg.convert_button.isEnabled()
    qtbot.mouseClick(dlg.convert_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dlg.results is not None, timeout=30000)
    assert len(dlg.results) == 1 and not isinstance(dlg.results[0], Exception), dlg.results
    out = Path(dlg.results[0].output_path)
    assert out.parent == out_dir and out.exists()
    x, sr_in = sf.read(src, dtype="float32")
    y, sr_out = sf.read(out, dtype="float32")
    assert sr_out == sr_in and len(y) == len(x)
    assert np.max(np.abs(y - x)) > 0.05  # "deeper" changed the voice; it is not a copy
    assert np.sqrt(np.mean(y ** 2)) > 0.1 * np.sqrt(np.mean(x ** 2))  # and not silence
    assert dlg.bars[0].value() == 100
    assert "Done" in dlg.message.text()
    assert out.name in dlg.table.item(0, dlg.COL_RESULT).text()
    assert dlg.table.item(0, dlg.COL_RESULT).toolTip() == str(out)


def test_convert_dialog_cancel_writes_nothing(window, qtbot, tmp_path, monkeypatch):
    engine = window.controller.engine
    real = engine.convert_files
    seen = {}

    def held_until_cancelled(inputs, output, progress=None, cancel=None, **kw):
        # Start the real conversion only once the user pressed Cancel: no race on who is faster.
        def go():
            cancel.wait(10)
            seen["cancel_set"] = cancel.is_set()

        t = threading.Thread(target=go)
        t.start()
        t.join()
        return real(inputs, output, progress=progress, cancel=cancel, **kw)

    monkeypatch.setattr(engine, "convert_files", lambda *a, **k: _in_thread(held_until_cancelled, *a, **k))
    out_dir = tmp_path / "out"
    dlg = window.open_convert_dialog()
    dlg.add_files([SPEECH])
    dlg.output_edit.setText(str(out_dir))
    dlg.convert_button.click()
    assert dlg.cancel_button.isEnabled()
    dlg.cancel_button.click()
    qtbot.waitUntil(lambda: dlg.results is not None, timeout=20000)
    assert seen["cancel_set"]
    assert "cancelled" in dlg.table.item(0, dlg.COL_RESULT).text().lower()
    assert "Cancelled" in dlg.message.text()
    assert list(out_dir.glob("*")) == []
    assert dlg.convert_button.isEnabled() and not dlg.cancel_button.isEnabled()


def _in_thread(fn, *args, **kwargs):
    """Run fn on a thread and hand back a Future of its Future's result (like the engine's executor)."""
    from concurrent.futures import Future

    outer = Future()

    def run():
        try:
            inner = fn(*args, **kwargs)
            outer.set_result(inner.result())
        except BaseException as exc:  # noqa: BLE001
            outer.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return outer


def test_settings_survive_a_restart(qtbot, monkeypatch):
    from engine.api import Engine

    monkeypatch.setattr(Engine, "devices", lambda self, refresh=False: fake_devices())
    e1 = make_engine()
    w1 = open_window(qtbot, e1)
    items = {w1.voice_list.item(i).data(Qt.UserRole): w1.voice_list.item(i) for i in range(w1.voice_list.count())}
    w1.voice_list.setCurrentItem(items["robot"])
    qtbot.waitUntil(lambda: e1.voice_name == "robot" and not w1.controller.busy, timeout=10000)
    w1.output_combo.setCurrentIndex(w1.output_combo.findData("USB Headset (Fake API)"))
    w1.output_combo.activated.emit(w1.output_combo.currentIndex())
    qtbot.waitUntil(lambda: e1.settings.audio.output_device == "USB Headset (Fake API)", timeout=5000)
    w1.advanced_toggle.setChecked(True)
    qtbot.waitUntil(lambda: not w1.controller.busy, timeout=5000)  # the window has synced to the new device
    w1.priority_check.setChecked(False)
    qtbot.waitUntil(lambda: e1.settings.audio.realtime_priority is False, timeout=5000)
    w1.resize(1234, 811)
    qtbot.waitUntil(lambda: (w1.width(), w1.height()) == (1234, 811), timeout=3000)
    w1.close()
    e1.close()

    e2 = make_engine()
    try:
        assert e2.voice_name == "robot"
        w2 = open_window(qtbot, e2)
        try:
            assert (w2.width(), w2.height()) == (1234, 811)
            assert w2.voice_list.currentItem().data(Qt.UserRole) == "robot"
            qtbot.waitUntil(lambda: w2.output_combo.count() > 1, timeout=5000)
            assert w2.output_combo.currentData() == "USB Headset (Fake API)"
            assert w2.advanced_box.isVisibleTo(w2)
            assert not w2.priority_check.isChecked() and w2.adaptive_check.isChecked()
        finally:
            w2.close()
    finally:
        e2.close()


def test_no_devices_mode_opens_and_offers_file_conversion(qtbot, monkeypatch):
    from engine.api import Engine

    sentence = ("The PortAudio library is not installed, so no audio device can be used "
                "(on Debian/Ubuntu: sudo apt-get install libportaudio2); file conversion still works.")

    def no_portaudio(self, *a, **k):
        raise DeviceError(sentence)

    monkeypatch.setattr(Engine, "devices", no_portaudio)
    monkeypatch.setattr(Engine, "start", no_portaudio)
    engine = make_engine()
    try:
        w = open_window(qtbot, engine)
        qtbot.waitUntil(lambda: w.no_devices.isVisible(), timeout=5000)
        assert w.no_devices_label.text() == sentence
        assert not w.start_button.isEnabled()
        assert not w.input_combo.isEnabled()
        assert w.status_panel.values["devices"].toolTip() == sentence  # shortened on screen, whole in the tip
        assert w.status_panel.dots["devices"].property("state") == "bad"
        qtbot.keyClick(w, Qt.Key_F5)  # the shortcut explains instead of failing silently
        assert w.message_banner.isVisible() and w.message_banner.label.text() == sentence
        assert not w.controller.engine.running
        dlg = w.open_convert_dialog()
        assert dlg.isVisible()
        w.close()
    finally:
        engine.close()


def test_failing_device_is_one_message_and_the_previous_choice_stays(qtbot, monkeypatch):
    from engine.api import Engine

    monkeypatch.setattr(Engine, "devices", lambda self, refresh=False: fake_devices())
    engine = make_engine()
    try:
        w = open_window(qtbot, engine)
        qtbot.waitUntil(lambda: w.output_combo.count() == 3, timeout=5000)
        msg = "Output device 'USB Headset (Fake API)' cannot be opened at 48000 Hz (it is busy); close the app using it."

        def busy(*a, **k):
            raise DeviceError(msg)

        monkeypatch.setattr(engine, "start", busy)
        monkeypatch.setattr(engine, "set_audio", busy)
        before = w.output_combo.currentData()
        w.output_combo.setCurrentIndex(w.output_combo.findData("USB Headset (Fake API)"))
        w.output_combo.activated.emit(w.output_combo.currentIndex())
        qtbot.waitUntil(lambda: w.message_banner.isVisible(), timeout=5000)
        assert w.message_banner.label.text() == msg
        qtbot.waitUntil(lambda: w.output_combo.currentData() == before, timeout=5000)

        w.message_banner.hide()
        qtbot.mouseClick(w.start_button, Qt.LeftButton)
        qtbot.waitUntil(lambda: w.message_banner.isVisible(), timeout=5000)
        assert w.message_banner.label.text() == msg
        assert w.start_button.text() == "Start" and w.start_button.isEnabled()
        assert QApplication.activeModalWidget() is None  # a sentence in the window, not a dialog
        w.close()
    finally:
        engine.close()


def test_pitch_view_shows_the_engines_pitch_of_input_and_output(window, qtbot, monkeypatch):
    from engine.api import Engine

    sr = 48000
    t = np.arange(2 * sr) / sr
    tone_in = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    tone_out = (0.3 * np.sin(2 * np.pi * 110.0 * t)).astype(np.float32)

    def recent(self, seconds=2.0):
        n = int(seconds * sr)
        return tone_in[-n:].copy(), tone_out[-n:].copy(), sr

    monkeypatch.setattr(Engine, "running", property(lambda self: True))
    monkeypatch.setattr(Engine, "recent_audio", recent)

    def enough():
        f = window.live_view.last_f0_input
        return f is not None and np.isfinite(f).sum() >= 10

    qtbot.waitUntil(enough, timeout=10000)
    f_in, f_out = window.live_view.last_f0_input, window.live_view.last_f0_output
    assert np.nanmedian(f_in) == pytest.approx(220.0, rel=0.02)
    assert np.nanmedian(f_out) == pytest.approx(110.0, rel=0.02)
    # The waveform is the same audio, decimated for display without losing its peaks.
    t, y = window.live_view.wave_in.getData()
    assert t is not None and 0 < len(t) <= 2000
    assert t.min() >= -2.0 and t.max() <= 0.0
    assert y.max() == pytest.approx(0.3, abs=0.01) and y.min() == pytest.approx(-0.3, abs=0.01)


def test_excepthook_shows_one_dialog_and_suppresses_a_flood(qtbot, monkeypatch):
    from autovoice_desktop.errors import MAX_DIALOGS_PER_MINUTE, ExceptionHandler

    handler = ExceptionHandler()
    shown = []

    class FakeBox:
        def __init__(self, text):
            self.text = text

        def exec(self):
            shown.append(self.text)
            # An error while the dialog is open must not open a second one.
            try:
                raise RuntimeError("while the dialog is open")
            except RuntimeError as exc:
                handler.excepthook(type(exc), exc, exc.__traceback__)
            return 0

    monkeypatch.setattr(handler, "make_dialog", lambda et, e, text: FakeBox(text))
    for i in range(10):
        try:
            raise ValueError(f"boom {i}")
        except ValueError as exc:
            handler.excepthook(type(exc), exc, exc.__traceback__)
    assert len(shown) == MAX_DIALOGS_PER_MINUTE
    assert "ValueError: boom 0" in shown[0]
    over_the_limit = 10 - MAX_DIALOGS_PER_MINUTE
    nested_while_open = MAX_DIALOGS_PER_MINUTE  # one per dialog shown
    assert handler.suppressed == over_the_limit + nested_while_open


@pytest.mark.jack
def test_start_stop_and_bypass_on_a_real_jack_server(jack_server, window, qtbot):
    engine = window.controller.engine
    qtbot.waitUntil(lambda: window.start_button.isEnabled(), timeout=10000)
    qtbot.mouseClick(window.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: (engine.running and window.start_button.text() == "Stop")
                    or window.message_banner.isVisible(), timeout=10000)
    if window.message_banner.isVisible():
        pytest.fail(f"the stream did not start: {window.message_banner.label.text()}")
    qtbot.waitUntil(lambda: window.status_panel.values["running"].text() == "running at 48000 Hz", timeout=5000)
    qtbot.waitUntil(lambda: "ms of" in window.performance.compute_bar.format(), timeout=5000)
    qtbot.keyClick(window, Qt.Key_B, Qt.ControlModifier)
    qtbot.waitUntil(lambda: engine.settings.chain.bypass is True, timeout=5000)
    assert "(bypassed)" in window.state_label.text() or window.bypass_button.isChecked()
    qtbot.keyClick(window, Qt.Key_F5)
    qtbot.waitUntil(lambda: not engine.running and window.start_button.text() == "Start", timeout=10000)


@pytest.mark.jack
def test_start_and_stop_are_not_lost_while_settings_are_being_applied(jack_server, window, qtbot):
    """F5 while other work is queued (a settings change still being applied) is carried out after
    it, never dropped: a user stopping a hot mic must not have to press twice."""
    import time

    engine = window.controller.engine
    qtbot.waitUntil(lambda: window.start_button.isEnabled(), timeout=10000)
    hold = threading.Event()
    window.controller._submit("Applying settings", lambda: hold.wait(10.0))  # a slow settings job
    assert window.controller.busy and window.start_button.isEnabled()
    qtbot.keyClick(window, Qt.Key_F5)  # start, queued behind it
    time.sleep(0.3)
    assert not engine.running  # still waiting for the job before it
    hold.set()
    qtbot.waitUntil(lambda: engine.running and window.start_button.text() == "Stop", timeout=10000)
    hold.clear()
    window.controller._submit("Applying settings", lambda: hold.wait(10.0))
    qtbot.keyClick(window, Qt.Key_F5)  # stop, queued behind another one
    hold.set()
    qtbot.waitUntil(lambda: not engine.running and window.start_button.text() == "Start", timeout=10000)


def test_start_waits_for_the_first_voice_to_load(qtbot, monkeypatch):
    """At start-up the saved voice loads in the background: until it has, Start is disabled and F5
    does nothing (instead of failing with "no voice is loaded yet"); then both work."""
    from autovoice_desktop.controller import EngineController
    from autovoice_desktop.main_window import MainWindow
    from engine.api import Engine

    monkeypatch.setattr(Engine, "devices", lambda self, refresh=False: fake_devices())
    engine = Engine(load_default_voice=False)
    hold = threading.Event()
    warm_up = engine._warm_up
    monkeypatch.setattr(engine, "_warm_up", lambda voice: (hold.wait(10.0), warm_up(voice))[1])
    window = MainWindow(EngineController(engine))
    qtbot.addWidget(window)
    window.show()
    try:
        qtbot.waitUntil(lambda: window.controller.busy, timeout=5000)  # the saved voice is loading
        qtbot.waitUntil(lambda: not window.controller.devices_busy and window._devices_ok, timeout=10000)
        assert not window.start_button.isEnabled() and engine.voice_info is None
        window.toggle_running()
        assert not window.controller.devices_busy  # nothing was submitted
        hold.set()
        qtbot.waitUntil(lambda: engine.voice_info is not None and window.start_button.isEnabled(), timeout=10000)
    finally:
        hold.set()
        window.close()
        engine.close()
