"""PitchShifter on real recordings: pitch lands where asked, formants stay (or move when asked),
streaming is exact, and nothing clicks, blows up or leaks noise into silence.

Pitch is judged by an independent tracker (WORLD's harvest, via pyworld), never by our own YIN.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import soundfile as sf
import soxr

from engine.dsp.pitchshift import PitchShifter

DATA = Path(__file__).parent / "data"
SR = 48000
CLIPS = {
    "male_speech": "freesound136777_davidbain_M_xmas.wav",  # ~110 Hz
    "female_speech": "cmuarctic_slt_F_arctic_a0009.wav",  # ~190 Hz
    "singing": "singing_vocadito_10_0-4s_48k.wav",  # ~125 Hz, sung
}


@lru_cache(maxsize=None)
def clip(name: str) -> np.ndarray:
    x, sr = sf.read(DATA / CLIPS[name], dtype="float64")
    if x.ndim > 1:
        x = x.mean(axis=1)
    x = soxr.resample(x, sr, SR) if sr != SR else x
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def harvest_f0(x: np.ndarray, hop_ms: float = 5.0, floor_hz: float = 40.0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyworld imports pkg_resources
        import pyworld
    y = soxr.resample(np.asarray(x, np.float64), SR, 16000)
    # Floor 40 Hz: a 110 Hz voice at -12 st sings at 55 Hz, and dips below 50.
    f0, _ = pyworld.harvest(y, 16000, f0_floor=floor_hz, f0_ceil=1100.0, frame_period=hop_ms)
    return f0


@lru_cache(maxsize=None)
def harvest_clip(name: str) -> np.ndarray:
    return harvest_f0(clip(name))


def shift(x: np.ndarray, transpose_st: float, formant_st: float, chunk: int = 480, shifter=None):
    ps = shifter or PitchShifter(SR)
    state = ps.init_state()
    out = []
    for i in range(0, len(x), chunk):
        y, state = ps.process(x[i : i + chunk], state, transpose_st, formant_st)
        out.append(y)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def aligned(y: np.ndarray, latency: int) -> np.ndarray:
    """The output with the shifter's latency removed (the tail it has not produced yet is lost)."""
    return y[latency:]


def median_cents_error(f_in: np.ndarray, f_out: np.ndarray, ratio: float) -> tuple[float, int]:
    n = min(len(f_in), len(f_out))
    a, b = f_in[:n], f_out[:n]
    both = (a > 0) & (b > 0)
    cents = 1200 * np.log2(b[both] / (a[both] * ratio))
    return float(np.median(cents)), int(both.sum())


# -- pitch -------------------------------------------------------------------------------------


@pytest.mark.parametrize("offline", [False, True], ids=["live", "file"])
@pytest.mark.parametrize("name", list(CLIPS))
@pytest.mark.parametrize("semitones", [-12, -7, 4, 12])
def test_pitch_moves_by_requested_interval_on_real_voice(name, semitones, offline):
    """Median error <= 10 cents live and <= 5 cents for file conversion. Measured: live at most
    8.2 (male, +12 st), file at most 1.1 (male, +4 st; the male voice at -12 st measured 7.6
    before the synthesis step followed the input's period at the middle of each output period,
    see test_pitch_follows_glides)."""
    x = clip(name)
    ps = PitchShifter(SR, offline=offline)
    y = shift(x, semitones, 0.0, shifter=ps)
    assert y.shape == x.shape and y.dtype == np.float32  # duration kept exactly
    err, frames = median_cents_error(harvest_clip(name), harvest_f0(aligned(y, ps.latency_samples)), 2 ** (semitones / 12))
    assert frames > 150, f"too few frames voiced in both ({frames}) to judge"
    bound = 5.0 if offline else 10.0
    assert abs(err) <= bound, f"{name} {semitones:+d} st: median error {err:+.1f} cents"


def pulse_voice(f0_hz: float, seconds: float, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    """A glottal-pulse train through two formant resonances: a vowel with a known, exact pitch.

    jitter > 0 draws every period independently around 1/f0_hz with that relative spread, as in a
    rough or creaky voice: the mean pitch is still f0_hz, but no two periods are alike."""
    n = int(seconds * SR)
    if jitter:
        rng = np.random.default_rng(seed)
        periods = SR / f0_hz * (1.0 + jitter * rng.standard_normal(int(seconds * f0_hz * 1.5) + 10))
        pulses = np.zeros(n)
        at = np.cumsum(periods)
        pulses[at[at < n].astype(int)] = 1.0
    else:
        phase = np.cumsum(np.full(n, f0_hz / SR))
        pulses = np.diff(np.floor(phase), prepend=0.0)
    return formant_filter(pulses)


def formant_filter(pulses: np.ndarray) -> np.ndarray:
    """A pulse train through two formant resonances (700 and 1200 Hz), normalised to 0.5 peak."""
    y = pulses
    for fc, bw in ((700.0, 90.0), (1200.0, 110.0)):
        r = np.exp(-np.pi * bw / SR)
        y = scipy.signal.lfilter([1.0 - r], [1.0, -2 * r * np.cos(2 * np.pi * fc / SR), r * r], y)
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def glide_voice(f_hi_hz: float, f_lo_hz: float, seconds: float, rising: bool) -> np.ndarray:
    """pulse_voice gliding between two pitches, exponentially, over and over (0.5 s per glide, ~2000
    cents a second: a fast speech contour)."""
    n = int(seconds * SR)
    frac = (np.arange(n) / SR % 0.5) / 0.5
    log_f = np.log(f_hi_hz) + (np.log(f_lo_hz) - np.log(f_hi_hz)) * (1.0 - frac if rising else frac)
    phase = np.cumsum(np.exp(log_f) / SR)
    return formant_filter(np.diff(np.floor(phase), prepend=0.0))


@pytest.mark.parametrize("rising", [False, True], ids=["falling", "rising"])
@pytest.mark.parametrize("semitones", [-12, -7, 4, 12])
def test_pitch_follows_glides_without_lag(semitones, rising):
    """The file path tracks a fast glide within 4 cents. Each output period takes the input's
    period at its own middle: taking the one after the previous grain's mark made the output's
    contour lag by a quarter to half an input period when lowering (measured -4.4 cents here on a
    rising glide at -12 st, and +12.8 on a real ~77 Hz male voice at -7 st, now +1.8)."""
    x = glide_voice(160.0, 90.0, 2.0, rising)
    ps = PitchShifter(SR, offline=True)
    y = aligned(shift(x, semitones, 0.0, shifter=ps), ps.latency_samples)
    err, frames = median_cents_error(harvest_f0(x, floor_hz=30.0)[20:], harvest_f0(y, floor_hz=30.0)[20:], 2 ** (semitones / 12))
    assert frames > 200
    assert abs(err) <= 4.0, f"{'rising' if rising else 'falling'} glide {semitones:+d} st: {err:+.2f} cents"


@pytest.mark.parametrize("f0_hz, semitones", [(110.0, -12), (110.0, 7), (220.0, -7), (220.0, 12), (300.0, 4.5)])
def test_known_pitch_tone_lands_within_5_cents(f0_hz, semitones):
    x = pulse_voice(f0_hz, 1.5)
    ps = PitchShifter(SR)
    y = aligned(shift(x, semitones, 0.0, shifter=ps), ps.latency_samples)
    f0 = harvest_f0(y[SR // 4 :])  # skip the onset
    voiced = f0[f0 > 0]
    assert voiced.size > 100
    err = 1200 * np.log2(np.median(voiced) / (f0_hz * 2 ** (semitones / 12)))
    assert abs(err) < 5.0, f"{f0_hz} Hz {semitones:+} st: {err:+.2f} cents"


@pytest.mark.parametrize("offline", [False, True], ids=["live", "file"])
@pytest.mark.parametrize("f0_hz, jitter, semitones", [(75.0, 0.0, -12), (75.0, 0.0, 12), (80.0, 0.03, -7), (80.0, 0.03, 4), (65.0, 0.06, 12)])
def test_low_and_rough_voices_land_on_pitch(f0_hz, jitter, semitones, offline):
    """Low voices (75-80 Hz: a period longer than the live look-ahead) and irregular periods
    (jitter, as in a rough or creaky voice, down to 65 Hz: below the old 60 Hz tracker floor once
    the jitter spreads it) still move by the interval asked, judged by harvest against harvest of
    the input. Known limit, not tested: a 110-130 Hz pulse train with 2-5% random jitter reads
    two periods in YIN on most frames and comes out an octave low at -7 st."""
    x = pulse_voice(f0_hz, 2.0, jitter=jitter, seed=int(f0_hz))
    ps = PitchShifter(SR, offline=offline)
    y = aligned(shift(x, semitones, 0.0, shifter=ps), ps.latency_samples)
    # Floor 30 Hz: 75 Hz at -12 st sings at 37.5 Hz, which harvest's usual 40 Hz floor reads an
    # octave up (these tones have no breath or silence for a low floor to mistake).
    err, frames = median_cents_error(harvest_f0(x, floor_hz=30.0)[50:], harvest_f0(y, floor_hz=30.0)[50:], 2 ** (semitones / 12))
    assert frames > 200
    bound = 5.0 if offline else 10.0
    assert abs(err) <= bound, f"{f0_hz} Hz jitter {jitter} {semitones:+} st: {err:+.2f} cents"


@pytest.mark.parametrize("f0_hz, lookahead_ms, hinted", [(75.0, None, True), (150.0, None, False), (75.0, 16.0, False)])
def test_a_voice_too_low_for_the_look_ahead_is_told_the_setting_that_fits(f0_hz, lookahead_ms, hinted):
    """Live, a voice whose periods outlast the look-ahead is measured late (see the README's table
    for a ~77 Hz voice); the voice says so, with the look-ahead that fits, once it has heard it."""
    from engine.voices.builtin import PRESETS, BuiltinVoice

    voice = BuiltinVoice(PRESETS["deeper"], lookahead_ms=lookahead_ms)
    state = voice.init_state()
    x = pulse_voice(f0_hz, 6.0)
    for i in range(0, len(x), 480):
        _, state = voice.process(x[i : i + 480], state, {})
    hint = voice.hint(state)
    assert (hint is not None) == hinted, hint
    if hinted:
        assert "Look-ahead to 16 ms" in hint and "7 ms more latency" in hint
    assert voice.offline_twin().hint(voice.offline_twin().init_state()) is None


# -- streaming -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transpose_st, formant_st", [(0.0, 0.0), (4.0, 0.0), (-7.0, 3.0), (12.0, -5.0)])
@pytest.mark.parametrize("offline", [False, True], ids=["live", "file"])
def test_chunked_equals_whole_for_odd_block_sizes(transpose_st, formant_st, offline):
    x = clip("male_speech")[: SR]
    ps = PitchShifter(SR, offline=offline)
    whole, _ = ps.process(x, ps.init_state(), transpose_st, formant_st)
    rng = np.random.default_rng(7)
    for sizes in ([1], [37], [480], [1000], list(rng.integers(0, 2000, 200))):
        state = ps.init_state()
        out, i, k = [], 0, 0
        while i < len(x):
            n = int(sizes[k % len(sizes)])
            k += 1
            y, state = ps.process(x[i : i + n], state, transpose_st, formant_st)
            assert y.shape == (len(x[i : i + n]),) and y.dtype == np.float32
            out.append(y)
            i += n
        np.testing.assert_allclose(np.concatenate(out), whole, atol=1e-5, err_msg=f"chunk sizes {sizes[:5]}")


@pytest.mark.parametrize("offline, lookahead_ms", [(False, None), (False, 16.0), (True, None)], ids=["live", "live-low-voice", "file"])
def test_output_is_input_delayed_by_latency_samples(offline, lookahead_ms):
    ps = PitchShifter(SR, offline=offline, **({} if lookahead_ms is None else {"lookahead_ms": lookahead_ms}))
    if lookahead_ms is not None:
        assert ps.latency_samples == round(SR * lookahead_ms / 1000) + ps.hop_samples - 1
    elif not offline:
        # <= 10 ms at 48 kHz: with the engine's 10 ms block, 20 ms of algorithmic latency.
        assert 0 < ps.latency_samples <= 480
    x = clip("female_speech")
    y = shift(x, 0.0, 0.0, chunk=333, shifter=ps)
    lags = scipy.signal.correlation_lags(len(y), len(x), mode="full")
    xc = scipy.signal.correlate(y.astype(np.float64), x.astype(np.float64), mode="full", method="fft")
    assert lags[np.argmax(xc)] == ps.latency_samples


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(np.sum((test - ref).astype(np.float64) ** 2), 1e-30)))


def test_zero_shift_is_transparent():
    """Transpose 0, formant 0 gives the input back, delayed. Measured: >150 dB SNR on the tone, the
    noise and both real voices (the rest is float32 rounding). The grains alone sum back to the
    input except where a low voice outruns the lookahead, so the shifter emits the delayed input
    itself while no shifted grain is in play; this checks that nothing else leaks in."""
    t = np.arange(SR) / SR
    for ps in (PitchShifter(SR), PitchShifter(SR, offline=True)):
        lat = ps.latency_samples
        for x in (
            (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32),
            np.random.default_rng(1).normal(0, 0.1, SR).astype(np.float32),
            clip("male_speech"),  # dips below 90 Hz: the lookahead's hardest case
            clip("singing"),
        ):
            y = shift(x, 0.0, 0.0, shifter=ps)
            assert snr_db(x[: len(x) - lat], y[lat:]) > 100.0


# -- formants ------------------------------------------------------------------------------------


def mean_lpc_envelope_db(x: np.ndarray, freqs_hz: np.ndarray, voiced_f0: np.ndarray) -> np.ndarray:
    """LPC (order 18 at 16 kHz) log-envelope averaged over frames voiced per `voiced_f0` (5 ms hop)."""
    y = soxr.resample(np.asarray(x, np.float64), SR, 16000)
    y = scipy.signal.lfilter([1.0, -0.9], [1.0], y)  # pre-emphasis, as for formant analysis
    frame, hop, order = 400, 80, 18
    win = np.hanning(frame)
    envs = []
    for i, f0 in enumerate(voiced_f0):
        start = i * hop - frame // 2
        if f0 <= 0 or start < 0 or start + frame > len(y):
            continue
        seg = y[start : start + frame] * win
        r = np.correlate(seg, seg, "full")[frame - 1 : frame + order]
        if r[0] <= 1e-9:
            continue
        r[0] *= 1.0 + 1e-6
        a = scipy.linalg.solve_toeplitz(r[:order], -r[1 : order + 1])
        _, h = scipy.signal.freqz([1.0], np.concatenate([[1.0], a]), worN=freqs_hz, fs=16000)
        env = 20 * np.log10(np.abs(h) + 1e-12)
        envs.append(env - env.mean())  # level-free: only the shape matters
    assert len(envs) > 50
    return np.mean(envs, axis=0)


def best_warp(env_in: np.ndarray, env_out: np.ndarray, freqs_hz: np.ndarray) -> tuple[float, float]:
    """The factor alpha that best maps the input envelope onto the output one: out(f) ~ in(f/alpha)."""
    band = (freqs_hz >= 300) & (freqs_hz <= 3500)
    best = (np.inf, 1.0)
    for alpha in np.exp(np.linspace(np.log(0.6), np.log(1.6), 201)):
        warped = np.interp(freqs_hz / alpha, freqs_hz, env_in)
        d = warped[band] - env_out[band]
        err = float(np.sqrt(np.mean((d - d.mean()) ** 2)))
        best = min(best, (err, float(alpha)))
    return best[1], best[0]


@pytest.mark.parametrize("name", ["male_speech", "female_speech"])
@pytest.mark.parametrize("transpose_st, formant_st", [(7.0, 0.0), (-7.0, 0.0), (0.0, 4.0), (0.0, -4.0), (5.0, -3.0)])
def test_formants_stay_put_or_move_by_formant_shift(name, transpose_st, formant_st):
    x = clip(name)
    ps = PitchShifter(SR)
    y = aligned(shift(x, transpose_st, formant_st, shifter=ps), ps.latency_samples)
    freqs = np.linspace(50, 5000, 400)
    voiced = harvest_clip(name)
    env_in = mean_lpc_envelope_db(x, freqs, voiced)
    env_out = mean_lpc_envelope_db(y, freqs, voiced)
    alpha, _ = best_warp(env_in, env_out, freqs)
    expected = 2 ** (formant_st / 12)
    # A plain resampling shifter would give alpha = 2^(transpose/12): 1.50 at +7, 0.67 at -7.
    assert abs(np.log2(alpha / expected)) * 12 < 0.8, f"formants moved by {12 * np.log2(alpha):+.2f} st, wanted {formant_st:+}"


# -- robustness ----------------------------------------------------------------------------------


def test_silence_in_gives_silence_out_and_empty_blocks_work():
    ps = PitchShifter(SR)
    state = ps.init_state()
    y, state = ps.process(np.zeros(0, np.float32), state, 5.0, 2.0)
    assert y.shape == (0,) and y.dtype == np.float32
    y, state = ps.process(np.zeros(SR, np.float32), state, 5.0, 2.0)
    assert np.all(y == 0.0)


def test_never_nan_or_inf_even_for_bad_input_and_extreme_settings():
    ps = PitchShifter(SR)
    x = clip("male_speech")[: SR].copy()
    x[1000:1010] = np.nan
    x[5000] = np.inf
    x[9000:9500] = 40.0  # far beyond full scale
    for tr, fm in ((24.0, 12.0), (-24.0, -12.0), (1e9, -1e9), (float("nan"), float("inf"))):
        y = shift(x, tr, fm, chunk=257, shifter=ps)
        assert np.all(np.isfinite(y))


def test_parameter_changes_mid_stream_do_not_click():
    """Largest sample-to-sample step with controls jumping every 100 ms stays within what the
    same voice produces with the controls held at any of those settings."""
    x = clip("female_speech")
    ps = PitchShifter(SR)
    settings = [(0.0, 0.0), (12.0, 0.0), (-7.0, 4.0), (5.0, -6.0), (-12.0, 0.0), (3.0, 3.0)]
    steady_max = max(np.max(np.abs(np.diff(shift(x, tr, fm, shifter=ps)))) for tr, fm in settings)
    state = ps.init_state()
    out = []
    for j, i in enumerate(range(0, len(x), 480)):
        tr, fm = settings[(j // 10) % len(settings)]
        y, state = ps.process(x[i : i + 480], state, tr, fm)
        out.append(y)
    jump = np.max(np.abs(np.diff(np.concatenate(out))))
    assert jump <= 1.25 * steady_max, f"step {jump:.3f} vs steady {steady_max:.3f}"


def highband_db(x: np.ndarray) -> np.ndarray:
    """Energy above 4 kHz per 5 ms frame, in dB."""
    hop = SR // 200
    n = len(x) // hop
    spec = np.fft.rfft(np.asarray(x[: n * hop], np.float64).reshape(n, hop) * np.hanning(hop), axis=1)
    return 10 * np.log10(np.sum(np.abs(spec[:, np.fft.rfftfreq(hop, 1 / SR) > 4000]) ** 2, axis=1) + 1e-10)


def spurious_clicks(x: np.ndarray, y: np.ndarray) -> int:
    """Frames whose high band jumps 12 dB over both neighbours and 6 dB over the input's there:
    a transient the shifter made (a grain cut short, a splice at a voicing change)."""
    a, b = highband_db(x), highband_db(y)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    near = np.maximum(np.maximum(a, np.roll(a, 1)), np.roll(a, -1))
    spike = np.zeros(n, bool)
    spike[1:-1] = (b[1:-1] > b[:-2] + 12) & (b[1:-1] > b[2:] + 12) & (b[1:-1] > -60)
    return int(np.sum(spike & (b > near + 6)))


@pytest.mark.parametrize("offline", [False, True], ids=["live", "file"])
@pytest.mark.parametrize("name", ["male_speech", "singing"])
def test_no_clicks_at_voicing_changes(name, offline):
    """Real voices switch between voiced and unvoiced every syllable; the grains must follow
    without a transient the input does not have. Measured (frames of 5 ms, at -7 / +5 & formant
    +2 / +12): male 1/2/0 live, 4/1/0 file; singing 0/1/0 live, 4/2/1 file. (With lowered grains
    narrowed to the pitch ratio, as before: male 13 live and 12 file at -7, nearly all on its
    lowest stretch, where each narrowed pulse stood alone in its frame.)
    A grain cut short counts on every pulse, i.e. hundreds."""
    x = clip(name)
    ps = PitchShifter(SR, offline=offline)
    for tr, fm in ((-7.0, 0.0), (5.0, 2.0), (12.0, 0.0)):
        y = aligned(shift(x, tr, fm, shifter=ps), ps.latency_samples)
        assert spurious_clicks(x, y) <= 8, f"{name} {tr:+} st / formant {fm:+}"


def test_file_conversion_uses_the_voices_longer_look_ahead_and_stays_the_same_voice():
    from engine.offline.convert import convert_signal
    from engine.voices.builtin import PRESETS, BuiltinVoice

    voice = BuiltinVoice(PRESETS["deeper"])
    twin = voice.offline_twin()
    assert twin is voice.offline_twin() and twin.offline and not voice.offline
    assert twin.latency_samples > voice.latency_samples
    x = clip("male_speech")
    params = {"transpose_st": -7.0, "formant_st": 0.0}
    y_file = convert_signal(x, SR, voice, params=params)
    ps_off = PitchShifter(SR, offline=True)
    y_direct = aligned(shift(x, -7.0, 0.0, shifter=ps_off), ps_off.latency_samples)
    # convert_signal ran the twin (the gate and gains of the Pipeline are transparent here).
    m = len(y_direct)
    assert snr_db(y_direct[: m - 2000], y_file[: m - 2000]) > 40.0
    # Same voice: live and file outputs have the same spectral envelope within a fraction of a st.
    ps_live = PitchShifter(SR)
    y_live = aligned(shift(x, -7.0, 0.0, shifter=ps_live), ps_live.latency_samples)
    freqs = np.linspace(50, 5000, 400)
    voiced = harvest_clip("male_speech")
    alpha, _ = best_warp(mean_lpc_envelope_db(y_live, freqs, voiced), mean_lpc_envelope_db(y_file, freqs, voiced), freqs)
    assert abs(12 * np.log2(alpha)) < 0.3
