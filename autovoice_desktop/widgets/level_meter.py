"""A horizontal dBFS level meter with peak hold (after friture's levels widget).

``set_level_db`` only stores the value and asks for a repaint; the repaint is cheap (a few rectangles
in colours made once, the tooltip's text made only when it is asked for), so the 30 ms timer can call
it for both meters without taking the interpreter from the conversion worker for long. The bar falls back at a fixed rate so a
single loud block stays visible; that is display ballistics, not audio processing.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QEvent, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

FLOOR_DB = -60.0
FALL_DB_PER_S = 30.0
PEAK_HOLD_S = 1.5
# green up to -12 dBFS, amber to -3, red above: where clipping starts to be likely
ZONES = ((FLOOR_DB, -12.0, "#3fb950"), (-12.0, -3.0, "#d29922"), (-3.0, 0.0, "#f85149"))
TICKS_DB = (-48, -36, -24, -12, -6, -3)


class LevelMeter(QWidget):
    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = title
        self.level_db = FLOOR_DB
        self.shown_db = FLOOR_DB
        self.peak_db = FLOOR_DB
        self._peak_t = 0.0
        self._t = time.monotonic()
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setMinimumHeight(22)
        self.setAccessibleName(f"{title} level")
        self._zones = [(lo, hi, QColor(color)) for lo, hi, color in ZONES]
        self._trough, self._peak_color, self._tick_color = QColor("#1b1f24"), QColor("#e6edf3"), QColor(255, 255, 255, 60)
        self._label_font: QFont | None = None

    def sizeHint(self) -> QSize:
        return QSize(300, 22)

    def set_level_db(self, level_db: float) -> None:
        now = time.monotonic()
        dt, self._t = now - self._t, now
        level = max(FLOOR_DB, min(0.0, float(level_db)))
        self.level_db = level
        self.shown_db = level if level >= self.shown_db else max(level, self.shown_db - FALL_DB_PER_S * dt)
        if level >= self.peak_db or now - self._peak_t > PEAK_HOLD_S:
            self.peak_db, self._peak_t = level, now
        self.update()

    def tooltip_text(self) -> str:
        return f"{self.title}: {self.level_db:.1f} dBFS (peak {self.peak_db:.1f})"

    def event(self, e) -> bool:
        if e.type() == QEvent.Type.ToolTip:  # the level at the moment the pointer rests on the meter
            QToolTip.showText(e.globalPos(), self.tooltip_text(), self)
            return True
        return super().event(e)

    def changeEvent(self, e) -> None:
        if e.type() == QEvent.Type.FontChange:
            self._label_font = None
        super().changeEvent(e)

    def _x(self, db: float, x0: float, w: float) -> float:
        return x0 + w * (db - FLOOR_DB) / -FLOOR_DB

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing, False)
        label_w, value_w = 34.0, 64.0
        r = QRectF(self.rect()).adjusted(label_w, 3, -value_w, -3)
        p.setPen(self.palette().windowText().color())
        if self._label_font is None:
            self._label_font = QFont(self.font())
            self._label_font.setPointSizeF(max(7.0, self._label_font.pointSizeF() * 0.9))
        p.setFont(self._label_font)
        p.drawText(QRectF(0, 0, label_w - 4, self.height()), Qt.AlignVCenter | Qt.AlignLeft, self.title)
        text = "— dB" if self.shown_db <= FLOOR_DB else f"{self.shown_db:.1f} dB"  # what the bar shows
        p.drawText(QRectF(r.right() + 4, 0, value_w - 6, self.height()), Qt.AlignVCenter | Qt.AlignRight, text)
        p.fillRect(r, self._trough)
        x_now = self._x(self.shown_db, r.left(), r.width())
        for lo, hi, color in self._zones:
            xa, xb = self._x(lo, r.left(), r.width()), self._x(hi, r.left(), r.width())
            if x_now > xa:
                p.fillRect(QRectF(xa, r.top(), min(x_now, xb) - xa, r.height()), color)
        if self.peak_db > FLOOR_DB:
            xp = self._x(self.peak_db, r.left(), r.width())
            p.fillRect(QRectF(xp - 1, r.top(), 2, r.height()), self._peak_color)
        p.setPen(self._tick_color)
        for db in TICKS_DB:
            x = self._x(db, r.left(), r.width())
            p.drawLine(int(x), int(r.top()), int(x), int(r.bottom()))
        p.end()
