"""The level meter: display ballistics, and the level told in words on hover."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint
from PySide6.QtGui import QHelpEvent
from PySide6.QtWidgets import QApplication, QToolTip

from autovoice_desktop.widgets.level_meter import FLOOR_DB, LevelMeter


def test_hover_tells_the_current_level_and_the_held_peak(qtbot):
    meter = LevelMeter("In")
    qtbot.addWidget(meter)
    meter.show()
    meter.set_level_db(-6.0)
    meter.set_level_db(-20.0)  # a quieter block: the peak holds, the bar falls back at its rate
    assert meter.peak_db == -6.0 and -20.0 <= meter.shown_db < -6.0
    QApplication.sendEvent(meter, QHelpEvent(QEvent.Type.ToolTip, QPoint(5, 5), meter.mapToGlobal(QPoint(5, 5))))
    assert QToolTip.text() == "In: -20.0 dBFS (peak -6.0)"
    meter.set_level_db(-200.0)  # silence is drawn at the floor
    assert meter.level_db == FLOOR_DB
    meter.grab()  # paints with the colours and font made once
