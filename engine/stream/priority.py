"""The worker thread's scheduling priority while it streams.

A block is on time only if the worker gets a core within a few milliseconds of its input arriving.
At normal priority a busy machine (a game, a browser, a build) shares every core fairly with it, and
a wake-up can wait for a whole scheduler slice: that is an underflow. So while a stream runs, the
worker thread asks the OS for more, in this order:

* real-time (Linux ``SCHED_RR`` at :data:`REALTIME_PRIORITY`): it then runs before every normal
  thread the moment it wakes. Allowed for root, and for users the system grants an ``rtprio``
  limit (the ``audio`` group on most distributions with JACK or PipeWire installed);
* a raised nice value (:data:`RAISED_NICE`, for the worker thread alone): a larger share, no
  guarantee. Allowed with a ``nice`` limit;
* otherwise it stays normal, and the health snapshot says why and what would allow it.

Only the worker thread is raised, only while it streams (dropped when the stream stops), and it
goes back to a raised nice value if the voice is late block after block: a real-time thread that
never finishes its work would hold a core away from everything else (the kernel keeps 5% for the
rest, which is not enough for a desktop). Threads the worker starts while raised inherit its
scheduling (Linux threads do): a neural voice's torch helper threads, created on the worker's first
parallel operation, so they take up work as promptly as the worker hands it out. They step down with
the worker, and come back up with it (:func:`_helpers`); they stay as they are while no stream runs,
asleep. A real-time worker also raises the audio callback threads when the sound library runs
them at normal priority (:func:`raise_callback_thread`), so that neither it nor a busy machine
keeps them off a core. Windows (MMCSS) and macOS (time-constraint threads) are not done yet and say so.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass

try:
    import resource  # Unix; ThreadTimes reads it only where /proc says the rest (Linux)
except ImportError:  # Windows
    resource = None

# SCHED_RR priority, 1-99: above every normal thread, below the sound server's threads and the
# audio callbacks it runs in our process (JACK's default is 10, PipeWire's 20 and up) and the
# kernel's interrupt threads (50).
REALTIME_PRIORITY = 2
# The audio callbacks, when the sound library runs them at normal priority, go just above the worker.
CALLBACK_PRIORITY = REALTIME_PRIORITY + 1
RAISED_NICE = -10
# Late blocks in a row after which a real-time worker steps down to the raised nice value.
DEMOTE_AFTER_LATE = 50

LIMITS_HINT = ("on Linux, a real-time limit for your user (the 'audio' group with an 'rtprio' entry in "
               "/etc/security/limits.d) allows it")


@dataclass(frozen=True)
class Priority:
    kind: str  # "realtime", "raised" or "normal"
    detail: str  # one sentence for the Performance panel and the health snapshot
    _restore: tuple = ()  # (policy, sched priority, nice) before, for release()


def cpu_bound(voice: object) -> bool:
    """Whether a voice keeps CPU cores busy for much of each block (a neural voice computing on the
    CPU: ``voice.cpu_bound_live``); built-in voices take a few percent of one core."""
    return bool(getattr(voice, "cpu_bound_live", False))


def raise_current_thread(wanted: bool = True, cpu_bound: bool = False) -> Priority:
    """Raise the calling thread as far as the OS allows (see the module docstring). ``cpu_bound``:
    the thread (and its helpers) will compute for most of each block, on every core torch uses; at
    real-time priority that would hold the sound server (when it is not real-time itself), the
    desktop, OBS or a game off the CPU for as long, so such a voice gets the raised nice value."""
    if not wanted:
        return Priority("normal", "normal: real-time priority is off in the settings")
    if not sys.platform.startswith("linux"):
        return Priority("normal", f"normal: raising the worker's priority is not implemented on {sys.platform} yet")
    tid = threading.get_native_id()
    before = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority, os.getpriority(os.PRIO_PROCESS, tid))
    if cpu_bound:
        _step_helpers_down()  # started under an earlier, light voice
        return _raise_nice(tid, before, f"raised (nice {RAISED_NICE}), not real-time: this voice computes on the CPU "
                                        "for most of each block, and real-time would stall everything else that long")
    try:
        # pid 0: the calling thread (Linux schedules threads, not processes).
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(REALTIME_PRIORITY))
        for tid in _helpers(realtime=False):  # helpers stepped down (or started) at the raised nice value
            _set(tid, os.SCHED_RR, REALTIME_PRIORITY, 0)
        return Priority("realtime", f"real-time (SCHED_RR {REALTIME_PRIORITY})", before)
    except OSError:
        pass
    return _raise_nice(tid, before, f"raised (nice {RAISED_NICE}); real-time was refused: {LIMITS_HINT}")


def _raise_nice(tid: int, before: tuple, detail: str) -> Priority:
    try:
        os.setpriority(os.PRIO_PROCESS, tid, RAISED_NICE)
        return Priority("raised", detail, before)
    except OSError:
        return Priority("normal", f"normal: the system allows no higher priority ({LIMITS_HINT})", before)


def demote_current_thread(held: Priority, late_blocks: int) -> Priority:
    """From real-time to the raised nice value, when the voice cannot keep up (see module docstring)."""
    if held.kind != "realtime":
        return held
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    _step_helpers_down()
    return _raise_nice(threading.get_native_id(), held._restore,
                       f"raised (nice {RAISED_NICE}): stepped down from real-time after {late_blocks} late blocks "
                       "in a row, so a voice that cannot keep up does not hold a core")


def _helpers(realtime: bool) -> list[int]:
    """The worker's helper threads: the other threads of this process scheduled as a raised worker
    is (``SCHED_RR`` at REALTIME_PRIORITY when ``realtime``, else nice RAISED_NICE), which only
    threads it started while raised are (the sound server's threads run ``SCHED_FIFO``)."""
    me, out = threading.get_native_id(), []
    try:
        tids = [int(entry) for entry in os.listdir("/proc/self/task")]
    except OSError:
        return out
    for tid in tids:
        if tid == me:
            continue
        try:
            policy = os.sched_getscheduler(tid)
            if realtime and policy == os.SCHED_RR and os.sched_getparam(tid).sched_priority == REALTIME_PRIORITY:
                out.append(tid)
            elif not realtime and policy == os.SCHED_OTHER and os.getpriority(os.PRIO_PROCESS, tid) == RAISED_NICE:
                out.append(tid)
        except OSError:
            pass  # it ended meanwhile
    return out


def _step_helpers_down() -> None:
    """Real-time helpers to the raised nice value, as the worker goes there."""
    for tid in _helpers(realtime=True):
        _set(tid, os.SCHED_OTHER, 0, RAISED_NICE)


def _set(tid: int, policy: int, sched_priority: int, nice: int) -> None:
    try:
        os.sched_setscheduler(tid, policy, os.sched_param(sched_priority))
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        pass  # it ended meanwhile, or the system refuses: it keeps what it has


def raise_callback_thread(tid: int, held: Priority) -> bool:
    """Give an audio callback thread that runs at normal priority real-time priority just above a
    real-time worker's (``held``); a thread the sound library already schedules real-time is left
    alone. True if this raised it.

    Why: a callback thread at normal priority can be kept off a core by a busy machine, the
    real-time worker included, and its output is then late. The Python callbacks (the fallback for
    the native one, engine/io/native.py) also hold the interpreter lock while they copy: taken off
    its core in those microseconds, such a thread keeps the lock for as long, and the real-time
    worker waits for it. PortAudio runs its callbacks at normal priority on ALSA (PulseAudio
    and PipeWire through it) and with a JACK server that is not real-time itself. The thread may
    outlive the stream (PortAudio keeps one JACK client for all its streams): the worker gives the
    priority back with :func:`lower_callback_thread` when the stream stops."""
    if held.kind != "realtime" or not tid:
        return False
    try:
        if os.sched_getscheduler(tid) != os.SCHED_OTHER:
            return False
        os.sched_setscheduler(tid, os.SCHED_RR, os.sched_param(CALLBACK_PRIORITY))
        return True
    except OSError:
        return False  # the thread ended, or the system refuses: the callbacks run as before


def lower_callback_thread(tid: int) -> None:
    """Back to normal, for a callback thread :func:`raise_callback_thread` raised, if it is still
    one of this process's threads with that priority."""
    try:
        if str(tid) in os.listdir("/proc/self/task") and os.sched_getscheduler(tid) == os.SCHED_RR \
                and os.sched_getparam(tid).sched_priority == CALLBACK_PRIORITY:
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
    except OSError:
        pass  # it ended meanwhile


def release_current_thread(held: Priority) -> None:
    """Back to what the thread had before (lowering a priority is always allowed)."""
    if not held._restore:
        return
    policy, sched_priority, nice = held._restore
    try:
        if os.sched_getscheduler(0) != policy:
            os.sched_setscheduler(0, policy, os.sched_param(sched_priority))
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        pass  # the thread then keeps what it has: nothing else runs on it while no stream does


class ThreadTimes:
    """What the kernel says of the time of the thread that calls :meth:`sample` (Linux), as totals
    since the thread began: on a CPU and waiting, runnable, for one (schedstat), how often it gave
    its CPU up to wait (voluntary context switches: its own sleeps, a lock, the interpreter's) and
    its page faults that read from disk. A late thread with little run-queue time was blocked (a
    lock) rather than off its core; one on its CPU far longer than its work was kept from running
    there by the kernel or, on a virtual machine, by the host. Zeros where the kernel does not say."""

    UNKNOWN = (0.0, 0.0, 0, 0)

    def __init__(self) -> None:
        self._fd: int | None = None
        self._tried = False

    def sample(self) -> tuple[float, float, int, int]:
        """(on CPU ms, run-queue ms, voluntary switches, disk page faults), all since the thread began."""
        if self._fd is None:
            if self._tried:
                return self.UNKNOWN
            self._tried = True
            try:
                self._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)  # this thread's, from now on
            except OSError:
                return self.UNKNOWN
        try:
            fields = os.pread(self._fd, 64, 0).split()
            on_cpu_ms, queued_ms = int(fields[0]) / 1e6, int(fields[1]) / 1e6
        except (OSError, ValueError, IndexError):
            return self.UNKNOWN
        usage = resource.getrusage(resource.RUSAGE_THREAD)
        return on_cpu_ms, queued_ms, usage.ru_nvcsw, usage.ru_majflt

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
