"""Host benchmarking through the LiteRT interpreter, and why a variant is (not) faster.

- `host`: load every configuration up front, time invokes interleaved round-robin, statistics, memory.
- `inputs`: inputs of the right dtype and range, generated or read from .npy/.npz.
- `cpu_features`: the host CPU features XNNPACK chooses its kernels by.
- `xnnpack_support`: which ops and tensor types XNNPACK takes in ai-edge-litert 2.3 (data).
- `speed_explanation`: coverage, QUANTIZE/DEQUANTIZE placement and host features, as a verdict.

Import the submodules directly; this package imports nothing heavy.
"""
