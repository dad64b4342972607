"""A small, randomly initialised HTDemucs saved exactly as Demucs saves its models.

Demucs' weight files are ``torch.save({"klass": HTDemucs, "args": args, "kwargs": kwargs,
"state": state_dict, "training_args": {...}})`` with the class recorded as
``demucs.htdemucs.HTDemucs`` and the training segment as a ``fractions.Fraction``. The class is
pickled under that upstream name by a subclass registered as ``demucs.htdemucs`` only while saving.
"""

from __future__ import annotations

import contextlib
import http.server
import sys
import threading
import types
from fractions import Fraction
from pathlib import Path

import torch

SOURCES = ["drums", "bass", "other", "vocals"]
TINY_KWARGS = dict(sources=SOURCES, audio_channels=2, channels=4, depth=4, t_layers=1, t_heads=2,
                   samplerate=44100, segment=Fraction(39, 5), dconv_comp=2, bottom_channels=0)


def tiny_htdemucs(seed: int = 0):
    from demucs_infer.htdemucs import HTDemucs

    torch.manual_seed(seed)
    return HTDemucs(**TINY_KWARGS).eval()


def save_demucs_file(model, path: Path, klass_module: str = "demucs.htdemucs", klass_name: str = "HTDemucs",
                     extra: dict | None = None) -> Path:
    from demucs_infer.htdemucs import HTDemucs

    args, kwargs = model._init_args_kwargs
    saved_module = sys.modules.get(klass_module)
    mod = types.ModuleType(klass_module)
    upstream = type(klass_name, (HTDemucs,), {"__module__": klass_module})
    setattr(mod, klass_name, upstream)
    parent = klass_module.rpartition(".")[0]
    saved_parent = sys.modules.get(parent) if parent else None
    if parent and parent not in sys.modules:
        sys.modules[parent] = types.ModuleType(parent)
    sys.modules[klass_module] = mod
    try:
        package = {"klass": upstream, "args": list(args), "kwargs": dict(kwargs), "state": model.state_dict(),
                   "training_args": {"dset": {"samplerate": 44100}}, **(extra or {})}
        torch.save(package, path)
    finally:
        for name, saved in ((klass_module, saved_module), (parent, saved_parent)):
            if not name:
                continue
            if saved is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = saved
    return path


@contextlib.contextmanager
def serve_bytes(body: bytes):
    """A real HTTP server on 127.0.0.1 answering every GET with ``body``; yields its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
