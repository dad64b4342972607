"""`autovoice convert` end to end on real files, and every kind of bad input it must refuse."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import DATA

MALE = DATA / "freesound136777_davidbain_M_xmas.wav"


def autovoice(*args, cwd=None):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "autovoice", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=cwd)


def assert_one_sentence_error(proc, *needles):
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.startswith("autovoice: error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg", ".mp3"])
def test_convert_keeps_duration_channels_and_rate(tmp_path, ext):
    x, sr = sf.read(MALE, dtype="float32")
    stereo = np.stack([x, 0.5 * x], axis=1)
    src = tmp_path / f"in{ext}"
    sf.write(src, stereo, sr)
    n_in = sf.info(src).frames
    out = tmp_path / f"out{ext}"
    proc = autovoice("convert", src, "-o", out, "--voice", "robot", "--quiet")
    assert proc.returncode == 0, proc.stderr
    info = sf.info(out)
    assert info.samplerate == sr and info.channels == 2
    # Lossy codecs pad a few ms at the ends; PCM formats are exact.
    tol = 0 if ext in (".wav", ".flac") else int(0.06 * sr)
    assert abs(info.frames - n_in) <= tol
    y, _ = sf.read(out, dtype="float32")
    assert np.sqrt(np.mean(y ** 2)) > 0.01  # sound came out


def test_natural_voice_output_is_aligned_with_input(tmp_path):
    out = tmp_path / "o.wav"
    proc = autovoice("convert", MALE, "-o", out, "--voice", "natural", "--gate", "-100", "--quiet")
    assert proc.returncode == 0, proc.stderr
    x, _ = sf.read(MALE, dtype="float32")
    y, _ = sf.read(out, dtype="float32")
    assert len(y) == len(x)
    # The voice runs at 48 kHz: the 44.1k -> 48k -> 44.1k round trip loses only the top of the band.
    snr_db = 10 * np.log10(np.sum(x ** 2) / np.sum((y - x) ** 2))
    assert snr_db > 30
    lags = np.arange(-50, 51)
    corr = [np.dot(x[100:-100], np.roll(y, -k)[100:-100]) for k in lags]
    assert lags[int(np.argmax(corr))] == 0  # aligned to the sample


def test_several_inputs_go_into_a_folder(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.flac"
    x, sr = sf.read(MALE, dtype="float32")
    sf.write(a, x[: sr], sr)
    sf.write(b, x[: sr // 2], sr)
    proc = autovoice("convert", a, b, "-o", tmp_path / "outdir", "--voice", "robot", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "outdir").iterdir()) == ["a_robot.wav", "b_robot.flac"]


def make_bad(tmp_path, kind) -> Path:
    p = tmp_path / f"{kind}.wav"
    x, sr = sf.read(MALE, dtype="float32")
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("this is not audio\n" * 100)
    elif kind == "truncated":
        full = tmp_path / "full.wav"
        sf.write(full, x, sr, subtype="PCM_16")
        data = full.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif kind == "nan":
        y = x.copy()
        y[1000:1010] = np.nan
        sf.write(p, y, sr, subtype="FLOAT")
    elif kind == "inf":
        y = x.copy()
        y[5] = np.inf
        sf.write(p, y, sr, subtype="FLOAT")
    elif kind == "rate":
        sf.write(p, x[:4000], 4000)
    elif kind == "nosamples":
        sf.write(p, np.zeros(0, np.float32), sr)
    return p


@pytest.mark.parametrize(
    "kind,needle",
    [("empty", "empty"), ("text", "not an audio file"), ("truncated", "truncated"), ("nan", "invalid samples"),
     ("inf", "invalid samples"), ("rate", "4000 Hz"), ("nosamples", "no audio")],
)
def test_bad_input_gets_one_sentence_and_no_output(tmp_path, kind, needle):
    src = make_bad(tmp_path, kind)
    out = tmp_path / "out.wav"
    proc = autovoice("convert", src, "-o", out, "--voice", "natural", "--quiet")
    assert_one_sentence_error(proc, needle)
    assert not out.exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no temp file left


def test_missing_input(tmp_path):
    proc = autovoice("convert", tmp_path / "nope.wav", "-o", tmp_path / "o.wav", "--voice", "natural")
    assert_one_sentence_error(proc, "does not exist")


def test_unknown_voice(tmp_path):
    proc = autovoice("convert", MALE, "-o", tmp_path / "o.wav", "--voice", "darth")
    assert_one_sentence_error(proc, "no voice called 'darth'")
    assert not (tmp_path / "o.wav").exists()


def test_path_like_voice_name_is_refused(tmp_path):
    proc = autovoice("convert", MALE, "-o", tmp_path / "o.wav", "--voice", "../../etc/passwd")
    assert_one_sentence_error(proc, "not a valid voice name")


def test_out_of_range_parameter(tmp_path):
    proc = autovoice("convert", MALE, "-o", tmp_path / "o.wav", "--voice", "deeper", "--transpose", "40")
    assert_one_sentence_error(proc, "transpose", "between -24 and 24")


def test_unwritable_extension_refused_before_work(tmp_path):
    proc = autovoice("convert", MALE, "-o", tmp_path / "o.xyz", "--voice", "natural")
    assert_one_sentence_error(proc, ".xyz")


def test_one_bad_file_does_not_lose_the_others(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, sf.read(MALE, dtype="float32")[0], 44100)
    bad = make_bad(tmp_path, "text")
    proc = autovoice("convert", good, bad, "-o", tmp_path / "out", "--voice", "robot", "--quiet")
    assert proc.returncode == 1
    assert (tmp_path / "out" / "good_robot.wav").exists()
    assert "not an audio file" in proc.stderr and "Traceback" not in proc.stderr


def test_voices_and_devices_commands():
    proc = autovoice("voices")
    assert proc.returncode == 0
    names = [l.split()[0] for l in proc.stdout.splitlines()]
    assert {"natural", "deeper", "higher", "male-to-female", "female-to-male", "child", "giant", "robot",
            "radio", "whisper"} <= set(names)
    proc = autovoice("devices", "--json")
    # Without any audio device this still succeeds (empty list) or explains PortAudio is missing.
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr


def test_no_subcommand_without_gui_prints_help_or_opens_gui():
    proc = autovoice("--help")
    assert proc.returncode == 0 and "live" in proc.stdout and "convert" in proc.stdout


@pytest.mark.parametrize("transpose", [-12, 7])
def test_convert_transposes_a_tone_of_known_pitch(tmp_path, transpose):
    sr = 44100
    t = np.arange(3 * sr) / sr
    x = 0.3 * np.sin(2 * np.pi * 220.0 * t) + 0.1 * np.sin(2 * np.pi * 440.0 * t)
    src = tmp_path / "tone.wav"
    sf.write(src, x.astype(np.float32), sr)
    out = tmp_path / "out.wav"
    proc = autovoice("convert", src, "-o", out, "--voice", "deeper", "--transpose", transpose, "--formant", 0,
                     "--gate", "-100", "--quiet")
    assert proc.returncode == 0, proc.stderr
    y, _ = sf.read(out, dtype="float32")
    seg = y[sr: 2 * sr] * np.hanning(sr)
    spec = np.abs(np.fft.rfft(seg, 8 * sr))
    freqs = np.fft.rfftfreq(8 * sr, 1 / sr)
    f_expected = 220.0 * 2 ** (transpose / 12)
    band = (freqs > f_expected / 1.3) & (freqs < f_expected * 1.3)
    f_peak = freqs[band][np.argmax(spec[band])]
    cents = 1200 * np.log2(f_peak / f_expected)
    assert abs(cents) < 10, (f_peak, f_expected)


@pytest.mark.parametrize("blocked", [False, True], ids=["plain", "started-with-sigint-blocked"])
def test_ctrl_c_cancels_a_long_conversion_and_leaves_nothing_partial(tmp_path, blocked):
    """Also when whoever starts it has SIGINT blocked (a child inherits the mask: a sound library
    that blocks signals on its thread hands that on)."""
    import signal

    src = tmp_path / "long.wav"
    t = np.arange(16000 * 300) / 16000
    sf.write(src, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000, subtype="PCM_16")
    out = tmp_path / "out"
    out.mkdir()
    from tests.stream_helpers import interruptible_child

    proc = subprocess.Popen([sys.executable, "-m", "autovoice", "convert", str(src), "-o", str(out / "long.wav"),
                             "--voice", "deeper"], stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible_child(block_sigint=blocked))
    seen = ""
    while "1%" not in seen and proc.poll() is None:  # wait until the conversion itself is running
        seen += proc.stderr.read(1)
    running_when_signalled = proc.poll() is None
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, (running_when_signalled, seen[-200:], err[-400:])
    assert "cancelled" in err and "nothing partial" in err
    assert list(out.iterdir()) == []  # no output and no temporary file left behind


def test_output_files_follow_the_umask(tmp_path):
    src = DATA / "cmuarctic_slt_F_arctic_a0009.wav"
    proc = autovoice("convert", src, "-o", tmp_path / "o.wav", "--voice", "natural", "--quiet")
    assert proc.returncode == 0, proc.stderr
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "o.wav").stat().st_mode & 0o777 == 0o666 & ~mask


# ---------------------------------------------------------------------- damaged files (issue 13)
from tests.damaged import FORMATS, cut, encode, huge_float_wav, without_length_header  # noqa: E402


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("fraction", [0.5, 0.97])
def test_a_truncated_file_in_any_format_is_refused_not_shortened(tmp_path, fmt, fraction):
    """Half a file, or all but its last 3 %: a user must never get silently shortened audio.
    (A cut Ogg used to convert to 31 % of its length without a word.)"""
    x, sr = sf.read(MALE, dtype="float32")
    data, ext = encode(x[: 3 * sr], sr, fmt)
    src = tmp_path / f"cut{ext}"
    src.write_bytes(cut(data, fraction))
    out = tmp_path / "out.wav"
    proc = autovoice("convert", src, "-o", out, "--voice", "natural", "--quiet")
    assert_one_sentence_error(proc, "cut.", "truncated")
    assert not out.exists()
    if fraction == 0.5:  # the whole file, once per format, is accepted
        whole = tmp_path / f"whole{ext}"
        whole.write_bytes(data)
        assert autovoice("convert", whole, "-o", out, "--voice", "natural", "--quiet").returncode == 0


def test_an_mp3_without_a_length_header_is_checked_by_its_frames(tmp_path):
    x, sr = sf.read(MALE, dtype="float32")
    data, _ = encode(x[: 3 * sr], sr, "mp3")
    bare = without_length_header(data)
    src = tmp_path / "bare.mp3"
    src.write_bytes(cut(bare, 0.6))  # cut inside a frame
    assert_one_sentence_error(autovoice("convert", src, "-o", tmp_path / "o.wav", "--quiet"), "last MP3 frame is cut off")
    # Whole but variable-bitrate: libsndfile's length estimate stops it early, which must not pass either.
    src.write_bytes(bare)
    assert_one_sentence_error(autovoice("convert", src, "-o", tmp_path / "o.wav", "--quiet"), "decoded only in part")


def test_a_float_file_with_huge_samples_is_normalised_and_says_so(tmp_path):
    """Samples of 1e30 used to come back as full-scale clipped noise. They are scaled down to
    full scale, so the result is the conversion of the same speech at full scale, with a warning."""
    x, sr = sf.read(MALE, dtype="float32")
    x = x[: 2 * sr]
    huge = tmp_path / "huge.wav"
    huge.write_bytes(huge_float_wav(x, sr))
    at_full_scale = tmp_path / "full.wav"
    sf.write(at_full_scale, x / np.max(np.abs(x)), sr, subtype="FLOAT")
    proc = autovoice("convert", huge, "-o", tmp_path / "a.wav", "--voice", "natural", "--quiet")
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if line.startswith("autovoice: warning:")]
    peak_db = 20 * np.log10(np.max(np.abs(x.astype(np.float64) * 1e30)))
    assert len(warning) == 1 and f"scaled down by {peak_db:.1f} dB" in warning[0], proc.stderr
    assert autovoice("convert", at_full_scale, "-o", tmp_path / "b.wav", "--voice", "natural", "--quiet").returncode == 0
    a, _ = sf.read(tmp_path / "a.wav", dtype="float32")
    b, _ = sf.read(tmp_path / "b.wav", dtype="float32")
    assert np.max(np.abs(a - b)) < 1e-4
    assert np.mean(np.abs(a) > 0.99) < 0.01  # speech, not clipped noise
