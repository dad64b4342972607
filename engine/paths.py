"""Where AutoVoice keeps things on disk: settings, installed voices, shared model files.

The ground floor: depends on nothing in ``engine``. ``AUTOVOICE_CONFIG_DIR`` and
``AUTOVOICE_DATA_DIR`` override the platform folders (tests, portable installs, containers).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "AutoVoice"


def config_dir() -> Path:
    """Where settings.json lives."""
    override = os.environ.get("AUTOVOICE_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    """Where installed voices and model files live."""
    override = os.environ.get("AUTOVOICE_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def voices_dir(base: Path | None = None) -> Path:
    """Installed voices, one folder each (``base``: a data folder other than the user's)."""
    return (base or data_dir()) / "voices"


def models_dir(base: Path | None = None) -> Path:
    """Shared model files: the content encoder (hubert_base.pt), rmvpe.pt, separation weights."""
    return (base or data_dir()) / "models"
