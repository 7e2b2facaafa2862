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
    accuracy_drop_points: float | None = Field(None, description="reference top-1 minus this top-1, in points")


class LatencyReport(_Model):
    device: str
    ms: float = Field(..., description="median on the host; the estimate on a simulated device")
    estimate: bool = Field(..., description="true for simulated devices: an estimate, not a measurement")
    calibration_error_percent: float | None = Field(None, description="the device profile's fit error")
    speedup_vs_reference: float | None = Field(None, description="reference latency / this latency")
    details: dict[str, Any] = Field({}, description="the benchmark's or estimator's own figures")


class GateReport(_Model):
    gate: str
    limit: float
    value: float
    passed: bool
    estimate: bool = False


class LayerErrorReport(_Model):
    layer: str
    op: str
    rmse: float
    rmse_steps: float = Field(..., description="RMSE in units of the output's quantization step")
    max_abs_error: float
    mean_error: float
    scale: float
    elements: int


class FloatLayerStep(_Model):
    """One step of the automatic search: the layer added to float, and what the model became."""

    added_layer: str
    float_layers: list[str]
    size_bytes: int
    size_delta_bytes: int
    host_latency_ms: float | None
    latency_delta_ms: float | None
    evaluation: EvaluationReport
    gates_passed: bool


class MixedPrecisionReport(_Model):
    float_layers: list[str]
    float_ops: list[str]
    automatic: bool
    steps: list[FloatLayerStep] = []
    plain_int8: EvaluationReport | None = Field(None, description="the same variant with no layer kept in float")
    plain_int8_size_bytes: int | None = None
    searched_to_pass: bool | None = Field(None, description="automatic mode: did a model within the limit pass")
    sensitivity_order: list[str] = Field(
        [], description="automatic mode: candidate layers, most accuracy recovered when kept in float first"
    )


class Int8FixesReport(_Model):
    """All-integer fixes of an int8 variant: what was applied, the float check, and whether they were kept."""

    requested: list[str] = Field(..., description="equalize, bias_correction, ranges:<method>")
    kept: bool = Field(..., description="false when the fixes did not beat plain int8 and the artifact is plain int8")
    decided_on: str = Field(..., description="the data the keep-or-not decision was measured on")
    plain: dict[str, float] = Field(..., description="plain int8 against float32 on that data: agreement, mse")
    fixed: dict[str, float] = Field(..., description="the fixed int8 against float32 on that data")
    float_check: dict[str, float] | None = Field(
        None, description="equalization: max |float output change| on the calibration data, and its tolerance"
    )
    bias_shift: dict[str, float] | None = Field(
        None, description="bias correction: layers corrected, largest correction, float output change it made"
    )
    equalized_pairs: list[dict[str, Any]] = []
    range_changes: int | None = Field(None, description="activation tensors whose range was clipped")
    layer_errors_plain: list[LayerErrorReport] = Field([], description="per-layer error of plain int8 (before)")


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


class Report(_Model):
    report_version: int = REPORT_VERSION
    created: str
    edgequant_version: str
    recipe: dict[str, Any]
    source_model: dict[str, Any]
    reference: str | None = Field(None, description="the variant every other is compared with (float32)")
    evaluation_data: str | None = None
    host: dict[str, Any] = {}
    variants: list[VariantReport]
    passed: bool = Field(..., description="false when any gate failed")
    failed_gates: list[str] = []
    notes: list[str] = []

    def variant(self, name: str) -> VariantReport:
        return next(v for v in self.variants if v.name == name)
