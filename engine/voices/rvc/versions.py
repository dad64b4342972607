"""RVC's model versions, written once: what each version's content features are.

=======  =================  ===============================================
version  feature size       taken from the content encoder (HuBERT-base)
=======  =================  ===============================================
v1       256                transformer layer 9, then ``final_proj`` (768 -> 256)
v2       768                transformer layer 12, as is
=======  =================  ===============================================

(fairseq ``extract_features(output_layer=L)`` is 1-based and, for HuBERT-base whose encoder is
post-norm, returns layer L's output with no extra layer norm.)
"""

from __future__ import annotations

from typing import Literal

Version = Literal["v1", "v2"]
VERSIONS: tuple[str, ...] = ("v1", "v2")

#: content feature size per version
FEATURE_DIMS: dict[str, int] = {"v1": 256, "v2": 768}

#: (1-based output layer, apply final_proj) per version
CONTENT_LAYERS: dict[str, tuple[int, bool]] = {"v1": (9, True), "v2": (12, False)}

#: the version whose features have this size
VERSION_OF_DIM: dict[int, str] = {d: v for v, d in FEATURE_DIMS.items()}


def feature_dim(version: str) -> int:
    """256 for v1, 768 for v2 (KeyError for anything else: versions are checked where files are read)."""
    return FEATURE_DIMS[version]


def sample_rate_from_name(value: object) -> int | None:
    """RVC's ``sr`` field as Hz: ``"40k"`` -> 40000, ``"44.1k"`` -> 44100, ``"32000"`` or 32000 -> 32000;
    None for anything that names no positive rate. RVC writes the three names of its releases, but its
    code runs whatever rate the config declares, so any ``<n>k`` is accepted here and checked against
    the config (and the decoder's hop) by the caller."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        hz = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        scale = 1000.0 if text.endswith("k") else 1.0
        try:
            hz = float(text[:-1] if scale > 1 else text) * scale
        except ValueError:
            return None
    else:
        return None
    if not (hz > 0 and hz == round(hz) and hz < 1e6):
        return None
    return int(round(hz))
