"""ONNX out: write a variant as ONNX too, and run it through onnxruntime for evaluation and host latency.

- float32: tf2onnx converts the build's SavedModel (so the .onnx takes the same NHWC
  input as the .tflite).
- int8: ONNX Runtime's own quantizer (`quantize_static`) turns that float32 ONNX into a
  QDQ model, calibrated on the same samples as the int8 .tflite, with the same
  per-channel choice. Its input and output stay float32, as QDQ models' do.

Both need the `onnx` extra (tf2onnx, onnx, onnxruntime).
"""

from __future__ import annotations

import hashlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgequant.errors import BuildError
from edgequant.extras import require

OPSET = 17


def _session(model: bytes, threads: int = 1):
    ort = require("onnxruntime", "onnx", "an ONNX variant")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """Runs float batches through onnxruntime; the evaluation's runner for an .onnx variant."""

    def __init__(self, model: bytes, threads: int = 1):
        self.session = _session(model, threads)
        self._input = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        # Like BatchRunner: the output measured is the first by name, and the evaluation says which.
        self.output, self.outputs = sorted(names)[0], len(names)
        self.seconds = 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run_all(x)[self.output]

    def run_all(self, x) -> dict[str, np.ndarray]:
        """Every output by name, in name order (as BatchRunner.run_all); the evaluation matches them to the
        .tflite's by name, else by position."""
        started = time.perf_counter()
        names = sorted(o.name for o in self.session.get_outputs())
        if isinstance(x, dict):  # several inputs: by name where the ONNX model kept them, else in order
            given = [i.name for i in self.session.get_inputs()]
            feed = {n: np.asarray(x[n] if n in x else v, dtype=np.float32) for n, v in zip(given, x.values())}
        else:
            feed = {self._input: x.astype(np.float32)}
        ys = self.session.run(names, feed)
        self.seconds += time.perf_counter() - started
        return dict(zip(names, ys))


@dataclass
class OnnxArtifact:
    """One variant written as ONNX."""

    variant: str
    mode: str
    data: bytes = field(repr=False)
    quantization: str  # "none" or "QDQ int8 (onnxruntime quantize_static)"
    convert_seconds: float

    @property
    def file(self) -> str:
        return f"{self.variant}.onnx"

    def manifest_entry(self) -> dict:
        session = _session(self.data)
        return {
            "variant": self.variant,
            "mode": self.mode,
            "file": self.file,
            "size_bytes": len(self.data),
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "quantization": self.quantization,
            "opset": OPSET,
            "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.type} for t in session.get_inputs()],
            "outputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.type} for t in session.get_outputs()],
        }


def float32_onnx(saved_model_dir: Path, work_dir: Path) -> bytes:
    """The SavedModel as a float32 ONNX model, through tf2onnx (in a child process: it changes TF's graph state)."""
    require("tf2onnx", "onnx", "writing ONNX (formats: [tflite, onnx])")
    out = work_dir / "float32.onnx"
    done = subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model_dir), "--output", str(out),
         "--opset", str(OPSET)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0 or not out.is_file():
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()] or ["no output"]
        raise BuildError(f"tf2onnx could not convert the model to ONNX ({lines[-1].strip()[:300]})")
    return out.read_bytes()


def int8_qdq_onnx(float_model: bytes, calibration: Iterable[np.ndarray], work_dir: Path, *, per_channel: bool) -> bytes:
    """A QDQ int8 ONNX model from `float_model`, calibrated by onnxruntime on `calibration` (samples without batch)."""
    require("onnxruntime", "onnx", "writing int8 ONNX")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = work_dir / "float32.onnx"
    source.write_bytes(float_model)
    prepared = work_dir / "float32-prepared.onnx"
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    name = _session(float_model).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._samples = iter(calibration)

        def get_next(self):
            x = next(self._samples, None)
            return None if x is None else {name: np.asarray(x, np.float32)[None]}

    out = work_dir / "int8-qdq.onnx"
    try:
        quantize_static(
            str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            # onnxruntime 1.32 fails on per-channel weights when it widens their scales for int32 biases
            extra_options={"QDQDisableWeightAdjustForInt32Bias": per_channel},
        )
    except Exception as exc:  # the quantizer raises anything from ValueError to onnx errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BuildError(f"onnxruntime could not quantize the ONNX model to int8 ({first[:300]})") from None
    return out.read_bytes()


def build_onnx_variants(
    variants: list, saved_model_dir: Path, work_dir: Path, calibration: Callable[[object], Iterable[np.ndarray]]
) -> tuple[list[OnnxArtifact], list[str]]:
    """Write each variant in `variants` as ONNX; `calibration(variant)` gives the int8 calibration samples.

    Returns the artifacts written and, for each that could not be, one line saying why: an ONNX
    export that fails costs that file only (the .tflite artifacts do not depend on it).
    """
    if not variants:
        return [], []
    started = time.perf_counter()
    try:
        float_model = loadable(float32_onnx(saved_model_dir, work_dir), "tf2onnx's float32 ONNX model")
    except BuildError as exc:
        return [], [f"{v.name}.onnx: not written: {exc}" for v in variants]
    float_seconds = time.perf_counter() - started
    written, failed = [], []
    for v in variants:
        if v.mode == "float32":
            written.append(OnnxArtifact(v.name, v.mode, float_model, "none", round(float_seconds, 3)))
            continue
        started = time.perf_counter()
        try:
            data = loadable(int8_qdq_onnx(float_model, calibration(v), work_dir, per_channel=v.per_channel),
                            "the int8 QDQ ONNX model")
        except BuildError as exc:
            failed.append(f"{v.name}.onnx: not written: {exc}")
            continue
        seconds = float_seconds + time.perf_counter() - started
        written.append(OnnxArtifact(v.name, v.mode, data, "QDQ int8 (onnxruntime quantize_static)", round(seconds, 3)))
    return written, failed


def loadable(model: bytes, what: str) -> bytes:
    """`model` if onnxruntime loads it (tf2onnx exits 0 even when it leaves an op ONNX lacks in the graph)."""
    try:
        _session(model)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BuildError(f"onnxruntime cannot load {what} ({first[:300]})") from None
    return model


def host_latency_ms(model: bytes, sample: np.ndarray, *, threads: int, runs: int, warmup: int) -> float:
    """Median latency of one-sample inference through onnxruntime on this machine."""
    runner = OnnxRunner(model, threads)
    x = np.asarray(sample, np.float32)[None]
    for _ in range(warmup):
        runner(x)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        runner(x)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def onnx_artifact_reports(
    written: list[OnnxArtifact], evaluations: dict, sample: np.ndarray | None, *, threads: int, runs: int, warmup: int
) -> list:
    """Report entries for the ONNX artifacts: evaluation (keyed by file) and onnxruntime host latency."""
    from edgequant.report.schema import OnnxArtifactReport

    ort = require("onnxruntime", "onnx", "an ONNX variant")
    reports = []
    for a in written:
        entry = a.manifest_entry()
        latency = (
            host_latency_ms(a.data, sample, threads=threads, runs=runs, warmup=warmup) if sample is not None else None
        )
        reports.append(
            OnnxArtifactReport(
                variant=a.variant, mode=a.mode, file=a.file, size_bytes=entry["size_bytes"], sha256=entry["sha256"],
                quantization=a.quantization, runtime=f"onnxruntime {ort.__version__}",
                evaluation=evaluations.get(a.file), host_latency_ms=latency,
            )
        )
    return reports
