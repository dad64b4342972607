"""Controls built from a voice's ParamSpecs: slider + spin box for numbers, combo box for choices.

A control emits ``valueChanged(name, value)`` only for user changes; ``set_value`` (the engine telling
the window what is in effect) is silent, so the two never ping-pong.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QSlider, QToolButton, QWidget

from engine.api import ParamSpec


def _decimals(step: float) -> int:
    if step <= 0 or step >= 1:
        return 0 if step >= 1 and float(step).is_integer() else 2
    return min(4, max(0, int(math.ceil(-math.log10(step) - 1e-9))))


class ParamControl(QWidget):
    """Base: a row with the parameter's value editor; the label lives in the form layout."""

    valueChanged = Signal(str, object)

    def __init__(self, spec: ParamSpec, parent: QWidget | None = None):
        super().__init__(parent)
        self.spec = spec
        self.setObjectName(f"param_{spec.name}")
        tip = spec.help or spec.label
        self.setToolTip(tip)

    def value(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def set_value(self, value: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def label_text(self) -> str:
        return self.spec.label


class NumberControl(ParamControl):
    """Slider for quick moves, spin box for exact values; both edit the same number."""

    def __init__(self, spec: ParamSpec, parent: QWidget | None = None):
        super().__init__(spec, parent)
        lo = spec.minimum if spec.minimum is not None else -100.0
        hi = spec.maximum if spec.maximum is not None else 100.0
        step = spec.step or (hi - lo) / 200.0 or 1.0
        self._lo, self._step = lo, step
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, int(round((hi - lo) / step)))
        self.slider.setSingleStep(1)
        self.slider.setPageStep(max(1, int(round(1.0 / step))) if step < 1 else 1)
        self.slider.setToolTip(self.toolTip())
        self.spin = QDoubleSpinBox()
        self.spin.setObjectName(f"spin_{spec.name}")
        self.spin.setRange(lo, hi)
        self.spin.setSingleStep(step)
        self.spin.setDecimals(_decimals(step))
        self.spin.setKeyboardTracking(False)  # typing "-1" must not apply "-" then "-1"
        if spec.unit:
            self.spin.setSuffix(" " + _short_unit(spec.unit))
        self.spin.setMinimumWidth(96)
        self.spin.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        self.spin.setToolTip(self.toolTip())
        self.reset = QToolButton()
        self.reset.setText("\u21ba")
        self.reset.setToolTip(f"Back to the default: {_fmt(spec.default)} {spec.unit}".rstrip())
        self.reset.setAutoRaise(True)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.spin)
        lay.addWidget(self.reset)
        self._quiet = False
        self.set_value(spec.default)
        self.slider.valueChanged.connect(self._slider_moved)
        self.spin.valueChanged.connect(self._spin_changed)
        self.reset.clicked.connect(lambda: self._user_set(float(spec.default)))

    def _to_slider(self, value: float) -> int:
        return int(round((value - self._lo) / self._step))

    def _from_slider(self, pos: int) -> float:
        return round(self._lo + pos * self._step, 6)

    def _slider_moved(self, pos: int) -> None:
        if self._quiet:
            return
        self._user_set(self._from_slider(pos))

    def _spin_changed(self, value: float) -> None:
        if self._quiet:
            return
        self._user_set(value)

    def _user_set(self, value: float) -> None:
        self.set_value(value)
        self.valueChanged.emit(self.spec.name, self.value())

    def value(self) -> float:
        return float(self.spin.value())

    def set_value(self, value: Any) -> None:
        self._quiet = True
        try:
            self.spin.setValue(float(value))
            self.slider.setValue(self._to_slider(float(value)))
        finally:
            self._quiet = False


class ChoiceControl(ParamControl):
    def __init__(self, spec: ParamSpec, parent: QWidget | None = None):
        super().__init__(spec, parent)
        self.combo = QComboBox()
        self.combo.addItems(list(spec.choices))
        self.combo.setToolTip(self.toolTip())
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.combo, 1)
        self._quiet = False
        self.set_value(spec.default)
        self.combo.currentTextChanged.connect(self._changed)

    def _changed(self, text: str) -> None:
        if not self._quiet:
            self.valueChanged.emit(self.spec.name, text)

    def value(self) -> str:
        return self.combo.currentText()

    def set_value(self, value: Any) -> None:
        self._quiet = True
        try:
            i = self.combo.findText(str(value))
            if i >= 0:
                self.combo.setCurrentIndex(i)
        finally:
            self._quiet = False


def make_control(spec: ParamSpec, parent: QWidget | None = None) -> ParamControl:
    return ChoiceControl(spec, parent) if spec.choices else NumberControl(spec, parent)


LABEL_WIDTH = 96  # one width for every form's labels, so sliders line up across the voice and chain forms


def make_label(spec: ParamSpec) -> QLabel:
    label = QLabel(spec.label)
    label.setMinimumWidth(LABEL_WIDTH)
    label.setToolTip(spec.help or spec.label)
    return label


def _short_unit(unit: str) -> str:
    return {"semitones": "st", "percent": "%"}.get(unit, unit)


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)
