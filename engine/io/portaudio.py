"""PortAudio's process-wide state that several layers must know about.

A stream close can hang inside PortAudio when its device or sound server vanished; it is then run
on a helper thread that may never finish. While one is stuck, a device re-scan would hang too, and
so would PortAudio's own exit handler (Pa_Terminate, run by sounddevice at interpreter exit).
"""

from __future__ import annotations

import threading
from typing import Callable

_closing_threads: list[threading.Thread] = []


def close_in_background(close: Callable[[], None], wait_s: float) -> bool:
    """Run ``close`` on a helper thread, waiting at most ``wait_s``; True if it finished."""
    t = threading.Thread(target=close, name="autovoice-stream-close", daemon=True)
    _closing_threads.append(t)
    t.start()
    t.join(wait_s)
    return not t.is_alive()


def portaudio_wedged() -> bool:
    """True while a stream close is still stuck inside PortAudio: front-ends then leave with
    ``os._exit`` after flushing their output, and device re-scans are refused."""
    return any(t.is_alive() for t in _closing_threads)
