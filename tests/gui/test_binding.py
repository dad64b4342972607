"""The Qt binding the app runs on keeps Python's reference counts (autovoice_desktop/binding.py):
PySide6 6.12.0 did not, and the app died about a minute into a stream."""

from __future__ import annotations

import ctypes
import sys

import numpy as np

from autovoice_desktop.binding import PROBE_CALLS, binding_problem, none_leak_per_call


def test_the_installed_binding_keeps_references_to_none(qapp):
    assert binding_problem() is None


def test_a_binding_that_drops_references_is_refused_in_one_sentence(qapp):
    decref, incref = ctypes.pythonapi.Py_DecRef, ctypes.pythonapi.Py_IncRef
    decref.argtypes = incref.argtypes = [ctypes.py_object]
    calls = []

    def leaky():  # what every void method of the bad version does
        calls.append(1)
        decref(None)

    try:
        problem = binding_problem(leaky)
    finally:
        for _ in calls:  # give the references back
            incref(None)
    assert len(calls) == PROBE_CALLS + 1
    assert problem is not None and ". " not in problem and problem.endswith(".")  # one sentence
    assert "PySide6" in problem and "install another version" in problem


def test_drawing_the_live_view_for_minutes_keeps_references_to_none(window):
    """What the window does 33 times a second while streaming (meters, waveform, pitch), 3 minutes
    of it: None's reference count must not fall (it fell by 2,200 a second with the bad binding)."""
    from autovoice_desktop.controller import ScopeFrame

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(48000)).astype(np.float32)
    f0 = np.where(rng.random(200) < 0.5, np.nan, 150.0)
    frame = ScopeFrame(x, x, 48000, -20.0, -18.0, f0, f0.copy())
    window.live_view.show_frame(frame)
    before = sys.getrefcount(None)
    for _ in range(6000):
        window.live_view.show_frame(frame)
    assert sys.getrefcount(None) - before > -100
    assert none_leak_per_call(window.live_view.update) < 0.5
