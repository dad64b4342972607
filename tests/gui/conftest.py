"""Fixtures for the desktop app's tests: an offscreen Qt, a real Engine in tmp folders, the window.

tests/conftest.py already points AUTOVOICE_CONFIG_DIR / AUTOVOICE_DATA_DIR at a per-test tmp folder
(autouse), so the real user's settings are never read or written here.
"""

from __future__ import annotations

import os
from pathlib import Path

# Offscreen Qt with one 1600x1000 screen (the default offscreen screen is 800x800, smaller than the
# window, and restoreGeometry() clamps to the screen, which would hide what the geometry test checks).
if os.environ.get("QT_QPA_PLATFORM", "offscreen") == "offscreen":
    os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={Path(__file__).with_name('offscreen_screen.json')}"

import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from gui_helpers import make_engine, open_window  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def styled_app(qapp):
    """The app's real style (palette + style.qss), so property-driven styles are exercised too."""
    from autovoice_desktop.app import apply_style

    apply_style(qapp)
    return qapp


@pytest.fixture
def engine():
    e = make_engine()
    yield e
    e.close()


@pytest.fixture
def window(qtbot, engine):
    w = open_window(qtbot, engine)
    yield w
    w.close()
