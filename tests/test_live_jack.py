"""The live engine through a real JACK server (dummy driver): streams, counters, latency, failures."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from engine.api import Engine
from engine.errors import DeviceError

pytestmark = pytest.mark.jack


@pytest.fixture
def engine(jack_server):
    e = Engine(load_default_voice=False)
    e.load_voice("robot").result()
    yield e
    e.close()


def wait_for(pred, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_duplex_stream_runs_and_stops_cleanly(engine):
    engine.start("system", "system")
    assert engine.running
    t0 = time.monotonic()
    assert wait_for(lambda: engine.snapshot().blocks_processed >= 150)
    elapsed = time.monotonic() - t0
    s = engine.snapshot()
    assert s.running and s.devices_ok and s.last_error is None
    assert s.sample_rate == 48000 and s.block_ms == pytest.approx(10.0)
    assert "JACK" in s.input_device
    # Audio flowed at the device's pace: about one 10 ms block per 10 ms of wall time.
    assert s.blocks_processed <= (elapsed + 1.0) * 100 + 10
    assert s.input_overflows == 0
    assert s.nonfinite_blocks == 0
    assert s.compute_ms_p99 > 0
    assert s.algorithmic_latency_ms == pytest.approx(10.0 + 1000 * engine.voice.latency_samples / 48000, abs=0.1)
    assert s.total_latency_ms == pytest.approx(s.algorithmic_latency_ms + s.buffer_latency_ms + s.device_latency_ms)
    import gc

    assert gc.get_freeze_count() > 10000  # streaming: a full collection cannot stall the worker
    engine.stop()
    assert not engine.running
    assert engine.snapshot().running is False
    assert gc.get_freeze_count() == 0


def test_switching_to_a_missing_device_keeps_the_previous_one(engine):
    engine.start("system", "system")
    before = engine.snapshot().blocks_processed
    with pytest.raises(DeviceError) as err:
        engine.switch_devices(output_device="no-such-device")
    assert "no-such-device" in str(err.value) and "previous devices were kept" in str(err.value)
    assert engine.running
    assert wait_for(lambda: engine.snapshot().blocks_processed > before + 20)
    assert engine.settings.audio.output_device == "system"


def test_a_bad_setting_while_running_leaves_the_running_stream_alone(engine):
    from engine.errors import ConfigError

    engine.start("system", "system")
    stream = engine.stream
    with pytest.raises(ConfigError) as err:
        engine.switch_devices(block_ms=-5)
    assert "Block size" in str(err.value)
    assert engine.stream is stream and engine.running  # not reopened on top of itself
    n = engine.snapshot().blocks_processed
    assert wait_for(lambda: engine.snapshot().blocks_processed > n + 20)
    engine.stop()
    assert not stream.active  # and stopping really stops it: no orphan stream left playing


def test_unsupported_sample_rate_is_one_sentence(engine):
    with pytest.raises(DeviceError) as err:
        engine.start("system", "system", sample_rate=44100)  # the JACK server runs at 48 kHz
    assert "44100 Hz" in str(err.value)
    assert not engine.running


def test_voice_and_settings_change_live_without_stopping(engine):
    engine.start("system", "system")
    assert wait_for(lambda: engine.snapshot().blocks_processed > 20)
    engine.load_voice("whisper").result()
    engine.set_chain(output_gain_db=-3.0)
    assert wait_for(lambda: engine.snapshot().voice_name == "whisper")
    n = engine.snapshot().blocks_processed
    assert wait_for(lambda: engine.snapshot().blocks_processed > n + 20)
    assert engine.running and engine.snapshot().nonfinite_blocks == 0


@pytest.mark.parametrize("voice", ["natural", "deeper"])
def test_end_to_end_latency_matches_what_the_engine_reports(jack_server, voice):
    """A click into AutoVoice's JACK input comes out of its output exactly as late as reported,
    through the passthrough and through a pitch-shifting voice (its look-ahead included)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from jack_loopback import measure

    r = measure(voice, seconds=3.0)
    assert r["clicks"] >= 4, r
    period_ms = 256 / 48000 * 1000
    assert abs(r["measured_ms_median"] - r["reported_total_ms"]) <= period_ms + 1.0, r


KILL_SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys, time
    from engine.api import Engine
    jackd = subprocess.Popen(["jackd", "-n", os.environ["JACK_DEFAULT_SERVER"], "--no-realtime", "-d", "dummy",
                              "-r", "48000", "-p", "256"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.0)
    import sounddevice as sd
    sd._terminate(); sd._initialize()
    e = Engine(load_default_voice=False)
    e.load_voice("natural").result()
    e.start("system", "system")
    time.sleep(1.0)
    running_before = e.running
    jackd.kill(); jackd.wait()
    deadline = time.time() + 10
    while e.running and time.time() < deadline:
        time.sleep(0.05)
    s = e.snapshot()
    out = {"running_before": running_before, "running_after": e.running, "last_error": s.last_error,
           "worker_alive": s.worker_alive, "heartbeat_age_s": s.worker_heartbeat_age_s}
    # The engine keeps working for everything that does not need the device.
    fut = e.convert_files([sys.argv[1]], sys.argv[2], voice="natural")
    out["convert_ok"] = not isinstance(fut.result(timeout=60)[0], Exception)
    print(json.dumps(out), flush=True)
    os._exit(0)
""")


def test_device_vanishing_mid_stream_stops_cleanly_and_the_process_lives_on(tmp_path):
    import shutil

    if shutil.which("jackd") is None:
        pytest.skip("jackd is not installed")
    from tests.conftest import DATA

    # A fixed name: JACK reclaims a dead server's registry slot only for the same name, and it
    # has room for 8 servers, so a per-run name would stop JACK from starting after a few runs.
    env = dict(os.environ, JACK_DEFAULT_SERVER="autovoice-test-kill")
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(DATA / "freesound136777_davidbain_M_xmas.wav"),
                           str(tmp_path / "after.wav")], capture_output=True, text=True, timeout=120, env=env,
                          cwd=os.path.join(os.path.dirname(__file__), ".."))
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["running_before"] is True and r["running_after"] is False
    assert "An audio device stopped" in r["last_error"] and "start again" in r["last_error"]
    assert r["worker_alive"] and r["heartbeat_age_s"] < 1.0
    assert r["convert_ok"] and (tmp_path / "after.wav").exists()


def test_autovoice_live_keeps_what_it_measured_when_the_device_goes(tmp_path):
    """The sound server dies mid-session: `autovoice live` says so, exits 1 and still writes its
    snapshot and timeline (what a user needs to see what happened)."""
    import shutil

    import numpy as np

    if shutil.which("jackd") is None:
        pytest.skip("jackd is not installed")
    env = dict(os.environ, JACK_DEFAULT_SERVER="autovoice-test-kill-cli",  # fixed: see the test above
               AUTOVOICE_CONFIG_DIR=str(tmp_path / "config"), AUTOVOICE_DATA_DIR=str(tmp_path / "data"))
    jackd = subprocess.Popen(["jackd", "-n", env["JACK_DEFAULT_SERVER"], "--no-realtime", "-d", "dummy", "-r", "48000",
                              "-p", "256"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    stats, timeline = tmp_path / "stats.json", tmp_path / "timeline.npz"
    try:
        assert wait_for(lambda: subprocess.run(["jack_lsp"], env=env, capture_output=True).returncode == 0)
        live = subprocess.Popen([sys.executable, "-m", "autovoice", "live", "--voice", "natural", "--input", "system",
                                 "--output", "system", "--seconds", "60", "--stats-json", str(stats),
                                 "--timeline", str(timeline)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, cwd=os.path.join(os.path.dirname(__file__), ".."))
        time.sleep(6.0)  # started and streaming
    finally:
        jackd.kill()
        jackd.wait()
    _, err = live.communicate(timeout=60)
    assert live.returncode == 1, err[-1500:]
    assert "autovoice: error: An audio device stopped" in err
    s = json.loads(stats.read_text())
    assert s["blocks_processed"] > 50 and "An audio device stopped" in s["last_error"]
    assert len(np.load(timeline)["at_s"]) > 50


def test_monitor_output_gets_the_same_audio(engine):
    engine.start("system", "system", monitor_device="system")
    assert wait_for(lambda: engine.snapshot().blocks_processed > 50)
    s = engine.snapshot()
    assert s.monitor_device and "JACK" in s.monitor_device
    stream = engine.stream
    assert stream.mon_counters.output_callbacks > 20  # the monitor stream is really playing
    # Both rings got every converted block, less what the latency guard skipped on each (the
    # monitor is its own stream and may start a little later than the main one), plus the silence
    # it put in to raise a margin (the monitor's, a stream of its own, is not in step with the input).
    out_guard, mon_guard = engine.worker.chain.guards
    engine.stop()  # so that the worker is not between the two writes while we compare
    assert (stream.mon_ring.written - mon_guard.inserted_frames + mon_guard.skipped_frames
            == stream.out_ring.written - out_guard.inserted_frames + out_guard.skipped_frames)


class SlowVoice:
    """Takes 15 ms per 10 ms block: inference that cannot keep up."""

    name = "slow"
    sample_rate = 48000
    latency_samples = 0
    hop_samples = None
    param_specs = ()

    def init_state(self):
        return None

    def process(self, block, state, params):
        time.sleep(0.015 * len(block) / 480)
        return block, state


def test_late_inference_shows_in_counters_and_never_blocks_the_callback(jack_server, monkeypatch):
    import engine.api

    monkeypatch.setattr(engine.api, "load_voice", lambda *a, **k: SlowVoice())
    e = Engine(load_default_voice=False)
    try:
        e.load_voice("natural").result()
        e.start("system", "system")
        t0 = time.monotonic()
        assert wait_for(lambda: e.snapshot().late_blocks >= 30, timeout_s=20)
        s = e.snapshot()
        elapsed = time.monotonic() - t0
        assert s.output_underflows > 0  # the gap is counted, not hidden
        assert s.compute_load > 1.0
        assert s.suggestion and "block size" in s.suggestion
        # The device kept calling back at its own pace (256-frame periods at 48 kHz) while the voice lagged.
        calls = e.stream.counters.output_callbacks
        assert calls >= 0.8 * elapsed * 48000 / 256
        assert e.running
    finally:
        e.close()


def test_a_device_rate_other_than_the_voices_plays_without_gaps(tmp_path):
    """A 44.1 kHz sound server with a 48 kHz voice: audio is resampled both ways every block. The
    resampler must hand back a steady amount per block (soxr's stream mode gave 0 and ~890 samples
    on alternate 10 ms blocks here, which emptied the output ring on every other block) and the
    reported latency must still be the measured one."""
    import shutil

    if shutil.which("jackd") is None:
        pytest.skip("jackd is not installed")
    name = "autovoice-test-44k"  # fixed, see above
    log = open(tmp_path / "jackd.log", "w")
    jackd = subprocess.Popen(["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r", "44100", "-p", "256"],
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        env = dict(os.environ, JACK_DEFAULT_SERVER=name)
        started = wait_for(lambda: subprocess.run(["jack_lsp"], capture_output=True, env=env).returncode == 0, 15)
        assert started, (tmp_path / "jackd.log").read_text()[-1500:]
        # A process can be a client of one JACK server only (this one already uses the tests'
        # server), so the measurement runs in its own process.
        bench = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
        code = (f"import sys, json; sys.path.insert(0, {bench!r}); from jack_loopback import measure; "
                "print(json.dumps(measure('natural', seconds=3.0)))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-1000:]
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        assert r["clicks"] >= 4, r
        assert r["underflows"] <= 3, r  # soxr streaming gave ~150 here (every other block)
        period_ms = 256 / 44100 * 1000
        assert abs(r["measured_ms_median"] - r["reported_total_ms"]) <= period_ms + 1.0, r
    finally:
        jackd.terminate()
        jackd.wait(timeout=10)
