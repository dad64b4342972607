""""Convert files..." dialog: pick files and an output folder, watch a progress bar per file, cancel.

The conversion itself is ``Engine.convert_files`` (a Future, run by the engine's executor) through the
controller; progress arrives as a queued signal. Closing the dialog while converting cancels it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QHeaderView, QLabel, QWidget

from autovoice_desktop.batch import BatchDialog
from autovoice_desktop.controller import EngineController, user_message
from engine.errors import AutoVoiceError

AUDIO_FILTER = "Audio files (*.wav *.flac *.ogg *.mp3);;All files (*)"


class ConvertDialog(BatchDialog):
    COL_FILE, COL_PROGRESS, COL_RESULT = range(3)
    COL_NAME = COL_FILE
    OUTPUT_KEY, INPUT_KEY = "convert_output_dir", "convert_input_dir"
    OUTPUT_SUBDIR = Path("AutoVoice")
    BAR_AT_ZERO = True

    def __init__(self, controller: EngineController, parent: QWidget | None = None):
        super().__init__(controller, parent, "Convert files", "convertDialog")
        self.results: list | None = None
        self.resize(900, 440)

        voice = controller.voice_name or "none"
        self.voice_label = QLabel(f"Voice: <b>{voice}</b> with its current settings.")

        self._make_table(["File", "Progress", "Result"], {self.COL_FILE: 250, self.COL_PROGRESS: 160})
        h = self.table.horizontalHeader()
        h.setSectionResizeMode(self.COL_FILE, QHeaderView.Interactive)
        h.setSectionResizeMode(self.COL_PROGRESS, QHeaderView.Fixed)
        files_row = self._make_files_row("Add files\u2026", "Choose audio files", AUDIO_FILTER)
        out_row = self._make_output_row("outputFolder", "Open", "Show the output folder in the file manager.")
        self._make_buttons("Convert")
        self._lay_out([self.voice_label], files_row, out_row)

        controller.convertProgress.connect(self._progress)
        controller.convertFinished.connect(self._finished)

    @property
    def files(self) -> list[Path]:
        return self.paths

    def add_files(self, paths: list[Path]) -> None:
        self._add_rows(paths)

    # ------------------------------------------------------------------ converting
    def start(self) -> None:
        out = self._begin("Converting\u2026")
        if out is None:
            return
        self.results = None
        self.controller.convert_files(list(self.files), out, self.cancel_event)

    def _progress(self, index: int, fraction: float) -> None:
        self._show_progress(index, fraction, "converting\u2026")

    def _finished(self, results) -> None:
        cancelled = self._end()
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
                self._show_failure(item, r)
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
