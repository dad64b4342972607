"""Compile every cuda_ops kernel for a GPU architecture without a GPU (Triton's ahead-of-time path).

The CPU interpreter checks what the kernels compute; it does not check that they *compile* (types,
``tl.dot`` shapes, layouts). This does, down to a cubin, for the signatures the wrappers launch:

    python -m cuda_ops.aot_check [--arch 90]

Run it without ``TRITON_INTERPRET`` (interpreted kernels cannot be compiled); exit status 0 when all
compiled. Used by tests/cuda_ops/test_cuda_compile.py.
"""

from __future__ import annotations

import argparse
import os
import sys

F32, I64, I32 = "*fp32", "*i64", "i32"


def specs():
    """(name, kernel, signature, constexprs) for each launch shape the wrappers use."""
    from cuda_ops import _knn_triton as knn
    from cuda_ops import _nsf_triton as nsf
    from cuda_ops import _sola_triton as sola

    def sig(kernel, types: dict, consts: dict):
        names = kernel.arg_names
        full = {n: (types[n] if n in types else "constexpr") for n in names}
        return full, consts

    out = []
    s, c = sig(knn.flat_topk_tiles_kernel, dict(q_ptr=F32, qn_ptr=F32, v_ptr=F32, vn_ptr=F32, out_d_ptr=F32,
                                                out_i_ptr=I64, Q=I32, N=I32, D=I32, n_tiles=I32),
               dict(K=8, BQ=16, BN=64, BD=64))
    out.append(("knn flat top-k tiles", knn.flat_topk_tiles_kernel, s, c))
    s, c = sig(knn.ivf_topk_chunks_kernel, dict(q_ptr=F32, qn_ptr=F32, probes_ptr=I64, offsets_ptr=I64, v_ptr=F32,
                                                vn_ptr=F32, ids_ptr=I64, out_d_ptr=F32, out_i_ptr=I64, D=I32,
                                                nprobe=I32, n_chunks=I32), dict(K=8, BN=64, BD=64))
    out.append(("knn IVF chunks", knn.ivf_topk_chunks_kernel, s, c))
    s, c = sig(knn.blend_kernel, dict(q_ptr=F32, d2_ptr=F32, ids_ptr=I64, v_ptr=F32, out_ptr=F32, D=I32,
                                      index_rate="fp32", min_d2="fp32"), dict(K=8, BD=256))
    out.append(("index blend", knn.blend_kernel, s, c))
    for h in (1, 3):
        s, c = sig(nsf.nsf_source_kernel, dict(start_ptr=F32, rad_ptr=F32, f0_ptr=F32, noise_ptr=F32, w_ptr=F32,
                                               b_ptr=F32, out_ptr=F32, T=I32, n=I32, head=I32, upp=I32,
                                               sine_amp="fp32", noise_std="fp32", unvoiced_amp="fp32"),
                   dict(H=h, BLOCK=1024))
        out.append((f"NSF source H={h}", nsf.nsf_source_kernel, s, c))
    s, c = sig(sola.sola_scores_kernel, dict(chunk_ptr=F32, tail_ptr=F32, out_ptr=F32, C=I32, S1=I32), dict(BS=16, BC=128))
    out.append(("SOLA scores", sola.sola_scores_kernel, s, c))
    for has_tail in (True, False):
        s, c = sig(sola.sola_splice_kernel, dict(chunk_ptr=F32, tail_ptr=F32, fade_in_ptr=F32, fade_out_ptr=F32,
                                                 offset_ptr=I64, out_ptr=F32, new_tail_ptr=F32, HOP=I32, C=I32),
                   dict(HAS_TAIL=has_tail, BLOCK=1024))
        out.append((f"SOLA splice tail={has_tail}", sola.sola_splice_kernel, s, c))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", type=int, default=90, help="compute capability x10 (90 = H100/H200)")
    args = ap.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("unset TRITON_INTERPRET: interpreted kernels cannot be compiled")
        return 2
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    failed = 0
    for name, kernel, signature, constexprs in specs():
        try:
            compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
                                      target=GPUTarget("cuda", args.arch, 32))
            size = len(compiled.asm.get("cubin", b""))
            print(f"ok   {name}: sm_{args.arch} cubin {size} bytes, {compiled.metadata.num_warps} warps, "
                  f"{compiled.metadata.shared} B shared")
            if not size:
                failed += 1
        except Exception as exc:
            failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {str(exc)[:2000]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
