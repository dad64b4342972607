"""Measure the true end-to-end latency of a running `autovoice live` through a JACK server.

A separate JACK client plays a click train into AutoVoice's input port and records AutoVoice's
output port in the same process cycles, so played and recorded samples share one time base; the
cross-correlation peak between them is the end-to-end delay in samples (device buffers, rings,
block and look-ahead, all of it), to compare with the latency the engine reports.

Usage (a JACK server must be running, e.g. `jackd --no-realtime -d dummy -r 48000 -p 256 &`):
    python benchmarks/jack_loopback.py --voice natural --seconds 6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def find_autovoice_ports(client, own_name: str, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ins = [p for p in client.get_ports(is_audio=True, is_input=True)
               if not p.name.startswith(("system:", own_name + ":"))]
        outs = [p for p in client.get_ports(is_audio=True, is_output=True)
                if not p.name.startswith(("system:", own_name + ":"))]
        if ins and outs:
            return ins, outs
        time.sleep(0.1)
    raise RuntimeError("autovoice's JACK ports did not appear")


def measure(voice: str = "natural", seconds: float = 6.0, extra_args: list[str] | None = None,
            click_period_s: float = 0.5) -> dict:
    import jack

    env = dict(os.environ)
    tmp = tempfile.mkdtemp(prefix="avbench-")
    env.setdefault("AUTOVOICE_CONFIG_DIR", tmp)
    stats = Path(tmp) / "stats.json"
    cmd = [sys.executable, "-m", "autovoice", "live", "--voice", voice, "--input", "system", "--output",
           "system", "--seconds", str(seconds + 3.0), "--stats-json", str(stats), "--gate", "-100"]
    proc = subprocess.Popen(cmd + (extra_args or []), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = jack.Client("avmeas", no_start_server=True)
    sr = client.samplerate
    total = int((seconds + 1.0) * sr)
    period = int(click_period_s * sr)
    play = np.zeros(total, dtype=np.float32)
    # A short band-limited click (Hann-windowed 1 kHz burst) survives every voice's processing better than a
    # single sample while keeping a sharp correlation peak.
    burst_n = int(0.004 * sr)
    burst = (0.5 * np.hanning(burst_n) * np.sin(2 * np.pi * 1000 * np.arange(burst_n) / sr)).astype(np.float32)
    for start in range(period, total - burst_n, period):
        play[start:start + burst_n] = burst
    rec = np.zeros(total, dtype=np.float32)
    pos = [0]
    done = threading.Event()
    out_port = client.outports.register("out")
    in_port = client.inports.register("in")

    @client.set_process_callback
    def process(frames):
        p = pos[0]
        if p + frames > total:
            out_port.get_array().fill(0)
            done.set()
            return
        out_port.get_array()[:] = play[p:p + frames]
        rec[p:p + frames] = in_port.get_array()
        pos[0] = p + frames

    try:
        ins, outs = find_autovoice_ports(client, "avmeas")
        with client:
            # Let autovoice settle before the clock starts (its first output is pre-fill silence).
            time.sleep(1.0)
            for p in ins:
                for c in client.get_all_connections(p):
                    client.disconnect(c, p)
            client.connect(out_port, ins[0])
            client.connect(outs[0], in_port)
            pos[0] = 0
            done.wait(seconds + 10)
        corr = np.correlate(rec, burst, mode="valid")
        env_ = np.abs(corr)
        # Delay of each click: first peak after each emitted click, within one click period.
        delays = []
        for start in range(period, total - period, period):
            seg = env_[start:start + period - burst_n]
            if len(seg) and seg.max() > 0.1 * np.abs(np.correlate(burst, burst)).max():
                delays.append(int(np.argmax(seg)))
        proc.wait(timeout=30)
        snap = json.loads(stats.read_text()) if stats.exists() else {}
        return {
            "voice": voice,
            "sample_rate": sr,
            "clicks": len(delays),
            "measured_ms_median": 1000.0 * float(np.median(delays)) / sr if delays else float("nan"),
            "measured_ms_min": 1000.0 * float(np.min(delays)) / sr if delays else float("nan"),
            "measured_ms_max": 1000.0 * float(np.max(delays)) / sr if delays else float("nan"),
            "reported_total_ms": snap.get("total_latency_ms"),
            "reported_algorithmic_ms": snap.get("algorithmic_latency_ms"),
            "reported_buffer_ms": snap.get("buffer_latency_ms"),
            "reported_device_ms": snap.get("device_latency_ms"),
            "underflows": snap.get("output_underflows"),
            "overflows": snap.get("input_overflows"),
            "late_blocks": snap.get("late_blocks"),
            "compute_ms_p99": snap.get("compute_ms_p99"),
            "stderr_tail": proc.stderr.read()[-500:] if proc.stderr else "",
        }
    finally:
        client.close()
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--voice", default="natural")
    ap.add_argument("--seconds", type=float, default=6.0)
    a = ap.parse_args()
    print(json.dumps(measure(a.voice, a.seconds), indent=2))
