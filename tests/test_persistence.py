"""What survives a restart, decided once: the desktop app and `autovoice live` remember devices,
voice, its values and the chain; `autovoice convert`, `autovoice serve` and API calls never
change saved settings (tests/server checks the server side)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.api import Engine
from engine.settings import SettingsStore

ROOT = Path(__file__).resolve().parents[1]


def autovoice(*args, env=None):
    return subprocess.run([sys.executable, "-m", "autovoice", *map(str, args)], capture_output=True, text=True,
                          timeout=180, cwd=ROOT, env=env)


def saved_session() -> SettingsStore:
    """Settings as a user's earlier session left them: voice 'deeper' at +1, gate at -50 dB."""
    e = Engine(load_default_voice=False)
    e.load_voice("deeper", {"transpose": 1.0}).result()
    e.set_chain(gate_threshold_db=-50.0)
    e.close()
    store = SettingsStore()
    assert store.path.is_file()
    return store


def test_a_live_session_is_remembered_by_the_next_one():
    e = Engine(load_default_voice=False)  # as the app and `autovoice live` make it
    e.load_voice("child", {"transpose": 3.0}).result()
    e.set_params(formant=2.0)  # an alias, resolved by the voice's spec
    e.set_chain(gate_threshold_db=-40.0, output_gain_db=-3.0)
    e.close()
    again = Engine()
    try:
        assert again.voice_name == "child"
        assert again.voice_params() == {"transpose_st": 3.0, "formant_st": 2.0, "lookahead_ms": 9.0}
        assert again.settings.chain.gate_threshold_db == -40.0 and again.settings.chain.output_gain_db == -3.0
    finally:
        again.close()


def test_convert_with_its_own_voice_and_values_leaves_saved_settings_alone(tmp_path):
    store = saved_session()
    before = store.path.read_bytes()
    src = tmp_path / "in.wav"
    t = np.arange(24000) / 24000
    sf.write(src, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 24000)
    proc = autovoice("convert", src, "-o", tmp_path / "out.wav", "--voice", "child", "--transpose", "5",
                     "--gate", "-30", "--output-gain", "-6", "--quiet", env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.wav").is_file()
    assert store.path.read_bytes() == before


def test_convert_without_a_voice_uses_the_saved_one_and_its_values(tmp_path):
    saved_session()
    e = Engine(load_default_voice=False, autosave=False)
    try:
        info, params = e.params_for(None, {"formant": -1.0})
        assert info.name == "deeper" and params == {"transpose_st": 1.0, "formant_st": -1.0, "lookahead_ms": 9.0}
        assert e.voice_params("deeper")["formant_st"] == -1.5  # the override was for that call only
    finally:
        e.close()


def test_an_engine_that_must_not_persist_writes_nothing(tmp_path):
    e = Engine(load_default_voice=False, autosave=False)  # as `autovoice convert` and `serve` make it
    try:
        e.load_voice("giant", {"transpose": -2.0}).result()
        e.set_chain(input_gain_db=6.0)
        e.set_audio(block_ms=20.0)
    finally:
        e.close()
    assert not SettingsStore().path.exists()


def test_the_low_voice_look_ahead_is_a_setting_that_rebuilds_the_voice():
    e = Engine(load_default_voice=False, autosave=False)
    try:
        e.load_voice("deeper").result()
        short = e.voice.latency_samples
        e.set_params(lookahead_ms=16.0)  # reloads the voice: its look-ahead is fixed for its life
        deadline = __import__("time").monotonic() + 20
        while e.voice.latency_samples == short and __import__("time").monotonic() < deadline:
            __import__("time").sleep(0.05)
        assert e.voice.latency_samples - short == round(0.007 * 48000)
    finally:
        e.close()
