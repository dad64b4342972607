"""What the "Convert files..." and "Song covers..." dialogs share: a table of input files with a
progress bar per row, an output-folder row, a message line and Convert/Cancel/Close buttons.

Both dialogs run one batch at a time, off the GUI thread, with a ``threading.Event`` to cancel it:
``cancel_event`` is set while a batch runs (``running``), and closing the dialog (or Esc) cancels.
Each dialog builds its own options and layout from these pieces, starts its own engine call and
words its own results; the rows, the folder and the button states work the same way in both, so
they live here once.
"""

from __future__ import annotations

import threading
from pathlib import Path
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QLayout, QLineEdit, QProgressBar,
    QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from autovoice_desktop.controller import EngineController

FAILED_COLOR = "#ff7b72"  # the Result text of a file that failed


class BatchDialog(QDialog):
    """Base of the batch dialogs. A subclass sets the class attributes below, builds its widgets with
    the ``_make_*`` helpers, lays them out with ``_lay_out`` and implements ``start``."""

    # Columns of the file table (each subclass numbers its own).
    COL_NAME: int
    COL_PROGRESS: int
    COL_RESULT: int
    TEXT_COLS: tuple[int, ...] = ()  # further columns of plain text, empty on a new or restarted row
    BAR_AT_ZERO = False  # a new row's bar shows "0%" at once (else it stays blank until its first progress)
    OUTPUT_KEY: str  # the GUI setting that remembers the output folder
    INPUT_KEY: str  # ... and the folder the first input came from
    OUTPUT_SUBDIR: Path  # the output folder below the home folder until one is saved
    CANCELLING_TEXT = "Cancelling\u2026"

    def __init__(self, controller: EngineController, parent: QWidget | None, title: str, object_name: str):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setObjectName(object_name)
        self.controller = controller
        self.paths: list[Path] = []
        self.bars: list[QProgressBar] = []
        self.cancel_event: threading.Event | None = None

    # ------------------------------------------------------------------ building
    def _make_table(self, headers: list[str], widths: dict[int, int]) -> None:
        self.table = QTableWidget(0, len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setTextElideMode(Qt.ElideMiddle)
        for col, width in widths.items():
            self.table.setColumnWidth(col, width)
        self.table.horizontalHeader().setSectionResizeMode(self.COL_RESULT, QHeaderView.Stretch)

    def _make_files_row(self, add_text: str, pick_title: str, name_filter: str, *extra: QWidget) -> QHBoxLayout:
        """Add / Remove (and ``extra``) under the table; Add opens a file dialog titled ``pick_title``."""
        self.add_button = QPushButton(add_text)
        self.remove_button = QPushButton("Remove")
        self.add_button.clicked.connect(lambda: self._pick_inputs(pick_title, name_filter))
        self.remove_button.clicked.connect(self._remove_selected)
        row = QHBoxLayout()
        for b in (self.add_button, self.remove_button, *extra):
            row.addWidget(b)
        row.addStretch(1)
        return row

    def _make_output_row(self, object_name: str, open_text: str, open_tip: str | None = None) -> QHBoxLayout:
        self.output_edit = QLineEdit(str(self._default_output()))
        self.output_edit.setObjectName(object_name)
        browse = QPushButton("Browse\u2026")
        browse.clicked.connect(self._pick_output)
        self.open_button = QPushButton(open_text)
        if open_tip:
            self.open_button.setToolTip(open_tip)
        self.open_button.clicked.connect(self.open_folder)
        row = QHBoxLayout()
        row.addWidget(QLabel("Output folder:"))
        row.addWidget(self.output_edit, 1)
        row.addWidget(browse)
        row.addWidget(self.open_button)
        return row

    def _make_buttons(self, convert_text: str) -> None:
        """The message line and the button box; Convert waits for files, Cancel for a running batch."""
        self.message = QLabel("")
        self.message.setObjectName("dialogMessage")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox()
        self.convert_button = self.buttons.addButton(convert_text, QDialogButtonBox.AcceptRole)
        self.cancel_button = self.buttons.addButton("Cancel", QDialogButtonBox.RejectRole)
        self.close_button = self.buttons.addButton("Close", QDialogButtonBox.DestructiveRole)
        self.convert_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        self.cancel_button.setEnabled(False)
        self.convert_button.setEnabled(False)

    def _lay_out(self, top: list[QWidget | QLayout], files_row: QHBoxLayout, output_row: QHBoxLayout) -> None:
        """``top`` (the dialog's own options), then the table, its buttons, the folder, message, buttons."""
        lay = QVBoxLayout(self)
        for part in top:
            if isinstance(part, QLayout):
                lay.addLayout(part)
            else:
                lay.addWidget(part)
        lay.addWidget(self.table, 1)
        lay.addLayout(files_row)
        lay.addLayout(output_row)
        lay.addWidget(self.message)
        lay.addWidget(self.buttons)

    # ------------------------------------------------------------------ choosing
    def _default_output(self) -> Path:
        saved = self.controller.gui_settings().get(self.OUTPUT_KEY)
        return Path(saved) if saved else Path.home() / self.OUTPUT_SUBDIR

    def _pick_inputs(self, title: str, name_filter: str) -> None:
        start = self.controller.gui_settings().get(self.INPUT_KEY, str(Path.home()))
        names, _ = QFileDialog.getOpenFileNames(self, title, start, name_filter)
        if names:
            self._add_rows([Path(n) for n in names])

    def _pick_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the output folder", self.output_edit.text())
        if folder:
            self.output_edit.setText(folder)

    def open_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(self.output_edit.text()).expanduser())))

    def _add_rows(self, paths: list[Path]) -> None:
        """A row per path not listed yet."""
        for p in map(Path, paths):
            if p in self.paths:
                continue
            self.paths.append(p)
            row = self.table.rowCount()
            self.table.insertRow(row)
            item = QTableWidgetItem(p.name)
            item.setToolTip(str(p))
            self.table.setItem(row, self.COL_NAME, item)
            for col in self.TEXT_COLS:
                self.table.setItem(row, col, QTableWidgetItem(""))
            bar = QProgressBar()
            bar.setRange(0, 100)
            if self.BAR_AT_ZERO:
                bar.setValue(0)
            self.table.setCellWidget(row, self.COL_PROGRESS, bar)
            self.bars.append(bar)
            self.table.setItem(row, self.COL_RESULT, QTableWidgetItem("waiting"))
        self.convert_button.setEnabled(bool(self.paths) and not self.running)

    def _remove_selected(self) -> None:
        if self.running:
            return
        for row in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(row)
            del self.paths[row]
            del self.bars[row]
        self.convert_button.setEnabled(bool(self.paths))

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        return self.cancel_event is not None

    def start(self) -> None:
        raise NotImplementedError

    def _begin(self, busy_text: str) -> Path | None:
        """Start a batch: the output folder (made here, and remembered with the input folder), every
        row back to "waiting", the buttons locked. The folder, or None if nothing may start."""
        if not self.paths or self.running:
            return None
        out = Path(self.output_edit.text()).expanduser()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.message.setText(f"The output folder {out} cannot be created ({exc.strerror}); choose another one.")
            return None
        self.controller.save_gui_settings(**{self.OUTPUT_KEY: str(out), self.INPUT_KEY: str(self.paths[0].parent)})
        for row, bar in enumerate(self.bars):
            bar.setValue(0)
            for col in self.TEXT_COLS:
                self.table.item(row, col).setText("")
            self.table.item(row, self.COL_RESULT).setText("waiting")
        self.message.setText(busy_text)
        self.cancel_event = threading.Event()
        self._set_running_ui(True)
        return out

    def cancel(self) -> None:
        if self.cancel_event is not None:
            self.cancel_event.set()
            self.message.setText(self.CANCELLING_TEXT)

    def _locked_while_running(self) -> list[QWidget]:
        return [self.add_button, self.remove_button, self.output_edit]

    def _set_running_ui(self, running: bool) -> None:
        self.convert_button.setEnabled(not running and bool(self.paths))
        self.cancel_button.setEnabled(running)
        for w in self._locked_while_running():
            w.setEnabled(not running)

    def _show_progress(self, index: int, fraction: float, busy_text: str) -> bool:
        """Row ``index`` at ``fraction`` (its Result says ``busy_text`` from the first progress on);
        False for an index that is not a row."""
        if not 0 <= index < len(self.bars):
            return False
        self.bars[index].setValue(int(round(100 * fraction)))
        item = self.table.item(index, self.COL_RESULT)
        if item.text() == "waiting":
            item.setText(busy_text)
        return True

    def _show_failure(self, item: QTableWidgetItem, error: Exception) -> None:
        item.setText(str(error))
        item.setToolTip(str(error))
        item.setForeground(QColor(FAILED_COLOR))

    def _end(self) -> bool:
        """The batch is over: unlock the dialog. Whether it was cancelled."""
        cancelled = self.cancel_event is not None and self.cancel_event.is_set()
        self.cancel_event = None
        self._set_running_ui(False)
        return cancelled

    def closeEvent(self, event) -> None:
        self.cancel()
        super().closeEvent(event)

    def reject(self) -> None:  # Esc
        self.cancel()
        super().reject()
