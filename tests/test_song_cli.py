"""`autovoice song` end to end: a folder of songs, stems, the cache, one bad file, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.conftest import DATA

SONG = DATA / "StevenMBryant_SlowMotionDream_excerpt_stereo44k.mp3"


def autovoice(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "autovoice", *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300, cwd=cwd)


def test_a_folder_of_songs_with_stems_and_the_cache(tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    x, sr = sf.read(SONG, dtype="float32", always_2d=True)
    sf.write(songs / "a.flac", x[: 4 * sr], sr)
    (songs / "b.wav").write_bytes(b"RIFF....WAVEfmt not really")  # a bad file in the batch
    out, stems = tmp_path / "covers", tmp_path / "stems"
    proc = autovoice("song", songs, "-o", out, "--voice", "deeper", "--transpose", "7", "--stems", stems,
                     "--separator", "stereo")
    assert proc.returncode == 1, proc.stderr  # one file failed ...
    errors = [l for l in proc.stderr.splitlines() if l.startswith("autovoice: error:")]
    assert len(errors) == 1 and "b.wav" in errors[0], proc.stderr
    assert "leave" in proc.stderr or "away from the song's key" in proc.stderr  # the non-octave warning
    assert "1 of 2 songs converted" in proc.stderr
    cover = out / "a_deeper.flac"  # ... and the other was still converted
    y, sr_y = sf.read(cover, always_2d=True)
    assert y.shape == (4 * sr, 2) and sr_y == sr and np.max(np.abs(y)) < 1.0
    assert sorted(p.name for p in stems.iterdir()) == ["a_accompaniment.wav", "a_vocals.wav", "a_vocals_deeper.wav"]
    assert "from the cache" not in proc.stdout
    again = autovoice("song", songs / "a.flac", "-o", tmp_path / "again.wav", "--voice", "deeper",
                      "--separator", "stereo", "--key", "12")
    assert again.returncode == 0, again.stderr
    assert "from the cache" in again.stdout and "warning: --transpose" not in again.stderr


def test_ctrl_c_stops_cleanly_and_leaves_nothing(tmp_path):
    from tests.stream_helpers import interruptible_child

    x, sr = sf.read(SONG, dtype="float32", always_2d=True)
    long_song = tmp_path / "long.wav"
    sf.write(long_song, np.tile(x, (6, 1)), sr)  # ~65 s, so the convert stage lasts several seconds
    out, stems = tmp_path / "cover.wav", tmp_path / "stems"
    proc = subprocess.Popen([sys.executable, "-m", "autovoice", "song", str(long_song), "-o", str(out),
                             "--voice", "deeper", "--separator", "stereo", "--stems", str(stems)],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ),
                            preexec_fn=interruptible_child())
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "convert [3/4]" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest_err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 130, "".join(seen) + rest_err
    assert "cancelled" in rest_err and "Traceback" not in rest_err
    assert not out.exists()
    assert not stems.exists() or list(stems.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_song_without_inputs_or_output_is_one_sentence(tmp_path):
    proc = autovoice("song", "-o", tmp_path / "x.wav")
    assert proc.returncode == 1 and "Give at least one song" in proc.stderr
    proc = autovoice("song", SONG)
    assert proc.returncode == 1 and "-o" in proc.stderr
    proc = autovoice("song", SONG, "-o", tmp_path / "x.wav", "--separator", "htdemucs")
    assert proc.returncode == 1 and "955717e8-8726e21a.th" in proc.stderr and "Traceback" not in proc.stderr


def test_a_cover_in_an_rvc_voice(tmp_path):
    import pytest

    pytest.importorskip("torch")
    from tests.rvc.helpers_frontend import tiny_fairseq_hubert_checkpoint, tiny_hubert_config
    from tests.rvc.tiny_models import write_tiny_pth

    pth = write_tiny_pth(tmp_path / "tiny.pth", "v1", True, 32000, seed=2)
    assert autovoice("voices", "import", pth).returncode == 0
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True, exist_ok=True)
    tiny_fairseq_hubert_checkpoint(models / "hubert_base.pt", tiny_hubert_config(final_dim=256))
    x, sr = sf.read(SONG, dtype="float32", always_2d=True)
    src = tmp_path / "dream.wav"
    sf.write(src, x[: 3 * sr], sr)
    out = tmp_path / "dream_tiny.wav"
    proc = autovoice("song", src, "-o", out, "--voice", "tiny", "--transpose", "12", "--separator", "stereo",
                     "--param", "f0_method=dsp", "--param", "block_ms=300", "--param", "extra_ms=400")
    assert proc.returncode == 0, proc.stderr
    assert "warning: --transpose" not in proc.stderr  # an octave keeps the key
    y, sr_y = sf.read(out, always_2d=True)
    assert y.shape == (3 * sr, 2) and sr_y == sr and np.all(np.isfinite(y)) and np.max(np.abs(y)) < 1.0
