"""Streaming, formant-preserving pitch shifter with an independent formant shift (TD-PSOLA).

Why PSOLA and not a phase vocoder: at a ~10 ms latency budget a vocoder window cannot resolve the
harmonics of a 100 Hz voice, and its envelope correction then smears them. PSOLA cuts the input
into grains that start on the glottal pulses (pitch marks, one period apart); each grain carries
the vocal-tract response (the formants) of one pulse. Laying the same grains out at a new spacing
changes the pitch and leaves the formants where they were. Resampling each grain in time by
2^(F/12) moves the formants without touching the spacing, so pitch and formants are independent
controls. Unvoiced sound (no period) is cut at a fixed 5 ms spacing and laid out at the same
spacing, which reproduces it unchanged (apart from the formant resampling).

Grains (input time; voiced marks a_k sit on the energy peak of each glottal pulse, searched P/4
either side of one estimated period P after the previous mark; unvoiced marks are 5 ms apart)::

       a_{k-1}           a_k                     a_{k+1}
          |               |<-------- T_k -------->|
          |<---- X_k ---->|           |<- X_k+1 ->|
          |       __..--~~|~~~~~~~~~~~~~~--..__   |       grain k: rise over X_k before a_k,
                                                          flat, fall over X_{k+1} up to a_{k+1}
    X_k = (a_k - a_{k-1}) / 2, the crossfade (see RISE_VOICED; 5 ms noise grains likewise). The
    fall of grain k and the rise of grain k+1 span the same X_{k+1} and are complementary raised
    cosines, so at transpose 0 the grains sum to exactly 1 (the output is the input). The grain
    starts half a period before its pulse, not a whole period as the classic two-period Hann
    grain does, and ends on the next pulse: the half period it does not wait for is look-ahead
    saved (see below), and the pulse's own response, which carries the formants, follows the
    pulse.

Synthesis (marks s_j; the grain taken is the a_k nearest s_j)::

       s_j - X_k/phi       s_j       s_j + T_k/phi       phi = 2^(formant_st/12)

While voiced, s_{j+1} - s_j = T(m) / 2^(N/12), with T(m) the input's period at the middle m of
that output period (the mark spacings, interpolated between the centres of their intervals; see
_period_at). The output period is heard around its middle, so that is where the input is read:
the spacing after the previous grain's mark (the rule before) describes a point a quarter to half
an input period earlier when lowering, which on falling speech contours raised the measured pitch
of a ~77 Hz voice at -7 st by 12.8 cents (file path; now 1.8).

Grains keep their length at every transposition. An earlier version narrowed them to `ratio` of
it when lowering (a full period spread apart was heard at the old pitch, with the old step rule);
that left most of each lowered period silent, a pulse train whose energy above 4 kHz flickers
frame to frame. With each step taken at mid-period the pitch lands without it (worst median error
on the recordings unchanged: 2.4 cents file, 8.2 live) and those flicker "clicks" fell from
500 / 599 to 129 / 168 (live / file, benchmarks/bench_pitch_accuracy.py, every shared recording).

Streaming, in input-time samples; everything happens on internal hops of HOP samples::

    input      ... ---------------------------------------|n_in            (a multiple of HOP)
    marks      ...  a    a    a    a    a    a    a    a  |   the newest mark waits for input a
                                                          |   quarter period past it (peak search)
    grains     ... placed when their rise is about to be emitted; the flat and fall parts are
                   added a hop at a time, as emission reaches them and the input they read exists
    emitted    ... ====================|<- HOP ->|        |
                                                  n_in - LOOKAHEAD

    A grain placed at s_j uses the mark a_k nearest s_j; it must exist when emission reaches
    s_j - X_k, i.e. when n_in = s_j - X_k + LOOKAHEAD, and a_k exists once n_in >= a_k + ~0.3 P.
    So a mark up to LOOKAHEAD - 0.8 P ahead of s_j is always available: the nearest one (at most
    P/2 ahead) for voices above ~145 Hz at the live 9 ms; on lower voices, when the nearest one
    is not in yet, the one before it (up to a period early: a few ms of time mapping, never of
    pitch, which the synthesis spacing alone sets). The flat and fall parts need no look-ahead of
    their own: they are added as emission reaches them, and their length T_k is the measured
    spacing when a_{k+1} is known by then, else the predicted one; a squeezed grain (formant up)
    is shortened so that it never reads input that has not arrived.

    Output to the caller comes from a FIFO primed with HOP - 1 zeros, so any call size works:
    latency_samples = LOOKAHEAD + HOP - 1.

Live and file conversion are the same voice: the file path (``offline=True``) runs the same code
with a longer look-ahead, so every grain is the nearest one with its measured length, and marks
wait until the pitch analysis frames centred on them and up to a quarter frame either side are
in; the most periodic of those decides period and voicing (a frame that ends at a voice onset is
half silence and reads as aperiodic).

Chunked == whole: the work happens only on whole hops at absolute sample positions, so how the
caller slices the signal cannot change a single sample. All streaming state lives in the state
object; the instance holds only constants.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from engine.dsp.pitch import yin_frames, yin_lags

# Pitch range the shifter tracks. 50 Hz reaches the creaky (vocal-fry) stretches of low male
# voices: with the old 60 Hz floor a synthetic 60 +- 15 Hz creak (8% jitter) read as unvoiced or
# at >= 61 Hz on a third of its frames, which then kept their input pitch (+12 st: -68 cents; at
# 50 Hz: +1.6), and the low male test voice at -12 st measured +11.7 cents live (50 Hz: +3.7).
# 40 Hz read a 78 Hz voice with 3% jitter at two periods on 10-25% of its frames.
SHIFTER_FMIN_HZ = 50.0
SHIFTER_FMAX_HZ = 1100.0
HOP_MS = 1.0  # internal emission hop: latency grows by it, CPU per call shrinks with it
ANALYSIS_MS = 4.0  # pitch analysis interval (a multiple of HOP_MS)
LOOKAHEAD_MS = 9.0  # live: 9 ms + a 1 ms hop = 10 ms, so 20 ms with the engine's 10 ms block
# The setting for voices below ~100 Hz, whose periods outlast the 9 ms (see BuiltinVoice.hint): on a
# ~77 Hz male voice (median error, cents, -7 / +4 / +12 st): 9 ms +12.6 / +12.1 / +11.3, 16 ms
# +2.4 / +0.5 / +3.6; ~87 Hz: 9 ms +8.0 / +12.3 / +19.5, 16 ms +4.7 / -0.7 / -0.8; the ~109 Hz
# male test voice at 9 ms: +1.4 / +3.9 / +8.2.
LOW_VOICE_LOOKAHEAD_MS = 16.0
OFFLINE_LOOKAHEAD_PERIODS = 1.0  # file path: this many periods of SHIFTER_FMIN_HZ past the marks
UNVOICED_SPACING_MS = 5.0  # grain spacing for noise; short enough to keep plosives crisp
# Crossfade between grains, as a fraction of their spacing (X_k above). Half a period: a steeper
# rise (1/8 was tried, for less look-ahead) splatters every grain's onset across the spectrum and
# moved the measured formants of a female voice by +2.9 st at +7 st (1/4: +0.8, 1/2: +0.1).
RISE_VOICED = 1.0 / 2.0
RISE_UNVOICED = 1.0 / 2.0  # noise grains overlap more: no pulses to keep apart
VOICING_ON = 0.50  # YIN aperiodicity that starts a voiced run (see _hop)
VOICING_OFF = 0.65  # ... and that ends it
# Live, a voice whose period mostly outlasts the look-ahead (by LOW_VOICE_MARGIN) is told about the
# low-voice setting: the share of such voiced frames, averaged over ~LOW_VOICE_AVERAGE_S, turns the
# hint on above LOW_VOICE_ON and off below LOW_VOICE_OFF.
LOW_VOICE_MARGIN = 1.2
LOW_VOICE_AVERAGE_S = 4.0
LOW_VOICE_ON, LOW_VOICE_OFF = 0.5, 0.3
SMOOTHING_MS = 25.0  # time constant of the transpose/formant glide when a control moves
TRANSPOSE_RANGE_ST = (-24.0, 24.0)
FORMANT_RANGE_ST = (-12.0, 12.0)


@dataclass
class PitchShifterState:
    """All streaming state of one PitchShifter stream; make one with PitchShifter.init_state()."""

    pending: np.ndarray  # caller samples not yet filling a hop
    fifo: np.ndarray  # finished output not yet handed back
    hist: np.ndarray  # input history; hist[0] is absolute sample hist_start
    hist_start: int
    n_in: int  # absolute input samples consumed by hops so far
    acc: np.ndarray  # overlap-add accumulator; acc[0] is absolute (input-time) sample acc_start
    acc_start: int
    mark_pos: list[int] = field(default_factory=list)  # analysis marks, ascending
    mark_step: list[float] = field(default_factory=list)  # distance to the next mark (predicted for the last)
    mark_voiced: list[bool] = field(default_factory=list)
    period: float = 0.0  # latest period estimate in samples, 0.0 = unvoiced
    syn_pos: float = 0.0  # last placed synthesis mark (input-time samples, unrounded)
    prev_a: int | None = None  # analysis mark of the last placed grain; None before the first
    prev_ratio: float = 1.0  # pitch ratio the last grain was placed with
    # Grains whose flat/fall part is still being added: [s, a, phi, gain, T_w, fall_w, t_done]
    # (T_w, fall_w in input samples, None until fixed; t_done: last output offset from floor(s) added).
    open_grains: list = field(default_factory=list)
    transpose_st: float | None = None  # smoothed controls; None until the first call
    formant_st: float | None = None
    recent: list = field(default_factory=list)  # file path: (aperiodicity, period) of the last frames
    shift_reach: float = -math.inf  # last output sample any non-identity grain can touch
    direct: bool = True  # the last hop was emitted as the plain delayed input
    low_share: float = 0.0  # live: running share of voiced frames with a period past the look-ahead
    low_voice: bool = False  # ... above LOW_VOICE_ON (with hysteresis): see PitchShifter.low_voice_hz


class PitchShifter:
    """TD-PSOLA pitch shift with formant preservation and an independent formant shift.

    process(x, state, transpose_st, formant_st) -> (y, state); y has len(x) samples and is the
    shifted input delayed by ``latency_samples``. ``offline=True`` is the file-conversion path:
    the same voice with a longer look-ahead (better grains on low voices), not for live use.
    """

    def __init__(self, sample_rate: int = 48000, offline: bool = False, lookahead_ms: float = LOOKAHEAD_MS):
        if sample_rate < 8000:
            raise ValueError(f"PitchShifter needs a sample rate of at least 8000 Hz, got {sample_rate}.")
        self.sample_rate = int(sample_rate)
        self.offline = bool(offline)
        sr = self.sample_rate
        self.hop_samples = max(8, round(sr * HOP_MS / 1000))
        self.analysis_samples = self.hop_samples * max(1, round(ANALYSIS_MS / HOP_MS))
        self._tau_min, self._tau_max, self._frame = yin_lags(sr, SHIFTER_FMIN_HZ, SHIFTER_FMAX_HZ)
        # Live, marks are made as soon as the input allows; offline they wait until the newest
        # analysis frame is centred on them (the frame describes its centre).
        # Offline they also wait a quarter frame more, so that the frames centred up to a quarter
        # frame after them are in (see _hop).
        quarter = self._frame // 4
        self.mark_delay = self._frame // 2 + quarter if self.offline else 0
        self._best_of = 1 + (2 * quarter) // self.analysis_samples if self.offline else 1
        if self.offline:
            self.lookahead_samples = self.mark_delay + int(OFFLINE_LOOKAHEAD_PERIODS * self._tau_max)
        else:
            if not 2.0 <= lookahead_ms <= 100.0:
                raise ValueError(f"The shifter's look-ahead must be 2-100 ms, got {lookahead_ms} ms.")
            self.lookahead_samples = round(sr * lookahead_ms / 1000)
        self.latency_samples = self.lookahead_samples + self.hop_samples - 1
        self.unvoiced_spacing = float(round(sr * UNVOICED_SPACING_MS / 1000))
        self._max_len = float(self._tau_max)  # longest grain part, before formant stretching
        # History must reach the oldest sample a grain can read: a grain lagging up to a period
        # behind, stretched by formant shift -12 (x2), plus the YIN frame.
        self._hist_len = int(self.lookahead_samples + 6 * self._tau_max + self._frame + 2 * self.hop_samples)
        # Accumulator spans from the emission point to the far edge of a stretched grain placed now.
        self._acc_len = int(self.lookahead_samples + 6 * self._tau_max + 2 * self.hop_samples)
        self._smooth_samples = sr * SMOOTHING_MS / 1000
        self._low_alpha = self.analysis_samples / (sr * LOW_VOICE_AVERAGE_S)
        # Voices below this read their periods after the look-ahead has passed (see low_voice).
        self.low_voice_hz = sr / (LOW_VOICE_MARGIN * self.lookahead_samples)

    # -- public API ------------------------------------------------------------------------------

    def init_state(self) -> PitchShifterState:
        sp = self.unvoiced_spacing
        return PitchShifterState(
            pending=np.zeros(0),
            fifo=np.zeros(self.hop_samples - 1),
            hist=np.zeros(self._hist_len),
            hist_start=-self._hist_len,
            n_in=0,
            acc=np.zeros(self._acc_len),
            acc_start=-self.lookahead_samples,
            # Two marks in the silent past so the first grain has a rise.
            mark_pos=[-int(sp), 0],
            mark_step=[sp, sp],
            mark_voiced=[False, False],
            syn_pos=0.0,
        )

    def process(
        self, x: np.ndarray, state: PitchShifterState, transpose_st: float, formant_st: float
    ) -> tuple[np.ndarray, PitchShifterState]:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        n = x.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.float32), state
        transpose_st = _finite_clip(transpose_st, *TRANSPOSE_RANGE_ST)
        formant_st = _finite_clip(formant_st, *FORMANT_RANGE_ST)
        if state.transpose_st is None:  # first call: start at the requested setting, no glide
            state.transpose_st = transpose_st
            state.formant_st = formant_st
        if not np.all(np.isfinite(x)):
            x = np.where(np.isfinite(x), x, 0.0)

        hop = self.hop_samples
        buf = np.concatenate([state.pending, x]) if state.pending.size else x
        n_hops = buf.shape[0] // hop
        outs = [state.fifo]
        for h in range(n_hops):
            outs.append(self._hop(buf[h * hop : (h + 1) * hop], state, transpose_st, formant_st))
        state.pending = buf[n_hops * hop :].copy()
        fifo = np.concatenate(outs)
        y = fifo[:n]
        state.fifo = fifo[n:].copy()
        return y.astype(np.float32), state

    # -- one hop -----------------------------------------------------------------------------------

    def _hop(self, block: np.ndarray, st: PitchShifterState, transpose_target: float, formant_target: float) -> np.ndarray:
        hop = self.hop_samples
        st.hist = np.concatenate([st.hist[hop:], block])
        st.hist_start += hop
        st.n_in += hop

        if st.n_in % self.analysis_samples == 0:
            # Period from the newest frame; it describes a point ~frame/2 back (live: close enough
            # to the marks placed now, which the peak search then puts on the actual pulses).
            # Voicing with hysteresis: a clearly periodic frame (aperiodicity < VOICING_ON) starts
            # a voiced run, which lasts while frames stay under VOICING_OFF. A single threshold had
            # to choose between leaving the weak ends of syllables unshifted (the pitch jumps back
            # to the input's: 27% of voiced frames of a female voice at 0.3) and giving breath
            # noise a random pitch (85% of low-passed noise frames voiced at 0.65).
            frame = st.hist[-self._frame :][None, :]
            f0, aperiodicity = yin_frames(
                frame, self.sample_rate, SHIFTER_FMIN_HZ, SHIFTER_FMAX_HZ, voiced_threshold=VOICING_OFF
            )
            candidate = self.sample_rate / f0[0] if f0[0] > 0 else 0.0
            aper = float(aperiodicity[0]) if candidate > 0 else 1.0
            if self._best_of > 1:
                # File path: of the frames centred within a quarter frame either side of the marks
                # being made, believe the most periodic one. A frame centred on a voice onset is
                # half silence and reads as aperiodic; the one a few ms later does not (measured
                # on a low male voice at -12 st: word onsets kept their pitch for ~40 ms).
                st.recent = (st.recent + [(aper, candidate)])[-self._best_of :]
                aper, candidate = min(st.recent)
            voiced = candidate > 0 and aper < (VOICING_OFF if st.period > 0 else VOICING_ON)
            st.period = candidate if voiced else 0.0
            if voiced and not self.offline:
                low = candidate > LOW_VOICE_MARGIN * self.lookahead_samples
                st.low_share += self._low_alpha * (float(low) - st.low_share)
                st.low_voice = st.low_share > (LOW_VOICE_OFF if st.low_voice else LOW_VOICE_ON)

        self._extend_marks(st)
        self._place_grains(st, transpose_target, formant_target)

        out = st.acc[:hop].copy()
        st.acc = np.concatenate([st.acc[hop:], np.zeros(hop)])
        st.acc_start += hop
        # At transpose 0 / formant 0 the grains sum back to the input, except where a voice below
        # the lookahead's reach made them lag. So while no shifted grain reaches the emitted hop,
        # emit the delayed input itself, and crossfade over one hop when entering or leaving that
        # state.
        emit_start = st.n_in - self.lookahead_samples - hop
        direct_ok = emit_start >= st.shift_reach
        if direct_ok or st.direct:
            plain = st.hist[emit_start - st.hist_start : emit_start + hop - st.hist_start]
            if direct_ok and st.direct:
                out = plain.copy()
            else:
                ramp = (np.arange(hop) + 0.5) / hop
                if direct_ok:  # shifted -> plain
                    out = out * (1.0 - ramp) + plain * ramp
                else:  # plain -> shifted
                    out = plain * (1.0 - ramp) + out * ramp
        st.direct = direct_ok
        return out

    def _extend_marks(self, st: PitchShifterState) -> None:
        # Voiced marks sit on the energy peak of each glottal pulse, searched a quarter period
        # either side of where the period estimate predicts it. Centred on a pulse, a grain holds
        # one pulse; started between two it holds parts of both, and spacing such grains two
        # periods apart (-12 st) would still sound at the old pitch.
        horizon = st.n_in - self.mark_delay  # marks may use input before this sample
        voiced = st.period > 0
        step = st.period if voiced else self.unvoiced_spacing
        reach = int(step / 4) if voiced else 0
        smooth = max(3, int(step / 8)) | 1 if voiced else 1
        while True:
            predicted = st.mark_pos[-1] + st.mark_step[-1]
            if voiced and st.mark_voiced[-1]:
                centre = int(round(predicted))
                lo, hi = centre - reach, centre + reach
                if hi + smooth // 2 > horizon - 1:
                    break
                seg = st.hist[lo - smooth // 2 - st.hist_start : hi + smooth // 2 + 1 - st.hist_start]
                energy = np.convolve(seg * seg, _smoother(smooth), mode="valid")
                # Ties and flat (silent) stretches go to the predicted spot, not the search edge.
                bias = 1.0 - 1e-6 * np.abs(np.arange(lo, hi + 1) - centre)
                new = lo + int(np.argmax(energy * bias))
            else:
                new = int(round(predicted))
                if new > horizon - 1:  # a mark must be a sample we already hold
                    break
            new = max(new, st.mark_pos[-1] + 1)
            st.mark_step[-1] = float(new - st.mark_pos[-1])  # now final: the actual spacing
            st.mark_pos.append(new)
            st.mark_step.append(step)  # provisional until the next mark exists
            st.mark_voiced.append(voiced)
        # Forget marks far behind the synthesis point (keep a margin for the nearest-mark search).
        keep_from = min([st.syn_pos] + [g[1] for g in st.open_grains]) - 4 * self._max_len
        drop = 0
        while drop < len(st.mark_pos) - 3 and st.mark_pos[drop + 1] < keep_from:
            drop += 1
        if drop:
            del st.mark_pos[:drop], st.mark_step[:drop], st.mark_voiced[:drop]

    def _rise(self, st: PitchShifterState, k: int) -> float:
        """X_k: the crossfade before mark k, in input samples."""
        spacing = st.mark_pos[k] - st.mark_pos[k - 1] if k > 0 else st.mark_step[k]
        return (RISE_VOICED if st.mark_voiced[k] else RISE_UNVOICED) * spacing

    def _place_grains(self, st: PitchShifterState, transpose_target: float, formant_target: float) -> None:
        emit_end = st.n_in - self.lookahead_samples  # this hop emits [emit_end - hop, emit_end)
        pos = st.mark_pos
        while True:
            if st.prev_a is None:
                s = st.syn_pos
                transpose_now, formant_now = st.transpose_st, st.formant_st
            else:
                # Step from the previous grain, decided only now: by now its next mark usually
                # exists, so the step is the measured pulse spacing, not the period estimate
                # (which describes ~12 ms ago and, on falling speech contours, raised the pitch
                # of -7/-12 st by ~10 cents when used).
                step = self._spacing(st, st.prev_a) / st.prev_ratio
                if st.prev_ratio != 1.0:
                    # The output period from here to the next grain is heard around its middle,
                    # so take the input's period there (see _period_at), not the one after the
                    # previous mark.
                    for _ in range(2):
                        step = self._period_at(st, st.prev_a, st.syn_pos + 0.5 * step) / st.prev_ratio
                s = st.syn_pos + step
                # Glide the controls by the time this step covers (one-pole, in semitones).
                alpha = 1.0 - math.exp(-step / self._smooth_samples)
                transpose_now = _approach(st.transpose_st, transpose_target, alpha)
                formant_now = _approach(st.formant_st, formant_target, alpha)
            k = _nearest(pos, s, len(pos))
            voiced = st.mark_voiced[k]
            if transpose_now == 0.0 or not voiced:
                # No pitch change here: sit exactly on the mark, so transpose 0 (and noise) come
                # out sample-exact even after a stretch where the grains had to lag.
                if abs(s - pos[k]) < 0.5 * st.mark_step[k]:
                    s = float(pos[k])
            a = pos[k]
            phi = 2.0 ** (formant_now / 12.0)
            ratio = 2.0 ** (transpose_now / 12.0) if voiced else 1.0
            rise_w = max(1, int(round(self._rise(st, k))))
            if s - rise_w / phi >= emit_end:
                break
            # Power per unit time scales with the grain rate; undo it.
            gain = math.sqrt(phi / ratio)
            self._add_part(st, s, a, phi, gain, -math.inf, 0, rise_w, None, None)
            st.open_grains.append([s, a, phi, gain, None, None, 0])
            if transpose_now != 0.0 or formant_now != 0.0:
                # Its flat and fall parts end at most one longest (formant-stretched) period past s.
                st.shift_reach = max(st.shift_reach, s + 2.0 * self._max_len / phi + 2.0)
            st.syn_pos, st.prev_a, st.prev_ratio = s, a, ratio
            st.transpose_st, st.formant_st = transpose_now, formant_now
        self._advance_grains(st, emit_end)

    def _period_at(self, st: PitchShifterState, a: int, t: float) -> float:
        """The voiced period at input time t, from the measured mark spacings around voiced mark a.

        Each measured interval [a_i, a_i+1] gives a period at its centre; between centres the
        period is interpolated linearly, past the newest measured one it is held (live, that is
        the freshest measurement there is), and the search never crosses an unvoiced mark.
        """
        pos, voiced = st.mark_pos, st.mark_voiced
        i = bisect.bisect_left(pos, a)
        if i + 1 >= len(pos) or pos[i] != a:
            return self._spacing(st, a)
        while i + 2 < len(pos) and voiced[i + 1] and pos[i + 1] + pos[i + 2] <= 2.0 * t:
            i += 1
        while i > 0 and voiced[i - 1] and pos[i] + pos[i + 1] > 2.0 * t:
            i -= 1
        t0, c0 = pos[i + 1] - pos[i], 0.5 * (pos[i] + pos[i + 1])
        if t <= c0 or i + 2 >= len(pos) or not voiced[i + 1]:
            return float(t0)
        t1, c1 = pos[i + 2] - pos[i + 1], 0.5 * (pos[i + 1] + pos[i + 2])
        return t0 + (t1 - t0) * (t - c0) / (c1 - c0)

    def _spacing(self, st: PitchShifterState, a: int) -> float:
        """Distance from mark a to its successor: measured if it exists, else predicted."""
        pos = st.mark_pos
        k = bisect.bisect_left(pos, a)
        if k < len(pos) and pos[k] == a:
            return float(pos[k + 1] - a) if k + 1 < len(pos) else st.mark_step[k]
        return self.unvoiced_spacing  # pruned (cannot happen with the margins kept)

    def _advance_grains(self, st: PitchShifterState, emit_end: int) -> None:
        """Add what the next emission needs of every open grain's flat and fall parts."""
        pos = st.mark_pos
        keep = []
        for g in st.open_grains:
            s, a, phi, gain, t_w, fall_w, t_done = g
            base = math.floor(s) if phi != 1.0 else int(round(s))
            t_need = emit_end - 1 - base  # last output offset the coming emission contains
            if t_need <= t_done:
                keep.append(g)
                continue
            if t_w is None:
                # Fixed now, when first needed: the measured spacing if the next mark is in,
                # else the predicted one.
                k = bisect.bisect_left(pos, a)
                if k + 1 < len(pos) and pos[k] == a:
                    length, fall = float(pos[k + 1] - a), self._rise(st, k + 1)
                else:
                    k = min(k, len(pos) - 1)
                    length = st.mark_step[k] if pos[k] == a else self.unvoiced_spacing
                    fall = (RISE_VOICED if st.mark_voiced[k] else RISE_UNVOICED) * length
                t_w = max(1, int(round(length)))
                if phi > 1.0:
                    # A squeezed grain reads input faster than output advances; shorten it so
                    # that its last sample has arrived when it is emitted (no cut, no click).
                    t_w = max(1, min(t_w, int(self._squeeze_limit(a, base, phi))))
                fall_w = max(1, min(t_w, int(round(fall))))
                g[4], g[5] = t_w, fall_w
            t_end = math.floor(t_w / phi + (s - base)) if phi != 1.0 else t_w
            t_hi = min(t_need, t_end)
            self._add_part(st, s, a, phi, gain, t_done + 1, t_hi, None, t_w, fall_w)
            g[6] = t_hi
            if t_hi < t_end:
                keep.append(g)
        st.open_grains = keep

    def _squeeze_limit(self, a: int, base: int, phi: float) -> float:
        """Longest input length a grain squeezed by phi > 1 may have, so its input is in on time.

        Output offset t is emitted when n_in reaches base + t + LOOKAHEAD + 1 and reads input
        a + (t - frac) * phi, so input end a + L_in must be <= base + L_in / phi + LOOKAHEAD.
        """
        slack = base + self.lookahead_samples - a - 2  # 2: interpolation guard
        return max(1.0, slack / (1.0 - 1.0 / phi)) if slack > 0 else 1.0

    def _add_part(
        self, st: PitchShifterState, s: float, a: int, phi: float, gain: float,
        t_lo: float, t_hi: int, rise_w: int | None, t_w: int | None, fall_w: int | None,
    ) -> None:
        """Add output offsets t in [t_lo, t_hi] (from floor(s), or round(s) at phi 1) of grain a.

        rise_w given: the rise, input offsets -rise_w..0. Else t_w/fall_w: flat then fall, input
        offsets 1..t_w. Output offset t reads input offset (t - frac(s)) * phi.
        """
        if phi == 1.0:
            base, frac = int(round(s)), 0.0
        else:
            base = math.floor(s)
            frac = s - base
        if rise_w is not None:
            lo_t = math.ceil(-rise_w / phi + frac)
            hi_t = min(t_hi, 0)
        else:
            lo_t = max(int(t_lo), 1)
            hi_t = min(t_hi, math.floor(t_w / phi + frac))
        if hi_t < lo_t:
            return
        t_out = np.arange(lo_t, hi_t + 1, dtype=np.float64)
        off_in = (t_out - frac) * phi
        if rise_w is not None:
            w = 0.5 + 0.5 * np.cos(np.pi * np.clip(off_in / rise_w, -1.0, 0.0))
        else:
            into_fall = np.clip((off_in - (t_w - fall_w)) / fall_w, 0.0, 1.0)
            w = 0.5 + 0.5 * np.cos(np.pi * into_fall)
        src = a + off_in - st.hist_start
        if phi == 1.0:
            idx = src.astype(np.int64)
            seg = st.hist[np.clip(idx, 0, st.hist.shape[0] - 1)]
            seg = np.where(idx < st.hist.shape[0], seg, 0.0)  # never read input not yet held
        else:
            # Linear interpolation: the grains are band-limited voice, and the window is zero at
            # its far ends, so nothing past the input we hold is read.
            src = np.clip(src, 0.0, st.hist.shape[0] - 1.0)
            idx = np.minimum(np.floor(src).astype(np.int64), st.hist.shape[0] - 2)
            fr = src - idx
            seg = st.hist[idx] * (1.0 - fr) + st.hist[idx + 1] * fr
        grain = seg * w
        i0 = base + lo_t - st.acc_start
        i1 = i0 + grain.shape[0]
        # A part whose start was already emitted (a control jumped, or a voice below the
        # lookahead's reach) loses that sliver; nothing is ever wrapped around.
        j0 = max(0, -i0)
        j1 = grain.shape[0] - max(0, i1 - st.acc.shape[0])
        if j1 > j0:
            st.acc[i0 + j0 : i0 + j1] += gain * grain[j0:j1]


def _smoother(length: int) -> np.ndarray:
    return np.hanning(length + 2)[1:-1]


def _nearest(pos: list[int], s: float, usable: int) -> int:
    """Index of the mark nearest s among the first `usable` marks."""
    i = bisect.bisect_left(pos, s, 0, usable)
    if i >= usable:
        return usable - 1
    if i > 0 and s - pos[i - 1] <= pos[i] - s:
        return i - 1
    return i


def _approach(current: float, target: float, alpha: float) -> float:
    nxt = current + (target - current) * alpha
    # Snap when close so "held still" means exactly the requested value (exact transparency at 0).
    return target if abs(target - nxt) < 1e-3 else nxt


def _finite_clip(value: float, lo: float, hi: float) -> float:
    v = float(value)
    if not math.isfinite(v):
        return 0.0
    return min(max(v, lo), hi)
