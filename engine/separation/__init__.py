"""Source separation for song conversion: vocals against everything else.

Two separators, one interface (:class:`engine.separation.base.Separator`):

* ``htdemucs`` (engine/separation/demucs.py): Demucs v4 Hybrid Transformer, through the
  ``demucs-infer`` package; needs its weight file in the models folder (fetched once, SHA-256
  checked). About 9 dB SDR on MUSDB18 vocals.
* ``stereo`` (engine/separation/stereo.py): no download. Centre-panned content against side
  content, refined by spectral masks; it cannot work on a mono mix and says so.

:func:`get_separator` picks one by name; ``auto`` is htdemucs where its weights are installed,
else stereo.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import ConfigError
from engine.separation.base import MonoMixError, SeparationCancelled, Separator, Stems

SEPARATOR_NAMES = ("auto", "htdemucs", "stereo")

__all__ = ["SEPARATOR_NAMES", "MonoMixError", "SeparationCancelled", "Separator", "Stems", "get_separator",
           "describe_separators"]


def get_separator(name: str, models_dir: Path, device: str | None = None) -> Separator:
    """The separator called ``name`` (see SEPARATOR_NAMES), its weights looked for in ``models_dir``;
    errors are one sentence."""
    from engine.separation import demucs, stereo

    name = (name or "auto").strip().lower()
    if name not in SEPARATOR_NAMES:
        raise ConfigError(f"There is no separator '{name}'; choose one of {', '.join(SEPARATOR_NAMES)}.")
    if name == "stereo":
        return stereo.StereoSeparator()
    if name == "htdemucs" or demucs.weights_path(models_dir).is_file():
        return demucs.DemucsSeparator.from_models_dir(models_dir, device=device)
    return stereo.StereoSeparator(fallback_note=demucs.missing_weights_message(models_dir))


def describe_separators(models_dir: Path) -> list[dict]:
    """Each separator, whether it can run here, and why not."""
    from engine.separation import demucs

    have = demucs.weights_path(models_dir).is_file()
    return [
        {"name": "htdemucs", "available": have, "needs_download": not have,
         "description": "Demucs v4 hybrid transformer (best quality; mono or stereo songs)",
         "note": None if have else demucs.missing_weights_message(models_dir)},
        {"name": "stereo", "available": True, "needs_download": False,
         "description": "centre against sides with spectral masks (no download; stereo songs only)",
         "note": "It cannot separate a mono mix, and centre-panned instruments leak into the vocals."},
    ]
