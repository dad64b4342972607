""""Import voice..." dialog: a model (.pth or .onnx), an optional retrieval index (.index), a name.

The import itself (the engine verifies the model and copies it into the data folder: seconds) runs
off the GUI thread through ``EngineController.import_voice``; its result arrives as a signal. The
dialog stays open until the voice is installed, so after a refusal (the engine's one sentence, shown
here and in the window's message bar) the user can pick another file or name without starting over.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout,
    QWidget,
)

from autovoice_desktop.controller import EngineController

MODEL_FILTER = "Voice models (*.pth *.onnx);;All files (*)"
INDEX_FILTER = "Retrieval index (*.index);;All files (*)"


def pick_model(parent: QWidget, start_dir: str) -> Path | None:
    name, _ = QFileDialog.getOpenFileName(parent, "Choose a voice model (RVC .pth or .onnx)", start_dir, MODEL_FILTER)
    return Path(name) if name else None


def index_beside(model: Path) -> Path | None:
    """The retrieval index shipped next to a model (RVC releases put one added_*.index beside the .pth)."""
    try:
        found = sorted(p for p in model.parent.glob("*.index") if p.is_file())
    except OSError:
        return None
    added = [p for p in found if p.name.startswith("added_")]
    if len(added) == 1:
        return added[0]
    return found[0] if len(found) == 1 else None


class ImportVoiceDialog(QDialog):
    def __init__(self, controller: EngineController, model: Path | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Import voice")
        self.setObjectName("importVoiceDialog")
        self.controller = controller
        self.importing = False
        self.imported = None  # VoiceInfo once installed
        self._auto_index = ""  # the index set_model() found beside the model, if any
        self.resize(640, 0)

        intro = QLabel("An RVC voice model: an inference <b>.pth</b> (the small file RVC exports, not a G_*.pth "
                       "training checkpoint) or an <b>.onnx</b> export. AutoVoice checks it and keeps a copy.")
        intro.setWordWrap(True)
        intro.setObjectName("hint")

        self.model_edit = QLineEdit()
        self.model_edit.setObjectName("modelPath")
        self.model_edit.textChanged.connect(self._model_changed)
        model_browse = QPushButton("Browse\u2026")
        model_browse.clicked.connect(self._browse_model)
        self.index_edit = QLineEdit()
        self.index_edit.setObjectName("indexPath")
        self.index_edit.setPlaceholderText("optional: the voice's added_*.index file")
        self.index_edit.setToolTip("The retrieval index makes the voice closer to the original speaker "
                                   "(see 'Index rate'); the voice works without it.")
        self.index_browse = QPushButton("Browse\u2026")
        self.index_browse.setObjectName("indexBrowse")
        self.index_browse.clicked.connect(self._browse_index)
        self.index_clear = QPushButton("Clear")
        self.index_clear.clicked.connect(self.index_edit.clear)
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("voiceName")
        self.name_edit.setMaxLength(64)
        self.name_edit.setToolTip("How the voice is listed; letters, digits, spaces, '.', '_' or '-'.")

        def row(*widgets) -> QHBoxLayout:
            lay = QHBoxLayout()
            lay.setContentsMargins(0, 0, 0, 0)
            lay.addWidget(widgets[0], 1)
            for w in widgets[1:]:
                lay.addWidget(w)
            return lay

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.addRow("Model", row(self.model_edit, model_browse))
        form.addRow("Index", row(self.index_edit, self.index_browse, self.index_clear))
        form.addRow("Name", self.name_edit)

        self.message = QLabel("")
        self.message.setObjectName("dialogMessage")
        self.message.setWordWrap(True)

        self.buttons = QDialogButtonBox()
        self.import_button = self.buttons.addButton("Import", QDialogButtonBox.AcceptRole)
        self.import_button.setObjectName("importButton")
        self.cancel_button = self.buttons.addButton("Cancel", QDialogButtonBox.RejectRole)
        self.import_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.reject)

        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(form)
        lay.addWidget(self.message)
        lay.addWidget(self.buttons)

        controller.voiceImported.connect(self._imported)
        controller.voiceImportFailed.connect(self._failed)
        if model is not None:
            self.set_model(model)
        self._model_changed(self.model_edit.text())

    # ------------------------------------------------------------------ choosing
    def _start_dir(self) -> str:
        return str(self.controller.gui_settings().get("voice_import_dir") or Path.home())

    def reset(self, model: Path | None) -> None:
        """Start over with another model (the window keeps one dialog)."""
        self.imported = None
        self._show_message("")
        self.index_edit.clear()
        self.name_edit.clear()
        self.model_edit.clear()
        if model is not None:
            self.set_model(model)

    def set_model(self, model: Path) -> None:
        self.model_edit.setText(str(model))
        # An index found beside the model is filled in (and replaced when the model changes); one the user
        # chose stays.
        current = self.index_edit.text()
        if not current or current == self._auto_index:
            found = index_beside(model)
            self._auto_index = str(found) if found is not None else ""
            self.index_edit.setText(self._auto_index)

    def _browse_model(self) -> None:
        current = self.model_edit.text().strip()
        model = pick_model(self, str(Path(current).parent) if current else self._start_dir())
        if model is not None:
            self.set_model(model)

    def _browse_index(self) -> None:
        start = self.index_edit.text() or (str(Path(self.model_edit.text()).parent) if self.model_edit.text()
                                           else self._start_dir())
        name, _ = QFileDialog.getOpenFileName(self, "Choose the voice's retrieval index", start, INDEX_FILTER)
        if name:
            self.index_edit.setText(name)

    def _model_changed(self, text: str) -> None:
        stem = Path(text.strip()).stem if text.strip() else ""
        self.name_edit.setPlaceholderText(stem or "the model's file name")
        self.import_button.setEnabled(bool(text.strip()) and not self.importing)

    # ------------------------------------------------------------------ importing
    def start(self) -> None:
        model = self.model_edit.text().strip()
        if not model or self.importing:
            return
        self.controller.save_gui_settings(voice_import_dir=str(Path(model).expanduser().parent))
        self._show_message("Checking and copying the model\u2026")
        self._set_importing(True)
        index = self.index_edit.text().strip() or None
        fut = self.controller.import_voice(Path(model).expanduser(), Path(index).expanduser() if index else None,
                                           self.name_edit.text().strip() or None)
        if fut is None:  # the controller is shutting down
            self._set_importing(False)

    def _show_message(self, text: str, refused: bool = False) -> None:
        self.message.setText(text)
        self.message.setProperty("state", "warn" if refused else None)  # style.qss: QLabel[state="warn"]
        self.message.style().unpolish(self.message)
        self.message.style().polish(self.message)

    def _set_importing(self, on: bool) -> None:
        self.importing = on
        for w in (self.model_edit, self.index_edit, self.index_browse, self.index_clear, self.name_edit,
                  self.cancel_button):
            w.setEnabled(not on)
        self.import_button.setEnabled(not on and bool(self.model_edit.text().strip()))

    def _imported(self, info) -> None:
        if not self.importing:
            return
        self._set_importing(False)
        self.imported = info
        self._show_message(f"Imported '{info.name}'.")
        self.accept()

    def _failed(self, message: str) -> None:
        if not self.importing:
            return
        self._set_importing(False)
        self._show_message(message, refused=True)

    def reject(self) -> None:  # Esc, Cancel, the close button: not while the copy is being made
        if not self.importing:
            super().reject()

    def closeEvent(self, event) -> None:
        if self.importing:
            event.ignore()
            return
        super().closeEvent(event)
