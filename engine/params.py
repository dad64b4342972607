"""One parameter model for every user-facing setting: voices' controls and the chain around them.

A :class:`ParamSpec` is the one home of a setting: its name (with its unit), label, range, step,
the other names users may give it (``transpose`` for ``transpose_st``), and whether a change
rebuilds the voice (a neural voice's block geometry). The GUI builds its controls from specs, the
CLI and HTTP fronts hand raw values to :func:`resolve_params` once, at the edge; past it, values
are trusted. Depends on nothing in ``engine`` but errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from engine.errors import ConfigError


@dataclass(frozen=True)
class ParamSpec:
    """One user-facing control."""

    name: str  # key in the params dict, with its unit in the name: "transpose_st", "index_rate"
    label: str
    default: float | str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    unit: str = ""
    choices: tuple[str, ...] = ()  # non-empty for a choice parameter (default is then a str)
    help: str = ""
    aliases: tuple[str, ...] = ()  # other names accepted at the edge, e.g. "transpose"
    reloads: bool = False  # a change rebuilds the voice (off the audio path) instead of applying live

    def validate(self, value: Any) -> float | str:
        """Return ``value`` coerced to this parameter's type, or raise ConfigError in one sentence."""
        if self.choices:
            if value not in self.choices:
                raise ConfigError(f"{self.label} must be one of {', '.join(self.choices)}, not {value!r}.")
            return value
        if isinstance(value, bool):
            raise ConfigError(f"{self.label} must be a number, not {value!r}.")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{self.label} must be a number, not {_shown(value)}.") from None
        if not math.isfinite(number):
            raise ConfigError(f"{self.label} must be a finite number, not {_shown(value)}.")
        lo = -math.inf if self.minimum is None else self.minimum
        hi = math.inf if self.maximum is None else self.maximum
        if not lo <= number <= hi:
            raise ConfigError(
                f"{self.label} must be between {lo:g} and {hi:g}{self.unit and ' ' + self.unit}, not {number:g}."
            )
        return number

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (the HTTP API, ``autovoice voices --json``)."""
        return {"name": self.name, "label": self.label, "default": self.default, "minimum": self.minimum,
                "maximum": self.maximum, "step": self.step, "unit": self.unit, "choices": list(self.choices),
                "help": self.help, "aliases": list(self.aliases), "reloads": self.reloads}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def default_params(specs: Iterable[ParamSpec]) -> dict[str, Any]:
    return {spec.name: spec.default for spec in specs}


def reload_keys(specs: Iterable[ParamSpec]) -> tuple[str, ...]:
    """Names of the settings whose change rebuilds the voice."""
    return tuple(spec.name for spec in specs if spec.reloads)


def resolve_params(specs: Iterable[ParamSpec], raw: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """``raw`` (names or aliases -> values from a user) as canonical names -> validated values.

    ``owner`` names what the settings belong to in the sentence for an unknown name ("Voice 'deeper'").
    """
    specs = tuple(specs)
    by_name: dict[str, ParamSpec] = {}
    for spec in specs:
        by_name[spec.name] = spec
        for alias in spec.aliases:
            by_name.setdefault(alias, spec)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        spec = by_name.get(key) if isinstance(key, str) else None
        if spec is None:
            known = ", ".join(s.name for s in specs) or "none"
            raise ConfigError(f"{owner} has no setting {_shown(key)}; its settings are: {known}.")
        out[spec.name] = spec.validate(value)
    return out
