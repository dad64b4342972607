"""Builds engine/io/native_callback.c into engine.io._native_callback with cffi (run by setup.py;
``python engine/io/native_build.py`` builds it in place by hand)."""

from __future__ import annotations

import os
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

# What Python sees of native_callback.c: its structs (NativeSides fills them) and the callback.
CDEF = """
struct av_ring { float *buf; int64_t *state; int64_t capacity; int64_t channels; };
struct av_sides {
    struct av_ring in;
    struct av_ring out;
    int64_t out_channels;
    int64_t *counters;
    double *arrival_s;
    int64_t *arrival_written;
    int64_t arrivals;
};
int av_callback(const void *input, void *output, unsigned long frames, const void *time_info,
                unsigned long status, void *user);
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("engine.io._native_callback", (HERE / "native_callback.c").read_text(),
                      extra_compile_args=[] if os.name == "nt" else ["-O2"])

if __name__ == "__main__":
    os.chdir(HERE.parent.parent)  # the module lands at engine/io/ as engine.io._native_callback
    ffibuilder.compile(verbose=True)
