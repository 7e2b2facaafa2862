"""Evaluation, gates, per-layer error, automatic mixed precision and the report, on real builds."""

from __future__ import annotations

import json
import struct

import pytest

from edgequant.cli import main
from edgequant.evaluate import Evaluation
from edgequant.gates import check_gates
from edgequant.recipe.schema import Gates
from edgequant.report.schema import Report
from tests.conftest import REPO

MIXED_RECIPE = REPO / "recipes" / "wide_range_mixed.yaml"


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_report_holds_every_variant_with_measured_accuracy(fmnist_build):
    out = fmnist_build.output_dir
    report = Report.model_validate_json((out / "report.json").read_text())
    assert [v.name for v in report.variants] == ["float32", "float16", "dynamic", "int8", "int16x8"]
    for v in report.variants:
        assert v.evaluation.samples == 10_000
        assert 0.85 < v.evaluation.top1 < 0.95
        assert v.evaluation.throughput > 0
        host = next(lat for lat in v.latency if lat.device == "host")
        assert host.ms > 0 and not host.estimate and host.details["runs"] == 100
        for device in ("rpi4", "pixel4"):
            est = next(lat for lat in v.latency if lat.device == device)
            assert est.estimate and est.ms > 0 and est.details["kind"] == "estimate"
            assert est.details["instructions_per_invoke"] > 100_000
    int8 = report.variant("int8")
    assert int8.evaluation.accuracy_drop_points == pytest.approx(
        (report.variant("float32").evaluation.top1 - int8.evaluation.top1) * 100
    )
    assert {g.gate for g in int8.gates} == {
        "max_accuracy_drop_points", "min_agreement_percent", "max_size_kib", "max_latency_ms.rpi4"
    }
    assert report.passed and all(g.passed for g in int8.gates)
    rpi4_gate = next(g for g in int8.gates if g.gate == "max_latency_ms.rpi4")
    assert rpi4_gate.estimate  # a simulated device's figure is labelled an estimate, even in a gate
    assert int8.speed_explanation["text"]
    md = (out / "report.md").read_text()
    for v in report.variants:
        assert f"| `{v.name}` | {v.mode} |" in md
    assert "per-layer quantization error" in md
    assert "rpi4 ms (est.)" in md and "not measurements" in md
    int8_parity = {p["device"]: p for p in int8.arm_parity}
    assert set(int8_parity) == {"rpi4", "pixel4"}
    assert all(p["exact"] for p in int8_parity.values()), int8_parity  # real test images: bit for bit


def test_per_layer_error_is_ranked_and_plotted(fmnist_build):
    report = Report.model_validate_json((fmnist_build.output_dir / "report.json").read_text())
    layers = report.variant("int8").layer_errors
    assert {e.op for e in layers} >= {"CONV_2D", "FULLY_CONNECTED"}
    steps = [e.rmse_steps for e in layers]
    assert steps == sorted(steps, reverse=True)
    # A requantizing layer's error is rounding noise: a fraction of one quantization step.
    assert all(0.05 < e.rmse_steps < 1.0 for e in layers if e.op in ("CONV_2D", "FULLY_CONNECTED"))
    width, height = png_size(fmnist_build.output_dir / "layer_error_int8.png")
    assert width >= 600 and height >= 200
    assert png_size(fmnist_build.output_dir / "accuracy_size_latency.png")[0] >= 800


@pytest.fixture(scope="module")
def mixed_build(tmp_path_factory):
    """The mixed-precision example, plus a gate on plain int8 tighter than its real drop (2.2 points)."""
    tmp = tmp_path_factory.mktemp("mixed")
    text = MIXED_RECIPE.read_text().replace(
        "  - {name: int8, mode: int8}", "  - {name: int8, mode: int8, gates: {max_accuracy_drop_points: 1.0}}"
    )
    text = text.replace("path: wide_range/", f"path: {REPO}/recipes/wide_range/") + f"output_dir: {tmp}\n"
    recipe = tmp / "recipe.yaml"
    recipe.write_text(text)
    return recipe, tmp


def test_failing_gate_exits_1_names_the_gate_and_still_writes_the_report(mixed_build, capsys):
    recipe, out = mixed_build
    code = main(["build", str(recipe)])
    err = capsys.readouterr().err
    assert code == 1
    assert "edgequant: gate failed: int8: max_accuracy_drop_points FAILED" in err
    report = Report.model_validate_json((out / "report.json").read_text())
    assert not report.passed and len(report.failed_gates) == 1
    drop = report.variant("int8").evaluation.accuracy_drop_points
    assert drop > 1.0, "the wide-range model's plain int8 must lose more than the gate allows"
    assert f"{drop:.4g}" in report.failed_gates[0]
    assert (out / "int8.tflite").is_file() and (out / "report.md").is_file()


def test_automatic_mixed_precision_passes_the_gate_plain_int8_fails(mixed_build):
    _, out = mixed_build
    report = Report.model_validate_json((out / "report.json").read_text())
    mixed = report.variant("int8_mixed")
    mp = mixed.mixed_precision
    assert mp.automatic and mp.searched_to_pass
    assert mp.steps[0].evaluation.accuracy_drop_points > 0.5  # plain int8 (step 0) fails the variant's own gate
    assert mixed.evaluation.accuracy_drop_points <= 0.5 and all(g.passed for g in mixed.gates)
    assert mp.float_layers and mp.steps and mp.steps[-1].float_layers == mp.float_layers
    assert any("conv1" in layer for layer in mp.float_layers)  # the layer with the wide channel
    assert mixed.size_bytes < 0.5 * report.variant("float32").size_bytes  # most of the model stayed int8
    md = (out / "report.md").read_text()
    assert "layers kept in float" in md and mp.float_layers[0] in md


def test_report_command_rerenders_and_rejects_a_corrupt_report(fmnist_build, tmp_path, capsys):
    out = fmnist_build.output_dir
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").is_file()
    (tmp_path / "report.json").write_text('{"variants": 3}')
    assert main(["report", str(tmp_path)]) == 2
    assert "not a valid edgequant report" in capsys.readouterr().err


def test_compare_any_two_models(fmnist_build, capsys):
    args = ["compare", str(fmnist_build.path("float32")), str(fmnist_build.path("int8")), "--data",
            "fashion-mnist:test", "--scale", str(1 / 255), "--samples", "2000", "--json"]
    assert main(args) == 0
    results = list(json.loads(capsys.readouterr().out).values())
    assert results[0]["agreement"] == 1.0 and results[0]["samples"] == 2000
    assert 0.97 < results[1]["agreement"] < 1.0 and abs(results[1]["top1"] - results[0]["top1"]) < 0.02


def test_committed_report_schema_is_current():
    committed = json.loads((REPO / "docs" / "report.schema.json").read_text())
    assert committed == Report.model_json_schema()


def _evaluation(top1, agreement=0.99, cosine=0.999):
    return Evaluation(samples=100, top1=top1, topk=1.0, k=5, agreement=agreement, mse=0.0, cosine=cosine,
                      throughput=1.0, batch_size=10)


@pytest.mark.parametrize(
    "gates, passed",
    [
        ({"max_accuracy_drop_points": 0.6}, [True]),  # 90.0 -> 89.5 is a 0.5-point drop
        ({"max_accuracy_drop_points": 0.4}, [False]),
        ({"max_accuracy_drop_percent": 0.5}, [False]),  # 0.5 points of 90 is 0.56 %
        ({"min_agreement_percent": 99.0, "min_cosine": 0.9995}, [True, False]),
        ({"max_size_kib": 100, "max_latency_ms": {"host": 2.0}}, [True, False]),
    ],
    ids=["drop-pass", "drop-fail", "relative-drop-fail", "agreement-cosine", "size-latency"],
)
def test_gate_arithmetic(gates, passed):
    results = check_gates("v", Gates(**gates), size_bytes=50 * 1024, evaluation=_evaluation(0.895),
                          reference=_evaluation(0.900, 1.0, 1.0), latency_ms={"host": 3.0})
    assert [r.passed for r in results] == passed


def test_latency_gate_on_an_unmeasured_device_is_a_recipe_error(tmp_path, capsys):
    (tmp_path / "m.keras").write_bytes(b"")
    (tmp_path / "r.yaml").write_text(
        "model: {path: m.keras}\nvariants: [{name: a, mode: float32, gates: {max_latency_ms: {rpi4: 5}}}]\n"
    )
    assert main(["recipe", "check", str(tmp_path / "r.yaml")]) == 2
    assert "gates latency on 'rpi4', which is not measured: add it to `devices`" in capsys.readouterr().err
