""""Convert files..." dialog: pick files and an output folder, watch a progress bar per file, cancel.

The conversion itself is ``Engine.convert_files`` (a Future, run by the engine's executor) through the
controller; progress arrives as a queued signal. Closing the dialog while converting cancels it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QProgressBar,
    QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from autovoice_desktop.controller import EngineController, user_message
from engine.errors import AutoVoiceError

AUDIO_FILTER = "Audio files (*.wav *.flac *.ogg *.mp3);;All files (*)"


class ConvertDialog(QDialog):
    COL_FILE, COL_PROGRESS, COL_RESULT = range(3)

    def __init__(self, controller: EngineController, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Convert files")
        self.setObjectName("convertDialog")
        self.controller = controller
        self.files: list[Path] = []
        self.bars: list[QProgressBar] = []
        self.cancel_event: threading.Event | None = None
        self.results: list | None = None
        self.resize(900, 440)

        voice = controller.voice_name or "none"
        self.voice_label = QLabel(f"Voice: <b>{voice}</b> with its current settings.")

        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["File", "Progress", "Result"])
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        h = self.table.horizontalHeader()
        h.setSectionResizeMode(self.COL_FILE, QHeaderView.Interactive)
        self.table.setColumnWidth(self.COL_FILE, 250)
        self.table.setTextElideMode(Qt.ElideMiddle)
        h.setSectionResizeMode(self.COL_PROGRESS, QHeaderView.Fixed)
        h.setSectionResizeMode(self.COL_RESULT, QHeaderView.Stretch)
        self.table.setColumnWidth(self.COL_PROGRESS, 160)

        self.add_button = QPushButton("Add files\u2026")
        self.remove_button = QPushButton("Remove")
        self.add_button.clicked.connect(self._pick_files)
        self.remove_button.clicked.connect(self._remove_selected)
        files_row = QHBoxLayout()
        files_row.addWidget(self.add_button)
        files_row.addWidget(self.remove_button)
        files_row.addStretch(1)

        self.output_edit = QLineEdit(str(self._default_output()))
        self.output_edit.setObjectName("outputFolder")
        browse = QPushButton("Browse\u2026")
        browse.clicked.connect(self._pick_output)
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Show the output folder in the file manager.")
        self.open_button.clicked.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(self.output_edit.text()).expanduser()))))
        out_row = QHBoxLayout()
        out_row.addWidget(QLabel("Output folder:"))
        out_row.addWidget(self.output_edit, 1)
        out_row.addWidget(browse)
        out_row.addWidget(self.open_button)

        self.message = QLabel("")
        self.message.setObjectName("dialogMessage")
        self.message.setWordWrap(True)

        self.buttons = QDialogButtonBox()
        self.convert_button = self.buttons.addButton("Convert", QDialogButtonBox.AcceptRole)
        self.cancel_button = self.buttons.addButton("Cancel", QDialogButtonBox.RejectRole)
        self.close_button = self.buttons.addButton("Close", QDialogButtonBox.DestructiveRole)
        self.convert_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        self.cancel_button.setEnabled(False)
        self.convert_button.setEnabled(False)

        lay = QVBoxLayout(self)
        lay.addWidget(self.voice_label)
        lay.addWidget(self.table, 1)
        lay.addLayout(files_row)
        lay.addLayout(out_row)
        lay.addWidget(self.message)
        lay.addWidget(self.buttons)

        controller.convertProgress.connect(self._progress)
        controller.convertFinished.connect(self._finished)

    # ------------------------------------------------------------------ choosing
    def _default_output(self) -> Path:
        saved = self.controller.gui_settings().get("convert_output_dir")
        return Path(saved) if saved else Path.home() / "AutoVoice"

    def _pick_files(self) -> None:
        start = self.controller.gui_settings().get("convert_input_dir", str(Path.home()))
        names, _ = QFileDialog.getOpenFileNames(self, "Choose audio files", start, AUDIO_FILTER)
        if names:
            self.add_files([Path(n) for n in names])

    def _pick_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the output folder", self.output_edit.text())
        if folder:
            self.output_edit.setText(folder)

    def add_files(self, paths: list[Path]) -> None:
        for p in paths:
            p = Path(p)
            if p in self.files:
                continue
            self.files.append(p)
            row = self.table.rowCount()
            self.table.insertRow(row)
            item = QTableWidgetItem(p.name)
            item.setToolTip(str(p))
            self.table.setItem(row, self.COL_FILE, item)
            bar = QProgressBar()
            bar.setRange(0, 100)
            bar.setValue(0)
            self.table.setCellWidget(row, self.COL_PROGRESS, bar)
            self.bars.append(bar)
            self.table.setItem(row, self.COL_RESULT, QTableWidgetItem("waiting"))
        self.convert_button.setEnabled(bool(self.files) and self.cancel_event is None)

    def _remove_selected(self) -> None:
        if self.cancel_event is not None:
            return
        for row in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(row)
            del self.files[row]
            del self.bars[row]
        self.convert_button.setEnabled(bool(self.files))

    # ------------------------------------------------------------------ converting
    @property
    def running(self) -> bool:
        return self.cancel_event is not None

    def start(self) -> None:
        if not self.files or self.running:
            return
        out = Path(self.output_edit.text()).expanduser()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.message.setText(f"The output folder {out} cannot be created ({exc.strerror}); choose another one.")
            return
        self.controller.save_gui_settings(convert_output_dir=str(out),
                                          convert_input_dir=str(self.files[0].parent))
        for row, bar in enumerate(self.bars):
            bar.setValue(0)
            self.table.item(row, self.COL_RESULT).setText("waiting")
        self.results = None
        self.message.setText("Converting\u2026")
        self.cancel_event = threading.Event()
        self._set_running_ui(True)
        self.controller.convert_files(list(self.files), out, self.cancel_event)

    def cancel(self) -> None:
        if self.cancel_event is not None:
            self.cancel_event.set()
            self.message.setText("Cancelling\u2026")

    def _set_running_ui(self, running: bool) -> None:
        self.convert_button.setEnabled(not running and bool(self.files))
        self.cancel_button.setEnabled(running)
        self.add_button.setEnabled(not running)
        self.remove_button.setEnabled(not running)
        self.output_edit.setEnabled(not running)

    def _progress(self, index: int, fraction: float) -> None:
        if 0 <= index < len(self.bars):
            self.bars[index].setValue(int(round(100 * fraction)))
            item = self.table.item(index, self.COL_RESULT)
            if item.text() == "waiting":
                item.setText("converting\u2026")

    def _finished(self, results) -> None:
        cancelled = self.cancel_event is not None and self.cancel_event.is_set()
        self.cancel_event = None
        self._set_running_ui(False)
        if isinstance(results, BaseException):
            self.results = []
            self.message.setText(user_message(results))
            return
        self.results = list(results)
        done = 0
        for row in range(len(self.files)):
            item = self.table.item(row, self.COL_RESULT)
            r = self.results[row] if row < len(self.results) else None
            if r is None:
                item.setText("cancelled" if cancelled else "not converted")
            elif isinstance(r, AutoVoiceError):
                item.setText(str(r))
                item.setToolTip(str(r))
                item.setForeground(QColor("#ff7b72"))
            else:
                done += 1
                self.bars[row].setValue(100)
                item.setText(f"\u2192 {Path(r.output_path).name}  ({r.duration_s:.1f} s of audio)")
                item.setToolTip(r.output_path)
        self.table.resizeRowsToContents()
        failed = len(self.files) - done
        if cancelled:
            self.message.setText(f"Cancelled: {done} of {len(self.files)} file(s) converted.")
        elif failed:
            self.message.setText(f"{done} of {len(self.files)} file(s) converted; {failed} failed (see Result).")
        else:
            self.message.setText(f"Done: {done} file(s) written to {self.output_edit.text()}.")

    def closeEvent(self, event) -> None:
        self.cancel()
        super().closeEvent(event)

    def reject(self) -> None:  # Esc
        self.cancel()
        super().reject()
