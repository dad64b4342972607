"""Song conversion end to end on a real stereo song: separate, convert, mix, stems, cache, cancel, bad input."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.errors import AudioFileError, AutoVoiceError
from engine.offline.song import (SongCancelled, SongOptions, integrated_lufs, shift_polyphonic,
                                 transpose_warning)

DATA = Path(__file__).parent / "data"
SONG = DATA / "StevenMBryant_SlowMotionDream_excerpt_stereo44k.mp3"


@pytest.fixture(scope="module")
def engine():
    from engine.api import Engine

    e = Engine(load_default_voice=False, autosave=False)
    yield e
    e.close()


@pytest.fixture
def song(tmp_path) -> Path:
    """4 s of the real song, as a WAV (its own rate and channels)."""
    x, sr = sf.read(SONG, dtype="float32", always_2d=True)
    path = tmp_path / "slow_motion_dream.wav"
    sf.write(path, x[sr:5 * sr], sr, subtype="PCM_16")
    return path


def run(engine, inputs, out, **kw):
    options = kw.pop("options", SongOptions(separator="stereo"))
    return engine.convert_songs(inputs, out, voice=kw.pop("voice", "deeper"), options=options, **kw).result()


def test_a_cover_keeps_length_rate_channels_and_never_clips(engine, song, tmp_path):
    stems = tmp_path / "stems"
    stages: list[str] = []
    [r] = run(engine, [song], tmp_path / "cover.flac",
              options=SongOptions(separator="stereo", stems_dir=str(stems)),
              progress=lambda i, p: stages.append(p.stage) if not stages or stages[-1] != p.stage else None)
    assert not isinstance(r, AutoVoiceError), r
    x, sr = sf.read(song, always_2d=True)
    y, sr_y = sf.read(tmp_path / "cover.flac", always_2d=True)
    assert y.shape == x.shape and sr_y == sr
    assert np.max(np.abs(y)) < 1.0
    assert stages == ["separate", "pitch", "convert", "mix"]
    assert not r.cache_hit and set(r.stems) == {"vocals", "converted_vocals", "accompaniment"}
    for path in r.stems.values():
        s, s_sr = sf.read(path, always_2d=True)
        assert s.shape == x.shape and s_sr == sr
    # the new vocals are at the original vocals' loudness (BS.1770), within a fraction of a LU
    v, _ = sf.read(r.stems["vocals"], always_2d=True)
    c, _ = sf.read(r.stems["converted_vocals"], always_2d=True)
    assert abs(integrated_lufs(v, sr) - integrated_lufs(c, sr)) < 0.5
    # the channels differ: stereo stays stereo
    assert np.mean(np.abs(y[:, 0] - y[:, 1])) > 1e-3


def test_the_second_run_takes_the_stems_from_the_cache(engine, song, tmp_path):
    [a] = run(engine, [song], tmp_path / "a.wav")
    [b] = run(engine, [song], tmp_path / "b.wav")
    assert not a.cache_hit and b.cache_hit
    ya, _ = sf.read(tmp_path / "a.wav")
    yb, _ = sf.read(tmp_path / "b.wav")
    assert np.array_equal(ya, yb)
    # another separator is another cache entry
    [c] = run(engine, [song], tmp_path / "c.wav", options=SongOptions(separator="stereo", use_cache=True,
                                                                     key_st=0.0, vocals_db=-3.0))
    assert c.cache_hit


def test_htdemucs_end_to_end_on_a_mono_song(engine, tmp_path):
    pytest.importorskip("demucs_infer")
    from engine.separation import demucs
    from tests.separation.tiny_demucs import save_demucs_file, tiny_htdemucs

    models = Path(engine.song_models_dir())
    models.mkdir(parents=True, exist_ok=True)
    save_demucs_file(tiny_htdemucs(), models / demucs.WEIGHTS_FILE)
    x, sr = sf.read(SONG, dtype="float32", always_2d=True)
    mono = tmp_path / "mono.wav"
    sf.write(mono, x[:3 * sr].mean(axis=1), sr)
    [r] = run(engine, [mono], tmp_path / "mono_cover.wav", options=SongOptions(separator="auto"))
    assert not isinstance(r, AutoVoiceError), r
    assert r.separator == "htdemucs"
    y, sr_y = sf.read(tmp_path / "mono_cover.wav", always_2d=True)
    assert y.shape == (3 * sr, 1) and sr_y == sr and np.max(np.abs(y)) < 1.0


def test_cancel_leaves_no_output_and_no_stems(engine, song, tmp_path):
    stop = threading.Event()

    def progress(i, p):
        if p.stage == "convert" and p.fraction > 0:
            stop.set()

    stems = tmp_path / "stems"
    [r] = run(engine, [song], tmp_path / "cancelled.wav", options=SongOptions(separator="stereo", stems_dir=str(stems)),
              progress=progress, cancel=stop)
    assert isinstance(r, SongCancelled)
    assert not (tmp_path / "cancelled.wav").exists()
    assert not stems.exists() or list(stems.iterdir()) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files either


def test_bad_files_get_one_sentence_each_and_do_not_stop_the_others(engine, song, tmp_path):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are my lyrics, not a song")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(song.read_bytes()[: song.stat().st_size // 2])
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros((44100 * 2, 2), np.float32), 44100)
    out = tmp_path / "covers"
    results = run(engine, [not_audio, truncated, silent, song], out)
    assert [type(r).__name__ for r in results[:3]] == ["AudioFileError"] * 3
    assert "not an audio file" in str(results[0])
    assert "truncated" in str(results[1])
    assert "silent" in str(results[2])
    assert not isinstance(results[3], AutoVoiceError)
    assert sorted(p.name for p in out.iterdir()) == ["slow_motion_dream_deeper.wav"]


def test_too_long_is_refused_before_any_work(engine, song, tmp_path):
    [r] = run(engine, [song], tmp_path / "x.wav", options=SongOptions(separator="stereo", max_duration_s=2.0))
    assert isinstance(r, AudioFileError) and "limit" in str(r)
    assert not (tmp_path / "x.wav").exists()


def test_a_mono_song_with_the_stereo_separator_names_the_model(engine, tmp_path):
    x, sr = sf.read(SONG, dtype="float32", always_2d=True)
    mono = tmp_path / "mono.wav"
    sf.write(mono, x[:2 * sr].mean(axis=1), sr)
    [r] = run(engine, [mono], tmp_path / "m.wav")
    assert isinstance(r, AutoVoiceError) and "htdemucs" in str(r)


def test_only_octaves_keep_the_key():
    assert transpose_warning(12) is None and transpose_warning(-24) is None and transpose_warning(0) is None
    w = transpose_warning(5)
    assert "key" in w and "--key 5" in w


def test_key_shift_of_a_chord_moves_every_note():
    sr = 44100
    t = np.arange(2 * sr) / sr
    notes = (220.0, 277.18, 329.63)
    x = sum(0.2 * np.sin(2 * np.pi * f * t) for f in notes).astype(np.float32)
    y = shift_polyphonic(x, sr, 2.0)
    assert len(y) == len(x)
    seg = y[sr // 2: sr // 2 + sr] * np.hanning(sr)
    spec = np.abs(np.fft.rfft(seg, 8 * sr))
    freqs = np.fft.rfftfreq(8 * sr, 1 / sr)
    for f in notes:
        want = f * 2 ** (2 / 12)
        band = (freqs > want * 0.97) & (freqs < want * 1.03)
        got = freqs[band][np.argmax(spec[band])]
        assert abs(1200 * np.log2(got / want)) < 5, (f, got, want)
    # and nothing is left at the old pitch
    old = (freqs > 219) & (freqs < 221)
    new = (freqs > 246) & (freqs < 248)
    assert spec[old].max() < 0.05 * spec[new].max()


def test_the_limiter_touches_only_the_peaks():
    from engine.offline.song import PEAK_CEILING, limit_peaks

    sr = 44100
    t = np.arange(sr) / sr
    x = np.stack([0.5 * np.sin(2 * np.pi * 220 * t)] * 2, axis=1).astype(np.float32)
    x[sr // 2: sr // 2 + 40] += 0.9  # one loud click
    y, gain_db = limit_peaks(x, sr)
    assert np.max(np.abs(y)) <= PEAK_CEILING and gain_db < -3.0
    far = np.r_[0: sr // 4, 3 * sr // 4: sr]
    assert np.array_equal(y[far], x[far])  # away from the click nothing changed
    quiet, g0 = limit_peaks(x * 0.5, sr)
    assert g0 == 0.0 and np.array_equal(quiet, x * 0.5)


def test_a_song_over_the_limit_is_refused_from_its_header(engine, tmp_path):
    long = tmp_path / "long.flac"
    sf.write(long, np.zeros((44100 * 30, 2), np.float32) + 0.01, 44100)
    [r] = run(engine, [long], tmp_path / "x.wav", options=SongOptions(separator="stereo", max_duration_s=10.0))
    assert isinstance(r, AudioFileError) and "0.5 minutes long" in str(r) and "long.flac" in str(r)
