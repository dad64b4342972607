"""Pipeline behaviour on real speech: streaming equals whole, bypass, gains, gate, bad voices."""

import numpy as np
import pytest

from engine.config import ChainConfig
from engine.dsp.resample import resample
from engine.pipeline import Pipeline
from engine.voices.builtin import PRESETS, BuiltinVoice
from tests.conftest import tone

SR = 48000
HOP = 480


@pytest.fixture
def speech48(speech_male):
    x, sr = speech_male
    return resample(x, sr, SR)[: SR * 2]


def run(pipe, x, chunks):
    state = pipe.init_state()
    out, pos = [], 0
    for n in chunks:
        y, state = pipe.process(x[pos:pos + n], state)
        out.append(y)
        pos += n
    return np.concatenate(out)


@pytest.mark.parametrize("voice", ["natural", "radio", "robot", "whisper"])
def test_chunked_equals_whole(voice, speech48):
    v = BuiltinVoice(PRESETS[voice])
    x = speech48[: HOP * 150]
    whole = run(Pipeline(v, HOP), x, [len(x)])
    rng = np.random.default_rng(1)
    sizes, left = [], len(x)
    while left:
        n = min(left, HOP * int(rng.integers(1, 7)))
        sizes.append(n)
        left -= n
    chunked = run(Pipeline(v, HOP), x, sizes)
    assert np.max(np.abs(whole - chunked)) < 1e-5


def test_natural_voice_is_transparent(speech48):
    pipe = Pipeline(BuiltinVoice(PRESETS["natural"]), HOP, ChainConfig(gate_threshold_db=-100))
    x = 0.5 * speech48[: HOP * 100]
    y = run(pipe, x, [HOP] * 100)
    assert np.max(np.abs(y - x)) < 1e-6


@pytest.mark.parametrize("voice", ["robot", "whisper"])
def test_bypass_is_the_input_delayed_by_the_reported_latency(voice, speech48):
    v = BuiltinVoice(PRESETS[voice])
    pipe = Pipeline(v, HOP, ChainConfig(bypass=True, gate_threshold_db=-100))
    x = 0.5 * speech48[: HOP * 100]
    y = run(pipe, x, [HOP] * 100)
    lat = pipe.latency_samples
    assert lat > 0
    np.testing.assert_allclose(y[lat:], x[:-lat], atol=1e-6)


def test_bypass_toggle_is_ramped_not_a_jump(speech48):
    pipe = Pipeline(BuiltinVoice(PRESETS["robot"]), HOP, ChainConfig(gate_threshold_db=-100), crossfade_samples=HOP)
    x = 0.5 * speech48[: HOP * 60]
    state = pipe.init_state()
    ys = []
    for i in range(60):
        if i == 30:
            pipe.chain = ChainConfig(bypass=True, gate_threshold_db=-100)
        y, state = pipe.process(x[i * HOP:(i + 1) * HOP], state)
        ys.append(y)
    y = np.concatenate(ys)
    # The largest sample-to-sample step around the switch stays within what the signals themselves do.
    around = np.abs(np.diff(y[29 * HOP: 32 * HOP]))
    assert around.max() < 4 * np.abs(np.diff(x)).max() + 1e-3


def test_gains_in_db(speech48):
    x = 0.1 * speech48[: HOP * 40]
    pipe = Pipeline(BuiltinVoice(PRESETS["natural"]), HOP, ChainConfig(output_gain_db=-6.0, gate_threshold_db=-100))
    y = run(pipe, x, [HOP] * 40)
    ratio = np.sqrt(np.mean(y[HOP:] ** 2) / np.mean(x[HOP:] ** 2))
    assert 20 * np.log10(ratio) == pytest.approx(-6.0, abs=0.05)


def test_gate_silences_noise_below_threshold_and_passes_speech():
    rng = np.random.default_rng(0)
    noise = (10 ** (-70 / 20) * rng.standard_normal(SR)).astype(np.float32)  # -70 dBFS hiss
    loud = tone(200, 1.0, SR, amp=0.3)
    x = np.concatenate([noise, loud + noise, noise])
    pipe = Pipeline(BuiltinVoice(PRESETS["natural"]), HOP, ChainConfig(gate_threshold_db=-50))
    y = run(pipe, x, [HOP] * (len(x) // HOP))
    rms = lambda a: np.sqrt(np.mean(a ** 2))
    assert rms(y[SR // 2: SR]) < rms(x[SR // 2: SR]) / 100  # hiss gated (> 40 dB down)
    assert rms(y[SR + SR // 10: 2 * SR]) == pytest.approx(rms(x[SR + SR // 10: 2 * SR]), rel=0.02)


def test_output_never_exceeds_full_scale():
    x = tone(300, 0.5, SR, amp=0.9)
    pipe = Pipeline(BuiltinVoice(PRESETS["natural"]), HOP, ChainConfig(input_gain_db=20, gate_threshold_db=-100))
    y = run(pipe, x, [HOP] * (len(x) // HOP))
    assert np.max(np.abs(y)) <= 1.0


class NanVoice:
    name = "nan"
    sample_rate = SR
    latency_samples = 0
    hop_samples = None
    param_specs = ()

    def init_state(self):
        return None

    def process(self, block, state, params):
        return np.full(len(block), np.nan, np.float32), state


def test_a_voice_emitting_nan_is_silenced_and_counted():
    pipe = Pipeline(NanVoice(), HOP)
    state = pipe.init_state()
    y, state = pipe.process(tone(200, 0.01, SR), state)
    assert np.all(y == 0.0)
    assert state.nonfinite_blocks == 1


def test_whole_hops_only():
    pipe = Pipeline(BuiltinVoice(PRESETS["natural"]), HOP)
    with pytest.raises(ValueError):
        pipe.process(np.zeros(HOP + 1, np.float32), pipe.init_state())
