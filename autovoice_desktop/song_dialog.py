""""Song covers..." dialog: songs in, covers out (separate the vocals, convert them, mix them back).

Same options as ``autovoice song``. The work is ``Engine.convert_songs`` (a Future on the engine's
executor); its progress and per-song results reach the GUI thread as queued signals of a small
QObject owned by the dialog (emitting from another thread queues the call onto the thread the
receiver lives in). Closing the dialog while working cancels, and a cancelled song writes nothing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout,
    QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from autovoice_desktop.controller import EngineController, user_message
from engine.errors import AutoVoiceError

AUDIO_FILTER = "Songs (*.wav *.flac *.ogg *.mp3 *.aiff *.aif);;All files (*)"
PREVIEW_S = 12.0  # how much of the cover the preview plays, from a third of the way in


class _Relay(QObject):
    """Signals emitted from the engine's thread, delivered on the GUI thread."""

    progress = Signal(int, object)  # song index, StageProgress
    result = Signal(int, object)  # song index, SongResult | AutoVoiceError
    finished = Signal(object)  # list of results, or an exception
    fetch_progress = Signal(object, object)  # bytes done, bytes total or None
    fetch_done = Signal(object)  # Path of the installed model, or an AutoVoiceError


class SongDialog(QDialog):
    COL_SONG, COL_STAGE, COL_PROGRESS, COL_RESULT = range(4)

    def __init__(self, controller: EngineController, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Song covers")
        self.setObjectName("songDialog")
        self.controller = controller
        self.engine = controller.engine
        self.songs: list[Path] = []
        self.bars: list[QProgressBar] = []
        self.results: dict[int, Any] = {}
        self.cancel_event: threading.Event | None = None
        self.relay = _Relay(self)
        self.relay.progress.connect(self._progress)
        self.relay.result.connect(self._result)
        self.relay.finished.connect(self._finished)
        self.relay.fetch_progress.connect(self._fetch_progress)
        self.relay.fetch_done.connect(self._fetch_done)
        self.model_url: str | None = None  # None: the official htdemucs file (tests point these at a mirror)
        self.model_sha256: str | None = None
        self.resize(980, 520)

        # -- options (the same as `autovoice song`)
        self.voice_combo = QComboBox()
        names = [v.name for v in self.engine.list_voices()]
        self.voice_combo.addItems(names)
        if self.engine.voice_name in names:
            self.voice_combo.setCurrentText(self.engine.voice_name)
        self.transpose = self._spin(-24, 24, 1.0, " st", "Moves the vocals only; multiples of 12 keep the song's key.")
        self.key = self._spin(-12, 12, 1.0, " st", "Moves the whole song, accompaniment included.")
        self.vocals_db = self._spin(-40, 20, 0.5, " dB", "Vocal level; 0 = the loudness of the original vocals.")
        self.accomp_db = self._spin(-40, 20, 0.5, " dB", "Accompaniment level change.")
        self.separator_combo = QComboBox()
        self.fetch_button = QPushButton("Download the htdemucs model\u2026")
        self.fetch_button.setToolTip("Fetch the Demucs htdemucs separation model once (needs internet; SHA-256 checked).")
        self.fetch_button.clicked.connect(self.fetch_model)
        self._fill_separators()
        self.stems_check = QCheckBox("Also write the stems (vocals, converted vocals, accompaniment) into a 'stems' folder")
        self.key_note = QLabel("")
        self.key_note.setObjectName("keyNote")
        self.key_note.setWordWrap(True)
        self.transpose.valueChanged.connect(self._update_notes)
        self.separator_combo.currentIndexChanged.connect(self._update_notes)

        form = QFormLayout()
        form.addRow("Voice:", self.voice_combo)
        row = QHBoxLayout()
        for label, w in (("Transpose vocals", self.transpose), ("Key", self.key), ("Vocals", self.vocals_db),
                         ("Accompaniment", self.accomp_db)):
            row.addWidget(QLabel(label))
            row.addWidget(w)
        row.addStretch(1)
        form.addRow("Pitch and levels:", row)
        sep_row = QHBoxLayout()
        sep_row.addWidget(self.separator_combo, 1)
        sep_row.addWidget(self.fetch_button)
        form.addRow("Separator:", sep_row)
        form.addRow("", self.stems_check)

        # -- songs
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Song", "Stage", "Progress", "Result"])
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setTextElideMode(Qt.ElideMiddle)
        h = self.table.horizontalHeader()
        self.table.setColumnWidth(self.COL_SONG, 230)
        self.table.setColumnWidth(self.COL_STAGE, 200)
        self.table.setColumnWidth(self.COL_PROGRESS, 140)
        h.setSectionResizeMode(self.COL_RESULT, QHeaderView.Stretch)

        self.add_button = QPushButton("Add songs\u2026")
        self.remove_button = QPushButton("Remove")
        self.add_button.clicked.connect(self._pick_songs)
        self.remove_button.clicked.connect(self._remove_selected)
        self.preview_button = QPushButton("Preview")
        self.preview_button.setToolTip(f"Play {PREVIEW_S:g} s of the selected cover.")
        self.preview_button.setEnabled(False)
        self.preview_button.clicked.connect(self.preview)
        songs_row = QHBoxLayout()
        for b in (self.add_button, self.remove_button, self.preview_button):
            songs_row.addWidget(b)
        songs_row.addStretch(1)

        self.output_edit = QLineEdit(str(self._default_output()))
        self.output_edit.setObjectName("songOutputFolder")
        browse = QPushButton("Browse\u2026")
        browse.clicked.connect(self._pick_output)
        self.open_button = QPushButton("Open folder")
        self.open_button.clicked.connect(self.open_folder)
        out_row = QHBoxLayout()
        out_row.addWidget(QLabel("Output folder:"))
        out_row.addWidget(self.output_edit, 1)
        out_row.addWidget(browse)
        out_row.addWidget(self.open_button)

        self.message = QLabel("")
        self.message.setObjectName("dialogMessage")
        self.message.setWordWrap(True)

        self.buttons = QDialogButtonBox()
        self.convert_button = self.buttons.addButton("Make covers", QDialogButtonBox.AcceptRole)
        self.cancel_button = self.buttons.addButton("Cancel", QDialogButtonBox.RejectRole)
        self.close_button = self.buttons.addButton("Close", QDialogButtonBox.DestructiveRole)
        self.convert_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        self.cancel_button.setEnabled(False)
        self.convert_button.setEnabled(False)

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.key_note)
        lay.addWidget(self.table, 1)
        lay.addLayout(songs_row)
        lay.addLayout(out_row)
        lay.addWidget(self.message)
        lay.addWidget(self.buttons)
        self._update_notes()

    @staticmethod
    def _spin(lo: float, hi: float, step: float, suffix: str, tip: str) -> QDoubleSpinBox:
        s = QDoubleSpinBox()
        s.setRange(lo, hi)
        s.setSingleStep(step)
        s.setDecimals(1)
        s.setSuffix(suffix)
        s.setToolTip(tip)
        return s

    def _fill_separators(self) -> None:
        chosen = self.separator_combo.currentData() or "auto"
        self.separator_combo.blockSignals(True)
        self.separator_combo.clear()
        infos = self.engine.separators()
        for info in [{"name": "auto", "available": True, "note": None}] + infos:
            label = info["name"] + ("" if info["available"] else " (not installed)")
            self.separator_combo.addItem(label, info["name"])
            if info.get("note"):
                self.separator_combo.setItemData(self.separator_combo.count() - 1, info["note"], Qt.ToolTipRole)
        self.separator_combo.setCurrentIndex(max(0, self.separator_combo.findData(chosen)))
        self.separator_combo.blockSignals(False)
        self.fetch_button.setVisible(not next(i["available"] for i in infos if i["name"] == "htdemucs"))

    def fetch_model(self) -> None:
        self.fetch_button.setEnabled(False)
        relay, url, sha = self.relay, self.model_url, self.model_sha256

        def work() -> None:  # NB: a plain thread; it only emits queued signals
            try:
                relay.fetch_done.emit(self.engine.fetch_separation_model(
                    progress=lambda d, t: relay.fetch_progress.emit(d, t), url=url, sha256=sha))
            except AutoVoiceError as exc:
                relay.fetch_done.emit(exc)

        threading.Thread(target=work, name="autovoice-fetch-model", daemon=True).start()
        self.message.setText("Downloading the htdemucs model\u2026")

    def _fetch_progress(self, done: int, total) -> None:
        shown = f"{100 * done / total:.0f}% of {total / 1e6:.0f} MB" if total else f"{done / 1e6:.0f} MB"
        self.message.setText(f"Downloading the htdemucs model: {shown}")

    def _fetch_done(self, result) -> None:
        self.fetch_button.setEnabled(True)
        if isinstance(result, AutoVoiceError):
            self.message.setText(str(result))
            return
        self._fill_separators()
        self._update_notes()
        self.message.setText(f"The htdemucs model is installed ({result}); 'auto' now uses it.")

    # ------------------------------------------------------------------ options
    def options(self):
        from engine.api import SongOptions

        stems = str(Path(self.output_edit.text()).expanduser() / "stems") if self.stems_check.isChecked() else None
        return SongOptions(transpose_st=self.transpose.value(), key_st=self.key.value(),
                           vocals_db=self.vocals_db.value(), accomp_db=self.accomp_db.value(),
                           separator=self.separator_combo.currentData(), stems_dir=stems)

    def _update_notes(self) -> None:
        try:
            notes = self.engine.song_notes(self.options())
        except AutoVoiceError as exc:
            notes = [str(exc)]
        # The engine words them for the command line; here the same controls have these names.
        text = "\n".join(notes).replace("--transpose", "Transpose vocals").replace("--key", "Key")
        self.key_note.setText(text.replace("autovoice song --fetch-model", "autovoice song --fetch-model (in a terminal)"))

    def _default_output(self) -> Path:
        saved = self.controller.gui_settings().get("song_output_dir")
        return Path(saved) if saved else Path.home() / "AutoVoice" / "Covers"

    def _pick_songs(self) -> None:
        start = self.controller.gui_settings().get("song_input_dir", str(Path.home()))
        names, _ = QFileDialog.getOpenFileNames(self, "Choose songs", start, AUDIO_FILTER)
        if names:
            self.add_songs([Path(n) for n in names])

    def _pick_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the output folder", self.output_edit.text())
        if folder:
            self.output_edit.setText(folder)

    def add_songs(self, paths: list[Path]) -> None:
        for p in map(Path, paths):
            if p in self.songs:
                continue
            self.songs.append(p)
            row = self.table.rowCount()
            self.table.insertRow(row)
            item = QTableWidgetItem(p.name)
            item.setToolTip(str(p))
            self.table.setItem(row, self.COL_SONG, item)
            self.table.setItem(row, self.COL_STAGE, QTableWidgetItem(""))
            bar = QProgressBar()
            bar.setRange(0, 100)
            self.table.setCellWidget(row, self.COL_PROGRESS, bar)
            self.bars.append(bar)
            self.table.setItem(row, self.COL_RESULT, QTableWidgetItem("waiting"))
        self.convert_button.setEnabled(bool(self.songs) and not self.running)

    def _remove_selected(self) -> None:
        if self.running:
            return
        for row in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(row)
            del self.songs[row]
            del self.bars[row]
        self.convert_button.setEnabled(bool(self.songs))

    # ------------------------------------------------------------------ working
    @property
    def running(self) -> bool:
        return self.cancel_event is not None

    def start(self) -> None:
        if not self.songs or self.running:
            return
        out = Path(self.output_edit.text()).expanduser()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.message.setText(f"The output folder {out} cannot be created ({exc.strerror}); choose another one.")
            return
        self.controller.save_gui_settings(song_output_dir=str(out), song_input_dir=str(self.songs[0].parent))
        self.results = {}
        for row, bar in enumerate(self.bars):
            bar.setValue(0)
            self.table.item(row, self.COL_STAGE).setText("")
            self.table.item(row, self.COL_RESULT).setText("waiting")
        self.cancel_event = threading.Event()
        self._set_running_ui(True)
        self.message.setText("Working\u2026")
        relay = self.relay
        try:
            # NB: the callbacks run on the engine's executor thread; they only emit queued signals.
            fut = self.engine.convert_songs(
                list(self.songs), out if len(self.songs) > 1 else out / self._single_name(out),
                voice=self.voice_combo.currentText(), options=self.options(),
                progress=lambda i, p: relay.progress.emit(i, p),
                on_result=lambda i, r: relay.result.emit(i, r), cancel=self.cancel_event)
        except AutoVoiceError as exc:
            self.relay.finished.emit(exc)
            return
        fut.add_done_callback(lambda f: relay.finished.emit(f.exception() or f.result()))

    def _single_name(self, out: Path) -> str:
        src = self.songs[0]
        ext = src.suffix.lower() if src.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3") else ".wav"
        return f"{src.stem}_{self.voice_combo.currentText()}{ext}"

    def cancel(self) -> None:
        if self.cancel_event is not None:
            self.cancel_event.set()
            self.message.setText("Cancelling\u2026 (the song in progress writes nothing)")

    def _set_running_ui(self, running: bool) -> None:
        self.convert_button.setEnabled(not running and bool(self.songs))
        self.cancel_button.setEnabled(running)
        for w in (self.add_button, self.remove_button, self.output_edit, self.voice_combo, self.transpose, self.key,
                  self.vocals_db, self.accomp_db, self.separator_combo, self.stems_check, self.fetch_button):
            w.setEnabled(not running)

    def _progress(self, index: int, p) -> None:
        if not 0 <= index < len(self.bars):
            return
        self.bars[index].setValue(int(round(100 * p.overall)))
        eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        cached = " (cached)" if p.cached else ""
        self.table.item(index, self.COL_STAGE).setText(f"{p.stage}{cached} {p.index + 1}/4 {100 * p.fraction:.0f}%{eta}")
        item = self.table.item(index, self.COL_RESULT)
        if item.text() == "waiting":
            item.setText("working\u2026")

    def _result(self, index: int, r) -> None:
        self.results[index] = r
        item = self.table.item(index, self.COL_RESULT)
        if isinstance(r, AutoVoiceError):
            item.setText(str(r))
            item.setToolTip(str(r))
            item.setForeground(QColor("#ff7b72"))
            self.table.item(index, self.COL_STAGE).setText("failed" if "cancelled" not in str(r) else "cancelled")
        else:
            self.bars[index].setValue(100)
            self.table.item(index, self.COL_STAGE).setText("done" + (" (stems cached)" if r.cache_hit else ""))
            note = f"  \u26a0 {r.warnings[-1]}" if r.warnings else ""
            item.setText(f"\u2192 {Path(r.output_path).name}{note}")
            item.setToolTip("\n".join([r.output_path, *r.warnings]))
            self.table.selectRow(index)
        self.preview_button.setEnabled(any(not isinstance(x, AutoVoiceError) for x in self.results.values()))

    def _finished(self, results) -> None:
        cancelled = self.cancel_event is not None and self.cancel_event.is_set()
        self.cancel_event = None
        self._set_running_ui(False)
        if isinstance(results, BaseException):
            self.message.setText(user_message(results))
            return
        done = sum(1 for r in results if not isinstance(r, AutoVoiceError))
        for row in range(len(self.songs)):
            if row not in self.results:
                self.table.item(row, self.COL_RESULT).setText("cancelled" if cancelled else "not converted")
        if cancelled:
            self.message.setText(f"Cancelled: {done} of {len(self.songs)} song(s) finished; nothing partial was written.")
        elif done < len(self.songs):
            self.message.setText(f"{done} of {len(self.songs)} song(s) converted; the others failed (see Result).")
        else:
            self.message.setText(f"Done: {done} cover(s) in {self.output_edit.text()}.")

    # ------------------------------------------------------------------ preview, folder
    def selected_result(self):
        rows = sorted({i.row() for i in self.table.selectedIndexes()}) or sorted(self.results)
        for row in rows:
            r = self.results.get(row)
            if r is not None and not isinstance(r, AutoVoiceError):
                return r
        return None

    def preview_audio(self):
        """(samples, rate) of the preview excerpt of the selected cover, or None."""
        import soundfile as sf

        r = self.selected_result()
        if r is None:
            return None
        info = sf.info(r.output_path)
        start = int(info.frames / 3) if info.duration > 2 * PREVIEW_S else 0
        x, sr = sf.read(r.output_path, start=start, frames=int(PREVIEW_S * info.samplerate), dtype="float32")
        return x, sr

    def preview(self) -> None:
        clip = self.preview_audio()
        if clip is None:
            return
        try:
            import sounddevice as sd

            sd.play(*clip)
            self.message.setText(f"Playing {PREVIEW_S:g} s of {Path(self.selected_result().output_path).name}\u2026")
        except Exception as exc:  # noqa: BLE001 - no device, no PortAudio: say so, keep the dialog
            self.message.setText(f"The preview cannot play here ({type(exc).__name__}: no audio output device); "
                                 "open the folder and play the cover in your player.")

    def open_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(self.output_edit.text()).expanduser())))

    def closeEvent(self, event) -> None:
        self.cancel()
        super().closeEvent(event)

    def reject(self) -> None:  # Esc
        self.cancel()
        super().reject()
