"""The no-download stereo separator, measured on a mix whose stems are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.separation import MonoMixError
from engine.separation.metrics import sdr_db
from engine.separation.stereo import StereoSeparator
from tests.separation.mixes import known_mix

SINGING = Path(__file__).parents[1] / "data" / "singing_vocadito_10_0-4s_48k.wav"


def test_it_separates_a_centre_panned_voice_far_better_than_the_mixture():
    mix, vocals, acc = known_mix(SINGING, sample_rate=48000)
    stems = StereoSeparator().separate(mix, 48000)
    assert np.allclose(stems.vocals + stems.accompaniment, mix, atol=1e-5)
    gain_v = sdr_db(vocals, stems.vocals) - sdr_db(vocals, mix)
    gain_a = sdr_db(acc, stems.accompaniment) - sdr_db(acc, mix)
    assert gain_v > 5.0, gain_v  # measured ~9 dB
    assert gain_a > 3.0, gain_a


def test_a_mono_song_is_refused_naming_the_model_to_install():
    mix, _, _ = known_mix(SINGING, sample_rate=48000)
    with pytest.raises(MonoMixError, match="htdemucs"):
        StereoSeparator().separate(mix[:, :1], 48000)
    dual = np.repeat(mix.mean(axis=1, keepdims=True), 2, axis=1)
    with pytest.raises(MonoMixError, match="same signal"):
        StereoSeparator().separate(dual, 48000)
