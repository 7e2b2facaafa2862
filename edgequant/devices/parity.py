"""ARM parity: does the artifact compute the same on the device's ARM kernels as on this x86 host?

The same input tensors go through the host's LiteRT (x86 XNNPACK kernels) and
through the aarch64 LiteRT on the profile's emulated core (ARM XNNPACK kernels).
For integer outputs the check is bit-exactness; for float outputs the largest
absolute difference (float kernels sum in different orders on each ISA, so a
small difference is expected and is not an error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgequant.devices.arm.runner import Sample, input_details, prepare_samples, random_input, run_on_device
from edgequant.devices.profiles import DeviceProfile, load_profile


@dataclass(frozen=True)
class OutputParity:
    name: str
    dtype: str
    exact: bool
    mismatched: int  # values that differ
    values: int  # values compared
    max_abs_diff: float  # in the output's own units (quantized steps for integer outputs)
    max_abs_error: float  # after dequantization, in real units

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "exact": self.exact, "mismatched": self.mismatched,
                "values": self.values, "max_abs_diff": self.max_abs_diff, "max_abs_error": self.max_abs_error}


@dataclass
class ParityResult:
    model: str
    profile: str
    core: str
    qemu_cpu: str
    samples: int
    outputs: list[OutputParity] = field(default_factory=list)
    top1_agreement: float | None = None  # share of samples whose arg-max class is the same, for 2-D outputs
    integer_outputs: bool = True

    @property
    def exact(self) -> bool:
        return all(o.exact for o in self.outputs)

    @property
    def max_abs_error(self) -> float:
        return max((o.max_abs_error for o in self.outputs), default=0.0)

    def summary(self) -> str:
        if self.exact:
            return f"bit-exact on {self.core} kernels ({self.samples} samples)"
        if self.integer_outputs:
            bad = sum(o.mismatched for o in self.outputs)
            return f"NOT bit-exact on {self.core}: {bad} values differ (max {self.max_abs_error:.3g})"
        return f"max abs error {self.max_abs_error:.3g} on {self.core} ({self.samples} samples, float outputs)"

    def to_dict(self) -> dict:
        return {
            "model": self.model, "profile": self.profile, "core": self.core, "qemu_cpu": self.qemu_cpu,
            "samples": self.samples, "exact": self.exact, "max_abs_error": self.max_abs_error,
            "top1_agreement": self.top1_agreement, "summary": self.summary(),
            "outputs": [o.to_dict() for o in self.outputs],
        }


def check_parity(
    model_path: str | Path,
    profile: str | Path | DeviceProfile,
    inputs: Sequence[Sample] | None = None,
    *,
    kernels: str = "xnnpack",
) -> ParityResult:
    """Run the same inputs on the host and on the profile's emulated core and compare outputs.

    `inputs`: samples, each an array (single-input model) or one array per
    input; float data for a quantized input is quantized with the input's
    scale. None means 4 fixed pseudo-random samples.
    """
    from edgequant.model.runtime import dequantize_output, load_interpreter

    prof = load_profile(profile)
    model_path = Path(model_path)
    details = input_details(model_path)
    if inputs is None:
        rng = np.random.default_rng(0)
        inputs = [[random_input(rng, d) for d in details] for _ in range(4)]
    rows = prepare_samples(details, inputs)

    host = load_interpreter(model_path, kernels=kernels, threads=1)
    in_details = host.get_input_details()
    out_details = host.get_output_details()
    host_outputs = []
    for row in rows:
        for d, x in zip(in_details, row):
            host.set_tensor(d["index"], x)
        host.invoke()
        host_outputs.append([host.get_tensor(d["index"]).copy() for d in out_details])

    arm = run_on_device(model_path, prof, rows, kernels=kernels, count=False)

    result = ParityResult(str(model_path), prof.name, prof.core, prof.qemu_cpu, len(rows))
    integer = True
    for o, d in enumerate(out_details):
        h = np.stack([s[o] for s in host_outputs])
        a = np.stack([s[o] for s in arm.outputs])
        is_int = np.dtype(d["dtype"]).kind in "iu"
        integer &= is_int
        diff = np.abs(h.astype(np.float64) - a.astype(np.float64))
        real = np.abs(dequantize_output(h, d).astype(np.float64) - dequantize_output(a, d).astype(np.float64))
        result.outputs.append(OutputParity(
            name=d["name"], dtype=np.dtype(d["dtype"]).name, exact=bool(np.array_equal(h, a)),
            mismatched=int(np.count_nonzero(h != a)), values=int(h.size),
            max_abs_diff=float(diff.max()) if diff.size else 0.0,
            max_abs_error=float(real.max()) if real.size else 0.0,
        ))
    result.integer_outputs = integer
    if len(out_details) == 1:
        h = np.stack([s[0] for s in host_outputs])
        a = np.stack([s[0] for s in arm.outputs])
        if h.ndim == 3 and h.shape[1] == 1 and h.shape[2] > 1:  # (samples, batch 1, classes)
            result.top1_agreement = float(np.mean(h.argmax(-1) == a.argmax(-1)))
    return result
