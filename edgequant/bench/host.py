"""Latency and memory of .tflite models on this host, through the LiteRT interpreter.

Method (the care of TFLite's `benchmark_model`, from Python):
- every configuration (model x kernels x threads) is loaded and allocated up front, one after
  another, measuring load time, first-invoke time and the process RSS each one added;
- then `warmup` rounds and `runs` rounds are timed, interleaved round-robin: each round invokes
  every configuration once, the round's starting configuration rotating, so a burst of load from
  other processes on a shared machine lands on all configurations alike rather than on one;
- each invoke is timed alone with `time.perf_counter_ns` (wall) and `time.process_time_ns`
  (CPU time of the whole process, all threads); Python's garbage collector is paused while timing;
- inputs are set once per configuration before timing (seeded generated values, or real data),
  as `benchmark_model` does, so the timed span is `invoke()` alone.

Memory: `peak_rss_bytes` is the process's RSS high-water mark (VmHWM) after the run: Python, numpy,
LiteRT and every loaded configuration together. `rss_increase_bytes` is the VmRSS a configuration
added while it was loaded, allocated and invoked once, with the earlier ones still loaded: the
model's pages, XNNPACK's packed weights, the tensor arena, kernel code first touched. The runtime's
one-time start-up (about 10 MB) is paid beforehand on a one-op model so the first configuration is
not charged for it. It can undercount when the allocator reuses memory the process freed earlier.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgequant.errors import DataError, InputError, ModelFileError
from edgequant.model.inputs import FloatDistribution, generate_inputs, read_inputs

ModelSource = str | Path | bytes
ProgressCallback = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of per-invoke wall times, in milliseconds. Percentiles interpolate linearly
    (numpy's default); `std_ms` is the sample standard deviation (ddof=1)."""

    n: int
    mean_ms: float
    median_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float]) -> "LatencyStats":
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no samples")
        median, p90, p99 = np.percentile(a, [50, 90, 99])
        return cls(
            n=int(a.size),
            mean_ms=float(a.mean()),
            median_ms=float(median),
            p90_ms=float(p90),
            p99_ms=float(p99),
            min_ms=float(a.min()),
            max_ms=float(a.max()),
            std_ms=float(a.std(ddof=1)) if a.size > 1 else 0.0,
        )

    @property
    def cv(self) -> float:
        """Coefficient of variation (std / mean): how noisy the samples were."""
        return self.std_ms / self.mean_ms if self.mean_ms else 0.0


@dataclass(frozen=True)
class BenchResult:
    """One configuration's measurements. `samples_ms` are the raw timed invokes, in order;
    `sequence` gives each sample's position in the interleaved schedule of the whole benchmark."""

    model: str
    precision: str  # float32, float16, dynamic, int8, uint8 or int16x8, read from the file
    sha256: str
    size_bytes: int
    kernels: str
    threads: int
    runs: int
    warmup: int
    load_ms: float  # Interpreter(...) with delegate application + allocate_tensors()
    first_invoke_ms: float
    latency: LatencyStats
    samples_ms: list[float]
    cpu_ms: list[float]  # process CPU time (all threads) during each timed invoke
    sequence: list[int]
    rss_increase_bytes: int  # VmRSS gained while loading, allocating and first invoking this configuration
    peak_rss_bytes: int  # the process's RSS high-water mark (VmHWM) at the end of the benchmark
    threads_started: int  # OS threads the process gained while loading and first invoking this configuration
    operators: int
    delegated_operators: int
    delegate_partitions: int
    tensors_allocated: int  # the model's tensors plus kernel temporaries: differs between builtin and reference kernels
    inputs: str  # where the input values came from
    runtime: str
    host: dict = field(default_factory=dict)
    input_shapes: list = field(default_factory=list)  # the shape of each input timed (batch included)

    @property
    def cpu_per_wall(self) -> float:
        """Median CPU time / wall time per invoke. With 1 thread, well under 1.0 means the
        process was waiting for a core (other jobs on the machine): the samples are noisy."""
        ratios = np.asarray(self.cpu_ms) / np.maximum(np.asarray(self.samples_ms), 1e-9)
        return float(np.median(ratios)) if ratios.size else 0.0

    def to_dict(self, *, samples: bool = True) -> dict:
        d = asdict(self)
        d["latency"] = dict(asdict(self.latency), cv=self.latency.cv)
        d["cpu_per_wall"] = self.cpu_per_wall
        if not samples:
            for key in ("samples_ms", "cpu_ms", "sequence"):
                d.pop(key)
        return d


def round_robin_schedule(n_configs: int, rounds: int) -> list[int]:
    """Configuration indices in invoke order: every round invokes each configuration once,
    starting one configuration later than the round before."""
    return [(r + k) % n_configs for r in range(rounds) for k in range(n_configs)]


def process_memory() -> dict[str, int]:
    """VmRSS and VmHWM of this process in bytes, from /proc/self/status (Linux), else
    getrusage's ru_maxrss for both."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")} | {"Threads": int(fields["Threads"])}
    except (OSError, KeyError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak *= 1 if platform.system() == "Darwin" else 1024
        return {"VmRSS": peak, "VmHWM": peak, "Threads": 0}


def host_conditions() -> dict:
    """What the machine was doing: a benchmark's figures mean little without it."""
    info = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "loadavg_1min": _loadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


@dataclass
class _Config:
    label: str
    precision: str
    source: ModelSource
    sha256: str
    size_bytes: int
    kernels: str
    threads: int
    interpreter: object = None
    load_ms: float = 0.0
    first_invoke_ms: float = 0.0
    rss_increase: int = 0
    threads_started: int = 0
    operators: int = 0
    delegated: int = 0
    partitions: int = 0
    tensors: int = 0
    input_shapes: list = field(default_factory=list)


def _resize_inputs(interp, arrays: list[np.ndarray], label: str) -> None:
    """Resize the inputs whose data has another shape (a dynamic axis, such as a sequence length) and allocate."""
    from edgequant.model.runtime import allocate

    for detail, array in zip(interp.get_input_details(), arrays):
        if tuple(int(d) for d in detail["shape"]) != tuple(array.shape):
            signature = detail.get("shape_signature")
            fixed = [i for i, d in enumerate(signature if signature is not None else detail["shape"]) if d != -1]
            if len(array.shape) != len(detail["shape"]) or any(array.shape[i] != detail["shape"][i] for i in fixed):
                raise DataError(f"{label}: input '{detail['name']}' has shape {list(array.shape)}, the model expects "
                                f"{[int(d) for d in (signature if signature is not None else detail['shape'])]}")
            interp.resize_tensor_input(detail["index"], list(array.shape))
    try:
        allocate(interp, [a.shape for a in arrays])
    except DataError as exc:
        raise DataError(f"{label}: {exc}") from None


def _refuse_empty_outputs(interp, label: str, shapes: list[list[int]]) -> None:
    """A model whose output is empty at these input shapes computes nothing: timing it would mislead."""
    for detail in interp.get_output_details():
        if interp.get_tensor(detail["index"]).size == 0:
            raise DataError(
                f"{label}: output '{detail['name']}' is empty (shape {list(interp.get_tensor(detail['index']).shape)}) "
                f"at input shape {', '.join(map(str, shapes))}: a time for computing nothing would mislead; time it "
                "on inputs of a real shape (evaluation data in a recipe, --input for `edgequant bench`)")


class HostBenchmark:
    """All configurations loaded up front; `run()` times them interleaved. Use `benchmark()` for
    one call; keep a HostBenchmark to run several timed blocks on the same interpreters."""

    def __init__(
        self,
        models: Sequence[ModelSource],
        *,
        kernels: Sequence[str] = ("xnnpack",),
        threads: Sequence[int] = (1,),
        names: Sequence[str] | None = None,
        input_data: str | Path | None = None,
        seed: int = 0,
        float_distribution: FloatDistribution = "uniform",
        progress: ProgressCallback | None = None,
        inputs=None,
        inputs_description: str = "",
    ):
        from edgequant.bench.xnnpack_support import classify_operators, model_precision
        from edgequant.model.runtime import (
            KERNEL_CHOICES,
            execution_plan,
            in_input_order,
            load_interpreter,
            runtime_version,
            set_inputs,
        )
        from edgequant.model.tflite_file import read_tflite

        if not models:
            raise InputError("no model to benchmark")
        bad = [k for k in kernels if k not in KERNEL_CHOICES]
        if bad:
            raise InputError(f"unknown kernels {', '.join(bad)}: choose from {', '.join(KERNEL_CHOICES)}")
        if any(int(t) < 1 for t in threads):
            raise InputError(f"threads must be at least 1, got {list(threads)}")
        if names is not None and len(names) != len(models):
            raise InputError(f"{len(names)} names for {len(models)} models")
        self.runtime = runtime_version()
        self._progress = progress or (lambda phase, done, total: None)
        labels = list(names) if names else [_label(m, i) for i, m in enumerate(models)]

        parsed = []
        for label, model in zip(labels, models):
            info = read_tflite(model)  # clear one-line errors for files that are not valid .tflite
            if info.custom_ops:
                raise ModelFileError(
                    f"{label}: uses custom op(s) {', '.join(info.custom_ops)}, which the LiteRT interpreter "
                    "does not provide; benchmark a model converted without allow_custom_ops"
                )
            parsed.append((label, model, info))

        self.configs = [
            _Config(label, model_precision(classify_operators(info)), model, info.sha256, info.size_bytes, k, int(t))
            for label, model, info in parsed for k in kernels for t in threads
        ]
        self.input_description = (
            inputs_description or "real data" if inputs is not None else
            f"real data from {input_data}" if input_data else
            f"generated, seed {seed}: floats {'uniform [0,1)' if float_distribution == 'uniform' else 'standard normal'}, "
            "quantized ints spanning their real domain"
        )
        self._host = host_conditions()
        _warm_up_runtime(sorted(set(kernels)))
        gc.collect()
        for i, c in enumerate(self.configs):
            self._progress("load", i, len(self.configs))
            before = process_memory()
            t0 = time.perf_counter_ns()
            interp = load_interpreter(c.source, kernels=c.kernels, threads=c.threads, allocate=False)
            details = interp.get_input_details()
            if inputs is not None:
                arrays = in_input_order(interp, inputs)
            else:
                arrays = read_inputs(input_data, details) if input_data else generate_inputs(details, seed,
                                                                                             float_distribution)
            _resize_inputs(interp, arrays, c.label)  # and allocate, at the data's shape
            c.load_ms = (time.perf_counter_ns() - t0) / 1e6
            set_inputs(interp, arrays)
            t0 = time.perf_counter_ns()
            interp.invoke()
            c.first_invoke_ms = (time.perf_counter_ns() - t0) / 1e6
            c.input_shapes = [[int(d) for d in a.shape] for a in arrays]
            _refuse_empty_outputs(interp, c.label, c.input_shapes)
            after = process_memory()
            c.rss_increase = after["VmRSS"] - before["VmRSS"]
            c.threads_started = after["Threads"] - before["Threads"]
            plan = execution_plan(interp)
            c.operators, c.delegated, c.partitions = len(plan.op_types), len(plan.delegated), len(plan.partitions)
            c.tensors = plan.tensors
            c.interpreter = interp
        self._progress("load", len(self.configs), len(self.configs))

    def run(self, *, runs: int = 50, warmup: int = 5) -> list[BenchResult]:
        """Time `warmup` untimed then `runs` timed rounds over every configuration, interleaved."""
        if runs < 1 or warmup < 0:
            raise InputError(f"runs must be at least 1 and warmup at least 0, got runs={runs}, warmup={warmup}")
        n = len(self.configs)
        invokes = [c.interpreter.invoke for c in self.configs]
        for done, i in enumerate(round_robin_schedule(n, warmup)):
            invokes[i]()
            if (done + 1) % n == 0:
                self._progress("warmup", (done + 1) // n, warmup)
        wall = [[] for _ in range(n)]
        cpu = [[] for _ in range(n)]
        positions = [[] for _ in range(n)]
        schedule = round_robin_schedule(n, runs)
        conditions = dict(self._host, loadavg_1min=_loadavg())
        perf_ns, cpu_ns = time.perf_counter_ns, time.process_time_ns
        gc_was_enabled = gc.isenabled()
        gc.disable()  # a collection inside a timed invoke would be charged to the model
        try:
            for position, i in enumerate(schedule):
                c0 = cpu_ns()
                t0 = perf_ns()
                invokes[i]()
                t1 = perf_ns()
                c1 = cpu_ns()
                wall[i].append(t1 - t0)
                cpu[i].append(c1 - c0)
                positions[i].append(position)
                if (position + 1) % n == 0 and (position + 1) // n % 10 == 0:
                    self._progress("runs", (position + 1) // n, runs)
        finally:
            if gc_was_enabled:
                gc.enable()
        self._progress("runs", runs, runs)
        peak = process_memory()["VmHWM"]
        conditions["loadavg_1min_end"] = _loadavg()
        results = []
        for i, c in enumerate(self.configs):
            samples = [ns / 1e6 for ns in wall[i]]
            results.append(BenchResult(
                model=c.label, precision=c.precision, sha256=c.sha256, size_bytes=c.size_bytes, kernels=c.kernels, threads=c.threads,
                runs=runs, warmup=warmup, load_ms=c.load_ms, first_invoke_ms=c.first_invoke_ms,
                latency=LatencyStats.from_samples(samples), samples_ms=samples,
                cpu_ms=[ns / 1e6 for ns in cpu[i]], sequence=positions[i],
                rss_increase_bytes=c.rss_increase, peak_rss_bytes=peak, threads_started=c.threads_started,
                operators=c.operators, delegated_operators=c.delegated, delegate_partitions=c.partitions,
                tensors_allocated=c.tensors,
                inputs=self.input_description, runtime=self.runtime, host=conditions, input_shapes=c.input_shapes,
            ))
        return results


def benchmark(
    models: Sequence[ModelSource],
    *,
    kernels: Sequence[str] = ("xnnpack",),
    threads: Sequence[int] = (1,),
    runs: int = 50,
    warmup: int = 5,
    names: Sequence[str] | None = None,
    input_data: str | Path | None = None,
    seed: int = 0,
    float_distribution: FloatDistribution = "uniform",
    progress: ProgressCallback | None = None,
    inputs=None,
    inputs_description: str = "",
) -> list[BenchResult]:
    """Benchmark every (model, kernels, threads) configuration, interleaved; results in that order.

    models: .tflite paths or file bytes. kernels: any of "xnnpack", "builtin", "reference".
    input_data: a .npy (single input) or .npz keyed by input name; default: generated (see
    `edgequant.model.inputs`). inputs: the values themselves instead (batch included: an array, or a dict by
    input name), with `inputs_description` saying where they come from. A model is timed at the shape of its
    inputs (resized to it along dynamic axes), and refused if an output is then empty.
    Raises ModelFileError / InputError / DataError with one-line messages.
    """
    bench = HostBenchmark(models, kernels=kernels, threads=threads, names=names, input_data=input_data,
                          seed=seed, float_distribution=float_distribution, progress=progress, inputs=inputs,
                          inputs_description=inputs_description)
    return bench.run(runs=runs, warmup=warmup)


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # not on every platform
        return None


def _warm_up_runtime(kernels: Sequence[str]) -> None:
    """Load and invoke a one-op model once per kernel choice, so the runtime's one-time costs
    (library pages, XNNPACK initialization: about 10 MB of RSS) are not charged to the first model."""
    from edgequant.model.runtime import load_interpreter

    tiny = one_op_model()
    for kernels_choice in kernels:
        interp = load_interpreter(tiny, kernels=kernels_choice, threads=1)
        interp.set_tensor(interp.get_input_details()[0]["index"], np.ones((1, 4), np.float32))
        interp.invoke()
        del interp


def one_op_model() -> bytes:
    """A valid .tflite with one FULLY_CONNECTED op, y = x @ ones(4, 4), built with the schema's object API."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    def tensor(name: bytes, shape: list[int], buffer: int):
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, schema.TensorType.FLOAT32, buffer
        return t

    weights = schema.BufferT()
    weights.data = np.ones(16, np.float32).view(np.uint8)
    model = schema.ModelT()
    model.version = 3
    model.buffers = [schema.BufferT(), schema.BufferT(), weights, schema.BufferT()]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    model.operatorCodes = [code]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, -1], [2]
    op.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = schema.FullyConnectedOptionsT()
    graph = schema.SubGraphT()
    graph.tensors = [tensor(b"x", [1, 4], 1), tensor(b"w", [4, 4], 2), tensor(b"y", [1, 4], 3)]
    graph.inputs, graph.outputs, graph.operators = [0], [2], [op]
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _label(model: ModelSource, index: int) -> str:
    if isinstance(model, (bytes, bytearray)):
        return f"model[{index}]"
    return str(model)
