"""`report.json`: every figure a build measured, machine-readable. `edgequant report --schema` prints its JSON Schema.

Units: sizes in bytes, accuracies and agreement as fractions in [0, 1], accuracy
drops in percentage points, latencies in milliseconds, throughput in samples/s.
Simulated-device latencies carry `estimate: true` and their calibration error.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

REPORT_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvaluationReport(_Model):
    samples: int
    top1: float | None = Field(None, description="top-1 accuracy, fraction")
    topk: float | None = Field(None, description="top-k accuracy, fraction")
    k: int
    agreement: float | None = Field(None, description="share of samples whose top-1 matches the reference")
    mse: float = Field(..., description="mean squared error of outputs against the reference")
    cosine: float = Field(..., description="mean cosine similarity of outputs against the reference")
    throughput: float = Field(..., description="samples per second, batched evaluation on the host")
    batch_size: int
    output: str = Field("", description="the outputs these figures are the worst of: the judged ones "
                        "(evaluation.outputs, default all), comma-separated")
    outputs: int = Field(1, description="how many outputs the model has")
    output_spread: float | None = Field(
        None, description="std of the outputs across samples relative to their RMS; near 0: input-independent"
    )
    distinct_top1: int | None = Field(None, description="how many classes occur as top-1 (classifiers)")
    chance_top1: float | None = Field(None, description="share of the most frequent label (labelled data)")
    accuracy_drop_points: float | None = Field(None, description="reference top-1 minus this top-1, in points")
    relative_error: float | None = Field(
        None, description="RMS error of the outputs / RMS of the reference's (the worst judged output)")
    per_output: list[OutputEvaluationReport] = Field(
        [], description="every output of the model, ordered by name, measured by its kind")


class OutputEvaluationReport(_Model):
    """One output against the reference's same output. Kinds: `classes` (class probabilities: agreement,
    accuracy with labels) and `values` (regression and the rest: cosine, relative error, MSE)."""

    name: str
    index: int = Field(..., description="position among the outputs ordered by name: what evaluation.outputs takes")
    shape: list[int] = Field(..., description="per sample, without the batch dimension")
    kind: str = Field(..., description="'classes' or 'values'")
    judged: bool = Field(..., description="used by the gates and the verdict (evaluation.outputs)")
    mse: float
    cosine: float = Field(..., description="mean cosine similarity; an all-zero output against a non-zero one is 0")
    relative_error: float = Field(..., description="RMS error / RMS of the reference's values")
    agreement: float | None = Field(None, description="classes: share of top-1 (per position) matching the reference")
    top1: float | None = None
    topk: float | None = None
    output_spread: float | None = None
    distinct_top1: int | None = None
    chance_top1: float | None = None
    disagreements: int | None = Field(None, description="classes: samples (positions) whose top-1 differs from the "
                                      "reference's")
    near_ties: int | None = Field(None, description="classes: disagreements where the reference's top-2 margin is "
                                  "below near_tie_margin")
    near_tie_margin: float | None = Field(None, description="twice this output's RMS error against the reference")


class LatencyReport(_Model):
    device: str
    ms: float = Field(..., description="median on the host; the estimate on a simulated device")
    estimate: bool = Field(..., description="true for simulated devices: an estimate, not a measurement")
    calibration_error_percent: float | None = Field(
        None, description="estimates: the larger side of the interval, in percent of the estimate")
    interval_ms: list[float] | None = Field(
        None, description="estimates: ± the 90th percentile of the errors of fits that never saw the model's "
                     "family, around the estimate (nominal coverage 90%)")
    speedup_vs_reference: float | None = Field(None, description="reference latency / this latency")
    details: dict[str, Any] = Field({}, description="the benchmark's or estimator's own figures")
    layers: list[DeviceLayerReport] = Field(
        [], description="estimates: by TFLite node in execution order, then the runtime overhead; they add up to `ms`")


class DeviceLayerReport(_Model):
    """One TFLite node's share of a simulated device's estimate (or the runtime overhead: `node` null)."""

    node: int | None = Field(..., description="TFLite node index; null for the runtime overhead")
    op: str = Field(..., description="TFLite op, e.g. CONV_2D; 'runtime overhead' for the rest")
    name: str = Field(..., description="the node's first output tensor")
    runtime: str = Field(..., description="'xnnpack' or 'builtin': the kernels that ran it; '' for the overhead")
    kernel: str = Field(..., description="the function that ran most of its instructions (an XNNPACK micro-kernel, "
                        "or a builtin kernel)")
    fallback: bool = Field(..., description="ran on the builtin kernels although XNNPACK was asked for")
    instructions: int = Field(..., description="ARM instructions per invoke, counted under emulation")
    latency_ms: float = Field(..., description="estimate: its share of the device estimate")
    share: float = Field(..., description="fraction of the device estimate; the layers add up to 1")


class GateReport(_Model):
    gate: str
    limit: float
    value: float | None = Field(..., description="null when not measured")
    passed: bool
    estimate: bool = False
    reason: str = Field("", description="why the gate failed although its value is within the limit")
    not_measured: str | None = Field(None, description="why the build skipped the measurement; the gate then fails")


class LayerErrorReport(_Model):
    layer: str
    op: str
    rmse: float
    rmse_steps: float = Field(..., description="RMSE in units of the output's quantization step")
    max_abs_error: float
    mean_error: float
    scale: float
    elements: int


class StepPrice(_Model):
    """What one step of the automatic search costs besides its size. Estimates are deterministic; host time is not."""

    device: str | None = Field(None, description="the simulated device of the estimate (the recipe's first)")
    estimated_ms: float | None = Field(None, description="estimated latency on `device`, from counted instructions")
    estimate_label: str | None = Field(None, description="the estimate's calibration error, in words")
    instructions_per_invoke: int | None = None
    host_median_ms: float | None = Field(None, description="measured on this host: a short run, noisy")
    host_std_ms: float | None = Field(None, description="standard deviation of the host runs")
    host_runs: int | None = None


class FloatLayerStep(_Model):
    """One step of the automatic search: the layer added to float, and what the model became."""

    step: int = Field(..., description="0: nothing kept in float")
    added_layer: str | None
    float_layers: list[str]
    size_bytes: int
    price: StepPrice
    evaluation: EvaluationReport = Field(..., description="on the selection slice (see `selection_data`)")
    gates_passed: bool
    p_value: float | None = Field(
        None, description="one-sided sign test that this step is more faithful to float32 than the best step before "
        "it, on the selection samples (none for step 0); a gain counts below mixed_precision.SIGNIFICANCE"
    )


class MixedPrecisionReport(_Model):
    float_layers: list[str]
    float_ops: list[str]
    automatic: bool
    steps: list[FloatLayerStep] = Field([], description="automatic mode: step 0 is plain int8")
    shipped_step: int | None = Field(None, description="automatic mode: the step whose model is the artifact")
    outcome: str | None = Field(None, description="automatic mode: why that step was shipped")
    searched_to_pass: bool | None = Field(None, description="automatic mode: does the shipped step pass the gates")
    selection_data: str | None = Field(
        None, description="automatic mode: the evaluation samples the steps were judged on, left out of every "
        "other figure of the report"
    )
    sensitivity_order: list[str] = Field(
        [], description="automatic mode: candidate layers, most accuracy recovered when kept in float first"
    )
    skipped_layers: dict[str, str] = Field({}, description="automatic mode: candidate layers not tried, and why")


class Int8FixesReport(_Model):
    """All-integer fixes of an int8 variant: what was applied, the float check, and whether they were kept."""

    requested: list[str] = Field(..., description="equalize, adaround, bias_correction, ranges:<method>")
    kept: bool = Field(..., description="false when the fixes did not beat plain int8 and the artifact is plain int8")
    decided_on: str = Field(..., description="the data the keep-or-not decision was measured on")
    plain: dict[str, float] = Field(..., description="plain int8 against float32 on that data: agreement, mse")
    fixed: dict[str, float] = Field(..., description="the fixed int8 against float32 on that data")
    float_check: dict[str, float] | None = Field(
        None, description="equalization: max |float output change| on the calibration data, and its tolerance"
    )
    bias_shift: dict[str, float] | None = Field(
        None, description="bias correction: layers corrected, largest correction, and the float output change it "
        "made (weights) or the seconds it took (empirical)"
    )
    adaround: dict[str, float] | None = Field(
        None, description="adaptive rounding: layers rounded, weights flipped from nearest, their summed output "
        "error over nearest rounding's on the calibration data, float output change it made"
    )
    equalized_pairs: list[dict[str, Any]] = []
    range_changes: int | None = Field(None, description="activation tensors whose range was clipped")
    layer_errors_plain: list[LayerErrorReport] = Field([], description="per-layer error of plain int8 (before)")
    skipped_layers: list[dict[str, str]] = Field(
        [], description="layers a fix left alone, each {fix, layer, reason}: more working memory than its budget, "
        "or too little calibration data"
    )
    significance: dict[str, float] | None = Field(
        None, description="the fixed model's gains over plain int8 on the held-out samples, in standard errors of "
        "the paired per-sample differences (agreement, mse), and the threshold the keep decision used (sigmas)"
    )


class VariantReport(_Model):
    name: str
    mode: str
    file: str
    size_bytes: int
    size_vs_reference: float | None
    sha256: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    convert_seconds: float
    evaluation: EvaluationReport | None = None
    latency: list[LatencyReport] = []
    gates: list[GateReport] = []
    layer_errors: list[LayerErrorReport] = []
    mixed_precision: MixedPrecisionReport | None = None
    int8_fixes: Int8FixesReport | None = None
    speed_explanation: dict[str, Any] | None = None
    arm_parity: list[dict[str, Any]] = []


class OnnxArtifactReport(_Model):
    """A variant also written as ONNX, run through onnxruntime (`formats: [tflite, onnx]`)."""

    variant: str
    mode: str
    file: str
    size_bytes: int
    sha256: str
    quantization: str
    runtime: str = Field(..., description="onnxruntime and its version")
    evaluation: EvaluationReport | None = Field(None, description="against the float32 .tflite, on the same batches")
    host_latency_ms: float | None = Field(None, description="median, one sample per run, through onnxruntime")


class NotBuiltReport(_Model):
    """A requested variant that could not be built; the build's other variants shipped (exit code 3)."""

    name: str
    mode: str
    reason: str = Field(..., description="one line, e.g. 'the converter crashed (signal 11)'")


class Report(_Model):
    report_version: int = REPORT_VERSION
    created: str
    edgequant_version: str
    recipe: dict[str, Any]
    source_model: dict[str, Any]
    reference: str | None = Field(
        None, description="the float32 model every variant is compared with: the recipe's float32 variant, or "
        "'.float32-reference', converted for the comparison and not written"
    )
    reference_problems: list[str] = Field(
        [], description="why the reference is degenerate (its outputs do not depend on its input); empty if sound"
    )
    evaluation_data: str | None = None
    host: dict[str, Any] = {}
    variants: list[VariantReport]
    passed: bool = Field(..., description="false when any gate failed")
    failed_gates: list[str] = []
    warnings: list[str] = Field([], description="problems the user must know about, also printed on stderr")
    notes: list[str] = []
    onnx_source_check: dict[str, Any] | None = Field(
        None, description="an ONNX source: the float32 .tflite against onnxruntime on the original model"
    )
    onnx_artifacts: list[OnnxArtifactReport] = []
    not_built: list[NotBuiltReport] = Field(
        [], description="requested variants that could not be built, each with the reason; the others shipped"
    )

    def variant(self, name: str) -> VariantReport:
        return next(v for v in self.variants if v.name == name)
