"""The AutoVoice main window: audio, voice, live view, performance, status, files.

The window holds no engine state of its own: it shows what the controller reports and sends the
user's changes to it. Widgets that mirror engine settings are updated "quietly" (signals blocked) so
that showing a value never sends it back.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QByteArray, QEvent, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QFrame, QGroupBox, QHBoxLayout, QLabel,
    QListWidget, QListWidgetItem, QMainWindow, QMenu, QMessageBox, QPushButton, QScrollArea, QSizePolicy, QSplitter,
    QToolButton, QVBoxLayout, QWidget,
)

from autovoice_desktop.controller import EngineController
from autovoice_desktop.convert_dialog import ConvertDialog
from autovoice_desktop.import_dialog import ImportVoiceDialog, pick_model
from autovoice_desktop.widgets.live_view import LiveView
from autovoice_desktop.widgets.panels import PerformancePanel, StatusPanel
from autovoice_desktop.widgets.param_control import NumberControl, make_control, make_label
from engine.api import ADAPTIVE_BUFFER_SUMMARY, CHAIN_SPECS
from engine.errors import DeviceError

DEFAULT_SPEC = "default"  # the engine resolves "default" to the system default device
KIND_ROLE = Qt.UserRole + 1  # a voice item's kind ("builtin", "rvc", ...) beside its name in Qt.UserRole
NO_MONITOR_SPEC = ""  # and "" (for the monitor) to no monitor at all


def routing_hint() -> str:
    """How to get the converted voice into other apps, for this platform."""
    if sys.platform.startswith("win"):
        how = ("install <b>VB-CABLE</b> (or VoiceMeeter), pick <i>CABLE Input</i> as Output here and "
               "<i>CABLE Output</i> as the microphone in OBS, Discord or your DAW")
    elif sys.platform == "darwin":
        how = ("install <b>BlackHole</b>, pick <i>BlackHole 2ch</i> as Output here and as the microphone in "
               "OBS, Discord or your DAW")
    else:
        how = ("make a virtual device (<code>pactl load-module module-null-sink sink_name=autovoice</code>, "
               "PipeWire or PulseAudio), pick it as Output here and its <i>Monitor</i> as the microphone in "
               "OBS, Discord or your DAW; with JACK, connect the ports")
    return f"<b>Your voice in other apps:</b> {how}. Headphones as Monitor let you hear yourself."


def _quiet(widget, fn, *args):
    old = widget.blockSignals(True)
    try:
        return fn(*args)
    finally:
        widget.blockSignals(old)


class Banner(QFrame):
    """A dismissible one-line message at the top of the window."""

    def __init__(self, object_name: str, button_text: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(object_name)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.label.setTextFormat(Qt.RichText)
        self.button = QPushButton(button_text)
        self.button.setObjectName("bannerButton")
        self.button.clicked.connect(self.hide)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.button, 0, Qt.AlignTop)
        self.hide()

    def show_text(self, text: str) -> None:
        self.label.setText(text)
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class MainWindow(QMainWindow):
    def __init__(self, controller: EngineController, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle("AutoVoice")
        self.setObjectName("mainWindow")
        self.param_controls: dict[str, object] = {}
        self.chain_controls: dict[str, NumberControl] = {}
        self.convert_dialog: ConvertDialog | None = None
        self.import_dialog: ImportVoiceDialog | None = None
        self._devices_ok = False
        self._running = False
        self._closing = False

        self._build_actions()
        self._build_ui()
        self._connect()
        self._restore_state()

        controller.refresh_devices()
        controller.refresh_voices()
        controller.load_saved_voice()
        controller.poll_slow()
        if self.controller.settings_warning:
            self.show_error(self.controller.settings_warning)

    # ------------------------------------------------------------------ building
    def _build_actions(self) -> None:
        self.start_action = QAction("&Start", self)
        self.start_action.setShortcuts([QKeySequence("F5"), QKeySequence("Ctrl+Space")])
        self.start_action.setShortcutContext(Qt.ApplicationShortcut)
        self.start_action.triggered.connect(self.toggle_running)
        self.bypass_action = QAction("&Bypass the voice", self)
        self.bypass_action.setCheckable(True)
        self.bypass_action.setShortcut(QKeySequence("Ctrl+B"))
        self.bypass_action.setShortcutContext(Qt.ApplicationShortcut)
        self.bypass_action.toggled.connect(self._bypass_toggled)
        self.refresh_action = QAction("&Refresh devices", self)
        self.refresh_action.setShortcut(QKeySequence("Ctrl+R"))
        self.refresh_action.triggered.connect(lambda: self.controller.refresh_devices(rescan=True))
        self.convert_action = QAction("&Convert files\u2026", self)
        self.convert_action.setShortcut(QKeySequence("Ctrl+O"))
        self.convert_action.triggered.connect(self.open_convert_dialog)
        self.import_action = QAction("&Import voice\u2026", self)
        self.import_action.triggered.connect(self.import_voice_clicked)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.Quit)
        quit_action.triggered.connect(self.close)
        hint_action = QAction("Using AutoVoice in &other apps\u2026", self)
        hint_action.triggered.connect(lambda: self.hint_banner.show_text(routing_hint()))
        about_action = QAction("&About AutoVoice", self)
        about_action.triggered.connect(self._about)

        m = self.menuBar().addMenu("&File")
        m.addAction(self.convert_action)
        self.song_action = m.addAction("Song &covers\u2026", self.open_song_dialog)  # issue 9
        self.song_action.setShortcut(QKeySequence("Ctrl+Shift+O"))
        m.addAction(self.import_action)
        m.addSeparator()
        m.addAction(quit_action)
        m = self.menuBar().addMenu("&Audio")
        m.addAction(self.start_action)
        m.addAction(self.bypass_action)
        m.addSeparator()
        m.addAction(self.refresh_action)
        m = self.menuBar().addMenu("&Help")
        m.addAction(hint_action)
        m.addAction(about_action)
        for a in (self.start_action, self.bypass_action, self.refresh_action, self.convert_action):
            self.addAction(a)

    def _group(self, title: str, name: str) -> QGroupBox:
        g = QGroupBox(title)
        g.setObjectName(name)
        return g

    def _build_audio_group(self) -> QGroupBox:
        g = self._group("Audio", "audioGroup")
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.input_combo = QComboBox()
        self.input_combo.setObjectName("inputCombo")
        self.output_combo = QComboBox()
        self.output_combo.setObjectName("outputCombo")
        self.monitor_combo = QComboBox()
        self.monitor_combo.setObjectName("monitorCombo")
        for c in (self.input_combo, self.output_combo, self.monitor_combo):
            c.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            c.setMinimumContentsLength(18)
        self.output_combo.setToolTip("Speakers, or a virtual cable to route the voice into other apps.")
        self.monitor_combo.setToolTip("Optional second output, e.g. headphones, to hear yourself.")
        self.rate_label = QLabel("\u2014")
        self.rate_label.setObjectName("rateLabel")
        form.addRow("Input", self.input_combo)
        form.addRow("Output", self.output_combo)
        form.addRow("Monitor", self.monitor_combo)
        form.addRow("Sample rate", self.rate_label)

        self.no_devices = QFrame()
        self.no_devices.setObjectName("noDevices")
        self.no_devices_label = QLabel("")
        self.no_devices_label.setWordWrap(True)
        convert = QPushButton("Convert files\u2026")
        convert.clicked.connect(self.open_convert_dialog)
        nd = QVBoxLayout(self.no_devices)
        nd.setContentsMargins(8, 6, 8, 6)
        nd.addWidget(self.no_devices_label)
        nd.addWidget(convert, 0, Qt.AlignLeft)
        self.no_devices.hide()

        self.refresh_button = QToolButton()
        self.refresh_button.setObjectName("refreshButton")
        self.refresh_button.setText("\u27f3 Refresh")
        self.refresh_button.setToolTip("Look for devices again (Ctrl+R), e.g. after plugging in a headset.")
        self.refresh_button.clicked.connect(self.refresh_action.trigger)
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("startButton")
        self.start_button.setToolTip("Start or stop converting your microphone (F5 or Ctrl+Space).")
        self.start_button.clicked.connect(self.toggle_running)
        self.bypass_button = QPushButton("Bypass")
        self.bypass_button.setObjectName("bypassButton")
        self.bypass_button.setCheckable(True)
        self.bypass_button.setToolTip("Hear your own voice unchanged (Ctrl+B).")
        self.bypass_button.toggled.connect(self.bypass_action.setChecked)
        buttons = QHBoxLayout()
        buttons.addWidget(self.refresh_button)
        buttons.addStretch(1)
        buttons.addWidget(self.bypass_button)
        buttons.addWidget(self.start_button)

        lay = QVBoxLayout(g)
        lay.addLayout(form)
        lay.addWidget(self.no_devices)
        lay.addLayout(buttons)
        return g

    def _build_voice_group(self) -> QGroupBox:
        g = self._group("Voice", "voiceGroup")
        self.voice_list = QListWidget()
        self.voice_list.setObjectName("voiceList")
        self.voice_list.setSelectionMode(QAbstractItemView.SingleSelection)
        self.voice_list.setMinimumHeight(120)
        self.voice_list.setContextMenuPolicy(Qt.CustomContextMenu)
        self.voice_list.customContextMenuRequested.connect(
            lambda pos: self.voice_menu(self.voice_list.itemAt(pos)).exec(self.voice_list.viewport().mapToGlobal(pos)))
        self.import_button = QPushButton("Import voice\u2026")
        self.import_button.setObjectName("importVoiceButton")
        self.import_button.setToolTip("Add an RVC voice model (.pth or .onnx) with its optional .index file.")
        self.import_button.clicked.connect(self.import_voice_clicked)
        self.remove_button = QPushButton("Remove\u2026")
        self.remove_button.setObjectName("removeVoiceButton")
        self.remove_button.clicked.connect(lambda: self.remove_voice_clicked())
        self.remove_button.setEnabled(False)
        voice_buttons = QHBoxLayout()
        voice_buttons.addWidget(self.import_button)
        voice_buttons.addWidget(self.remove_button)
        voice_buttons.addStretch(1)
        self.voice_description = QLabel("")
        self.voice_description.setObjectName("hint")
        self.voice_description.setWordWrap(True)
        self.params_box = QWidget()
        self.params_form = QFormLayout(self.params_box)
        self.params_form.setContentsMargins(0, 0, 0, 0)
        self.params_form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.no_params = QLabel("This voice has no settings of its own.")
        self.no_params.setObjectName("hint")

        chain_title = QLabel("Chain (all voices)")
        chain_title.setObjectName("sectionTitle")
        chain_box = QWidget()
        chain_form = QFormLayout(chain_box)
        chain_form.setContentsMargins(0, 0, 0, 0)
        chain_form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        chain_form.setHorizontalSpacing(self.params_form.horizontalSpacing())
        for spec in CHAIN_SPECS:
            c = NumberControl(spec)
            c.valueChanged.connect(self._chain_changed)
            chain_form.addRow(make_label(spec), c)
            self.chain_controls[spec.name] = c

        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setObjectName("advancedToggle")
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.RightArrow)
        self.advanced_toggle.setAutoRaise(True)
        self.advanced_box = QWidget()
        adv = QFormLayout(self.advanced_box)
        adv.setContentsMargins(0, 0, 0, 0)

        def spin(name: str, lo: float, hi: float, step: float, tip: str) -> QDoubleSpinBox:
            s = QDoubleSpinBox()
            s.setObjectName(f"spin_{name}")
            s.setRange(lo, hi)
            s.setSingleStep(step)
            s.setDecimals(1)
            s.setSuffix(" ms")
            s.setKeyboardTracking(False)
            s.setToolTip(tip)
            s.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
            s.valueChanged.connect(lambda _v: self._advanced_timer.start())
            return s

        self.block_spin = spin("block_ms", 2.5, 1000.0, 2.5,
                               "Processing block: larger is safer against dropouts, smaller has less latency.")
        self.crossfade_spin = spin("crossfade_ms", 0.0, 100.0, 1.0,
                                   "Crossfade when settings or voices change mid-stream (at most the block size).")
        self.prefill_spin = spin("prefill_ms", 0.0, 1000.0, 5.0,
                                 "Output safety margin that absorbs compute jitter; adds to the latency.")
        adv.addRow("Block size", self.block_spin)
        adv.addRow("Crossfade", self.crossfade_spin)
        adv.addRow("Output pre-fill", self.prefill_spin)
        def check(name: str, text: str, tip: str) -> QCheckBox:
            c = QCheckBox(text)
            c.setObjectName(f"check_{name}")
            c.setToolTip(tip)
            c.toggled.connect(lambda _v: self._advanced_timer.start())
            adv.addRow("", c)
            return c

        self.adaptive_check = check("adaptive_buffer", "Grow the buffer after a dropout",
                                    f"On: {ADAPTIVE_BUFFER_SUMMARY}, shown under Performance. "
                                    "Off: a fixed latency.")
        self.priority_check = check("realtime_priority", "Real-time priority for the conversion",
                                    "While streaming, the conversion thread asks the OS for real-time priority "
                                    "(else a raised one), so a busy machine does not make it late. "
                                    "What it got is shown under Performance.")
        self.compute_combo = QComboBox()
        self.compute_combo.setObjectName("combo_compute_device")
        self.compute_combo.setToolTip("Where neural (RVC) voices run; built-in voices always run on the CPU. "
                                      "If the GPU cannot take a model, the Status panel says why it runs on the CPU.")
        for label, spec in self.controller.compute_devices():
            self.compute_combo.addItem(label, spec)
        self.compute_combo.currentIndexChanged.connect(self._compute_device_picked)
        adv.addRow("Neural voices on", self.compute_combo)
        adv_note = QLabel("Changing these while running reopens the stream.")
        adv_note.setObjectName("hint")
        adv.addRow(adv_note)
        self.advanced_box.hide()
        self.advanced_toggle.toggled.connect(self._toggle_advanced)
        # Spin boxes fire per click; apply once the user pauses so the stream is not reopened per step.
        self._advanced_timer = QTimer(self)
        self._advanced_timer.setSingleShot(True)
        self._advanced_timer.setInterval(600)
        self._advanced_timer.timeout.connect(self._apply_advanced)

        lay = QVBoxLayout(g)
        lay.addWidget(self.voice_list)
        lay.addLayout(voice_buttons)
        lay.addWidget(self.voice_description)
        lay.addWidget(self.params_box)
        lay.addWidget(self.no_params)
        lay.addWidget(chain_title)
        lay.addWidget(chain_box)
        lay.addWidget(self.advanced_toggle, 0, Qt.AlignLeft)
        lay.addWidget(self.advanced_box)
        return g

    def _build_ui(self) -> None:
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(8, 6, 8, 4)
        outer.setSpacing(6)
        self.hint_banner = Banner("hintBanner", "Got it")
        self.hint_banner.button.clicked.connect(self._hint_dismissed)
        self.message_banner = Banner("messageBanner", "Dismiss")
        outer.addWidget(self.hint_banner)
        outer.addWidget(self.message_banner)

        left = QWidget()
        left_lay = QVBoxLayout(left)
        left_lay.setContentsMargins(0, 0, 4, 0)
        left_lay.addWidget(self._build_audio_group())
        left_lay.addWidget(self._build_voice_group())
        files = self._group("Files", "filesGroup")
        fl = QHBoxLayout(files)
        conv = QPushButton("Convert files\u2026")
        conv.setObjectName("convertButton")
        conv.setToolTip("Convert recordings with the current voice (Ctrl+O).")
        conv.clicked.connect(self.open_convert_dialog)
        fl.addWidget(QLabel("Convert recordings with this voice."), 1)
        fl.addWidget(conv)
        left_lay.addWidget(files)
        left_lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setObjectName("leftScroll")
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(390)

        live = self._group("Live", "liveGroup")
        self.live_view = LiveView()
        QVBoxLayout(live).addWidget(self.live_view)
        perf = self._group("Performance", "performanceGroup")
        self.performance = PerformancePanel()
        QVBoxLayout(perf).addWidget(self.performance)
        status = self._group("Status", "statusGroup")
        self.status_panel = StatusPanel()
        QVBoxLayout(status).addWidget(self.status_panel)
        for w in (perf, status):
            w.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
        bottom = QHBoxLayout()
        bottom.addWidget(perf, 4)
        bottom.addWidget(status, 5)
        right = QWidget()
        right_lay = QVBoxLayout(right)
        right_lay.setContentsMargins(4, 0, 0, 0)
        right_lay.addWidget(live, 1)
        right_lay.addLayout(bottom)

        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(scroll)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        outer.addWidget(self.splitter, 1)
        self.setCentralWidget(central)

        self.state_label = QLabel("Stopped")
        self.state_label.setObjectName("stateLabel")
        self.busy_label = QLabel("")
        self.busy_label.setObjectName("busyLabel")
        self.statusBar().addWidget(self.state_label, 1)
        self.statusBar().addPermanentWidget(self.busy_label)
        self.resize(1360, 900)

    def _connect(self) -> None:
        c = self.controller
        c.snapshotUpdated.connect(self._snapshot)
        c.scopeUpdated.connect(self.live_view.show_frame)
        c.runningChanged.connect(self._running_changed)
        c.busyChanged.connect(self._busy_changed)
        c.devicesUpdated.connect(self._devices_updated)
        c.devicesUnavailable.connect(self._devices_unavailable)
        c.voicesUpdated.connect(self._voices_updated)
        c.voiceLoading.connect(self._voice_loading)
        c.voiceLoaded.connect(self._voice_loaded)
        c.voiceFailed.connect(self._voice_failed)
        c.voiceImported.connect(self._voice_imported)
        c.voiceRemoved.connect(self._voice_removed)
        c.paramsApplied.connect(self._params_applied)
        c.chainChanged.connect(self._sync_chain)
        c.audioChanged.connect(self._sync_audio)
        c.errorOccurred.connect(self.show_error)
        self.input_combo.activated.connect(lambda _i: self._device_picked("input_device", self.input_combo))
        self.output_combo.activated.connect(lambda _i: self._device_picked("output_device", self.output_combo))
        self.monitor_combo.activated.connect(lambda _i: self._device_picked("monitor_device", self.monitor_combo))
        self.voice_list.currentItemChanged.connect(self._voice_picked)
        self.voice_list.currentItemChanged.connect(lambda *_: self._update_remove_enabled())

    def _restore_state(self) -> None:
        gui = self.controller.gui_settings()
        geometry = gui.get("geometry")
        if not (isinstance(geometry, str) and self.restoreGeometry(QByteArray.fromBase64(geometry.encode("ascii")))):
            screen = self.screen().availableGeometry() if self.screen() else None
            if screen is not None:  # first launch: the default size, but never larger than the screen
                self.resize(min(1360, int(screen.width() * 0.92)), min(900, int(screen.height() * 0.92)))
        splitter = gui.get("splitter")
        if isinstance(splitter, str):
            self.splitter.restoreState(QByteArray.fromBase64(splitter.encode("ascii")))
        else:
            self.splitter.setSizes([460, 900])
        self.advanced_toggle.setChecked(bool(gui.get("advanced_open", False)))
        if not gui.get("routing_hint_dismissed"):
            self.hint_banner.show_text(routing_hint())
        self._sync_chain(self.controller.settings.chain)
        self._sync_audio(self.controller.settings.audio)

    # ------------------------------------------------------------------ messages
    def show_error(self, message: str) -> None:
        """One clear sentence in the window (the engine's AutoVoiceError message)."""
        if not message:
            return
        self.controller.note_error_shown(message)
        if self.message_banner.text() != message:
            self.message_banner.show_text(message)
        self.statusBar().showMessage(message, 8000)

    def _hint_dismissed(self) -> None:
        self.controller.save_gui_settings(routing_hint_dismissed=True)

    def _about(self) -> None:
        from engine.api import __version__

        QMessageBox.about(self, "About AutoVoice",
                          f"<b>AutoVoice {__version__}</b><p>A real-time voice changer: built-in voices and "
                          f"RVC models, live, headless and on files.</p><p>Licensed under the GPL-3.0-or-later.</p>")

    # ------------------------------------------------------------------ audio
    def toggle_running(self) -> None:
        if not self.controller.can_toggle_running:
            return
        if not self._running and not self._devices_ok:
            self.show_error(self.no_devices_label.text() or "No audio device is available; file conversion "
                            "still works.")
            return
        self.message_banner.hide()
        self.controller.toggle_running()

    def _bypass_toggled(self, on: bool) -> None:
        _quiet(self.bypass_button, self.bypass_button.setChecked, on)
        self.controller.set_bypass(on)

    def _running_changed(self, running: bool) -> None:
        self._running = running
        self.start_button.setText("Stop" if running else "Start")
        self.start_button.setProperty("running", running)
        self.start_button.style().unpolish(self.start_button)
        self.start_button.style().polish(self.start_button)
        self.start_action.setText("&Stop" if running else "&Start")
        # PortAudio re-scans by re-initialising, which would pull the open stream from under the engine.
        self.refresh_action.setEnabled(not running)
        self.refresh_button.setEnabled(not running)
        self.refresh_button.setToolTip("Stop first to look for devices again." if running else
                                       "Look for devices again (Ctrl+R), e.g. after plugging in a headset.")
        self._update_start_enabled()
        self._update_state_label()

    def _busy_changed(self, busy: bool, what: str) -> None:
        self.busy_label.setText(f"{what}\u2026" if busy and what else "")
        self._update_start_enabled()
        self._update_remove_enabled()

    def _update_start_enabled(self) -> None:
        self.start_button.setEnabled(self.controller.can_toggle_running and (self._devices_ok or self._running))

    def _update_state_label(self, snap=None) -> None:
        s = snap or self.controller.last_snapshot
        if self._running and s is not None and s.running:
            text = f"Running: {s.input_device} \u2192 {s.output_device} at {s.sample_rate} Hz"
        elif self._running:
            text = "Running"
        else:
            text = "Stopped"
        if self.controller.settings.chain.bypass:
            text += " (bypassed)"
        if self.state_label.text() != text:
            self.state_label.setText(text)

    def _devices_updated(self, devices: list) -> None:
        inputs = [d for d in devices if d.max_input_channels > 0]
        outputs = [d for d in devices if d.max_output_channels > 0]
        for combo, devs, first in ((self.input_combo, inputs, ("System default", DEFAULT_SPEC)),
                                   (self.output_combo, outputs, ("System default", DEFAULT_SPEC)),
                                   (self.monitor_combo, outputs, ("None", NO_MONITOR_SPEC))):
            combo.blockSignals(True)
            combo.clear()
            default = next((d for d in devs if (d.is_default_input if combo is self.input_combo
                                                 else d.is_default_output)), None)
            label = first[0]
            if default is not None and first[1] == DEFAULT_SPEC:
                label = f"System default: {default.label}"
            combo.addItem(label, first[1])
            for d in devs:
                combo.addItem(d.label, d.label)
                combo.setItemData(combo.count() - 1, f"{d.label}, {d.default_samplerate:.0f} Hz", Qt.ToolTipRole)
            combo.blockSignals(False)
        if not inputs or not outputs:
            missing = "input" if not inputs else "output"
            self._devices_unavailable(
                f"No audio {missing} device was found on this machine; connect one (or start a sound server) "
                "and press Refresh. File conversion still works.")
        else:
            self._devices_ok = True
            self.no_devices.hide()
            self.status_panel.set_devices_problem(None)
            for c in (self.input_combo, self.output_combo, self.monitor_combo):
                c.setEnabled(True)
        self._sync_audio(self.controller.settings.audio)
        self._update_start_enabled()

    def _devices_unavailable(self, message: str) -> None:
        self._devices_ok = False
        self.status_panel.set_devices_problem(message)
        self.no_devices_label.setText(message)
        self.no_devices.show()
        for c in (self.input_combo, self.output_combo, self.monitor_combo):
            c.setEnabled(False)
        self._update_start_enabled()

    def _select_device(self, combo: QComboBox, spec, kind: str) -> None:
        if spec in (None, "", DEFAULT_SPEC) or combo.count() == 0:
            _quiet(combo, combo.setCurrentIndex, 0)
            return
        target = None
        try:
            target = self.controller.resolve_device(spec, kind).label
        except (DeviceError, ValueError):
            target = None
        i = combo.findData(target) if target else -1
        if i < 0:
            # The saved device is not here (unplugged): say so instead of silently showing another one.
            text = f"{spec} (not found)"
            i = combo.findText(text)
            if i < 0:
                combo.blockSignals(True)
                combo.addItem(text, spec)
                combo.blockSignals(False)
                i = combo.count() - 1
        _quiet(combo, combo.setCurrentIndex, i)

    def _sync_audio(self, audio) -> None:
        self._select_device(self.input_combo, audio.input_device, "input")
        self._select_device(self.output_combo, audio.output_device, "output")
        self._select_device(self.monitor_combo, audio.monitor_device, "output")
        for s, v in ((self.block_spin, audio.block_ms), (self.crossfade_spin, audio.crossfade_ms),
                     (self.prefill_spin, audio.prefill_ms)):
            _quiet(s, s.setValue, float(v))
        _quiet(self.crossfade_spin, self.crossfade_spin.setMaximum, min(100.0, float(audio.block_ms)))
        _quiet(self.adaptive_check, self.adaptive_check.setChecked, bool(audio.adaptive_buffer))
        _quiet(self.priority_check, self.priority_check.setChecked, bool(audio.realtime_priority))
        i = self.compute_combo.findData(self.controller.settings.compute_device)
        _quiet(self.compute_combo, self.compute_combo.setCurrentIndex, max(i, 0))
        self._update_rate(audio)

    def _update_rate(self, audio=None, snap=None) -> None:
        snap = snap or self.controller.last_snapshot
        if snap is not None and snap.running and snap.sample_rate:
            text = f"{snap.sample_rate} Hz"
        else:
            audio = audio or self.controller.settings.audio
            if audio.sample_rate:
                text = f"{audio.sample_rate} Hz"
            else:
                spec = self.output_combo.currentData()
                dev = None
                try:
                    if self.controller.devices:
                        dev = self.controller.resolve_device(None if spec == DEFAULT_SPEC else spec, "output")
                except (DeviceError, ValueError):
                    dev = None
                text = f"{dev.default_samplerate:.0f} Hz (the output's default)" if dev else "the output's default"
        if self.rate_label.text() != text:
            self.rate_label.setText(text)

    def _device_picked(self, key: str, combo: QComboBox) -> None:
        spec = combo.currentData()
        if spec == getattr(self.controller.settings.audio, key):
            return
        self.controller.set_audio(**{key: spec})

    def _compute_device_picked(self, _index: int) -> None:
        spec = self.compute_combo.currentData()
        if spec != self.controller.settings.compute_device:
            self.controller.set_compute_device(spec)

    def _toggle_advanced(self, on: bool) -> None:
        self.advanced_box.setVisible(on)
        self.advanced_toggle.setArrowType(Qt.DownArrow if on else Qt.RightArrow)

    def _apply_advanced(self) -> None:
        block = self.block_spin.value()
        self.crossfade_spin.setMaximum(min(100.0, block))
        changes = {"block_ms": block, "crossfade_ms": min(self.crossfade_spin.value(), block),
                   "prefill_ms": self.prefill_spin.value()}
        audio = self.controller.settings.audio
        changes = {k: v for k, v in changes.items() if abs(getattr(audio, k) - v) > 1e-9}
        for key, check in (("adaptive_buffer", self.adaptive_check), ("realtime_priority", self.priority_check)):
            if check.isChecked() != getattr(audio, key):
                changes[key] = check.isChecked()
        if changes:
            self.controller.set_audio(**changes)

    # ------------------------------------------------------------------ voices
    def _voices_updated(self, voices: list) -> None:
        self.voice_list.blockSignals(True)
        self.voice_list.clear()
        for v in voices:
            item = QListWidgetItem(v.name if v.kind == "builtin" else f"{v.name}  [{v.kind}]")
            item.setData(Qt.UserRole, v.name)
            item.setData(KIND_ROLE, v.kind)
            item.setToolTip(v.description)
            self.voice_list.addItem(item)
        self.voice_list.blockSignals(False)
        # Tall enough for every voice up to a dozen; beyond that it scrolls.
        rows = min(max(len(voices), 4), 12)
        self.voice_list.setFixedHeight(rows * max(18, self.voice_list.sizeHintForRow(0)) + 6)
        self._select_voice_item(self.controller.voice_name)
        self._update_remove_enabled()

    def _select_voice_item(self, name: str | None) -> None:
        for i in range(self.voice_list.count()):
            item = self.voice_list.item(i)
            if item.data(Qt.UserRole) == name:
                _quiet(self.voice_list, self.voice_list.setCurrentItem, item)
                self.voice_list.scrollToItem(item)
                return

    def _voice_info(self, name: str | None):
        return next((v for v in self.controller.voices if v.name == name), None)

    def _removable(self, name: str | None) -> bool:
        info = self._voice_info(name)
        return info is not None and info.kind != "builtin"

    def _update_remove_enabled(self) -> None:
        item = self.voice_list.currentItem()
        name = item.data(Qt.UserRole) if item is not None else None
        removable = self._removable(name)
        self.remove_button.setEnabled(removable and not self.controller.busy)
        if name is not None and not removable:
            self.remove_button.setToolTip("Built-in voices cannot be removed.")
        else:
            self.remove_button.setToolTip("Uninstall the selected voice (right-click a voice to remove another).")

    def voice_menu(self, item: QListWidgetItem | None) -> QMenu:
        """The voice list's context menu; ``item`` is the voice under the mouse (None: empty space)."""
        menu = QMenu(self)
        menu.addAction(self.import_action)
        if item is not None:
            name = item.data(Qt.UserRole)
            remove = menu.addAction(f"Remove '{name}'\u2026")
            remove.setObjectName("removeVoiceAction")
            # Reachable even for a voice that cannot load (e.g. a missing content encoder), which the list
            # cannot keep selected.
            remove.setEnabled(self._removable(name) and not self.controller.busy)
            remove.triggered.connect(lambda: self.remove_voice_clicked(name))
        return menu

    def import_voice_clicked(self) -> ImportVoiceDialog | None:
        """Choose a model file, then the dialog for its optional index and name (None: cancelled)."""
        if self.import_dialog is not None and self.import_dialog.importing:
            self.import_dialog.show()
            self.import_dialog.raise_()
            return self.import_dialog
        start = str(self.controller.gui_settings().get("voice_import_dir") or "")
        model = pick_model(self, start)
        if model is None:
            return None
        if self.import_dialog is None:
            self.import_dialog = ImportVoiceDialog(self.controller, model, self)
        else:
            self.import_dialog.reset(model)
        self.import_dialog.open()  # window-modal, without a nested event loop
        return self.import_dialog

    def _voice_imported(self, info) -> None:
        self.statusBar().showMessage(f"Imported voice '{info.name}'.", 8000)
        # The new voice becomes the current one, as if the user had picked it.
        self._select_voice_item(info.name)
        self._update_remove_enabled()
        self.controller.load_voice(info.name)

    def remove_voice_clicked(self, name: str | None = None) -> None:
        if name is None:
            item = self.voice_list.currentItem()
            name = item.data(Qt.UserRole) if item is not None else None
        info = self._voice_info(name)
        if info is None or info.kind == "builtin" or self.controller.busy:
            return
        where = f" Its copy in {info.path} is deleted; the" if info.path else " The"
        text = (f"Remove the voice '{name}'?{where} model file you imported it from is kept."
                + (" AutoVoice switches to the default voice." if name == self.controller.voice_name else ""))
        answer = QMessageBox.question(self, "Remove voice", text, QMessageBox.Yes | QMessageBox.Cancel,
                                      QMessageBox.Cancel)
        if answer == QMessageBox.Yes:
            self.controller.remove_voice(name)

    def _voice_removed(self, name: str) -> None:
        self.statusBar().showMessage(f"Removed voice '{name}'.", 8000)

    def _voice_picked(self, item: QListWidgetItem | None, _previous=None) -> None:
        if item is None:
            return
        self.controller.load_voice(item.data(Qt.UserRole))

    def _voice_loading(self, name: str) -> None:
        self.voice_description.setText(f"Loading '{name}'\u2026")

    def _voice_loaded(self, info) -> None:
        if info is None:
            return
        self._select_voice_item(info.name)
        self.voice_description.setText(info.description)
        self._build_params(info)
        self._update_state_label()

    def _voice_failed(self, name: str, message: str) -> None:
        self._select_voice_item(self.controller.voice_name)
        info = self.controller.voice_info
        self.voice_description.setText(info.description if info else "")

    def _build_params(self, info) -> None:
        while self.params_form.rowCount():
            self.params_form.removeRow(0)
        self.param_controls.clear()
        values = self.controller.voice_params()
        for spec in info.params:
            control = make_control(spec)
            if spec.name in values:
                control.set_value(values[spec.name])
            control.valueChanged.connect(self.controller.set_param)
            self.params_form.addRow(make_label(spec), control)
            self.param_controls[spec.name] = control
        self.params_box.setVisible(bool(info.params))
        self.no_params.setVisible(not info.params)

    def _params_applied(self, values: dict) -> None:
        for name, value in values.items():
            c = self.param_controls.get(name)
            if c is not None and c.value() != value:
                c.set_value(value)

    def _chain_changed(self, name: str, value) -> None:
        self.controller.set_chain(**{name: value})

    def _sync_chain(self, chain) -> None:
        for name, c in self.chain_controls.items():
            c.set_value(getattr(chain, name))
        if self.bypass_action.isChecked() != chain.bypass:
            _quiet(self.bypass_action, self.bypass_action.setChecked, chain.bypass)
            _quiet(self.bypass_button, self.bypass_button.setChecked, chain.bypass)
        self._update_state_label()

    # ------------------------------------------------------------------ telemetry
    def _snapshot(self, s) -> None:
        self.status_panel.update_snapshot(s)
        self.performance.update_snapshot(s)
        self._update_rate(snap=s)
        self._update_state_label(s)

    # ------------------------------------------------------------------ files
    def open_convert_dialog(self) -> ConvertDialog:
        if self.convert_dialog is None:
            self.convert_dialog = ConvertDialog(self.controller, self)
        else:
            voice = self.controller.voice_name or "none"
            self.convert_dialog.voice_label.setText(f"Voice: <b>{voice}</b> with its current settings.")
        self.convert_dialog.show()
        self.convert_dialog.raise_()
        return self.convert_dialog

    def open_song_dialog(self):
        """The Songs dialog (autovoice_desktop/song_dialog.py), one per window."""
        from autovoice_desktop.song_dialog import SongDialog

        if getattr(self, "song_dialog", None) is None:
            self.song_dialog = SongDialog(self.controller, self)
        self.song_dialog.show()
        self.song_dialog.raise_()
        return self.song_dialog

    # ------------------------------------------------------------------ closing
    def save_state(self) -> None:
        self.controller.save_gui_settings(
            geometry=bytes(self.saveGeometry().toBase64()).decode("ascii"),
            splitter=bytes(self.splitter.saveState().toBase64()).decode("ascii"),
            advanced_open=self.advanced_toggle.isChecked(),
        )

    # The pitch view costs CPU: the engine tracks pitch only while the window can be seen.
    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.controller.set_view_visible(not self.isMinimized())

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.controller.set_view_visible(False)

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.WindowStateChange:
            self.controller.set_view_visible(self.isVisible() and not self.isMinimized())

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._closing:
            event.accept()
            return
        self._closing = True
        if self.convert_dialog is not None:
            self.convert_dialog.cancel()
        # Queued jobs finish first: one of them may be saving settings, and the last write must be ours.
        self.controller.shutdown()
        self.save_state()
        event.accept()
