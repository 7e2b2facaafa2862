"""Run a .tflite on an emulated ARM core: its outputs and the instructions each invoke executes.

The model runs in a real aarch64 LiteRT under qemu-user, so XNNPACK picks the
ARM kernels the device's core would run (chosen from the emulated CPU's
features and the faked core part number). The wall time of emulation says
nothing about the device and is only reported as `emulation_seconds`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgequant.devices.arm.guest import guest_command
from edgequant.devices.arm.install import GUEST_RUNNER, ArmEnvironment, ensure_arm_environment
from edgequant.devices.arm.symbols import MARKED_LIBRARY, KernelShare, attribute, operator_marks
from edgequant.devices.core_timings import MIX_FIELDS
from edgequant.devices.layers import LayerCount, Segment, attribute_layers
from edgequant.devices.profiles import DeviceProfile, load_profile
from edgequant.errors import BuildError, DataError, InputError, ModelFileError
from edgequant.process.scratch import scratch_prefix

Sample = np.ndarray | Sequence[np.ndarray]
TOP_KERNELS = 12


@dataclass
class ArmRun:
    """What one emulated run produced."""

    profile: str
    qemu_cpu: str
    core: str
    kernels: str
    threads: int
    outputs: list[list[np.ndarray]]  # [sample][output]
    instructions_per_invoke: int | None  # None when not counted
    invokes_counted: int
    kernel_shares: list[KernelShare] = field(default_factory=list)  # the top functions
    instructions_by_symbol: dict[str, int] = field(default_factory=dict)  # per invoke, every function
    emulation_seconds: float = 0.0  # host wall time of the emulation: never a device latency
    instruction_mix: dict[str, int] = field(default_factory=dict)  # per invoke, MIX_FIELDS
    layers: list[LayerCount] = field(default_factory=list)  # per invoke, by TFLite node, then runtime overhead

    @property
    def xnnpack_kernel_share(self) -> float:
        return sum(k.share for k in self.kernel_shares if "ukernel" in k.symbol)

    def to_dict(self) -> dict:
        return {
            "profile": self.profile, "qemu_cpu": self.qemu_cpu, "core": self.core, "kernels": self.kernels,
            "threads": self.threads, "instructions_per_invoke": self.instructions_per_invoke,
            "invokes_counted": self.invokes_counted,
            "kernel_shares": [k.to_dict() for k in self.kernel_shares],
            "instructions_by_symbol": self.instructions_by_symbol,
            "instruction_mix": self.instruction_mix, "layers": [layer.to_dict() for layer in self.layers],
            "emulation_seconds": round(self.emulation_seconds, 2),
        }


def prepare_samples(model_inputs: list[dict], samples: Sequence[Sample] | None) -> list[list[np.ndarray]]:
    """Samples as one array per model input, in each input's dtype and shape (batch included)."""
    from edgequant.model.runtime import quantize_input

    if samples is None:  # fixed pseudo-random data: the same instructions on every run
        rng = np.random.default_rng(0)
        samples = [[random_input(rng, d) for d in model_inputs]]
    out = []
    for s, sample in enumerate(samples):
        arrays = [sample] if isinstance(sample, np.ndarray) else list(sample)
        if len(arrays) != len(model_inputs):
            raise DataError(f"sample {s}: {len(arrays)} arrays for a model with {len(model_inputs)} inputs")
        row = []
        for x, d in zip(arrays, model_inputs):
            x = np.asarray(x)
            shape = tuple(int(v) for v in d["shape"])
            if x.shape != shape and (1,) + x.shape == shape:
                x = x[None]
            if x.shape != shape:
                raise DataError(f"sample {s}: input '{d['name']}' has shape {x.shape}, the model expects {shape}")
            dtype = np.dtype(d["dtype"])
            if x.dtype != dtype:
                if x.dtype.kind != "f" and dtype.kind != "f":
                    raise DataError(f"sample {s}: input '{d['name']}' is {x.dtype}, the model expects {dtype}")
                x = quantize_input(x.astype(np.float32), d)
            row.append(np.ascontiguousarray(x))
        out.append(row)
    return out


def random_input(rng: np.random.Generator, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(v) for v in detail["shape"])
    if dtype.kind == "f":
        return rng.random(shape, dtype=np.float32).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def input_details(model: Path) -> list[dict]:
    """The model's input details, read with the host's LiteRT (no need to emulate for that)."""
    from edgequant.model.runtime import load_interpreter

    return load_interpreter(model, kernels="builtin").get_input_details()


def run_on_device(
    model: str | Path,
    profile: str | Path | DeviceProfile,
    samples: Sequence[Sample] | None = None,
    *,
    threads: int = 1,
    kernels: str = "xnnpack",
    count: bool = True,
    attribute_kernels: bool = True,
    timeout: float = 1800,
    env: ArmEnvironment | None = None,
) -> ArmRun:
    """Run `model` on the profile's emulated core, once per sample (fixed random data if None).

    Counts the guest instructions of each invoke (after one uncounted warm-up
    invoke) unless `count=False`. Counts are exact with threads=1.
    """
    prof = load_profile(profile)
    if not prof.emulated:
        raise InputError(f"device '{prof.name}' is measured natively, not emulated: use the host benchmark")
    model = Path(model)
    if not model.is_file():
        raise ModelFileError(f"{model}: no such .tflite file")
    if kernels not in ("xnnpack", "builtin", "reference"):
        raise InputError(f"kernels: '{kernels}' is not one of xnnpack, builtin, reference")
    details = input_details(model)
    rows = prepare_samples(details, samples)
    env = env or ensure_arm_environment()
    view = env.view(prof.cpuinfo_text(), prof.cores)

    with tempfile.TemporaryDirectory(prefix=scratch_prefix("arm")) as tmp:
        work = Path(tmp)
        np.savez(work / "inputs.npz", **{f"{s}_{i}": x for s, row in enumerate(rows) for i, x in enumerate(row)})
        # The guest sees only these fixed relative names, run in `work`: a path's length moves the guest's stack
        # (argv) and heap, and with them a few instructions per invoke, so no host path may reach it.
        (work / "model.tflite").symlink_to(model.resolve())
        shutil.copy(GUEST_RUNNER, work / GUEST_RUNNER.name)
        request = {
            "model": "model.tflite", "inputs": "inputs.npz", "outputs": "outputs.npz",
            "maps": "maps.txt", "samples": len(rows), "threads": threads, "kernels": kernels,
            "count": count, "warmup": 1, "ops": "ops.json" if count and attribute_kernels else "",
        }
        counts_file = work / "counts.txt" if count else None
        marks = operator_marks(env.site_packages / "ai_edge_litert" / MARKED_LIBRARY) if count and attribute_kernels else None
        marks_file = work / "marks.txt" if marks else None
        if marks_file:
            marks_file.write_text(marks)
            request["marks_library"] = MARKED_LIBRARY
        (work / "request.json").write_text(json.dumps(request))
        cmd, run_env = guest_command(env, view, prof.qemu_cpu, [GUEST_RUNNER.name, "request.json"],
                                     counts_file=counts_file, marks_file=marks_file)
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=run_env, cwd=work)
        except subprocess.TimeoutExpired:
            raise BuildError(f"{model}: emulated run on {prof.name} took over {timeout:.0f} s") from None
        seconds = time.monotonic() - start
        if proc.returncode != 0:
            raise BuildError(f"{model}: emulated run on {prof.name} ({prof.qemu_cpu}) failed: {_last_error(proc)}")
        with np.load(work / "outputs.npz", allow_pickle=False) as data:
            n_out = len({k.split("_")[1] for k in data.files})
            outputs = [[data[f"{s}_{o}"] for o in range(n_out)] for s in range(len(rows))]
        per_invoke, shares, by_symbol, mix, layers = None, [], {}, {}, []
        if count:
            measured, windows, tbs, mix_total, segments = _read_counts(counts_file)
            if windows != len(rows):
                raise BuildError(f"{model}: the counting plugin saw {windows} invokes, expected {len(rows)}")
            per_invoke = round(measured / windows)
            mix = {k: round(mix_total.get(k, 0) / windows) for k in MIX_FIELDS}
            if attribute_kernels:
                every = attribute(tbs, (work / "maps.txt").read_text())
                shares = every[:TOP_KERNELS]
                for k in every:
                    by_symbol[k.symbol] = by_symbol.get(k.symbol, 0) + round(k.instructions / windows)
                ops_file = work / "ops.json"
                if ops_file.is_file():
                    layers = attribute_layers(segments, windows, per_invoke, json.loads(ops_file.read_text()),
                                              (work / "maps.txt").read_text(), kernels)
    return ArmRun(prof.name, prof.qemu_cpu, prof.core, kernels, threads, outputs, per_invoke,
                  len(rows) if count else 0, shares, by_symbol, seconds, mix, layers)


def _last_error(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip() and not ln.startswith("INFO:")]
    if proc.returncode < 0 or proc.returncode in (132, 134, 139):
        sig = -proc.returncode if proc.returncode < 0 else proc.returncode - 128
        return f"killed by signal {sig}" + (f" ({lines[-1]})" if lines else "")
    return lines[-1] if lines else f"exit code {proc.returncode}"


def _read_counts(path: Path) -> tuple[int, int, list[tuple[int, int]], dict[str, int], list[Segment]]:
    """(instructions in windows, windows, [(tb address, instructions)], mix in windows, segments of the
    windows) from the plugin's file."""
    if not path.is_file():
        raise BuildError("the counting plugin wrote no counts (did qemu load it?)")
    measured = windows = 0
    mix: dict[str, int] = {}
    per_tb: dict[int, int] = defaultdict(int)
    segments: list[Segment] = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts[0] == "measured":
            measured = int(parts[1])
        elif parts[0] == "windows":
            windows = int(parts[1])
        elif parts[0] == "mix":
            mix[parts[1]] = int(parts[2])
        elif parts[0] == "tb":
            per_tb[int(parts[1], 16)] += int(parts[2]) * int(parts[3])
        elif parts[0] == "seg":
            counts = [int(v) for v in parts[5:]]
            segments.append(Segment(parts[2], int(parts[3], 16), int(parts[4]), dict(zip(MIX_FIELDS, counts))))
        elif parts[0] == "stb":
            segments[int(parts[1])].tb_counts.append((int(parts[2], 16), int(parts[3])))
    return measured, windows, sorted(per_tb.items()), mix, segments
