"""Builds engine/io/native_callback.c into engine.io._native_callback with cffi (run by setup.py;
``python engine/io/native_build.py`` builds it in place by hand)."""

from __future__ import annotations

import os
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

# What Python sees of native_callback.c (its structs and the functions the tests call).
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
void av_ring_write_overwrite(struct av_ring *r, const float *data, int64_t n);
int64_t av_ring_read_into(struct av_ring *r, float *out, int64_t n, int64_t channels);
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
