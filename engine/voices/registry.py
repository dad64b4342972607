"""The voices a user can pick: built-in presets plus models installed in the data folder.

Installed voices live in ``<data dir>/voices/<name>/`` with a ``voice.json`` describing them.
Names are checked against a strict pattern before they touch the file system, so a voice name
from the CLI, the GUI or an HTTP request can never point outside that folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.errors import VoiceError, VoiceNotFound
from engine.params import reload_keys
from engine.paths import models_dir, voices_dir
from engine.voices.base import Voice, VoiceInfo
from engine.voices.builtin import PRESETS, BuiltinVoice, builtin_infos

VOICE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")


def check_voice_name(name: str) -> str:
    if not isinstance(name, str) or not VOICE_NAME_RE.match(name) or ".." in name:
        raise VoiceError(
            f"{name!r} is not a valid voice name; use letters, digits, spaces, '.', '_' or '-' (at most 64)."
        )
    return name


def _installed_infos(base: Path | None) -> list[VoiceInfo]:
    folder = voices_dir(base)
    infos = []
    if not folder.is_dir():
        return infos
    for meta_path in sorted(folder.glob("*/voice.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            name = check_voice_name(meta_path.parent.name)
        except (OSError, ValueError, VoiceError):
            continue  # a broken folder must not hide the other voices; `voices` reports it
        specs = ()
        try:
            from engine.voices.rvc.voice import rvc_param_specs

            # A .pth voice always has RVC's formant; an ONNX one only when its graph can stretch the decoder.
            formant = meta.get("format") != "onnx" or bool(meta.get("formant", False))
            specs = rvc_param_specs(speakers=int(meta.get("speakers", 1)), f0=bool(meta.get("f0", True)), formant=formant)
        except ImportError:
            pass
        infos.append(
            VoiceInfo(
                name=name,
                kind=str(meta.get("kind", "rvc")),
                description=str(meta.get("description", "Installed voice model.")),
                params=specs,
                path=str(meta_path.parent),
            )
        )
    return infos


def list_voices(base: Path | None = None) -> list[VoiceInfo]:
    builtin = builtin_infos()
    taken = {v.name for v in builtin}
    return builtin + [v for v in _installed_infos(base) if v.name not in taken]


def get_info(name: str, base: Path | None = None) -> VoiceInfo:
    for info in list_voices(base):
        if info.name == name:
            return info
    check_voice_name(name)
    known = ", ".join(v.name for v in list_voices(base))
    raise VoiceNotFound(f"There is no voice called '{name}'; choose one of: {known}.")


def load_voice(name: str, base: Path | None = None, params: dict | None = None) -> Voice:
    """Build the voice called ``name`` (may take seconds for a neural model: call off the GUI thread)."""
    if name in PRESETS:
        look = (params or {}).get("lookahead_ms")
        return BuiltinVoice(PRESETS[name], lookahead_ms=float(look) if look is not None else None)
    info = get_info(name, base)
    if info.kind == "rvc":
        try:
            from engine.voices.rvc.voice import load_rvc_voice
        except ImportError as exc:
            raise VoiceError(
                f"Voice '{name}' is a neural (RVC) model, but the neural extras are not installed "
                f"({exc.name} is missing); run 'make setup' or pip install 'autovoice[neural]'."
            ) from exc
        folder = Path(info.path)
        try:
            meta = json.loads((folder / "voice.json").read_text(encoding="utf-8"))
            model = folder / str(meta["model"])
        except (OSError, ValueError, KeyError):
            raise VoiceError(f"The files of voice '{name}' in {folder} are damaged; remove it and import it again.") from None
        keys = reload_keys(info.params)
        geometry = {k: v if isinstance(v, str) else float(v) for k, v in (params or {}).items() if k in keys}
        voice = load_rvc_voice(
            model,
            models_dir=models_dir(base),
            index_path=folder / meta["index"] if meta.get("index") else None,
            **geometry,
        )
        voice.name = name
        return voice
    raise VoiceError(f"Voice '{name}' has an unknown kind '{info.kind}'; reinstall it with 'autovoice voices import'.")
