"""The soak benchmark's verdict on each underflow (benchmarks/soak_live.py), on a made-up timeline."""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from soak_live import (quiet_minutes, server_paused_near, settled_underflows, underflow_causes,  # noqa: E402
                       underflow_counts)


def test_each_underflow_says_whose_it_was_and_whether_the_server_missed_cycles_then():
    at = 100.0 + 0.01 * np.arange(1000)  # a block every 10 ms
    underflow = np.zeros(1000, np.int64)
    underflow[301:] += 256  # seen by block 301: input came late, the server reported an xrun then
    underflow[601:] += 256  # seen by block 601: the worker was late, the server was on time
    wait = np.full(1000, 0.5)
    wait[600] = 12.0
    queued = np.zeros(1000)
    queued[600] = 0.2  # it was not waiting for a CPU: a lock held it
    compute, on_cpu = np.full(1000, 1.0), np.full(1000, 1.1)
    on_cpu[600] = 1.5
    lock_waits = np.zeros(1000, np.int32)
    lock_waits[599:601] = [1, 2]
    period_ms = 256 / 48.0
    cycles = 100.0 + period_ms / 1000.0 * np.arange(int(10.0 / (period_ms / 1000.0)))
    cycles = np.concatenate([cycles[cycles < at[300]], cycles[cycles >= at[300] + 0.02]])  # the server paused 20 ms
    t = {"at_s": at, "underflow_frames": underflow, "input_wait_ms": wait,
         "xrun_at_s": np.array([at[300] + 0.004, at[900]]), "server_cycle_at_s": cycles, "server_period_ms": period_ms,
         "steal_at_s": np.array([at[600] + 0.03]), "steal_ms": np.array([10.0]), "run_queue_ms": queued,
         "compute_ms": compute, "on_cpu_ms": on_cpu, "lock_waits": lock_waits, "disk_faults": np.zeros(1000, np.int32)}
    first, second = underflow_causes(t, 10.0)
    assert server_paused_near(t, 300) and not server_paused_near(t, 600)
    # worker late, with a server xrun, with the server paused, with steal, with none of those three
    assert underflow_counts(t, np.array([300, 600])) == (1, 1, 1, 1, 0)
    assert underflow_counts(t, np.array([], int)) == (0, 0, 0, 0, 0)
    assert first.startswith("+256 frames at 3 s") and "the input came late" in first
    pause_ms = 1000 * np.diff(cycles).max()  # 20 ms and the rest of the cycles around it
    assert "the JACK server reported an xrun then" in first and f"the server's cycles paused {pause_ms:.0f} ms" in first
    assert ("the worker was late (input waited 12.0 ms for it; it waited 0.2 ms for a CPU, was on one 0.5 ms "
            "beyond its blocks' work, waited 3 times for a lock and 0 times for the disk)") in second and "no JACK xrun then" in second
    assert "the server's cycles were regular (longest gap 5.3 ms)" in second
    assert "hypervisor" not in first and "the hypervisor took 10 ms of CPU from this machine then" in second

    # The worker took its input on time, but a block's own work took 9 times its usual (the
    # kernel had it on a CPU as long: it ran slower there).
    compute[450], on_cpu[450] = 9.0, 9.4
    underflow[451:] += 64
    slow = underflow_causes(t, 10.0)[1]
    assert slow.startswith("+64 frames at 5 s") and "the input came late" not in slow
    assert "the worker took its input within 0.5 ms, but a block's work took 9.0 ms (median 1.0 ms; on a CPU 9.4 ms meanwhile)" in slow


def test_quiet_minutes_are_those_the_host_took_little_from_and_count_their_underflows():
    """Three and a half minutes: the host takes 5 s of CPU in the second minute only; underflows
    at 2 s (still settling), 30 s (quiet), 70 s (stolen) and 200 s (a minute not whole)."""
    at = 0.01 * np.arange(21000)
    underflow = np.zeros(len(at), np.int64)
    for second in (2, 30, 70, 200):
        underflow[int(second * 100):] += 64
    steal_at = np.arange(60.0, 120.0, 0.02)
    t = {"at_s": 500.0 + at, "underflow_frames": underflow,
         "steal_at_s": 500.0 + steal_at, "steal_ms": np.full(len(steal_at), 5000.0 / len(steal_at))}
    rose = settled_underflows(t)
    assert len(rose) == 3
    assert quiet_minutes(t, rose) == (2, 1)  # minutes 0 and 2 are quiet; the one at 30 s is in them
