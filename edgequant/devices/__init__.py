"""Simulated edge devices: ARM kernels under qemu emulation and estimated device latency.

    from edgequant.devices import estimate_latency, check_parity
    est = estimate_latency("model_int8.tflite", "rpi4", threads=4)   # DeviceEstimate (an estimate)
    par = check_parity("model_int8.tflite", "pixel4", samples)       # ParityResult (bit-exact?)

Names resolve lazily, so importing this package loads neither LiteRT nor qemu.
"""

from __future__ import annotations

from edgequant.lazy import lazy_exports

_EXPORTS = {
    "DeviceProfile": "edgequant.devices.profiles",
    "load_profile": "edgequant.devices.profiles",
    "list_profiles": "edgequant.devices.profiles",
    "estimate_latency": "edgequant.devices.estimate",
    "DeviceEstimate": "edgequant.devices.estimate",
    "check_parity": "edgequant.devices.parity",
    "ParityResult": "edgequant.devices.parity",
    "compare_on_devices": "edgequant.devices.compare",
    "DeviceComparison": "edgequant.devices.compare",
    "run_on_device": "edgequant.devices.arm.runner",
    "ArmRun": "edgequant.devices.arm.runner",
    "ensure_arm_environment": "edgequant.devices.arm.install",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
