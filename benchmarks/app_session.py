"""One session of the desktop app as a user runs it, for the soak benchmark (`soak_live.py --front app`).

Opens the real window (offscreen unless QT_QPA_PLATFORM says otherwise) on the given voice and
devices, presses Start, and keeps the Live view showing: the GUI thread's timers (levels, waveform,
status) and the pitch view's thread run as they do for a user, beside the conversion. After
``--seconds`` it writes the engine's snapshot and per-block timeline, as `autovoice live
--stats-json/--timeline` does (plus ``gui_thread_cpu_ms_per_s``, the GUI thread's CPU time per second
of streaming), and closes the window the normal way.

    python benchmarks/app_session.py --voice deeper --input system --output system --seconds 60 \\
        --stats-json stats.json --timeline timeline.npz
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voice", default="deeper")
    ap.add_argument("--input", default="system")
    ap.add_argument("--output", default="system")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--stats-json", required=True)
    ap.add_argument("--timeline", required=True)
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a voice setting, as `autovoice live --param` takes it (repeatable)")
    a = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT))
    import numpy as np
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from autovoice_desktop.app import apply_style
    from autovoice_desktop.controller import EngineController
    from autovoice_desktop.main_window import MainWindow
    from engine.api import Engine
    from engine.cli import voice_params_from_args

    app = QApplication([sys.argv[0]])
    apply_style(app)
    engine = Engine(load_default_voice=False)
    engine.load_voice(a.voice, voice_params_from_args(a)).result()  # as if set in the window, and kept
    engine.set_audio(input_device=a.input, output_device=a.output)  # as picking them in the window does
    controller = EngineController(engine)
    window = MainWindow(controller)
    window.show()
    state = {"started_at": None, "gui_cpu_at_start_s": 0.0, "status": 0}

    def finish(status: int) -> None:
        stats = engine.snapshot().to_dict()
        if state["started_at"] is not None:  # what the window itself costs: the GUI thread's CPU time
            streamed_s = max(1e-3, time.monotonic() - state["started_at"])
            stats["gui_thread_cpu_ms_per_s"] = 1000.0 * (time.thread_time() - state["gui_cpu_at_start_s"]) / streamed_s
        Path(a.stats_json).write_text(json.dumps(stats, indent=2))
        np.savez_compressed(a.timeline, **engine.timeline())
        state["status"] = status
        window.close()
        app.quit()

    def tick() -> None:
        now = time.monotonic()
        if state["started_at"] is None:
            if engine.running:
                engine.record_timeline(seconds=a.seconds)
                state["started_at"], state["gui_cpu_at_start_s"] = now, time.thread_time()
            elif window.message_banner.isVisible():  # the start failed: the window says why
                print(f"app_session: the stream did not start: {window.message_banner.label.text()}", file=sys.stderr)
                finish(1)
            elif not controller.devices_busy and window.start_button.isEnabled():
                window.toggle_running()  # what pressing Start does
            return
        if not engine.running:
            print(f"app_session: the stream stopped: {engine.last_error}", file=sys.stderr)
            finish(1)
        elif now - state["started_at"] >= a.seconds:
            finish(0)

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(200)
    app.exec()
    return state["status"]


if __name__ == "__main__":
    sys.exit(main())
