"""Built-in voices: signal processing only, nothing to download.

Each preset is a pitch/formant setting for the formant-preserving shifter, optionally followed by a
character effect. The user's transpose/formant values start at the preset's and are saved per voice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.voices.base import ParamSpec, VoiceInfo

INTERNAL_RATE = 48000


def shift_specs(transpose_st: float, formant_st: float) -> tuple[ParamSpec, ...]:
    from engine.dsp.pitchshift import LOOKAHEAD_MS, LOW_VOICE_LOOKAHEAD_MS

    return (
        ParamSpec(
            "transpose_st", "Transpose", float(transpose_st), -24.0, 24.0, 0.1, "semitones",
            help="Pitch change; formants stay where they are unless Formant is moved too.", aliases=("transpose",),
        ),
        ParamSpec(
            "formant_st", "Formant", float(formant_st), -12.0, 12.0, 0.1, "semitones",
            help="Moves the vocal-tract resonances: up sounds smaller/younger, down larger.", aliases=("formant",),
        ),
        ParamSpec(
            "lookahead_ms", "Look-ahead", LOOKAHEAD_MS, 5.0, 40.0, 1.0, "ms", reloads=True,
            help=f"How far the shifter sees ahead: latency against accuracy. {LOW_VOICE_LOOKAHEAD_MS:g} ms suits voices "
                 "below about 100 Hz; applies when the voice is loaded.",
        ),
    )


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    transpose_st: float = 0.0
    formant_st: float = 0.0
    shift: bool = True  # run the pitch/formant shifter
    effect: str | None = None  # "robot", "whisper", "radio"


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("natural", "Your own voice through gate and gain only: the reference to compare with.", shift=False),
        Preset("deeper", "A deeper, fuller version of your voice (-4 st, formants -1.5 st).", -4.0, -1.5),
        Preset("higher", "A brighter, lighter version of your voice (+4 st, formants +1.5 st).", 4.0, 1.5),
        Preset("male-to-female", "A typical male voice moved into the female range (+8 st, formants +3 st).", 8.0, 3.0),
        Preset("female-to-male", "A typical female voice moved into the male range (-8 st, formants -3 st).", -8.0, -3.0),
        Preset("child", "A small child's voice (+7 st, formants +5 st).", 7.0, 5.0),
        Preset("giant", "A huge, slow-sounding voice (-9 st, formants -5 st).", -9.0, -5.0),
        Preset("radio", "An old radio or phone line: band-limited and slightly driven.", 0.0, 0.0, effect="radio"),
        Preset("robot", "A monotone robot at 110 Hz that keeps your words.", shift=False, effect="robot"),
        Preset("whisper", "A breathy whisper: pitch removed, words kept.", shift=False, effect="whisper"),
    )
}


def builtin_infos() -> list[VoiceInfo]:
    return [
        VoiceInfo(p.name, "builtin", p.description, shift_specs(p.transpose_st, p.formant_st) if p.shift else ())
        for p in PRESETS.values()
    ]


class BuiltinVoice:
    """A preset made into a streaming voice (see engine/voices/base.py for the contract)."""

    hop_samples = None

    def __init__(
        self, preset: Preset, sample_rate: int = INTERNAL_RATE, offline: bool = False, lookahead_ms: float | None = None
    ):
        from engine.dsp import effects

        self.preset = preset
        # offline: the file-conversion twin of the same voice (a longer look-ahead, see
        # engine/dsp/pitchshift.py); built by offline_twin(), never used live.
        self.offline = bool(offline)
        # lookahead_ms: the live shifter's look-ahead, fixed for the life of the voice because the
        # engine reads latency_samples once (None: pitchshift.LOOKAHEAD_MS, 20 ms in all at the
        # 10 ms block; pitchshift.LOW_VOICE_LOOKAHEAD_MS for voices below about 100 Hz).
        self.lookahead_ms = lookahead_ms
        self._twin = None
        self.name = preset.name
        self.sample_rate = int(sample_rate)
        self.param_specs = shift_specs(preset.transpose_st, preset.formant_st) if preset.shift else ()
        self._shifter = None
        if preset.shift:
            from engine.dsp.pitchshift import PitchShifter

            extra = {} if lookahead_ms is None else {"lookahead_ms": float(lookahead_ms)}
            self._shifter = PitchShifter(self.sample_rate, offline=self.offline, **extra)
        self._effect = {
            None: None,
            "robot": lambda: effects.Robot(self.sample_rate),
            "whisper": lambda: effects.Whisper(self.sample_rate),
            "radio": lambda: effects.Radio(self.sample_rate),
        }[preset.effect]
        self._effect = self._effect() if self._effect else None
        self.latency_samples = (self._shifter.latency_samples if self._shifter else 0) + (
            self._effect.latency_samples if self._effect else 0
        )

    def offline_twin(self) -> "BuiltinVoice":
        """The same voice for file conversion, where latency costs nothing: it sees further ahead."""
        if self.offline or self._shifter is None:
            return self
        if self._twin is None:  # NB: a benign race; two threads would build equal twins
            self._twin = BuiltinVoice(self.preset, self.sample_rate, offline=True)
        return self._twin

    def hint(self, state: dict[str, Any]) -> str | None:
        """One sentence when the speaker's voice is too low for this voice's live look-ahead, else None."""
        from engine.dsp.pitchshift import LOW_VOICE_LOOKAHEAD_MS

        sh, st = self._shifter, (state or {}).get("shift")
        if sh is None or sh.offline or st is None or not st.low_voice:
            return None
        look_ms = 1000.0 * sh.lookahead_samples / sh.sample_rate
        if look_ms >= LOW_VOICE_LOOKAHEAD_MS:
            return None
        return (f"Your voice is mostly below {sh.low_voice_hz:.0f} Hz, where a pitch period is longer than this "
                f"voice's {look_ms:.0f} ms look-ahead: set its Look-ahead to {LOW_VOICE_LOOKAHEAD_MS:.0f} ms for "
                f"accurate pitch ({LOW_VOICE_LOOKAHEAD_MS - look_ms:.0f} ms more latency).")

    def init_state(self) -> dict[str, Any]:
        return {
            "shift": self._shifter.init_state() if self._shifter else None,
            "effect": self._effect.init_state() if self._effect else None,
        }

    def process(self, block: np.ndarray, state: dict[str, Any], params: dict[str, Any]):
        y = block
        if self._shifter is not None:
            y, state["shift"] = self._shifter.process(
                y,
                state["shift"],
                float(params.get("transpose_st", self.preset.transpose_st)),
                float(params.get("formant_st", self.preset.formant_st)),
            )
        if self._effect is not None:
            y, state["effect"] = self._effect.process(y, state["effect"])
        return np.asarray(y, dtype=np.float32), state
