"""Controls built from ParamSpecs, including the shapes installed (RVC) voices use."""

from __future__ import annotations

import pytest

from autovoice_desktop.widgets.param_control import ChoiceControl, NumberControl, make_control
from engine.voices.base import ParamSpec


def test_choice_spec_becomes_a_combo_that_reports_user_changes_only(qtbot):
    spec = ParamSpec("f0_method", "Pitch tracker", "fcpe", choices=("fcpe", "rmvpe", "dsp"))
    c = make_control(spec)
    qtbot.addWidget(c)
    assert isinstance(c, ChoiceControl) and c.value() == "fcpe"
    seen = []
    c.valueChanged.connect(lambda name, value: seen.append((name, value)))
    c.set_value("dsp")  # the engine telling the window: silent
    assert c.value() == "dsp" and seen == []
    c.combo.setCurrentText("rmvpe")  # the user: reported
    assert seen == [("f0_method", "rmvpe")]


def test_number_spec_slider_and_spin_edit_one_value(qtbot):
    spec = ParamSpec("index_rate", "Index rate", 0.5, 0.0, 1.0, 0.05)
    c = make_control(spec)
    qtbot.addWidget(c)
    assert isinstance(c, NumberControl) and c.spin.decimals() == 2
    seen = []
    c.valueChanged.connect(lambda name, value: seen.append(value))
    c.slider.setValue(c.slider.maximum())
    assert c.value() == pytest.approx(1.0) and seen[-1] == pytest.approx(1.0)
    c.spin.setValue(0.25)
    assert c.slider.value() == 5 and seen[-1] == pytest.approx(0.25)
    c.reset.click()
    assert c.value() == pytest.approx(0.5) and seen[-1] == pytest.approx(0.5)


def test_a_single_speaker_range_still_builds(qtbot):
    c = make_control(ParamSpec("speaker_id", "Speaker", 0.0, 0.0, 0.0, 1.0))
    qtbot.addWidget(c)
    assert c.value() == 0.0 and c.slider.maximum() == 0
