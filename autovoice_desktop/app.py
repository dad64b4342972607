"""Entry point of the desktop app: ``autovoice`` (no command) or ``autovoice gui`` calls ``main()``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

STYLE_PATH = Path(__file__).with_name("style.qss")


def apply_style(app) -> None:
    """Fusion with a dark palette, plus style.qss for the few things a palette cannot say."""
    from PySide6.QtGui import QColor, QPalette

    app.setStyle("Fusion")
    p = QPalette()
    colors = {
        QPalette.Window: "#22272e", QPalette.WindowText: "#d7dde4", QPalette.Base: "#1c2128",
        QPalette.AlternateBase: "#262c34", QPalette.ToolTipBase: "#2d333b", QPalette.ToolTipText: "#e6edf3",
        QPalette.Text: "#d7dde4", QPalette.Button: "#2d333b", QPalette.ButtonText: "#e6edf3",
        QPalette.BrightText: "#ff7b72", QPalette.Highlight: "#316dca", QPalette.HighlightedText: "#ffffff",
        QPalette.Link: "#6cb6ff", QPalette.PlaceholderText: "#768390",
    }
    for role, color in colors.items():
        p.setColor(role, QColor(color))
    for role in (QPalette.Text, QPalette.ButtonText, QPalette.WindowText):
        p.setColor(QPalette.Disabled, role, QColor("#636e7b"))
    app.setPalette(p)
    try:
        app.setStyleSheet(STYLE_PATH.read_text(encoding="utf-8"))
    except OSError:
        log.warning("style sheet %s not found; using the plain palette", STYLE_PATH)
    import pyqtgraph as pg

    pg.setConfigOptions(background="#1c2128", foreground="#adbac7", antialias=False)


def _close_on_signals(window) -> None:
    """Ctrl-C in the terminal or a SIGTERM closes the window the normal way (stream stopped, state saved).

    Python only runs signal handlers between bytecodes, and Qt's event loop is C++, so a timer wakes the
    interpreter a few times a second to let a pending handler run.
    """
    import signal

    from PySide6.QtCore import QTimer

    def close(*_):
        window.close()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, close)
        except (ValueError, OSError):  # not the main thread, or a platform without it
            pass
    timer = QTimer(window)
    timer.timeout.connect(lambda: None)
    timer.start(250)


def main(argv: list[str] | None = None) -> int:
    """Open the window; returns the process exit status."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication, QMessageBox

    from autovoice_desktop.errors import ExceptionHandler
    from engine.errors import AutoVoiceError

    app = QApplication.instance() or QApplication(sys.argv if argv is None else [sys.argv[0], *argv])
    app.setApplicationName("AutoVoice")
    app.setApplicationDisplayName("AutoVoice")
    app.setOrganizationName("AutoVoice")
    app.setAttribute(Qt.AA_DontShowIconsInMenus, True)
    apply_style(app)
    from autovoice_desktop.binding import binding_problem

    problem = binding_problem()
    if problem is not None:
        print(f"autovoice: error: {problem}", file=sys.stderr)
        QMessageBox.critical(None, "AutoVoice", problem)
        return 1
    handler = ExceptionHandler(app)
    handler.install()
    try:
        from autovoice_desktop.controller import EngineController
        from autovoice_desktop.main_window import MainWindow

        try:
            controller = EngineController()
        except AutoVoiceError as exc:
            QMessageBox.critical(None, "AutoVoice", str(exc))
            return 1
        window = MainWindow(controller)
        handler.parent_widget = window
        _close_on_signals(window)
        window.show()
        return int(app.exec())
    finally:
        handler.uninstall()


if __name__ == "__main__":
    sys.exit(main())
