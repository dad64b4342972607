"""A check of the installed Qt binding before the app relies on it.

PySide6 6.12.0 (shiboken6 6.12.0) gives up a reference to ``None`` on every call of a method that
returns nothing (``QWidget.update()``, ``setToolTip()``...). The app makes thousands of such calls
a second while it streams (meters, waveform, pitch), so ``None``'s count reached zero and the
interpreter aborted ("deallocating None") about a minute into a stream. pyproject.toml excludes
that version; this finds it (or a later one with the same bug) in an environment set up otherwise,
before a window opens, and says what to do.
"""

from __future__ import annotations

import sys

PROBE_CALLS = 64


def none_leak_per_call(call, calls: int = PROBE_CALLS) -> float:
    """References to None lost per call of ``call`` (0 for a sound binding; 1 for the bug)."""
    call()  # first call: whatever the binding sets up once
    before = sys.getrefcount(None)
    for _ in range(calls):
        call()
    return (before - sys.getrefcount(None)) / calls


def binding_problem(call=None) -> str | None:
    """One sentence if the Qt binding leaks references to None (``call``: what to probe; default a
    hidden widget's ``update()``), else None. Needs a QApplication."""
    if call is None:
        from PySide6.QtWidgets import QWidget

        widget = QWidget()
        call = widget.update
    if none_leak_per_call(call) < 0.5:
        return None
    try:
        import PySide6

        version = PySide6.__version__
    except Exception:  # noqa: BLE001 - the message below is what matters
        version = "installed"
    return (f"The installed PySide6 {version} has a reference-counting bug that would crash AutoVoice about a "
            "minute into a stream; install another version (pip install 'PySide6-Essentials!=6.12.0', or run "
            "scripts/setup.sh again) and start it again.")
