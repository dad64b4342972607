"""Soak test: `autovoice live` on a JACK server for N minutes per voice, fed looped real speech.

A separate JACK client (this process) plays a real recording, looped, into AutoVoice's input and
counts the sound server's own xruns; AutoVoice runs as the user runs it (`autovoice live`) and
writes its final health snapshot and a per-block timeline. For every run this prints blocks, late
blocks, output underflows (events and frames), input overflows, JACK xruns, compute percentiles,
garbage collections (full ones and the longest pause) and how far the adaptive buffer grew; then,
for each underflow, what the timeline shows just before it (a gap between blocks, a collection, and
whose the wait was: input that had been complete for WORKER_LATE_MS or more before the worker took
it means the worker was late; otherwise a block whose work took SLOW_WORK_TIMES its usual time or
more was slow itself (with how long the kernel had the worker on a CPU meanwhile: as long means
it ran slower there), and else the input itself came late, from the sound server) and whether the
JACK server reported an xrun right then, and whether the server's own cycles paused
(this client notes when each cycle reached it: a gap of SERVER_PAUSE_PERIODS periods or more means
the server itself fell behind, whatever AutoVoice did), and whether the hypervisor took CPU time
from the machine then (``steal`` in /proc/stat: a virtual machine whose vCPUs stall is not quiet).
It also counts the run's quiet minutes (the host took under QUIET_STEAL_MS_PER_MIN from the machine
in them) and the underflows in those: what the stream does while a busy host leaves it alone.

Baseline in the same run: each voice is also run with AUTOVOICE_STREAM_GC=0 (garbage collection
left as Python does it; ``--baseline callbacks``: AUTOVOICE_CALLBACK_PRIORITY=0, the audio callback
threads left at the sound library's priority; ``--baseline polling``: AUTOVOICE_INPUT_DUE=0, the
worker polling for input every 0.5 ms instead of sleeping until it is due; ``--baseline native``:
AUTOVOICE_NATIVE_CALLBACK=0, the Python audio callbacks instead of the native one) unless --no-baseline is given. --hog keeps one core busy beside it.
--rt-jack starts the JACK server real-time scheduled (as JACK and PipeWire run on desktops; the
default is the unscheduled server issue 14 measured on). --parallel soaks all the voices at once,
each on its own JACK server: a busier machine than one stream alone (each run is the others' load),
so what it shows holds a fortiori for one stream. --normal-priority passes the same flag to
`autovoice live` (the worker at normal priority: the comparison for its real-time default).

    python benchmarks/soak_live.py --minutes 10 --voices deeper natural
    python benchmarks/soak_live.py --minutes 5 --voices deeper --hog --prefill-ms 20
    python benchmarks/soak_live.py --minutes 60 --voices natural radio robot --parallel --no-baseline
    python benchmarks/soak_live.py --minutes 20 --voices rvc --no-baseline --rvc-preset small-cpu
    python benchmarks/soak_live.py --minutes 10 --voices deeper --front app   # the desktop app's window

The voice ``rvc`` is a full-size RVC v2 40 kHz model and HuBERT base in their real file formats with
random weights (compute does not depend on them; built once into the temp folder), imported into the
run's data folder as a user imports one, with FCPE pitch and the live setting ``--rvc-preset``.

Needs jackd (the dummy driver is started here if no JACK server runs) and JACK-Client.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "tests" / "data" / "freesound136777_davidbain_M_xmas.wav"
SETTLE_S = 5.0


def jack_env(server: str | None) -> dict:
    """The environment that makes libjack (and PortAudio through it) use `server`."""
    return dict(os.environ, JACK_DEFAULT_SERVER=server) if server else dict(os.environ)


def jack_running(server: str | None = None) -> bool:
    return shutil.which("jack_lsp") is not None and subprocess.run(
        ["jack_lsp"], capture_output=True, timeout=10, env=jack_env(server)).returncode == 0


PARALLEL_STAGGER_S = 5.0


def start_jack(period: int, rate: int, server: str | None = None, realtime: bool = False) -> subprocess.Popen | None:
    """Start a dummy-driver JACK server (named `server`, else the default one) unless one runs;
    `realtime`: scheduled as sound servers run on desktops (SCHED_FIFO), else as issue 14 measured."""
    if jack_running(server):
        return None
    # The server's own messages are kept: if it exits mid-soak, the failure report quotes them.
    log = tempfile.NamedTemporaryFile("w+", prefix=f"avsoak-jackd-{server or 'default'}-", suffix=".log", delete=False)
    proc = subprocess.Popen(["jackd", *(["-n", server] if server else []), "-R" if realtime else "--no-realtime", "-d", "dummy",
                             "-r", str(rate), "-p", str(period), "-C", "2", "-P", "2"],
                            stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = log.name
    deadline = time.monotonic() + 15
    while not jack_running(server):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("jackd did not start (apt-get install jackd2)")
        time.sleep(0.2)
    return proc


RVC_VOICE = "rvc"


def rvc_files() -> tuple[Path, Path]:
    """(voice .pth, hubert_base.pt): full size, random weights, real formats; built once and kept."""
    cache = Path(tempfile.gettempdir()) / "avsoak-rvc-models"
    pth, hubert = cache / "soakvoice.pth", cache / "hubert_base.pt"
    if not (pth.is_file() and hubert.is_file()):
        sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "rvc")]
        from helpers_frontend import tiny_fairseq_hubert_checkpoint
        from tiny_models import full_config, randomize_

        from engine.voices.rvc.checkpoint import write_checkpoint
        from engine.voices.rvc.hubert import hubert_base_config
        from engine.voices.rvc.synthesizer import build_synthesizer

        cache.mkdir(parents=True, exist_ok=True)
        write_checkpoint(randomize_(build_synthesizer(full_config("v2", True, 40000)), seed=0), pth, info="soak")
        tiny_fairseq_hubert_checkpoint(hubert, hubert_base_config())
    return pth, hubert


def install_rvc(env: dict, data: Path) -> str:
    """Import the soak's RVC voice into the run's data folder, as `autovoice voices import` does."""
    pth, hubert = rvc_files()
    (data / "models").mkdir(parents=True, exist_ok=True)
    shutil.copy(hubert, data / "models" / "hubert_base.pt")
    subprocess.run([sys.executable, "-m", "autovoice", "voices", "import", str(pth), "--name", "soakvoice"],
                   env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
    return "soakvoice"


class StealWatch:
    """Notes when the hypervisor took CPU time from this (virtual) machine: each rise of a CPU's
    ``steal`` in /proc/stat, sampled every ``every_s``, as (time.monotonic(), milliseconds). A
    machine whose vCPUs stall is not quiet, whatever runs on it; on bare metal this stays empty."""

    def __init__(self, every_s: float = 0.02):
        self.every_s, self.at_s, self.ms = every_s, [], []
        self._stop = threading.Event()
        self._tick_ms = 1000.0 / os.sysconf("SC_CLK_TCK")
        self._thread = threading.Thread(target=self._run, name="steal-watch", daemon=True)

    @staticmethod
    def _steal() -> list[int]:
        with open("/proc/stat") as f:
            return [int(line.split()[8]) for line in f if line.startswith("cpu") and line[3] != " "]

    def _run(self) -> None:
        last = self._steal()
        while not self._stop.wait(self.every_s):
            now = self._steal()
            taken = sum(max(0, b - a) for a, b in zip(last, now))
            if taken:
                self.at_s.append(time.monotonic())
                self.ms.append(taken * self._tick_ms)
            last = now

    def __enter__(self) -> "StealWatch":
        if os.path.exists("/proc/stat"):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)


def hog() -> subprocess.Popen:
    """One busy core: a process that never sleeps."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


BASELINE_ENV = {"gc": "AUTOVOICE_STREAM_GC", "callbacks": "AUTOVOICE_CALLBACK_PRIORITY", "polling": "AUTOVOICE_INPUT_DUE",
                "native": "AUTOVOICE_NATIVE_CALLBACK"}


def soak(voice: str, seconds: float, baseline: str | None, extra: list[str], with_hog: bool, server: str | None = None,
         rvc_preset: str = "small-cpu", front: str = "cli", keep: Path | None = None) -> dict:
    """One run; ``baseline``: None (as users run it) or a key of BASELINE_ENV (that mechanism off);
    ``keep``: a folder to save the run's timeline in, with the server's cycles, xruns and steal."""
    import jack
    import soundfile as sf

    x, sr_file = sf.read(SPEECH, dtype="float32")
    tmp = Path(tempfile.mkdtemp(prefix="avsoak-"))
    env = dict(jack_env(server), AUTOVOICE_CONFIG_DIR=str(tmp / "config"), AUTOVOICE_DATA_DIR=str(tmp / "data"))
    for key, name in BASELINE_ENV.items():
        env[name] = "0" if baseline == key else "1"
    stats, timeline = tmp / "stats.json", tmp / "timeline.npz"
    run_voice, voice_args = voice, []
    if voice == RVC_VOICE:
        run_voice = install_rvc(env, tmp / "data")
        voice_args = ["--param", f"live_preset={rvc_preset}", "--param", "f0_method=fcpe"]
    session = ["--voice", run_voice, "--input", "system", "--output", "system", "--seconds", str(seconds),
               "--stats-json", str(stats), "--timeline", str(timeline)]
    if front == "app":  # the desktop app's window on the same voice and devices (see app_session.py)
        cmd = [sys.executable, str(ROOT / "benchmarks" / "app_session.py"), *session, *voice_args]
    else:
        cmd = [sys.executable, "-m", "autovoice", "live", *session, *voice_args, "--gate", "-100", *extra]
    busy = hog() if with_hog else None
    # The readout goes to a file: a pipe nobody reads fills up after a few minutes and blocks it.
    log_path = tmp / "live.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, text=True)
    client = jack.Client("avsoak", no_start_server=True, servername=server)
    sr = client.samplerate
    if sr_file != sr:
        import soxr

        x = soxr.resample(x, sr_file, sr).astype(np.float32)
    x = (x / max(1e-6, float(np.abs(x).max())) * 0.5).astype(np.float32)
    pos = [0]
    xruns = [0]
    xrun_at_s: list[float] = []  # time.monotonic(), the clock the timeline's at_s uses (system-wide)
    out_port = client.outports.register("speech")
    sink = client.inports.register("sink")
    # When each of the server's cycles reached this client: a server that falls behind shows as a
    # pause here, whatever AutoVoice did (this client runs first in the graph and holds no lock of it).
    period_frames = client.blocksize
    cycle_at_s = np.zeros(int((seconds + 180.0) * sr / period_frames) + 1024)
    cycles = [0]

    @client.set_process_callback
    def process(frames):
        n = cycles[0]
        if n < len(cycle_at_s):
            cycle_at_s[n] = time.monotonic()
            cycles[0] = n + 1
        p = pos[0]
        buf = out_port.get_array()
        first = min(frames, len(x) - p)
        buf[:first] = x[p:p + first]
        if first < frames:
            buf[first:] = x[:frames - first]
        pos[0] = (p + frames) % len(x)

    @client.set_xrun_callback
    def xrun(delay_us):
        xruns[0] += 1
        xrun_at_s.append(time.monotonic())

    steal = StealWatch()
    try:
        with client, steal:
            deadline = time.monotonic() + 30
            ins = outs = []
            while time.monotonic() < deadline and not (ins and outs):
                ins = [p for p in client.get_ports(is_audio=True, is_input=True)
                       if not p.name.startswith(("system:", "avsoak:"))]
                outs = [p for p in client.get_ports(is_audio=True, is_output=True)
                        if not p.name.startswith(("system:", "avsoak:"))]
                time.sleep(0.1)
            if not (ins and outs):
                raise RuntimeError("autovoice's JACK ports did not appear: " + log_path.read_text()[-400:])
            for p in ins:
                for c in client.get_all_connections(p):
                    client.disconnect(c, p)
                client.connect(out_port, p)
            client.connect(outs[0], sink)
            xruns[0] = 0
            xrun_at_s.clear()
            steal.at_s.clear()
            steal.ms.clear()
            proc.wait(timeout=seconds + 120)
    finally:
        client.close()
        if busy is not None:
            busy.kill()
            busy.wait()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
    if proc.returncode != 0 or not stats.exists():
        raise RuntimeError(f"autovoice live stopped early (status {proc.returncode}): {log_path.read_text()[-800:]}")
    s = json.loads(stats.read_text())
    t = dict(np.load(timeline)) if timeline.exists() else {}
    comp = t.get("compute_ms", np.zeros(1))
    wait = t.get("input_wait_ms", np.zeros(1))
    t["xrun_at_s"] = np.array(xrun_at_s)
    t["server_cycle_at_s"] = cycle_at_s[:cycles[0]]
    t["server_period_ms"] = 1000.0 * period_frames / sr
    t["steal_at_s"], t["steal_ms"] = np.array(steal.at_s), np.array(steal.ms)
    causes = underflow_causes(t, s.get("block_ms", 10.0))
    settled = worker_late = with_xrun = server_paused = with_steal = unexplained = 0
    quiet = (0, 0)
    if "underflow_frames" in t and len(t["underflow_frames"]) > 1:
        rose = settled_underflows(t)
        settled = len(rose)
        quiet = quiet_minutes(t, rose)
        worker_late, with_xrun, server_paused, with_steal, unexplained = underflow_counts(t, rose)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(keep / f"{voice}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.npz", **t)
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "voice": voice, "front": front, "baseline": baseline, "hog": with_hog, "minutes": seconds / 60.0,
        "blocks": s["blocks_processed"], "late_blocks": s["late_blocks"],
        "underflows": s["output_underflows"], "underflow_frames": s["output_underflow_frames"],
        "underflows_after_settle": settled, "after_settle_worker_late": worker_late,
        "after_settle_with_server_xrun": with_xrun, "after_settle_server_paused": server_paused,
        "after_settle_with_steal": with_steal, "steal_ms_total": float(np.sum(t["steal_ms"])),
        "after_settle_unexplained": unexplained, "quiet_minutes": quiet[0], "underflows_in_quiet_minutes": quiet[1],
        "overflows": s["input_overflows"], "jack_xruns": xruns[0],
        "compute_ms_mean": float(np.mean(comp)), "compute_ms_p50": float(np.percentile(comp, 50)),
        "compute_ms_p99": float(np.percentile(comp, 99)), "compute_ms_max": float(np.max(comp)),
        "input_wait_ms_p99": float(np.percentile(wait, 99)), "input_wait_ms_max": float(np.max(wait)),
        # The worker thread per block: on a CPU (compute and waiting for input), its sleeps for input, other waits.
        **{f"worker_{k}_per_block": float(np.mean(t[k])) for k in ("on_cpu_ms", "polls", "lock_waits") if k in t},
        "gc_full": s.get("gc_full_collections", 0), "gc_max_pause_ms": s.get("gc_max_pause_ms", 0.0),
        "buffer_ms": s["buffer_latency_ms"], "buffer_growth_ms": s.get("buffer_growth_ms", 0.0),
        "buffer_start_ms": s.get("buffer_start_ms"),
        "total_latency_ms": s["total_latency_ms"], "worker_priority": s.get("worker_priority"),
        "audio_callback": s.get("audio_callback"),
        "gui_thread_cpu_ms_per_s": s.get("gui_thread_cpu_ms_per_s"),  # the app front only
        "underflow_causes": causes,
    }


WORKER_LATE_MS = 3.0  # input complete this long before the worker took it: the worker was late


def settled_underflows(t: dict) -> np.ndarray:
    """The blocks after which the underflow counter rose, once the stream had settled (the first
    SETTLE_S include this script connecting its ports, a JACK graph change, and the stream's start)."""
    after = t["at_s"] >= t["at_s"][0] + SETTLE_S
    return np.nonzero((np.diff(t["underflow_frames"]) > 0) & after[1:])[0]


def underflow_counts(t: dict, rose: np.ndarray) -> tuple[int, int, int, int, int]:
    """Of the underflows after blocks ``rose``: how many had the worker late, a server xrun, the
    server's cycles paused, CPU steal near them, and none of the last three."""
    seen = np.array([(worker_wait_ms(t, i) >= WORKER_LATE_MS, server_xrun_near(t, i), server_paused_near(t, i),
                      steal_near_ms(t, i) > 0) for i in rose], dtype=bool).reshape(-1, 4)
    late, xrun, paused, steal = (int(n) for n in seen.sum(axis=0))
    return late, xrun, paused, steal, int(np.sum(~seen[:, 1:].any(axis=1)))


QUIET_STEAL_MS_PER_MIN = 1000.0  # a minute in which the host took less CPU than this from the machine is quiet


def quiet_minutes(t: dict, rose: np.ndarray) -> tuple[int, int]:
    """(whole minutes of the run in which the hypervisor took less than QUIET_STEAL_MS_PER_MIN of
    CPU time, settled underflows in them): on a virtual machine whose host is busy part of the
    time, what the stream does while it is not."""
    at = t["at_s"]
    whole = int((at[-1] - at[0]) // 60.0)
    if whole < 1:
        return 0, 0
    minute = ((np.asarray(t["steal_at_s"]) - at[0]) // 60.0).astype(int)
    inside = (minute >= 0) & (minute < whole)
    stolen = np.bincount(minute[inside], weights=np.asarray(t["steal_ms"])[inside], minlength=whole)
    quiet = stolen < QUIET_STEAL_MS_PER_MIN
    at_minute = ((at[rose + 1] - at[0]) // 60.0).astype(int)
    return int(quiet.sum()), int(sum(1 for m in at_minute if m < whole and quiet[m]))


def before_underflow(values, i: int, how=np.max) -> float:
    """The largest (or, with ``how=np.sum``, the total) of a per-block figure over the blocks
    leading to the one after block ``i`` (0 without it: a timeline recorded before that figure was)."""
    if values is None or len(values) == 0:
        return 0.0
    return float(how(values[max(0, i - 3):i + 2]))


def late_worker_text(t: dict, i: int, waited_ms: float) -> str:
    """What the kernel said of the worker thread around underflow ``i``: waiting for a CPU (off its
    core), on one for longer than its work (held there by the kernel or, on a virtual machine, the
    host), or asleep waiting for a lock (the interpreter's) or for the disk."""
    queued = before_underflow(t.get("run_queue_ms"), i)
    text = f"the worker was late (input waited {waited_ms:.1f} ms for it; it waited {queued:.1f} ms for a CPU"
    if "on_cpu_ms" in t:
        beyond = before_underflow(np.maximum(np.asarray(t["on_cpu_ms"], float) - t["compute_ms"], 0.0), i)
        text += (f", was on one {beyond:.1f} ms beyond its blocks' work, waited "
                 f"{before_underflow(t['lock_waits'], i, np.sum):.0f} times for a lock and "
                 f"{before_underflow(t['disk_faults'], i, np.sum):.0f} times for the disk")
    return text + ")"


SLOW_WORK_TIMES = 2.0  # a block whose work took this many times the run's median was slow itself


def slow_work_text(t: dict, i: int, waited_ms: float) -> str:
    """For an underflow whose input the worker took on time: a block's own work that took far
    longer than usual (and how long the kernel had the worker on a CPU meanwhile: as long means it
    ran slower there, on a virtual machine the host's doing), else the input itself came late."""
    compute = t.get("compute_ms")
    work = before_underflow(compute, i)
    usual = float(np.median(compute)) if compute is not None and len(compute) else 0.0
    if usual > 0 and work >= SLOW_WORK_TIMES * usual:
        on_cpu = f"; on a CPU {before_underflow(t['on_cpu_ms'], i):.1f} ms meanwhile" if "on_cpu_ms" in t else ""
        return (f"the worker took its input within {waited_ms:.1f} ms, but a block's work took {work:.1f} ms "
                f"(median {usual:.1f} ms{on_cpu})")
    return f"the input came late (the worker took it within {waited_ms:.1f} ms)"


def worker_wait_ms(t: dict, i: int) -> float:
    """The longest the input of a block had waited for the worker, around underflow ``i``."""
    return before_underflow(t.get("input_wait_ms"), i)


XRUN_NEAR_S = 0.05  # how far from the blocks around an underflow a server xrun counts as its cause


def around_underflow(t: dict, i: int, before_s: float, after_s: float) -> tuple[float, float]:
    """The time span of underflow ``i`` (the counter rose after block ``i``): from the block before
    it, less ``before_s``, to the block that saw it, plus ``after_s``."""
    at = t["at_s"]
    return at[max(0, i - 1)] - before_s, at[i + 1] + after_s


def server_xrun_near(t: dict, i: int) -> bool:
    """Whether the JACK server reported an xrun around underflow ``i``: it missed cycles right then."""
    xrun_at = t.get("xrun_at_s")
    if xrun_at is None or len(xrun_at) == 0:
        return False
    lo, hi = around_underflow(t, i, XRUN_NEAR_S, XRUN_NEAR_S)
    return bool(np.any((xrun_at >= lo) & (xrun_at <= hi)))


SERVER_PAUSE_PERIODS = 2.0  # a gap between the server's cycles this many periods long: the server fell behind


def server_pause_ms(t: dict, i: int) -> float:
    """The longest gap between the server's cycles (as the feeder client saw them) around underflow
    ``i``, the cycles just outside it included; 0 without them."""
    cycle_at = t.get("server_cycle_at_s")
    if cycle_at is None or len(cycle_at) < 2:
        return 0.0
    lo_s, hi_s = around_underflow(t, i, XRUN_NEAR_S, 0.0)
    lo = int(np.searchsorted(cycle_at, lo_s)) - 1
    hi = int(np.searchsorted(cycle_at, hi_s)) + 1
    around = cycle_at[max(0, lo):hi]
    return 1000.0 * float(np.max(np.diff(around))) if len(around) > 1 else 0.0


def server_paused_near(t: dict, i: int) -> bool:
    """Whether the server's own cycles paused around underflow ``i`` (it fell behind, whatever we did)."""
    return "server_cycle_at_s" in t and server_pause_ms(t, i) >= SERVER_PAUSE_PERIODS * t["server_period_ms"]


STEAL_NEAR_S = 0.1  # steal is sampled every 20 ms and counted in ticks: a wider window than for xruns


def steal_near_ms(t: dict, i: int) -> float:
    """CPU time the hypervisor took from the machine around underflow ``i`` (ms)."""
    steal_at = t.get("steal_at_s")
    if steal_at is None or len(steal_at) == 0:
        return 0.0
    lo, hi = around_underflow(t, i, STEAL_NEAR_S, STEAL_NEAR_S)
    near = (steal_at >= lo) & (steal_at <= hi)
    return float(np.sum(t["steal_ms"][near]))


def underflow_causes(t: dict, block_ms: float) -> list[str]:
    """For each block after which the underflow counter rose: the gap since the block before, any
    collection that ended in that gap, and whether input waited for the worker then."""
    if "underflow_frames" not in t or len(t["underflow_frames"]) < 2:
        return []
    uf, at = t["underflow_frames"], t["at_s"]
    gc_at, gc_ms, gc_gen = t.get("gc_at_s", []), t.get("gc_pause_ms", []), t.get("gc_generation", [])
    out = []
    for i in np.nonzero(np.diff(uf) > 0)[0][:20]:
        lo = max(0, i - 3)
        gap_ms = 1000.0 * float(np.max(np.diff(at[lo:i + 2]))) if i + 2 - lo > 1 else 0.0
        window = [(g, m) for a, m, g in zip(gc_at, gc_ms, gc_gen) if at[lo] - 0.05 <= a <= at[i + 1]]
        gc_text = ", ".join(f"gen{g} collection {m:.0f} ms" for g, m in window) or "no collection"
        waited = worker_wait_ms(t, i)
        whose = late_worker_text(t, i, waited) if waited >= WORKER_LATE_MS else slow_work_text(t, i, waited)
        whose += "; the JACK server reported an xrun then" if server_xrun_near(t, i) else "; no JACK xrun then"
        if "server_cycle_at_s" in t:
            pause = server_pause_ms(t, i)
            period = t["server_period_ms"]
            whose += (f"; the server's cycles paused {pause:.0f} ms (period {period:.1f} ms)"
                      if pause >= SERVER_PAUSE_PERIODS * period else f"; the server's cycles were regular (longest gap {pause:.1f} ms)")
        stolen = steal_near_ms(t, i)
        if stolen:
            whose += f"; the hypervisor took {stolen:.0f} ms of CPU from this machine then"
        out.append(f"+{int(uf[i + 1] - uf[i])} frames at {at[i + 1] - at[0]:.0f} s: longest gap between blocks "
                   f"{gap_ms:.0f} ms (block {block_ms:.0f} ms), {gc_text}; {whose}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--voices", nargs="+", default=["deeper", "natural"])
    ap.add_argument("--hog", action="store_true", help="keep one core busy beside AutoVoice")
    ap.add_argument("--no-baseline", action="store_true", help="skip the baseline runs")
    ap.add_argument("--baseline", choices=sorted(BASELINE_ENV), default="gc",
                    help="what the baseline runs turn off: the GC policy (default), the callback threads' priority, "
                         "the worker's sleep until input is due or the native audio callback")
    ap.add_argument("--prefill-ms", type=float, help="passed to autovoice live")
    ap.add_argument("--fixed-latency", action="store_true", help="passed to autovoice live")
    ap.add_argument("--normal-priority", action="store_true", help="passed to autovoice live")
    ap.add_argument("--period", type=int, default=256, help="JACK period when this script starts the server")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--parallel", action="store_true", help="run every voice at once, each on its own JACK server")
    ap.add_argument("--server", help="the JACK server to use (started here if it does not run)")
    ap.add_argument("--rt-jack", action="store_true",
                    help="start the JACK server real-time scheduled, as desktop sound servers run (needs rtprio)")
    ap.add_argument("--baseline-only", action="store_true", help="only the baseline runs (with --no-baseline)")
    ap.add_argument("--rvc-preset", default="small-cpu", help="live setting of the voice `rvc` (default small-cpu)")
    ap.add_argument("--front", choices=("cli", "app"), default="cli",
                    help="what runs the stream: `autovoice live` (default) or the desktop app's window, Live view showing")
    ap.add_argument("--keep-timelines", metavar="DIR", type=Path,
                    help="save each run's timeline there (.npz: the blocks, the server's cycles and xruns, CPU steal)")
    a = ap.parse_args()
    extra = (["--prefill-ms", str(a.prefill_ms)] if a.prefill_ms is not None else []) + (
        ["--fixed-latency"] if a.fixed_latency else []) + (["--normal-priority"] if a.normal_priority else [])
    runs = [(voice, policy) for voice in a.voices for policy in ((True,) if a.no_baseline else (False, True))]

    def report(r: dict) -> None:
        print(json.dumps({k: v for k, v in r.items() if k != "underflow_causes"}), flush=True)
        for c in r["underflow_causes"]:
            print("   underflow", c, flush=True)

    results, failed = [], []
    if a.parallel:
        # One process per run: a process can be a client of one JACK server only.
        tmp = Path(tempfile.mkdtemp(prefix="avsoak-par-"))
        children = []
        for i, (voice, policy) in enumerate(runs):
            # Server names unique to this run (two --parallel runs can share the machine); the servers
            # start a few seconds apart: jackd instances starting together can fail to register clients.
            if i:
                time.sleep(PARALLEL_STAGGER_S)
            cmd = [sys.executable, __file__, "--minutes", str(a.minutes), "--voices", voice, "--no-baseline",
                   "--server", f"avsoak{os.getpid()}_{i}", "--period", str(a.period), "--json", str(tmp / f"{i}.json"),
                   *(["--rt-jack"] if a.rt_jack else []), "--rvc-preset", a.rvc_preset, "--front", a.front,
                   *extra, *(["--hog"] if a.hog and i == 0 else []),
                   *(["--keep-timelines", str(a.keep_timelines)] if a.keep_timelines else [])]
            if not policy:
                cmd += ["--baseline", a.baseline, "--baseline-only"]
            children.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp / f"{i}.log", "w")))
        for i, child in enumerate(children):
            child.wait()
            out = tmp / f"{i}.json"
            if not out.exists():  # the others' results still count; say which one failed and why
                failed.append(f"the soak of {runs[i][0]} failed: {(tmp / f'{i}.log').read_text()[-800:]}")
                print(failed[-1], flush=True)
                continue
            results.append(dict(json.loads(out.read_text())[0], alongside=len(runs) - 1))
            report(results[-1])
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        jackd = start_jack(a.period, 48000, a.server, a.rt_jack)
        try:
            for voice, policy in runs:
                try:
                    as_baseline = not policy or a.baseline_only
                    results.append(soak(voice, a.minutes * 60.0, a.baseline if as_baseline else None, extra, a.hog,
                                        a.server, a.rvc_preset, a.front, a.keep_timelines))
                except RuntimeError as e:
                    if jackd is None or jackd.poll() is None:
                        raise
                    tail = Path(jackd.log_path).read_text()[-600:]
                    raise RuntimeError(f"{e}\nThe JACK server exited with status {jackd.returncode}; its last "
                                       f"messages:\n{tail}") from e
                report(results[-1])
        finally:
            if jackd is not None:
                jackd.terminate()
                jackd.wait(timeout=10)
    print()
    print("| voice | run | hog | min | blocks | late | underflows (frames; after the first 5 s: worker late; "
          "server paused; with a server xrun; with CPU steal; with none of those) "
          "| overflows | JACK xruns | compute mean / p99 / max ms | input waited p99 / max ms "
          "| worker on a CPU ms per block (sleeps; other waits) "
          f"| quiet minutes: the host took under {QUIET_STEAL_MS_PER_MIN / 1000:.0f} s (underflows in them) "
          "| full GCs (max pause) | buffer ms (grown) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        run = {None: "as shipped", "gc": "GC policy off (baseline)", "callbacks": "callbacks not raised (baseline)",
               "polling": "polling for input (baseline)", "native": "Python callbacks (baseline)"}
        front = " (app)" if r.get("front") == "app" else ""
        print(f"| `{r['voice']}`{front} | {run[r['baseline']]} | {'yes' if r['hog'] else 'no'}"
              f"{' + %d streams' % r['alongside'] if r.get('alongside') else ''} "
              f"| {r['minutes']:.0f} | {r['blocks']} | {r['late_blocks']} | {r['underflows']} ({r['underflow_frames']}; "
              f"{r['underflows_after_settle']}: {r['after_settle_worker_late']}; "
              f"{r.get('after_settle_server_paused', 0)}; {r.get('after_settle_with_server_xrun', 0)}; "
              f"{r.get('after_settle_with_steal', 0)}; {r.get('after_settle_unexplained', 0)}) "
              f"| {r['overflows']} | {r['jack_xruns']} | {r['compute_ms_mean']:.2f} / {r['compute_ms_p99']:.2f} / "
              f"{r['compute_ms_max']:.1f} | {r.get('input_wait_ms_p99', 0.0):.2f} / {r.get('input_wait_ms_max', 0.0):.1f} "
              f"| {r.get('worker_on_cpu_ms_per_block', 0.0):.2f} ({r.get('worker_polls_per_block', 0.0):.1f}; "
              f"{r.get('worker_lock_waits_per_block', 0.0):.2f}) "
              f"| {r.get('quiet_minutes', 0)} ({r.get('underflows_in_quiet_minutes', 0)}) "
              f"| {r['gc_full']} ({r['gc_max_pause_ms']:.0f} ms) "
              f"| {r['buffer_ms']:.1f} ({r['buffer_growth_ms']:+.1f}; opened with {r.get('buffer_start_ms') or 0:.1f}) |")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    if failed:
        sys.exit("\n".join(failed))


if __name__ == "__main__":
    main()
