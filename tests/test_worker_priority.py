"""The worker thread's priority while it streams (engine/stream/priority.py): raised on the worker
thread alone while a chain is attached, dropped when it goes, stepped down when the voice is late
block after block, and said plainly when the OS refuses."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import pytest

from engine.api import Engine
from engine.stream.priority import DEMOTE_AFTER_LATE, REALTIME_PRIORITY, raise_current_thread
from engine.stream.worker import Worker
from tests.stream_helpers import unstarted_chain

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the priority is raised on Linux only")


def may_go_realtime() -> bool:
    """Whether this process may use SCHED_RR (root, or an rtprio limit), tried on a scratch thread."""
    out = []

    def probe():
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(REALTIME_PRIORITY))
            out.append(True)
        except OSError:
            out.append(False)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return out[0]


@pytest.fixture
def chain_for():
    engine = Engine(load_default_voice=False, autosave=False)
    engine.load_voice("natural").result()

    yield lambda **audio_changes: unstarted_chain(engine, **audio_changes)
    engine.close()


def policy_of(thread: threading.Thread) -> tuple[int, int]:
    return os.sched_getscheduler(thread.native_id), os.getpriority(os.PRIO_PROCESS, thread.native_id)


@linux_only
def test_the_worker_alone_is_raised_while_it_streams_and_dropped_after(chain_for):
    worker = Worker()
    try:
        chain = chain_for()
        # The stream was never started, so the worker's loop finds it inactive right after the
        # attach and stops it: attach and look in one command, on the worker thread.
        kind, policy = worker.call(lambda w: (w.attach(chain), w.priority.kind, os.sched_getscheduler(0))[1:])
        if may_go_realtime():
            assert (kind, policy) == ("realtime", os.SCHED_RR)
        else:
            assert kind in ("raised", "normal") and policy == os.SCHED_OTHER
        assert policy_of(threading.current_thread()) == (os.SCHED_OTHER, os.getpriority(os.PRIO_PROCESS, 0))
        deadline = time.monotonic() + 5
        while worker.priority is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.chain is None and worker.priority is None  # stopped, and the priority went with it
        assert policy_of(worker._thread) == (os.SCHED_OTHER, os.getpriority(os.PRIO_PROCESS, 0))  # as before
    finally:
        worker.shutdown()


@linux_only
def test_a_voice_late_block_after_block_steps_the_worker_down(chain_for):
    if not may_go_realtime():
        pytest.skip("this process may not use real-time scheduling")
    worker = Worker()
    try:
        chain = chain_for()
        # A voice slower than real time: every block takes 1.5 times its duration.
        chain.pipeline.process = lambda x, state: (time.sleep(1.5 * len(x) / chain.pipeline.sample_rate) or x, state)

        def run_late(w):  # one command, so the loop never sees the (unstarted) stream in between
            w.attach(chain)
            first = w.priority.kind
            for _ in range(DEMOTE_AFTER_LATE):
                w._process(chain)
            return first, w.priority.kind, w.priority.detail, os.sched_getscheduler(0), \
                os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        first, kind, detail, policy, nice = worker.call(run_late, timeout_s=60)
        assert first == "realtime" and (kind, policy) == ("raised", os.SCHED_OTHER) and nice < 0
        assert f"after {DEMOTE_AFTER_LATE} late blocks" in detail
    finally:
        worker.shutdown()


@linux_only
def test_threads_the_worker_starts_while_raised_step_down_and_up_with_it():
    """Its torch helper threads inherit the worker's real-time scheduling (as Linux threads do): a
    demotion must take them down too, or a voice that cannot keep up would still hold a core."""
    if not may_go_realtime():
        pytest.skip("this process may not use real-time scheduling")
    from engine.stream.priority import RAISED_NICE, demote_current_thread, release_current_thread

    helper_tid, go, seen = [], threading.Event(), {}

    def worker():
        held = raise_current_thread(True)
        helper = threading.Thread(target=lambda: (helper_tid.append(threading.get_native_id()), go.wait()))
        helper.start()  # started while real-time: inherits SCHED_RR
        while not helper_tid:
            time.sleep(0.001)
        tid = helper_tid[0]
        look = lambda: (os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid))
        seen["started"] = look()[0]
        held = demote_current_thread(held, DEMOTE_AFTER_LATE)
        seen["demoted"] = look()
        release_current_thread(held)
        seen["released"] = look()
        held = raise_current_thread(True)  # the next stream
        seen["raised again"] = look()[0]
        release_current_thread(held)
        go.set()
        helper.join()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["started"] == os.SCHED_RR
    assert seen["demoted"] == (os.SCHED_OTHER, RAISED_NICE)
    assert seen["released"] == (os.SCHED_OTHER, RAISED_NICE)  # asleep, and recognisable as a helper
    assert seen["raised again"] == os.SCHED_RR


@linux_only
def test_a_voice_that_computes_on_the_cpu_gets_a_raised_nice_value_not_real_time(chain_for):
    """A neural voice on the CPU keeps every core torch uses busy for most of each block: real-time
    would stall the desktop (and a sound server that is not real-time) that long. Swapping to such a
    voice and back moves the worker between the two while it streams."""
    if not may_go_realtime():
        pytest.skip("this process may not use real-time scheduling")
    import copy

    from engine.pipeline import Pipeline

    worker = Worker()
    try:
        chain = chain_for()
        light = chain.pipeline
        heavy_voice = copy.copy(light.voice)
        heavy_voice.cpu_bound_live = True  # what RVCVoice says on the CPU
        heavy = Pipeline(heavy_voice, light.hop_samples)

        def look(w):
            return w.priority.kind, os.sched_getscheduler(0), w.priority.detail

        def swaps(w):
            w.attach(chain)
            seen = [look(w)]
            w.swap_pipeline(heavy)
            seen.append(look(w))
            w.swap_pipeline(light)
            seen.append(look(w))
            return seen

        (k0, p0, _), (k1, p1, d1), (k2, p2, _) = worker.call(swaps)
        assert (k0, p0) == ("realtime", os.SCHED_RR)
        assert (k1, p1) == ("raised", os.SCHED_OTHER) and "computes on the CPU" in d1
        assert (k2, p2) == ("realtime", os.SCHED_RR)
    finally:
        worker.shutdown()


def test_turned_off_in_the_settings_it_stays_normal_and_says_so(chain_for):
    """Also when the stream is reopened with the setting changed (the app's checkbox while live)."""
    worker = Worker()
    try:
        on, off = chain_for(), chain_for(realtime_priority=False)
        linux = sys.platform.startswith("linux")

        def reopen(w):
            w.attach(on)
            w.attach(off)
            return w.priority.kind, w.priority.detail, os.sched_getscheduler(0) if linux else None

        kind, detail, policy = worker.call(reopen)
        assert kind == "normal" and "off in the settings" in detail
        if linux:
            assert policy == os.SCHED_OTHER
    finally:
        worker.shutdown()


@linux_only
def test_an_unprivileged_user_is_told_what_would_allow_it():
    if os.geteuid() != 0:
        p = raise_current_thread()  # whatever this user may have; it must say which
        assert p.kind in ("realtime", "raised", "normal") and p.detail
        return
    # As root: a forked child becomes 'nobody' (no capabilities, no rtprio or nice limit) and asks.
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_fd)
            os.setgid(65534)
            os.setuid(65534)
            p = raise_current_thread()
            os.write(write_fd, json.dumps([p.kind, p.detail]).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        kind, detail = json.loads(f.read() or '["", ""]')
    os.waitpid(pid, 0)
    assert kind == "normal", detail
    assert "rtprio" in detail and "audio" in detail


def _callback_thread_while_streaming(engine) -> tuple[int, int, int, str]:
    """(thread id, policy, priority) of the live stream's callback thread, and the priority detail."""
    engine.start("system", "system")
    try:
        deadline = time.monotonic() + 10.0
        while engine.snapshot().blocks_processed < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        tid = engine.worker.chain.stream.counters.input_thread_id
        assert tid and tid == engine.worker.chain.stream.counters.output_thread_id  # one duplex stream
        return tid, os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority, \
            engine.snapshot().worker_priority_detail
    finally:
        engine.stop()


def _policy_soon(tid: int, policy: int, timeout_s: float = 2.0) -> int:
    """The thread's policy once it is ``policy`` or ``timeout_s`` has passed (the worker lowers it
    on its next idle turn); 0 when the thread has ended."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            now = os.sched_getscheduler(tid)
        except OSError:
            return os.SCHED_OTHER
        if now == policy or time.monotonic() > deadline:
            return now
        time.sleep(0.02)


@linux_only
@pytest.mark.jack
def test_a_normal_priority_callback_thread_is_raised_just_above_a_real_time_worker(jack_server):
    if not may_go_realtime():
        pytest.skip("this user may not use real-time scheduling")
    engine = Engine(load_default_voice=False, autosave=False)
    try:
        engine.load_voice("robot").result()
        # The tests' JACK server is not real-time, so its client thread runs our callbacks at
        # normal priority; the worker gives it real-time just above its own.
        tid, policy, prio, detail = _callback_thread_while_streaming(engine)
        assert tid != threading.get_native_id()
        assert (policy, prio) == (os.SCHED_RR, REALTIME_PRIORITY + 1)
        assert "audio callbacks raised to real-time" in detail
        # PortAudio keeps one JACK client (and its thread) for every stream: given back at the stop.
        assert _policy_soon(tid, os.SCHED_OTHER) == os.SCHED_OTHER
    finally:
        engine.close()


@linux_only
@pytest.mark.jack
def test_the_soaks_baseline_leaves_the_callback_thread_as_the_sound_library_runs_it(jack_server, monkeypatch):
    monkeypatch.setenv("AUTOVOICE_CALLBACK_PRIORITY", "0")
    engine = Engine(load_default_voice=False, autosave=False)
    try:
        engine.load_voice("robot").result()
        tid, policy, prio, detail = _callback_thread_while_streaming(engine)
        assert policy == os.SCHED_OTHER
        assert "audio callbacks" not in (detail or "")
    finally:
        engine.close()


@pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"), reason="Linux schedstat only")
def test_thread_times_count_time_runnable_without_a_cpu_apart_from_time_on_it():
    """A thread sharing its one CPU with a busy process waits for it, and the clock shows that
    beside the time it ran."""
    import subprocess

    from engine.stream.priority import ThreadTimes

    cpu = min(os.sched_getaffinity(0))
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"],
                            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    seen = []

    def spin():
        os.sched_setaffinity(0, {cpu})  # this thread only
        clock = ThreadTimes()
        before = clock.sample()
        end = time.thread_time() + 0.2  # 200 ms of CPU
        while time.thread_time() < end:
            pass
        seen.append([a - b for a, b in zip(clock.sample(), before)])
        clock.close()

    try:
        time.sleep(0.3)  # the busy process is running
        t = threading.Thread(target=spin)
        t.start()
        t.join()
    finally:
        busy.kill()
        busy.wait()
    on_cpu_ms, queued_ms, _, _ = seen[0]
    assert queued_ms >= 50.0  # about as long as it ran: the CPU was the other's the rest of the time
    assert 150.0 <= on_cpu_ms < 400.0
