"""One excepthook for the whole app: unexpected errors go to a dialog, guarded against floods
(after friture's exceptionhandler.py).

* Expected failures (an ``AutoVoiceError``) never get here: the controller shows their one sentence in
  the window. What arrives here is a bug; the dialog says so and carries the traceback in its details.
* At most one dialog is open at a time; errors while it is open, and more than ``MAX_DIALOGS_PER_MINUTE``,
  are counted and logged instead, and the next dialog says how many were suppressed.
* Exceptions in other threads (``threading.excepthook``) are hopped onto the GUI thread by a signal.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QApplication, QMessageBox

from engine.errors import AutoVoiceError

log = logging.getLogger(__name__)

MAX_DIALOGS_PER_MINUTE = 3


class ExceptionHandler(QObject):
    _from_thread = Signal(object, object, str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._showing = False
        self._shown_times: list[float] = []
        self.suppressed = 0
        self.dialogs_shown = 0
        self.parent_widget = None
        self._from_thread.connect(self._handle)
        self._old_hook = None
        self._old_thread_hook = None

    def install(self) -> None:
        self._old_hook, sys.excepthook = sys.excepthook, self.excepthook
        self._old_thread_hook, threading.excepthook = threading.excepthook, self._thread_hook

    def uninstall(self) -> None:
        if self._old_hook is not None:
            sys.excepthook = self._old_hook
        if self._old_thread_hook is not None:
            threading.excepthook = self._old_thread_hook

    def excepthook(self, exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            QApplication.quit()
            return
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        self._from_thread.emit(exc_type, exc, text)

    def _thread_hook(self, args) -> None:
        if args.exc_type is SystemExit:
            return
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        self._from_thread.emit(args.exc_type, args.exc_value, text)

    def _allowed(self) -> bool:
        now = time.monotonic()
        self._shown_times = [t for t in self._shown_times if now - t < 60.0]
        return not self._showing and len(self._shown_times) < MAX_DIALOGS_PER_MINUTE

    @Slot(object, object, str)
    def _handle(self, exc_type, exc, text: str) -> None:
        log.error("Unhandled exception:\n%s", text)
        if not self._allowed():
            self.suppressed += 1
            return
        self._showing = True
        self._shown_times.append(time.monotonic())
        self.dialogs_shown += 1
        try:
            box = self.make_dialog(exc_type, exc, text)
            box.exec()
        finally:
            self._showing = False

    def make_dialog(self, exc_type, exc, text: str) -> QMessageBox:
        box = QMessageBox(self.parent_widget)
        box.setIcon(QMessageBox.Critical)
        box.setWindowTitle("AutoVoice: unexpected error")
        if isinstance(exc, AutoVoiceError):
            box.setText(str(exc))
        else:
            box.setText(f"Something went wrong inside AutoVoice: {exc_type.__name__}: {exc}")
            box.setInformativeText("Your settings are safe. If this keeps happening, please report it with the "
                                   "details below.")
        if self.suppressed:
            box.setInformativeText(box.informativeText()
                                   + f"\n({self.suppressed} more error(s) were logged without a dialog.)")
            self.suppressed = 0
        box.setDetailedText(text)
        box.setStandardButtons(QMessageBox.Ok)
        return box
