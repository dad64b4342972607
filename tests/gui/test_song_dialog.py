"""The Songs dialog: a real song through the real engine, off the GUI thread, with stage progress and cancel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from PySide6.QtCore import Qt

DATA = Path(__file__).parents[1] / "data"
SONG = DATA / "StevenMBryant_SlowMotionDream_excerpt_stereo44k.mp3"


def _song(tmp_path: Path, seconds: float | None = 3.0, loops: int = 1) -> Path:
    x, sr = sf.read(SONG, dtype="float32", always_2d=True)
    x = np.tile(x, (loops, 1)) if loops > 1 else x[: int(seconds * sr)]
    path = tmp_path / "dream.wav"
    sf.write(path, x, sr)
    return path


def _dialog(window, tmp_path, song):
    dlg = window.open_song_dialog()
    dlg.output_edit.setText(str(tmp_path / "covers"))
    dlg.voice_combo.setCurrentText("deeper")
    dlg.separator_combo.setCurrentIndex(dlg.separator_combo.findData("stereo"))
    dlg.add_songs([song])
    return dlg


def test_the_menu_opens_it_and_a_cover_is_made_off_the_gui_thread(window, qtbot, tmp_path):
    song = _song(tmp_path)
    dlg = _dialog(window, tmp_path, song)
    assert window.song_action.text().startswith("Song")
    dlg.stems_check.setChecked(True)
    dlg.transpose.setValue(5)
    assert "key" in dlg.key_note.text()  # the non-octave warning shows before anything runs
    stages = []
    dlg.relay.progress.connect(lambda i, p: stages.append(p.stage))
    qtbot.mouseClick(dlg.convert_button, Qt.LeftButton)
    assert dlg.cancel_button.isEnabled()  # returned at once: the work is on another thread
    qtbot.waitUntil(lambda: not dlg.running, timeout=120000)
    assert dlg.message.text().startswith("Done"), dlg.message.text()
    out = tmp_path / "covers" / "dream_deeper.wav"
    x, sr = sf.read(song, always_2d=True)
    y, sr_y = sf.read(out, always_2d=True)
    assert y.shape == x.shape and sr_y == sr
    assert sorted(p.name for p in (tmp_path / "covers" / "stems").iterdir()) == [
        "dream_accompaniment.wav", "dream_vocals.wav", "dream_vocals_deeper.wav"]
    assert {"separate", "pitch", "convert", "mix"} <= set(stages)
    assert dlg.table.item(0, dlg.COL_STAGE).text().startswith("done")
    assert dlg.preview_button.isEnabled()
    clip, clip_sr = dlg.preview_audio()
    assert clip_sr == sr and 0 < len(clip) <= 12 * sr


def test_cancel_writes_nothing(window, qtbot, tmp_path):
    song = _song(tmp_path, loops=6)
    dlg = _dialog(window, tmp_path, song)
    dlg.relay.progress.connect(lambda i, p: dlg.cancel() if p.stage == "convert" else None)
    dlg.convert_button.click()
    qtbot.waitUntil(lambda: not dlg.running, timeout=120000)
    assert dlg.message.text().startswith("Cancelled"), dlg.message.text()
    assert list((tmp_path / "covers").iterdir()) == []
    assert dlg.convert_button.isEnabled() and not dlg.cancel_button.isEnabled()


def test_a_mono_song_with_the_stereo_separator_says_what_to_install(window, qtbot, tmp_path):
    x, sr = sf.read(SONG, dtype="float32", always_2d=True)
    mono = tmp_path / "mono.wav"
    sf.write(mono, x[: 2 * sr].mean(axis=1), sr)
    dlg = _dialog(window, tmp_path, mono)
    dlg.convert_button.click()
    qtbot.waitUntil(lambda: not dlg.running, timeout=60000)
    assert "htdemucs" in dlg.table.item(0, dlg.COL_RESULT).text()


def test_the_model_download_button_installs_htdemucs(window, qtbot, tmp_path):
    import hashlib

    import pytest

    pytest.importorskip("demucs_infer")
    from tests.separation.tiny_demucs import save_demucs_file, serve_bytes, tiny_htdemucs

    body = save_demucs_file(tiny_htdemucs(), tmp_path / "tiny.th").read_bytes()

    with serve_bytes(body) as base:
        dlg = window.open_song_dialog()
        assert dlg.fetch_button.isVisibleTo(dlg) and "not installed" in dlg.separator_combo.itemText(dlg.separator_combo.findData("htdemucs"))
        dlg.model_url = f"{base}/955717e8-8726e21a.th"
        dlg.model_sha256 = hashlib.sha256(body).hexdigest()
        qtbot.mouseClick(dlg.fetch_button, Qt.LeftButton)
        qtbot.waitUntil(lambda: "installed" in dlg.message.text(), timeout=30000)
        assert not dlg.fetch_button.isVisibleTo(dlg)
        assert dlg.separator_combo.itemText(dlg.separator_combo.findData("htdemucs")) == "htdemucs"
        assert "stereo separator" not in dlg.key_note.text()
