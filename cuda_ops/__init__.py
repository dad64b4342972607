"""GPU kernels for the live block, each beside a pure-torch reference and a parity test.

* ``knn``   exact top-k and IVF search over a voice's index vectors, RVC's 1/d^2 blend
            (``DeviceIndex`` replaces faiss-cpu when the voice runs on CUDA)
* ``nsf``   the NSF sine/noise excitation of RVC's decoder (running phase, harmonics, voicing)
* ``sola``  SOLA's correlation search and crossfade, with the offset kept on the device
* ``graphs`` CUDA-graph capture/replay of the fixed-shape synthesizer call
* ``dispatch`` which implementation runs: the Triton kernel on CUDA tensors, the reference
            elsewhere, ``impl="kernel"`` to force it (on CPU tensors under ``TRITON_INTERPRET=1``)

Nothing here imports Triton until a kernel is asked for, so the engine imports without it.
"""
