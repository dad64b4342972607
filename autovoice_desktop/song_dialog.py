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

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QWidget,
)

from autovoice_desktop.batch import BatchDialog
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


class SongDialog(BatchDialog):
    COL_SONG, COL_STAGE, COL_PROGRESS, COL_RESULT = range(4)
    COL_NAME = COL_SONG
    TEXT_COLS = (COL_STAGE,)
    OUTPUT_KEY, INPUT_KEY = "song_output_dir", "song_input_dir"
    OUTPUT_SUBDIR = Path("AutoVoice") / "Covers"
    CANCELLING_TEXT = "Cancelling\u2026 (the song in progress writes nothing)"

    def __init__(self, controller: EngineController, parent: QWidget | None = None):
        super().__init__(controller, parent, "Song covers", "songDialog")
        self.engine = controller.engine
        self.results: dict[int, Any] = {}
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
        self._make_table(["Song", "Stage", "Progress", "Result"],
                         {self.COL_SONG: 230, self.COL_STAGE: 200, self.COL_PROGRESS: 140})
        self.preview_button = QPushButton("Preview")
        self.preview_button.setToolTip(f"Play {PREVIEW_S:g} s of the selected cover.")
        self.preview_button.setEnabled(False)
        self.preview_button.clicked.connect(self.preview)
        songs_row = self._make_files_row("Add songs\u2026", "Choose songs", AUDIO_FILTER, self.preview_button)
        out_row = self._make_output_row("songOutputFolder", "Open folder")
        self._make_buttons("Make covers")
        self._lay_out([form, self.key_note], songs_row, out_row)
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

    @property
    def songs(self) -> list[Path]:
        return self.paths

    def add_songs(self, paths: list[Path]) -> None:
        self._add_rows(paths)

    # ------------------------------------------------------------------ working
    def start(self) -> None:
        out = self._begin("Working\u2026")
        if out is None:
            return
        self.results = {}
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

    def _locked_while_running(self) -> list[QWidget]:
        return super()._locked_while_running() + [
            self.voice_combo, self.transpose, self.key, self.vocals_db, self.accomp_db, self.separator_combo,
            self.stems_check, self.fetch_button]

    def _progress(self, index: int, p) -> None:
        if not self._show_progress(index, p.overall, "working\u2026"):
            return
        eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        cached = " (cached)" if p.cached else ""
        self.table.item(index, self.COL_STAGE).setText(f"{p.stage}{cached} {p.index + 1}/4 {100 * p.fraction:.0f}%{eta}")

    def _result(self, index: int, r) -> None:
        self.results[index] = r
        item = self.table.item(index, self.COL_RESULT)
        if isinstance(r, AutoVoiceError):
            self._show_failure(item, r)
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
        cancelled = self._end()
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

    # ------------------------------------------------------------------ preview
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
