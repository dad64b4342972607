import json

from engine.config import AppSettings, AudioConfig, ChainConfig
from engine.settings import SettingsStore


def test_roundtrip(tmp_path):
    store = SettingsStore(tmp_path)
    s = AppSettings(audio=AudioConfig(input_device="mic", block_ms=20.0), chain=ChainConfig(output_gain_db=-3.0),
                    voice="giant", voice_params={"giant": {"transpose_st": -11.0}}, gui={"geometry": "abc"})
    store.save(s)
    loaded = SettingsStore(tmp_path).load()
    assert loaded == s
    # Readable: plain indented JSON with units in the names.
    text = (tmp_path / "settings.json").read_text()
    assert '"block_ms": 20.0' in text and text.count("\n") > 10
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]  # no temp files left behind


def test_corrupt_file_is_set_aside_and_defaults_used(tmp_path):
    (tmp_path / "settings.json").write_text('{"voice": "giant", "audio": {"block_ms": ')
    store = SettingsStore(tmp_path)
    loaded = store.load()
    assert loaded == AppSettings()
    assert store.last_warning and "could not be read" in store.last_warning
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("settings.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_text().startswith('{"voice": "giant"')


def test_out_of_range_values_are_treated_as_corrupt(tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps({"audio": {"block_ms": -5}}))
    store = SettingsStore(tmp_path)
    assert store.load() == AppSettings()
    assert "Block size" in store.last_warning


import pytest


@pytest.mark.parametrize("text", [
    '{"audio": {"sample_rate": 1e400}}',  # JSON reads this as infinity; int() of it overflows
    '{"audio": {"block_ms": "ten"}}',
    '{"chain": {"bypass": "yes"}}',
    '{"chain": {"input_gain_db": -1e400}}',
    '[1, 2, 3]',
])
def test_odd_values_are_set_aside_with_one_warning(tmp_path, text):
    (tmp_path / "settings.json").write_text(text)
    store = SettingsStore(tmp_path)
    assert store.load() == AppSettings()
    assert store.last_warning.startswith("The settings file") and "defaults are used" in store.last_warning
    assert any(p.name.startswith("settings.json.corrupt-") for p in tmp_path.iterdir())


def test_engine_restores_voice_and_params_after_restart(tmp_path):
    from engine.api import Engine

    e = Engine(store=SettingsStore(tmp_path), load_default_voice=False)
    e.load_voice("robot").result()
    e.set_chain(output_gain_db=-4.0)
    e.close()
    e2 = Engine(store=SettingsStore(tmp_path))
    try:
        assert e2.voice_name == "robot"
        assert e2.settings.chain.output_gain_db == -4.0
    finally:
        e2.close()
