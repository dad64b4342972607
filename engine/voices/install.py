"""Installing and removing model voices (``autovoice voices import`` / ``remove``).

An installed voice is a folder ``<data dir>/voices/<name>/``::

    model.pth | model.onnx     the user's model, copied (never moved) after it was verified
    added.index                optional faiss retrieval index, verified against the model's width
    voice.json                 what it is: kind, model, index, version, f0, sample_rate, sha256...

The folder is assembled under a temporary name and renamed into place, so an interrupted import
never leaves a half-installed voice that would show up in the list.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from engine.errors import ModelFormatError, VoiceError
from engine.voices.base import VoiceInfo
from engine.voices.builtin import PRESETS
from engine.paths import voices_dir
from engine.voices.registry import check_voice_name, get_info


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def describe_model(model: Path) -> dict:
    """Verify a model file and return what voice.json records about it (raises in one sentence)."""
    suffix = model.suffix.lower()
    if suffix == ".pth":
        from engine.voices.rvc.checkpoint import read_checkpoint

        ckpt = read_checkpoint(model)
        return {"format": "pth", "version": ckpt.version, "f0": bool(ckpt.f0), "sample_rate": int(ckpt.sample_rate),
                "speakers": int(ckpt.speakers), "feature_dim": int(ckpt.feature_dim), "info": str(ckpt.info)}
    if suffix == ".onnx":
        from engine.voices.rvc.onnx_model import load_onnx_synthesizer

        synth = load_onnx_synthesizer(model, providers=["CPUExecutionProvider"])
        return {"format": "onnx", "contract": synth.contract, "version": synth.version, "f0": bool(synth.f0),
                "formant": bool(synth.supports_formant),
                "sample_rate": int(synth.sample_rate), "feature_dim": int(synth.feature_dim)}
    raise ModelFormatError(
        f"{model.name} is not a voice model AutoVoice can use; give an RVC inference model (.pth) or an "
        "RVC ONNX export (.onnx)."
    )


def import_voice(model: Path, index: Path | None = None, name: str | None = None, base: Path | None = None) -> VoiceInfo:
    model = Path(model)
    if not model.is_file():
        raise VoiceError(f"The model file '{model}' does not exist; check the path.")
    name = check_voice_name(name or model.stem)
    if name in PRESETS:
        raise VoiceError(f"'{name}' is the name of a built-in voice; choose another name for it.")
    target = voices_dir(base) / name
    if target.exists():
        raise VoiceError(f"A voice called '{name}' is already installed; remove it first or choose another name for this one.")
    meta = describe_model(model)
    if index is not None:
        from engine.voices.rvc.index import load_index

        load_index(Path(index), feature_dim=meta["feature_dim"])
    meta.update({
        "kind": "rvc",
        "model": f"model{model.suffix.lower()}",
        "index": "added.index" if index is not None else None,
        "source": str(model.resolve()),
        "sha256": _sha256(model),
        "description": f"RVC {meta['version']} model, {meta['sample_rate'] // 1000} kHz"
                       + (", with pitch" if meta["f0"] else ", no pitch input")
                       + (", with retrieval index" if index is not None else ""),
    })
    parent = voices_dir(base)
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".import-{name}-", dir=parent))
    try:
        shutil.copyfile(model, staging / meta["model"])
        if index is not None:
            shutil.copyfile(index, staging / "added.index")
        (staging / "voice.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise VoiceError(f"Could not install '{name}' into {parent} ({exc.strerror}); check free space and permissions.") from None
    return get_info(name, base)


def remove_voice(name: str, base: Path | None = None) -> None:
    check_voice_name(name)
    if name in PRESETS:
        raise VoiceError(f"'{name}' is a built-in voice and cannot be removed.")
    target = voices_dir(base) / name
    if not (target / "voice.json").is_file():
        raise VoiceError(f"No installed voice is called '{name}'; see 'autovoice voices'.")
    shutil.rmtree(target)
