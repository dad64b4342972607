"""Live view: level meters, a scrolling waveform of input and output, and their pitch over time.

Everything here is drawn from a ``ScopeFrame`` the controller pulls on its 30 ms timer. The waveform
uses pyqtgraph's own peak downsampling for display; the pitch comes from the engine's tracker.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QGraphicsItem, QGridLayout, QLabel, QVBoxLayout, QWidget

from autovoice_desktop.controller import SCOPE_SECONDS, ScopeFrame
from engine.api import PITCH_HOP_S
from autovoice_desktop.widgets.level_meter import LevelMeter

PITCH_LOW_HZ, PITCH_HIGH_HZ = 60.0, 900.0  # the pitch plot's range
WAVE_COLUMNS = 800  # min/max pairs drawn across the waveform: about one per pixel column

INPUT_COLOR = "#58a6ff"
OUTPUT_COLOR = "#f0883e"


def _plot(y_label: str, time_labels: bool) -> pg.PlotWidget:
    """A plot of the last SCOPE_SECONDS. No title (the y axis is labelled instead) and, for the upper of
    the stacked plots, no time labels: both save height for the data on small screens."""
    w = pg.PlotWidget()
    w.setMenuEnabled(False)
    w.setMouseEnabled(x=False, y=False)
    w.hideButtons()
    w.showGrid(x=True, y=True, alpha=0.15)
    w.setXRange(-SCOPE_SECONDS, 0.0, padding=0)
    major = [(-v, f"{-v:g}" if v else "0") for v in np.arange(0.0, SCOPE_SECONDS + 1e-9, 0.5)]
    minor = [(-v, "") for v in np.arange(0.0, SCOPE_SECONDS + 1e-9, 0.1)]
    item = w.getPlotItem()
    bottom = item.getAxis("bottom")
    bottom.setTicks([major, minor])
    bottom.setStyle(hideOverlappingLabels=False)  # keep "-2" and "0" at the ends
    if time_labels:
        bottom.setLabel("seconds")
    else:
        bottom.setStyle(showValues=False)
        bottom.setHeight(6)
    item.getAxis("left").setLabel(y_label)
    item.getAxis("left").setWidth(58)  # same for both plots, so their time axes line up
    w.enableAutoRange(x=False, y=False)  # a fixed window onto the last seconds; never rescale to the data
    # The axes (with their grid, drawn across the plot) do not change between frames, but every new
    # curve repaints the area under them: replaying their drawing took 2 ms of the GUI thread per
    # frame, 33 times a second, time the conversion worker waits for the interpreter. Qt keeps them
    # as a pixmap instead (redrawn when the plot is resized).
    for name in ("left", "bottom"):
        item.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
    w.setMinimumHeight(90)
    return w


class _ViewCurve(pg.PlotCurveItem):
    """A curve whose extent is the plot's fixed window rather than its data's.

    The view never rescales, so the scene only needs to know the curve stays inside that window;
    pyqtgraph would otherwise take the data's NaN-aware min and max (and a pixel size) anew after
    every ``setData``, on the GUI thread.
    """

    def __init__(self, bounds: QRectF, **opts):
        super().__init__(**opts)
        self._bounds = bounds

    def boundingRect(self) -> QRectF:
        return self._bounds


def _curve(plot: pg.PlotWidget, color: str, width: int, y_range: tuple[float, float]) -> pg.PlotCurveItem:
    """A bare curve on ``plot``. pyqtgraph's ``plot()`` wraps each curve in a PlotDataItem (log mapping,
    downsampling, symbols), none of which this view uses: the wrapper took two thirds of each
    ``setData``, on the GUI thread, 33 times a second."""
    lo, hi = y_range
    pad = 0.05 * (hi - lo)
    bounds = QRectF(-SCOPE_SECONDS * 1.05, lo - pad, SCOPE_SECONDS * 1.1, (hi - lo) + 2 * pad)
    curve = _ViewCurve(bounds, pen=pg.mkPen(color, width=width), connect="finite")
    plot.addItem(curve)
    return curve


def peak_envelope(x: np.ndarray, sample_rate: int, columns: int = WAVE_COLUMNS) -> tuple[np.ndarray, np.ndarray]:
    """Display decimation: (time, value) with each column's min and max, so 96k samples draw as 1.6k points.

    The same thing pyqtgraph's "peak" downsampling does, done once per frame on a fixed grid instead of
    per repaint: a 2 s waveform at 30 frames/s then costs the GUI thread well under a millisecond, which
    keeps the GIL free for the engine's worker. Time is in seconds before now (0 = newest sample).
    """
    n = len(x)
    per = max(1, n // columns)
    m = (n // per) * per
    if per == 1 or m == 0:
        return (np.arange(n) - (n - 1)) / sample_rate, x
    blocks = x[n - m:].reshape(-1, per)
    y = np.empty(2 * len(blocks), dtype=np.float32)
    y[0::2] = blocks.min(axis=1)
    y[1::2] = blocks.max(axis=1)
    centres = (np.arange(len(blocks)) * per + per / 2 - m) / sample_rate
    t = np.repeat(centres, 2)
    return t, y


class LiveView(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.input_meter = LevelMeter("In")
        self.output_meter = LevelMeter("Out")
        meters = QGridLayout()
        meters.setContentsMargins(0, 0, 0, 0)
        meters.addWidget(self.input_meter, 0, 0)
        meters.addWidget(self.output_meter, 1, 0)
        # One legend for both plots, outside them, so small plots keep their whole area for data.
        self.legend = QLabel(f'<span style="color:{INPUT_COLOR}">\u25a0</span> input (your voice) &nbsp;&nbsp; '
                             f'<span style="color:{OUTPUT_COLOR}">\u25a0</span> output (converted)')
        self.legend.setObjectName("hint")
        meters.addWidget(self.legend, 2, 0)

        self.wave = _plot("Waveform", time_labels=False)
        self.wave.setYRange(-1.0, 1.0, padding=0.02)
        self.wave_in = _curve(self.wave, INPUT_COLOR, 1, (-1.0, 1.0))
        self.wave_out = _curve(self.wave, OUTPUT_COLOR, 1, (-1.0, 1.0))

        # Pitch on a log scale: the curves carry log10(Hz) and the axis names them in Hz.
        self.pitch = _plot("Pitch (Hz)", time_labels=True)
        pitch_range = (np.log10(PITCH_LOW_HZ), np.log10(PITCH_HIGH_HZ))
        self.pitch.setYRange(*pitch_range, padding=0)
        self.pitch.getPlotItem().getAxis("left").setTicks(
            [[(np.log10(f), f"{f}") for f in (100, 200, 400, 800)],
             [(np.log10(f), "") for f in (60, 70, 80, 90, 150, 300, 500, 600, 700)]])
        self.pitch_in = _curve(self.pitch, INPUT_COLOR, 2, pitch_range)
        self.pitch_out = _curve(self.pitch, OUTPUT_COLOR, 2, pitch_range)
        for w in (self.wave, self.pitch):  # one time axis for both
            w.setXRange(-SCOPE_SECONDS, 0.0, padding=0.02)
        n = int(round(SCOPE_SECONDS / PITCH_HOP_S))
        self._pitch_t = (np.arange(n) - (n - 1)) * PITCH_HOP_S
        self.last_f0_input: np.ndarray | None = None
        self.last_f0_output: np.ndarray | None = None

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(meters)
        lay.addWidget(self.wave, 1)
        lay.addWidget(self.pitch, 1)

    def show_frame(self, frame: ScopeFrame) -> None:
        self.input_meter.set_level_db(frame.input_level_db)
        self.output_meter.set_level_db(frame.output_level_db)
        for curve, x in ((self.wave_in, frame.input), (self.wave_out, frame.output)):
            if len(x) == 0:
                curve.setData([], [])
            else:
                t, y = peak_envelope(x, frame.sample_rate)
                curve.setData(t, y)
        if frame.f0_input is not None:
            self.last_f0_input, self.last_f0_output = frame.f0_input, frame.f0_output
            for curve, f0 in ((self.pitch_in, frame.f0_input), (self.pitch_out, frame.f0_output)):
                # log10 of NaN stays NaN: an unvoiced gap, drawn as a gap (connect="finite")
                with np.errstate(invalid="ignore", divide="ignore"):
                    curve.setData(self._pitch_t[-len(f0):], np.log10(f0))
