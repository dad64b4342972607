"""Shared fixtures: isolated settings/data folders, real recordings, and a real JACK server."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """No test ever reads or writes the real user's settings or voices."""
    monkeypatch.setenv("AUTOVOICE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("AUTOVOICE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture(autouse=True)
def signals_left_as_found():
    """A test (or what it runs in this process) that leaves SIGINT or SIGTERM ignored or blocked
    fails: every process started after it would inherit that, and its Ctrl-C would do nothing."""
    def state():
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, set()) if hasattr(signal, "pthread_sigmask") else set()
        return {sig: (signal.getsignal(sig) == signal.SIG_IGN, sig in mask) for sig in (signal.SIGINT, signal.SIGTERM)}

    before = state()
    yield
    after = state()
    changed = [f"{sig.name} {'ignored' if after[sig][0] else 'blocked'}" for sig in after if after[sig] != before[sig]]
    assert not changed, f"this test left {', '.join(changed)} in the test process"


@pytest.fixture
def speech_male():
    import soundfile as sf

    x, sr = sf.read(DATA / "freesound136777_davidbain_M_xmas.wav", dtype="float32")
    return x, sr


def tone(freq_hz: float, seconds: float, sample_rate: int, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _jack_running() -> bool:
    if shutil.which("jack_lsp") is None:
        return False
    return subprocess.run(["jack_lsp"], capture_output=True, timeout=10).returncode == 0


@pytest.fixture(scope="session")
def jack_server():
    """A JACK server with the dummy driver (2 in / 2 out at 48 kHz): started here unless one runs.

    The dummy driver keeps real time with no sound card, so PortAudio streams, callbacks and
    latencies are all real; its capture ports are silent unless a client feeds them.
    """
    proc = None
    if not _jack_running():
        if shutil.which("jackd") is None:
            pytest.skip("jackd is not installed (apt-get install jackd2); .ci/run installs it")
        proc = subprocess.Popen(
            ["jackd", "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256", "-C", "2", "-P", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while not _jack_running():
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("jackd did not start")
            time.sleep(0.2)
    import sounddevice as sd

    # PortAudio enumerates host APIs once at initialisation: re-scan now that JACK runs.
    sd._terminate()
    sd._initialize()
    yield
    if proc is not None:
        # Let go of JACK before stopping it: PortAudio's JACK host API asserts (and aborts the
        # whole test run with status 134) if it is terminated after its server has gone.
        while sd._initialized:
            sd._terminate()
        proc.terminate()
        proc.wait(timeout=10)
