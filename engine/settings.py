"""Settings that survive a restart: one readable JSON file in the platform's config folder.

* Written atomically (temp file in the same folder, fsync, ``os.replace``) so a crash mid-write
  never leaves half a file.
* A file that cannot be read (corrupt JSON, wrong types, values out of range) is renamed aside to
  ``settings.json.corrupt-<time>`` with a warning, and defaults are used: the user's old file is
  kept for inspection, never silently overwritten.
* ``AUTOVOICE_CONFIG_DIR`` overrides the folder (tests, portable installs).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.accelerators import parse_device_spec
from engine.config import AppSettings, AudioConfig, ChainConfig
from engine.errors import AutoVoiceError
from engine.paths import config_dir

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class SettingsStore:
    """Loads and saves ``AppSettings`` as ``settings.json``."""

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder) if folder is not None else config_dir()
        self.path = self.folder / "settings.json"
        self.last_warning: str | None = None

    def load(self) -> AppSettings:
        self.last_warning = None
        if not self.path.exists():
            return AppSettings()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("top level is not an object")
            return self._from_dict(data)
        except (ValueError, TypeError, ArithmeticError, AutoVoiceError, OSError, UnicodeDecodeError) as exc:
            aside = self.path.with_name(f"settings.json.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            try:
                os.replace(self.path, aside)
                where = f"it was moved to {aside}"
            except OSError:
                where = "it could not be moved aside"
            self.last_warning = (
                f"The settings file {self.path} could not be read ({exc}); {where} and defaults are used."
            )
            log.warning(self.last_warning)
            return AppSettings()

    def save(self, settings: AppSettings) -> None:
        payload = {
            "schema": SCHEMA_VERSION,
            "voice": settings.voice,
            "audio": settings.audio.to_dict(),
            "chain": settings.chain.to_dict(),
            "voice_params": settings.voice_params,
            "gui": settings.gui,
            "compute_device": settings.compute_device,
        }
        atomic_write_text(self.path, json.dumps(payload, indent=2, sort_keys=True) + "\n")

    @staticmethod
    def _from_dict(data: dict[str, Any]) -> AppSettings:
        voice = data.get("voice", AppSettings().voice)
        if not isinstance(voice, str):
            raise ValueError("'voice' is not a string")
        voice_params = data.get("voice_params", {})
        if not isinstance(voice_params, dict) or not all(isinstance(v, dict) for v in voice_params.values()):
            raise ValueError("'voice_params' is not a mapping of voice names to settings")
        gui = data.get("gui", {})
        if not isinstance(gui, dict):
            raise ValueError("'gui' is not an object")
        compute_device = parse_device_spec(data.get("compute_device", "auto"))  # ValueError: set aside
        return AppSettings(
            compute_device=compute_device,
            audio=AudioConfig.from_dict(dict(data.get("audio", {}))),
            chain=ChainConfig.from_dict(dict(data.get("chain", {}))),
            voice=voice,
            voice_params=voice_params,
            gui=gui,
        )
