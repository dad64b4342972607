"""Helpers for the server tests: a real `autovoice serve` subprocess on 127.0.0.1 (port 0: it picks a free
port and prints it), and audio/pitch helpers."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
MALE = DATA / "freesound136777_davidbain_M_xmas.wav"
SINGING = DATA / "singing_vocadito_10_0-4s_48k.wav"
TOKEN = "test-token-0123456789abcdef"


@dataclass
class Server:
    proc: subprocess.Popen
    host: str
    port: int
    token: str | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def client(self, auth: bool = True, timeout: float = 60.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if (auth and self.token) else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def get(self, path: str, auth: bool = True) -> httpx.Response:
        with self.client(auth) as c:
            return c.get(path)

    def rss_bytes(self) -> int:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss

    def metric(self, name: str, labels: str = "") -> float | None:
        """One sample's value from /metrics, e.g. metric('autovoice_conversions_total', 'outcome="ok"')."""
        text = self.get("/metrics").text
        pattern = "^" + re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else r"(?:\{\})?") + r" (\S+)$"
        found = re.search(pattern, text, re.M)
        return float(found.group(1)) if found else None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("the server did not stop within 20 s of SIGTERM") from None
        return self.proc.returncode


def run_serve(*args: str, env: dict | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """`autovoice serve ...` expected to exit by itself (a refusal)."""
    return subprocess.run([sys.executable, "-m", "autovoice", "serve", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def server_env(folder: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "AUTOVOICE_TOKEN"}
    env.update(AUTOVOICE_CONFIG_DIR=str(folder / "config"), AUTOVOICE_DATA_DIR=str(folder / "data"), **extra)
    return env


def start_server(folder: Path, *args: str, token: str | None = None, env: dict | None = None,
                 wait_ready: bool = True, timeout_s: float = 60.0) -> Server:
    env = env or server_env(folder)
    cmd = [sys.executable, "-m", "autovoice", "serve", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    log: list[str] = []
    announced = threading.Event()

    def drain() -> None:  # keeps the pipe from filling; the lines stay for assertions
        for line in proc.stderr:
            log.append(line)
            if "listening on http://" in line:
                announced.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not announced.wait(0.1):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the server did not start:\n" + "".join(log))
    found = re.search(r"listening on http://([^:\s]+):(\d+)", "".join(log))
    server = Server(proc, found.group(1), int(found.group(2)), token, log)
    if wait_ready:
        while True:
            try:
                if server.get("/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise AssertionError("the server never became ready:\n" + "".join(log))
            time.sleep(0.1)
    return server


# ---------------------------------------------------------------------- audio helpers
def wav_bytes(x: np.ndarray, sr: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def speech(sr: int | None = None) -> tuple[np.ndarray, int]:
    x, rate = sf.read(MALE, dtype="float32")
    if sr is not None and sr != rate:
        x, rate = soxr.resample(x, rate, sr).astype(np.float32), sr
    return x, rate


def harvest_f0(x: np.ndarray, sr: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyworld imports pkg_resources
        import pyworld
    y = soxr.resample(np.asarray(x, np.float64), sr, 16000) if sr != 16000 else np.asarray(x, np.float64)
    f0, _ = pyworld.harvest(y, 16000, f0_floor=40.0, f0_ceil=1100.0, frame_period=5.0)
    return f0


def median_cents(x_in: np.ndarray, x_out: np.ndarray, sr: int, semitones: float) -> tuple[float, int]:
    """Median pitch error of ``x_out`` against ``x_in`` moved by ``semitones``, over frames voiced in both."""
    a, b = harvest_f0(x_in, sr), harvest_f0(x_out, sr)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    both = (a > 0) & (b > 0)
    cents = 1200 * np.log2(b[both] / (a[both] * 2 ** (semitones / 12)))
    return float(np.median(cents)), int(both.sum())
