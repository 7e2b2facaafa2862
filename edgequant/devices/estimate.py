"""Estimated latency of a .tflite on a simulated device, and whether it fits the device's memory.

The instructions one invoke executes are counted on the profile's emulated
core (once per model, core and kernel family: cached by the model's sha256),
then the calibrated cost model turns them into milliseconds. Every figure here
is an estimate and says so, with the runtime it is for and an interval around
it: ± the 90th percentile of the errors of fits that never saw the model's
family (latency_model.interval_ms).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from edgequant.devices import latency_model
from edgequant.devices.arm.symbols import KernelShare
from edgequant.devices.layers import LayerEstimate, price_layers, serial_instructions
from edgequant.devices.profiles import DeviceProfile, load_profile
from edgequant.devices.run_cache import counts_key, read_entry, write_entry
from edgequant.errors import InputError
from edgequant.process.cache import cache_dir

RUNTIME_OVERHEAD_MB = 16  # interpreter, XNNPACK and allocator bookkeeping of a native app


@dataclass(frozen=True)
class MemoryFit:
    """Does the model fit the device's memory? Upper bounds from the file, not a measurement."""

    model_file_bytes: int  # the .tflite, mapped or read into memory
    packed_weight_bytes: int  # XNNPACK repacks weights into its own buffers
    arena_bytes: int  # every activation tensor at once (the real arena reuses memory: less)
    available_mb: int | None

    @property
    def required_mb(self) -> float:
        total = self.model_file_bytes + self.packed_weight_bytes + self.arena_bytes
        return total / 2**20 + RUNTIME_OVERHEAD_MB

    @property
    def fits(self) -> bool | None:
        return None if self.available_mb is None else self.required_mb <= self.available_mb

    def to_dict(self) -> dict:
        return {"model_file_bytes": self.model_file_bytes, "packed_weight_bytes": self.packed_weight_bytes,
                "arena_bytes": self.arena_bytes, "required_mb": round(self.required_mb, 1),
                "available_mb": self.available_mb, "fits": self.fits}


RUNTIMES = {"xnnpack": "LiteRT + XNNPACK", "builtin": "LiteRT builtin kernels (XNNPACK off)"}


@dataclass
class DeviceEstimate:
    """Estimated (never measured) latency of one model on one simulated device."""

    model: str
    model_sha256: str
    profile: str
    device: str
    core: str
    qemu_cpu: str
    kernels: str
    precision: str  # "int8" or "fp32": which way the counted instructions lean (for the interval)
    threads: int
    latency_ms: float
    interval_ms: tuple[float, float]  # 5th-95th percentile band of left-out devices' errors
    interval_group: str  # which rows the interval comes from
    latency_ms_by_threads: dict[int, float]
    calibration_source: str
    calibration_rows: int
    instructions_per_invoke: int
    instruction_mix: dict[str, int]
    memory: MemoryFit
    kernel_shares: list[KernelShare] = field(default_factory=list)
    layers: list[LayerEstimate] = field(default_factory=list)  # by TFLite node, then the runtime overhead

    @property
    def runtime(self) -> str:
        return RUNTIMES[self.kernels]

    @property
    def calibration_error_pct(self) -> float:
        """The interval's larger side, in percent of the estimate."""
        lo, hi = self.interval_ms
        return round(max(hi / self.latency_ms - 1, 1 - lo / self.latency_ms) * 100, 1) if self.latency_ms else 0.0

    @property
    def calibration(self) -> str:
        """The estimate's interval in words."""
        lo, hi = self.interval_ms
        return f"{_ms(lo)}–{_ms(hi)} ms"

    @property
    def label(self) -> str:
        return f"estimate for {self.runtime} ({self.calibration})"

    def to_dict(self, layers: bool = True) -> dict:
        """Every figure; `layers=False` leaves the per-layer list out (a report keeps it in its own field)."""
        return {
            "kind": "estimate", "model": self.model, "model_sha256": self.model_sha256,
            "profile": self.profile, "device": self.device, "core": self.core, "qemu_cpu": self.qemu_cpu,
            "kernels": self.kernels, "runtime": self.runtime, "precision": self.precision,
            "threads": self.threads, "latency_ms": self.latency_ms,
            "interval_ms": [round(v, 2) for v in self.interval_ms], "interval_group": self.interval_group,
            "latency_ms_by_threads": {str(k): v for k, v in self.latency_ms_by_threads.items()},
            "calibration_error_pct": self.calibration_error_pct, "calibration_source": self.calibration_source,
            "calibration_rows": self.calibration_rows,
            "label": self.label, "instructions_per_invoke": self.instructions_per_invoke,
            "instruction_mix": self.instruction_mix, "memory": self.memory.to_dict(),
            "kernel_shares": [k.to_dict() for k in self.kernel_shares],
        } | ({"layers": [layer.to_dict() for layer in self.layers]} if layers else {})


def _ms(v: float) -> str:
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def count_instructions(model_path: Path, profile: DeviceProfile, *, kernels: str = "xnnpack",
                       sha256: str | None = None) -> dict:
    """Instructions per invoke (total and by class) on the profile's core, from the cache or by emulating once."""
    from importlib import metadata

    from edgequant.devices.arm.runner import run_on_device

    sha256 = sha256 or hashlib.sha256(model_path.read_bytes()).hexdigest()
    key = counts_key(sha256, profile, kernels, metadata.version("ai-edge-litert"))
    cached = cache_dir() / "counts" / f"{key}.json"
    record = read_entry(cached, key, count_problem)
    if record is not None:
        return record
    record = count_record(run_on_device(model_path, profile, kernels=kernels))
    write_entry(cached, key, record)
    return record


def count_problem(record: dict) -> str | None:
    """What makes a count record implausible: its instruction classes must add up to its instructions."""
    total, mix = record.get("instructions"), record.get("mix")
    if not isinstance(total, int) or total <= 0 or not isinstance(mix, dict):
        return "no instruction count"
    classes = [v for k, v in mix.items() if not k.endswith("_bytes")]
    if not all(isinstance(v, int) and v >= 0 for v in mix.values()) or sum(classes) != total:
        return f"its instruction mix adds up to {sum(v for v in classes if isinstance(v, (int, float))):,}, not {total:,}"
    return None


def count_record(run) -> dict:
    """What the estimate needs of an emulated run (an ArmRun): the cached count record."""
    from edgequant.devices.arm.runner import TOP_KERNELS

    return {
        "instructions": run.instructions_per_invoke,
        "mix": run.instruction_mix,
        "kernel_shares": [k.to_dict() for k in run.kernel_shares[:TOP_KERNELS]],
        "layers": [layer.to_dict() for layer in run.layers],
    }


def estimate_latency(model_path: str | Path, profile: str | Path | DeviceProfile, threads: int = 1,
                     kernels: str = "xnnpack", counts: dict | None = None) -> DeviceEstimate:
    """Estimated latency of `model_path` on the device with `kernels` (xnnpack or builtin), for
    `threads` and for every thread count the device has. `counts` (a count_record of a run of this
    model on this profile's core) saves counting again."""
    from edgequant.model.tflite_file import read_tflite

    prof = load_profile(profile)
    if not prof.emulated:
        raise InputError(f"device '{prof.name}' is measured natively: use `edgequant bench` for the host")
    if threads < 1:
        raise InputError(f"threads: must be at least 1, got {threads}")
    if kernels not in latency_model.KERNEL_FAMILIES:
        raise InputError(f"kernels: '{kernels}' is not one of {', '.join(latency_model.KERNEL_FAMILIES)}")
    model_path = Path(model_path)
    info = read_tflite(model_path)
    counts = counts or count_instructions(model_path, prof, kernels=kernels, sha256=info.sha256)
    workload = latency_model.Workload(counts["instructions"], counts["mix"], info.weight_bytes,
                                      info.activation_bytes, kernels,
                                      serial_instructions=serial_instructions(counts.get("layers", [])),
                                      nodes=len(info.operators),
                                      streaming_nodes=latency_model.streaming_nodes(info))

    def ms(n: int) -> float:
        return round(latency_model.estimate_ms(workload, prof, n), 2)

    latency = ms(threads)
    precision = latency_model.precision_of(counts["mix"])
    lo, hi, group = latency_model.interval_ms(latency, prof.core, precision, kernels,
                                              widening=prof.cost.interval_widening)
    return DeviceEstimate(
        model=str(model_path), model_sha256=info.sha256, profile=prof.name, device=prof.device, core=prof.core,
        qemu_cpu=prof.qemu_cpu, kernels=kernels, precision=precision, threads=threads, latency_ms=latency,
        interval_ms=(round(lo, 2), round(hi, 2)), interval_group=group,
        latency_ms_by_threads={n: ms(n) for n in range(1, prof.max_threads + 1)},
        calibration_source=prof.cost.source, calibration_rows=prof.cost.calibration_rows,
        instructions_per_invoke=counts["instructions"], instruction_mix=counts["mix"],
        memory=MemoryFit(info.size_bytes, info.weight_bytes, info.activation_bytes, prof.available_memory_mb),
        kernel_shares=[KernelShare(**k) for k in counts["kernel_shares"]],
        layers=price_layers(counts.get("layers", []), latency, prof, kernels, threads),
    )
