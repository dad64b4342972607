"""Importing and removing voices from the Voice panel, with tiny RVC models in the real formats."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

pytest.importorskip("torch")

from tests.rvc.helpers_frontend import (  # noqa: E402
    build_ivf_flat_index, tiny_fairseq_hubert_checkpoint, tiny_hubert_config,
)
from tests.rvc.tiny_models import write_malicious_pth, write_tiny_pth, write_training_checkpoint  # noqa: E402


def data_dir() -> Path:
    return Path(os.environ["AUTOVOICE_DATA_DIR"])  # a per-test tmp folder (tests/conftest.py)


def install_content_encoder() -> None:
    """A tiny hubert_base.pt in the real fairseq format, so an imported RVC voice loads (in ~0.5 s)."""
    models = data_dir() / "models"
    models.mkdir(parents=True, exist_ok=True)
    tiny_fairseq_hubert_checkpoint(models / "hubert_base.pt", tiny_hubert_config(final_dim=256))


def listed(window) -> list[str]:
    return [window.voice_list.item(i).data(Qt.UserRole) for i in range(window.voice_list.count())]


def feed_file_dialogs(monkeypatch, *paths: Path) -> list[str]:
    """QFileDialog.getOpenFileName answers these paths in turn; returns the titles it was asked with."""
    answers, titles = [str(p) for p in paths], []

    def get_open_file_name(parent, caption="", directory="", filter="", *a, **k):
        titles.append(caption)
        return (answers.pop(0) if answers else "", "")

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(get_open_file_name))
    return titles


def test_import_a_tiny_rvc_voice_with_its_index_selects_and_loads_it(window, qtbot, tmp_path, monkeypatch):
    import faiss

    install_content_encoder()
    src = tmp_path / "downloads"
    src.mkdir()
    model = write_tiny_pth(src / "Tiny Alice.pth", "v1", True, 32000, seed=2)
    index_path = tmp_path / "elsewhere" / "added_IVF4_Flat_nprobe_1_Tiny_v1.index"
    index_path.parent.mkdir()
    vectors = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)  # v1: 256-wide features
    faiss.write_index(build_ivf_flat_index(vectors), str(index_path))
    titles = feed_file_dialogs(monkeypatch, model, index_path)

    before = listed(window)
    window.import_button.click()
    dlg = window.import_dialog
    assert dlg is not None and dlg.isVisible()
    assert dlg.model_edit.text() == str(model)
    assert dlg.name_edit.placeholderText() == "Tiny Alice"  # the name defaults to the file's stem
    assert dlg.index_edit.text() == ""  # no index beside the model: optional, left empty
    dlg.index_browse.click()  # the second file dialog: the index
    assert dlg.index_edit.text() == str(index_path)
    assert "model" in titles[0].lower() and "index" in titles[1].lower()

    qtbot.mouseClick(dlg.import_button, Qt.LeftButton)
    assert dlg.importing and not dlg.cancel_button.isEnabled()  # the copy runs off the GUI thread
    qtbot.waitUntil(lambda: not dlg.isVisible(), timeout=10000)
    assert dlg.imported.name == "Tiny Alice"
    assert listed(window) == before + ["Tiny Alice"]
    # Selected, and loaded as the current voice with its own controls.
    qtbot.waitUntil(lambda: window.controller.engine.voice_name == "Tiny Alice" and not window.controller.busy, timeout=10000)
    assert window.voice_list.currentItem().data(Qt.UserRole) == "Tiny Alice"
    assert {"transpose_st", "index_rate", "f0_method"} <= set(window.param_controls)
    assert "with retrieval index" in window.voice_description.text()
    assert window.remove_button.isEnabled()
    assert not window.message_banner.isVisible()
    installed = data_dir() / "voices" / "Tiny Alice"
    assert (installed / "model.pth").is_file() and (installed / "added.index").is_file()
    assert model.is_file()  # copied, never moved


def test_refused_files_show_one_sentence_and_change_nothing(window, qtbot, tmp_path, monkeypatch):
    from engine.voices.install import import_voice

    already = write_tiny_pth(tmp_path / "Taken.pth", "v1", True, 32000)
    import_voice(already)  # installed beforehand, outside the app
    window.controller.refresh_voices()
    qtbot.waitUntil(lambda: "Taken" in listed(window), timeout=5000)
    before_list = listed(window)
    before_dirs = sorted(p.name for p in (data_dir() / "voices").iterdir())

    marker = tmp_path / "pwned"
    text_file = tmp_path / "notes.pth"
    text_file.write_text("these are my notes, not a model")
    wrong_ext = tmp_path / "voice.ckpt"
    write_tiny_pth(wrong_ext)
    cases = [
        (text_file, "notes.pth"),
        (write_malicious_pth(tmp_path / "evil.pth", marker), "evil.pth"),
        (write_training_checkpoint(tmp_path / "G_2333.pth"), "training checkpoint"),
        (wrong_ext, "voice.ckpt"),
        (already, "already installed"),
    ]
    for path, needle in cases:
        feed_file_dialogs(monkeypatch, path)
        window.message_banner.hide()
        dlg = window.import_voice_clicked()
        dlg.import_button.click()
        qtbot.waitUntil(lambda: not dlg.importing, timeout=10000)
        sentence = dlg.message.text()
        assert needle in sentence, sentence
        assert "Traceback" not in sentence and "\n" not in sentence and sentence.endswith("."), sentence
        # The same sentence in the window's message bar; the dialog stays open to pick another file.
        assert window.message_banner.isVisible() and window.message_banner.label.text() == sentence
        assert dlg.isVisible() and dlg.import_button.isEnabled() and dlg.cancel_button.isEnabled()
        assert listed(window) == before_list
        assert window.controller.engine.voice_name == "deeper"
        dlg.cancel_button.click()
        assert not dlg.isVisible()
    assert not marker.exists()  # the malicious pickle never ran
    assert sorted(p.name for p in (data_dir() / "voices").iterdir()) == before_dirs  # no leftovers either


def test_remove_the_current_voice_falls_back_to_the_default(window, qtbot, tmp_path, monkeypatch):
    from engine.voices.install import import_voice

    install_content_encoder()
    import_voice(write_tiny_pth(tmp_path / "Tiny.pth", "v1", True, 32000, seed=2))
    window.controller.refresh_voices()
    qtbot.waitUntil(lambda: "Tiny" in listed(window), timeout=5000)
    assert not window.remove_button.isEnabled()  # "deeper" is built in
    assert "Built-in" in window.remove_button.toolTip()

    items = {listed(window)[i]: window.voice_list.item(i) for i in range(window.voice_list.count())}
    window.voice_list.setCurrentItem(items["Tiny"])
    qtbot.waitUntil(lambda: window.controller.engine.voice_name == "Tiny" and not window.controller.busy, timeout=10000)
    assert window.remove_button.isEnabled()

    asked = []
    answer = [QMessageBox.Cancel]
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda parent, title, text, *a, **k: (asked.append(text),
                                                                                                     answer[0])[1]))
    window.remove_button.click()  # the user thinks again
    assert len(asked) == 1 and "'Tiny'" in asked[0] and "default voice" in asked[0]
    window.controller.wait_idle()
    assert "Tiny" in listed(window) and (data_dir() / "voices" / "Tiny").is_dir()

    answer[0] = QMessageBox.Yes
    window.remove_button.click()
    qtbot.waitUntil(lambda: "Tiny" not in listed(window) and not window.controller.busy, timeout=10000)
    assert window.controller.engine.voice_name == "deeper"
    assert window.voice_list.currentItem().data(Qt.UserRole) == "deeper"
    assert set(window.param_controls) == {"transpose_st", "formant_st", "lookahead_ms"}
    assert not (data_dir() / "voices" / "Tiny").exists()
    assert not window.remove_button.isEnabled()
    assert not window.message_banner.isVisible()


def test_a_voice_that_cannot_load_can_still_be_removed_from_its_menu(window, qtbot, tmp_path, monkeypatch):
    from engine.voices.install import import_voice

    import_voice(write_tiny_pth(tmp_path / "NoEncoder.pth", "v1", True, 32000))  # no hubert_base.pt installed
    window.controller.refresh_voices()
    qtbot.waitUntil(lambda: "NoEncoder" in listed(window), timeout=5000)
    item = window.voice_list.item(listed(window).index("NoEncoder"))
    window.voice_list.setCurrentItem(item)
    qtbot.waitUntil(lambda: window.message_banner.isVisible() and not window.controller.busy, timeout=10000)
    assert "hubert_base.pt" in window.message_banner.label.text()
    assert window.voice_list.currentItem().data(Qt.UserRole) == "deeper"  # the list shows what is loaded

    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.Yes))
    builtin_menu = window.voice_menu(window.voice_list.item(listed(window).index("robot")))
    assert not next(a for a in builtin_menu.actions() if a.objectName() == "removeVoiceAction").isEnabled()
    menu = window.voice_menu(item)
    remove = next(a for a in menu.actions() if a.objectName() == "removeVoiceAction")
    assert remove.isEnabled() and "NoEncoder" in remove.text()
    remove.trigger()
    qtbot.waitUntil(lambda: "NoEncoder" not in listed(window) and not window.controller.busy, timeout=10000)
    assert window.controller.engine.voice_name == "deeper"
    assert not (data_dir() / "voices" / "NoEncoder").exists()
