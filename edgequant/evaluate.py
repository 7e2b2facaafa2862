"""Run every variant on the same held-out data and measure what quantization cost.

The data is read once and streamed in batches: each batch goes through every
variant's interpreter (resized to the batch where the model allows), so memory does
not grow with the number of samples and all variants see exactly the same inputs.

Metrics, per variant:
- with labels and a classifier output: top-1 and top-k accuracy;
- against the reference (float32) variant, always: top-1 agreement (classifiers),
  mean squared error and mean cosine similarity of the outputs;
- throughput: samples per second of interpreter time (invoke plus I/O copies).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgequant.runtime import dequantize_output, load_interpreter, quantize_input


@dataclass
class Evaluation:
    samples: int
    top1: float | None  # accuracy in [0, 1]; None without labels or for non-classifiers
    topk: float | None
    k: int
    agreement: float | None  # share of samples whose top-1 matches the reference's
    mse: float  # mean squared error of outputs against the reference
    cosine: float  # mean cosine similarity of outputs against the reference
    throughput: float  # samples per second
    batch_size: int

    def to_dict(self) -> dict:
        return asdict(self)


class BatchRunner:
    """One interpreter that runs float batches: quantizes inputs, dequantizes outputs, resizes to the batch."""

    def __init__(self, model: str | Path | bytes, *, kernels: str = "xnnpack", threads: int = 1):
        self.interpreter = load_interpreter(model, kernels=kernels, threads=threads)
        self._input = self.interpreter.get_input_details()[0]
        self._output_index = self.interpreter.get_output_details()[0]["index"]
        self._batch = int(self._input["shape"][0])
        signature = self._input.get("shape_signature")
        self.batchable = signature is not None and len(signature) > 0 and int(signature[0]) == -1
        self.seconds = 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs (dequantized, float32) for a batch of float inputs."""
        if self.batchable:
            return self._run(x)
        return np.concatenate([self._run(x[i : i + 1]) for i in range(len(x))])

    def _run(self, x: np.ndarray) -> np.ndarray:
        interp = self.interpreter
        started = time.perf_counter()
        if len(x) != self._batch:
            interp.resize_tensor_input(self._input["index"], [len(x), *x.shape[1:]])
            interp.allocate_tensors()
            self._batch = len(x)
        interp.set_tensor(self._input["index"], quantize_input(x, self._input))
        interp.invoke()
        detail = next(d for d in interp.get_output_details() if d["index"] == self._output_index)
        y = dequantize_output(interp.get_tensor(self._output_index), detail)
        self.seconds += time.perf_counter() - started
        return y


class _Accumulator:
    def __init__(self, k: int):
        self.k = k
        self.n = self.correct1 = self.correctk = self.agree = 0
        self.sq_err = 0.0
        self.cos_sum = 0.0
        self.labelled = True
        self.classifier = True

    def add(self, y: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> None:
        n = len(y)
        flat, ref_flat = y.reshape(n, -1).astype(np.float64), ref.reshape(n, -1).astype(np.float64)
        self.sq_err += float(((flat - ref_flat) ** 2).mean(axis=1).sum())
        norms = np.linalg.norm(flat, axis=1) * np.linalg.norm(ref_flat, axis=1)
        cos = np.where(norms > 0, (flat * ref_flat).sum(axis=1) / np.where(norms > 0, norms, 1), 1.0)
        self.cos_sum += float(cos.sum())
        self.classifier &= y.ndim == 2 and y.shape[1] > 1
        if self.classifier:
            top1 = y.argmax(axis=1)
            self.agree += int((top1 == ref.argmax(axis=1)).sum())
            if labels is not None and labels.ndim == 1:
                self.correct1 += int((top1 == labels).sum())
                k = min(self.k, y.shape[1])
                topk = np.argpartition(-y, k - 1, axis=1)[:, :k]
                self.correctk += int((topk == labels[:, None]).any(axis=1).sum())
            else:
                self.labelled = False
        self.n += n

    def result(self, seconds: float, batch_size: int) -> Evaluation:
        n = max(self.n, 1)
        accuracy = self.classifier and self.labelled
        return Evaluation(
            samples=self.n,
            top1=self.correct1 / n if accuracy else None,
            topk=self.correctk / n if accuracy else None,
            k=self.k,
            agreement=self.agree / n if self.classifier else None,
            mse=self.sq_err / n,
            cosine=self.cos_sum / n,
            throughput=self.n / seconds if seconds > 0 else float("inf"),
            batch_size=batch_size,
        )


def evaluate(
    models: Mapping[str, str | Path | bytes],
    batches: Iterable[tuple[np.ndarray, np.ndarray | None]],
    *,
    reference: str,
    top_k: int = 5,
    kernels: str = "xnnpack",
    threads: int = 1,
    on_batch=None,
) -> dict[str, Evaluation]:
    """Evaluate every model on the same batches; `reference` names the model the others are compared with."""
    if reference not in models:
        raise KeyError(f"reference {reference!r} is not among the models")
    # A model is a .tflite (path or bytes), or a runner of another runtime with BatchRunner's call and `seconds`.
    runners = {name: m if callable(m) else BatchRunner(m, kernels=kernels, threads=threads) for name, m in models.items()}
    accumulators = {name: _Accumulator(top_k) for name in models}
    batch_size = 0
    for x, labels in batches:
        batch_size = max(batch_size, len(x))
        ref = runners[reference](x)
        for name, runner in runners.items():
            y = ref if name == reference else runner(x)
            accumulators[name].add(y, ref, labels)
        if on_batch is not None:
            on_batch(len(x))
    return {name: accumulators[name].result(runners[name].seconds, batch_size) for name in models}
