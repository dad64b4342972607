"""Take docs/screenshot.png: the real window, streaming real speech through a JACK server.

Not a test (pytest does not collect it). Needs a JACK server (the dummy driver is enough), an X server
and the JACK-Client package::

    jackd --no-realtime -d dummy -r 48000 -p 256 -C 2 -P 2 &
    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb .venv/bin/python tests/gui/make_screenshot.py SPEECH.wav docs/screenshot.png

A small JACK client loops the speech file into AutoVoice's input ports (the dummy driver's capture
ports are silent), so meters, waveform and pitch show a real voice. Settings go to a temporary folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def start_player(path: Path):
    """A JACK client that plays ``path`` in a loop on one output port; returns (client, port name)."""
    import jack
    import soundfile as sf

    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1) * 0.8
    client = jack.Client("speech-player", no_start_server=True)
    if sr != client.samplerate:
        raise SystemExit(f"{path} is at {sr} Hz but JACK runs at {client.samplerate} Hz; pick a matching file.")
    port = client.outports.register("out")
    pos = [0]

    @client.set_process_callback
    def process(frames):
        buf = port.get_array()
        i = pos[0]
        idx = (np.arange(i, i + frames)) % len(audio)
        buf[:] = audio[idx]
        pos[0] = (i + frames) % len(audio)

    client.activate()
    return client, port.name


def main() -> int:
    speech = Path(sys.argv[1])
    out_png = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("docs/screenshot.png")
    tmp = Path(tempfile.mkdtemp(prefix="autovoice-shot-"))
    os.environ["AUTOVOICE_CONFIG_DIR"] = str(tmp / "config")
    os.environ["AUTOVOICE_DATA_DIR"] = str(tmp / "data")

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from autovoice_desktop.app import apply_style
    from autovoice_desktop.controller import EngineController
    from autovoice_desktop.main_window import MainWindow

    app = QApplication(sys.argv[:1])
    app.setApplicationName("AutoVoice")
    apply_style(app)
    controller = EngineController()
    window = MainWindow(controller)
    window.resize(1400, 900)
    window.move(40, 30)
    window.show()
    player, player_port = start_player(speech)
    state = {"connected": False, "ticks": 0}

    def tick():
        state["ticks"] += 1
        if not controller.engine.running and not controller.busy and controller.engine.voice_info is not None \
                and state["ticks"] < 40 and not state["connected"]:
            window.toggle_running()
            return
        if controller.engine.running and not state["connected"]:
            for dst in ("PortAudio:in_0", "PortAudio:in_1"):
                player.connect(player_port, dst)
            state["connected"] = True
            state["t_connected"] = state["ticks"]
            return
        if state["connected"] and state["ticks"] - state["t_connected"] >= 40:  # ~4 s of speech on screen
            x_in, x_out, _ = controller.engine.recent_audio(2.0)
            print(f"input peak {np.abs(x_in).max(initial=0):.3f}, output peak {np.abs(x_out).max(initial=0):.3f}",
                  flush=True)
            out_png.parent.mkdir(parents=True, exist_ok=True)
            ok = window.grab().save(str(out_png))
            print(f"saved {out_png}: {ok}", flush=True)
            window.close()
            app.quit()
        elif state["ticks"] > 200:
            print("the stream did not start; no screenshot", file=sys.stderr)
            window.close()
            app.quit()

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(100)
    rc = app.exec()
    player.deactivate()
    player.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
