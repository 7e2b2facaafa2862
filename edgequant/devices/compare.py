"""Variants of one model side by side on simulated devices: estimated latency, int8 speedup, parity, memory.

This is what `edgequant bench --device ...` and the build report show per
device. Every latency here is an estimate from counted ARM instructions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgequant.devices.estimate import DeviceEstimate, estimate_latency
from edgequant.devices.parity import ParityResult, check_parity
from edgequant.devices.profiles import DeviceProfile, load_profile


@dataclass
class DeviceVariantRow:
    device: str
    variant: str
    estimate: DeviceEstimate
    parity: ParityResult | None = None
    speedup_vs_float32: float | None = None  # estimated float32 ms / this variant's estimated ms

    def to_dict(self) -> dict:
        return {
            "device": self.device, "variant": self.variant, "estimate": self.estimate.to_dict(),
            "parity": self.parity.to_dict() if self.parity else None,
            "speedup_vs_float32": self.speedup_vs_float32,
        }


@dataclass
class DeviceComparison:
    threads: int
    kernels: str = "xnnpack"
    rows: list[DeviceVariantRow] = field(default_factory=list)

    def speedup(self, device: str, variant: str = "int8") -> float | None:
        return next((r.speedup_vs_float32 for r in self.rows if r.device == device and r.variant == variant), None)

    def to_dict(self) -> dict:
        return {"kind": "estimate", "threads": self.threads, "kernels": self.kernels,
                "rows": [r.to_dict() for r in self.rows]}


def compare_on_devices(
    models: Mapping[str, str | Path],
    devices: Sequence[str | Path | DeviceProfile],
    *,
    threads: int = 1,
    parity: bool = False,
    parity_inputs: Sequence | None = None,
    kernels: str = "xnnpack",
) -> DeviceComparison:
    """Estimate every variant (name -> .tflite) on every device with `kernels` (xnnpack or builtin);
    speedups are over the "float32" variant.

    With `parity`, each variant's outputs on the device's ARM kernels are also
    compared with the host's (inputs: `parity_inputs`, else fixed random samples).
    """
    result = DeviceComparison(threads, kernels)
    for device in devices:
        prof = load_profile(device)
        if not prof.emulated:
            continue  # the host is measured by the host benchmark, not estimated
        rows = []
        for variant, path in models.items():
            est = estimate_latency(path, prof, threads=threads, kernels=kernels)
            par = check_parity(path, prof, parity_inputs) if parity else None
            rows.append(DeviceVariantRow(prof.name, variant, est, par))
        base = next((r.estimate.latency_ms for r in rows if r.variant == "float32"), None)
        for r in rows:
            if base and r.variant != "float32" and r.estimate.latency_ms > 0:
                r.speedup_vs_float32 = round(base / r.estimate.latency_ms, 2)
        result.rows.extend(rows)
    return result
