"""Status and performance panels, both fed a HealthSnapshot once a second.

The status panel shows the same checks the headless probes serve (engine.health.snapshot's is_live and
is_ready); the performance panel shows the latency budget and how much of each block the voice uses.
Labels are only re-set when their text changes, so an idle window does no layout work.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QGridLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from engine.api import ADAPTIVE_BUFFER_SUMMARY
from engine.health.snapshot import HealthSnapshot, is_live, is_ready

OK, WARN, BAD, IDLE = "ok", "warn", "bad", "idle"


def _set(label: QLabel, text: str) -> None:
    if label.text() != text:
        label.setText(text)


def _set_state(label: QLabel, state: str) -> None:
    if label.property("state") != state:
        label.setProperty("state", state)
        label.style().unpolish(label)
        label.style().polish(label)


class StatusPanel(QWidget):
    """One row per check: a coloured dot and a sentence."""

    ROWS = (
        ("live", "Engine"),
        ("ready", "Ready"),
        ("gpu", "GPU"),
        ("voice", "Voice"),
        ("compute", "Voice runs on"),
        ("running", "Audio stream"),
        ("devices", "Audio devices"),
        ("error", "Last error"),
    )

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        form = QGridLayout(self)
        form.setContentsMargins(6, 6, 6, 6)
        form.setHorizontalSpacing(8)
        form.setVerticalSpacing(4)
        self.dots: dict[str, QLabel] = {}
        self.values: dict[str, QLabel] = {}
        for row, (key, title) in enumerate(self.ROWS):
            dot = QLabel("\u25cf")
            dot.setObjectName("dot")
            dot.setProperty("state", IDLE)
            name = QLabel(title)
            name.setObjectName("fieldName")
            value = QLabel("\u2014")
            value.setObjectName(f"status_{key}")
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextSelectableByMouse)
            form.addWidget(dot, row, 0, Qt.AlignTop)
            form.addWidget(name, row, 1, Qt.AlignTop)
            form.addWidget(value, row, 2)
            self.dots[key], self.values[key] = dot, value
        form.setColumnStretch(2, 1)
        form.setRowStretch(len(self.ROWS), 1)
        self.devices_problem: str | None = None

    def set_devices_problem(self, message: str | None) -> None:
        """What the window learnt from listing devices (the snapshot only knows about opened streams)."""
        self.devices_problem = message
        if message:
            self._devices_problem_row()

    def _devices_problem_row(self) -> None:
        self._row("devices", BAD, "unavailable (see Audio)")
        self.values["devices"].setToolTip(self.devices_problem or "")

    MAX_CHARS = 90  # longer sentences (errors) are cut here; the whole sentence is in the tooltip

    def _row(self, key: str, state: str, text: str) -> None:
        _set_state(self.dots[key], state)
        short = text if len(text) <= self.MAX_CHARS else text[: self.MAX_CHARS - 1].rstrip() + "\u2026"
        _set(self.values[key], short)
        tip = text if short != text else ""
        if self.values[key].toolTip() != tip:
            self.values[key].setToolTip(tip)

    def update_snapshot(self, s: HealthSnapshot) -> None:
        live = is_live(s)
        self._row("live", OK if live else BAD,
                  "alive" if live else f"worker not responding ({s.worker_heartbeat_age_s:.1f} s)")
        ready = is_ready(s)
        self._row("ready", OK if ready else WARN, "yes" if ready else "no (no voice loaded and warmed up yet)")
        if s.gpu_available:
            self._row("gpu", OK, s.gpu_name or "available")
        else:
            self._row("gpu", IDLE, "none (CPU)")
        if s.voice_loading:
            self._row("voice", WARN, f"loading\u2026 (current: {s.voice_name or 'none'})")
        elif s.voice_loaded:
            warm = "" if s.warmed_up else ", warming up"
            self._row("voice", OK, f"{s.voice_name} ({s.voice_kind}{warm})")
        else:
            self._row("voice", BAD, "none loaded")
        if s.voice_device is None:
            self._row("compute", IDLE, "\u2014")
        elif s.voice_device_note:
            self._row("compute", WARN, f"{s.voice_device} ({s.voice_device_note})")
        else:
            self._row("compute", OK if s.voice_device.startswith("cuda") else IDLE, s.voice_device)
        if s.voice_parts and self.values["compute"].toolTip() != s.voice_parts:
            self.values["compute"].setToolTip(s.voice_parts)  # where each stage of the block runs
        if s.running:
            rate = f" at {s.sample_rate} Hz" if s.sample_rate else ""
            self._row("running", OK, f"running{rate}")
        else:
            self._row("running", IDLE, "stopped")
        if self.devices_problem and not s.running:
            self._devices_problem_row()
        elif s.devices_ok:
            if s.running:
                mon = f" + {s.monitor_device}" if s.monitor_device else ""
                self._row("devices", OK, f"{s.input_device} \u2192 {s.output_device}{mon}")
            else:
                self._row("devices", OK, "OK")
        else:
            self._row("devices", BAD, "problem (see the last error)")
        if s.last_error:
            self._row("error", BAD, s.last_error)
        else:
            self._row("error", IDLE, "none")


class PerformancePanel(QWidget):
    """Latency budget, compute per block against the block's duration, and the xrun counters."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lat = QFormLayout()
        lat.setLabelAlignment(Qt.AlignLeft)
        lat.setHorizontalSpacing(12)
        lat.setVerticalSpacing(3)
        self.fields: dict[str, QLabel] = {}

        def field(key: str, title: str, tip: str) -> None:
            value = QLabel("\u2014")
            value.setObjectName(f"perf_{key}")
            value.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
            name = QLabel(title)
            name.setObjectName("fieldName")
            name.setToolTip(tip)
            value.setToolTip(tip)
            lat.addRow(name, value)
            self.fields[key] = value

        field("algorithmic", "Algorithmic latency", "Block + the voice's look-ahead + resampler delays.")
        field("buffer", "Buffer latency", "Output pre-fill: the safety margin against compute jitter. With the "
              f"adaptive buffer, {ADAPTIVE_BUFFER_SUMMARY}.")
        field("device", "Device latency", "What the audio driver reports for input + output.")
        field("total", "Total latency", "Mouth to speaker (or to the virtual cable).")
        field("priority", "Worker priority", "How the OS schedules the conversion thread while it streams: "
              "real-time keeps it on time on a busy machine. Advanced settings turn it off.")
        field("callback", "Audio callback", "What moves the samples between the sound device and the engine while "
              "it streams: native code that never waits for Python, or the Python fallback (and why).")
        lay.addLayout(lat)

        self.compute_label = QLabel("Compute per block")
        self.compute_label.setObjectName("fieldName")
        self.compute_bar = QProgressBar()
        self.compute_bar.setObjectName("computeBar")
        self.compute_bar.setRange(0, 1000)  # per mille of the block budget
        self.compute_bar.setTextVisible(True)
        self.compute_bar.setFormat("\u2014")
        self.compute_bar.setProperty("late", False)
        self.compute_bar.setToolTip("99th-percentile time to convert one block, against the block's duration. "
                                    "Red means conversion is late: raise the block size or pick a lighter voice.")
        lay.addWidget(self.compute_label)
        lay.addWidget(self.compute_bar)

        counters = QGridLayout()
        counters.setHorizontalSpacing(12)
        counters.setVerticalSpacing(2)
        for col, (key, title, tip) in enumerate((
            ("underflows", "Underflows", "Output callbacks that had to play silence."),
            ("overflows", "Overflows", "Input frames dropped because processing fell behind."),
            ("late", "Late blocks", "Blocks that took longer than their duration."),
            ("xruns", "Driver xruns", "Over/underruns the audio driver reported."),
        )):
            name = QLabel(title)
            name.setObjectName("fieldName")
            name.setToolTip(tip)
            value = QLabel("0")
            value.setObjectName(f"perf_{key}")
            value.setToolTip(tip)
            value.setAlignment(Qt.AlignCenter)
            name.setAlignment(Qt.AlignCenter)
            counters.addWidget(name, 0, col)
            counters.addWidget(value, 1, col)
            self.fields[key] = value
        lay.addLayout(counters)

        self.suggestion = QLabel("")
        self.suggestion.setObjectName("suggestion")
        self.suggestion.setWordWrap(True)
        self.suggestion.hide()
        lay.addWidget(self.suggestion)
        lay.addStretch(1)

    def update_snapshot(self, s: HealthSnapshot) -> None:
        f = self.fields
        _set(f["algorithmic"], f"{s.algorithmic_latency_ms:.1f} ms")
        grown = f" (+{s.buffer_growth_ms:.1f} after underflows)" if s.buffer_growth_ms > 0.05 else ""
        if s.buffer_note:
            grown += f" ({s.buffer_note})"
        _set(f["buffer"], f"{s.buffer_latency_ms:.1f} ms{grown}")
        _set(f["device"], f"{s.device_latency_ms:.1f} ms" if s.running else "\u2014 (stopped)")
        _set(f["total"], f"{s.total_latency_ms:.1f} ms")
        _set(f["priority"], s.worker_priority or "\u2014")
        f["priority"].setToolTip(s.worker_priority_detail or "Shown while a stream runs.")
        _set(f["callback"], s.audio_callback or "\u2014")
        f["callback"].setToolTip(s.audio_callback_detail or ("Shown while a stream runs." if not s.audio_callback
                                                             else "Native: it never waits for Python."))
        if s.running and s.blocks_processed:
            pct = int(round(1000 * min(s.compute_load, 1.0)))
            if self.compute_bar.value() != pct:
                self.compute_bar.setValue(pct)
            text = (f"{s.compute_ms_p99:.2f} ms of {s.block_ms:.1f} ms "
                    f"({100 * s.compute_load:.0f}%, mean {s.compute_ms_mean:.2f} ms)")
        else:
            self.compute_bar.setValue(0)
            text = f"\u2014 of {s.block_ms:.1f} ms block"
        if self.compute_bar.format() != text:
            self.compute_bar.setFormat(text)
        late = bool(s.compute_load > 1.0 and s.running)
        if self.compute_bar.property("late") != late:
            self.compute_bar.setProperty("late", late)
            self.compute_bar.style().unpolish(self.compute_bar)
            self.compute_bar.style().polish(self.compute_bar)
        _set(f["underflows"], str(s.output_underflows))
        _set(f["overflows"], str(s.input_overflows))
        _set(f["late"], str(s.late_blocks))
        _set(f["xruns"], str(s.device_xruns))
        for key, n in (("underflows", s.output_underflows), ("overflows", s.input_overflows),
                       ("late", s.late_blocks), ("xruns", s.device_xruns)):
            _set_state(f[key], WARN if n else IDLE)
        advice = s.suggestion or s.voice_hint
        if advice:
            _set(self.suggestion, advice)
            self.suggestion.show()
        else:
            self.suggestion.hide()
