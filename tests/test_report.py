"""Evaluation, gates, per-layer error, automatic mixed precision and the report, on real builds."""

from __future__ import annotations

import json
import struct

import pytest

from edgequant.cli import main
from edgequant.measure.evaluate import Evaluation
from edgequant.measure.gates import check_gates
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
    assert "layers kept in float" in md and mp.float_layers[0] in md and "| p (gain) |" in md
    html = (out / "report.html").read_text()  # the search's steps, and a verdict that names the failed gate
    assert 'id="mixed-int8_mixed"' in html and mp.float_layers[0] in html and "Do not ship <b>int8</b>" in html
    assert "p (gain)" in html


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


# --- figures right on models edgequant has never seen (issue 10) ------------------------------------


def test_build_figures_equal_an_independent_interpreter_loop(fmnist_build, fmnist_test_set):
    """Accuracy and agreement in report.json, recomputed with a bare LiteRT loop on the same 10,000 images."""
    from tests.zoo_models import agreement, independent_outputs

    x, y = fmnist_test_set
    report = Report.model_validate_json((fmnist_build.output_dir / "report.json").read_text())
    reference = independent_outputs(fmnist_build.path("float32"), x)
    for name in ("float32", "int8"):
        outputs = reference if name == "float32" else independent_outputs(fmnist_build.path(name), x)
        e = report.variant(name).evaluation
        assert e.top1 == pytest.approx(float((outputs.argmax(axis=1) == y).mean()), abs=1e-12)
        assert e.agreement == pytest.approx(agreement(outputs, reference), abs=1e-12)


def test_report_has_a_table_per_simulated_device(fmnist_build):
    """Latency at 1..N threads, peak RAM against the device's memory, flash, speed-up and parity with a verdict."""
    md = (fmnist_build.output_dir / "report.md").read_text()
    report = Report.model_validate_json((fmnist_build.output_dir / "report.json").read_text())
    for device in ("rpi4", "pixel4"):
        lat = next(x for x in report.variant("int8").latency if x.device == device)
        cores = len(lat.details["latency_ms_by_threads"])  # 1..the profile's cores
        section = md.split(f"### {device}: ")[1].split("\n### ")[0]
        header = next(line for line in section.splitlines() if line.startswith("| variant"))
        assert cores >= 4 and [f"{n} thread" in header for n in range(1, cores + 2)] == [True] * cores + [False]
        assert "peak RAM / device" in header and "flash" in header and "speed-up vs `float32`" in header
        int8_row = next(line for line in section.splitlines() if line.startswith("| `int8`"))
        assert f"{lat.details['latency_ms_by_threads']['1']:.3g}" in int8_row
        assert f"{lat.speedup_vs_reference:.2f}x" in int8_row
        assert "MB of" in int8_row and "(fits)" in int8_row and "pass: bit-exact" in int8_row
        assert f"{report.variant('int8').size_bytes / 1024:,.1f} KiB" in int8_row
    # each caveat once: the host-speed paragraph, and each device's calibration
    from edgequant.bench.speed_explanation import DEVICE_HINT

    assert md.count(DEVICE_HINT) <= 1
    pixel4 = next(x for x in report.variant("int8").latency if x.device == "pixel4")
    assert md.count(pixel4.details["calibration_source"]) == 1


def test_report_files_read_like_the_artifacts(fmnist_build):
    out = fmnist_build.output_dir
    text = (out / "report.json").read_text()
    assert "/tmp/edgequant-" not in text and "/../" not in text  # no build-temporary or un-normalised paths
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir() if p.is_file()}
    assert modes["report.json"] == modes["report.md"] == modes["int8.tflite"] == modes["manifest.json"], modes
    assert modes["report.md"] & 0o044  # group and others can read it, as the artifacts


def test_report_command_takes_the_report_file_itself(fmnist_build, tmp_path):
    import shutil

    copy = tmp_path / "build"
    shutil.copytree(fmnist_build.output_dir, copy, symlinks=True)  # its links, as a move would keep them
    (copy / "report.md").unlink()
    assert main(["report", str(copy / "report.json")]) == 0
    assert (copy / "report.md").is_file()


def test_layer_error_bars_are_unique_ordered_and_explain_non_finite_errors(tmp_path):
    """Tails that clash grow until they differ; an infinite error is a bar with words, and matplotlib is quiet."""
    import warnings

    from edgequant.report.plots import _layer_error_plot, layer_error_bars
    from edgequant.report.schema import LayerErrorReport, VariantReport

    def layer(name, steps, op="CONV_2D"):
        return LayerErrorReport(layer=name, op=op, rmse=steps, rmse_steps=steps, max_abs_error=steps, mean_error=0,
                                scale=1.0, elements=10)

    names = [f"model/mobilenetv2/block_{i}_project_BN/batchnorm/add_1" for i in range(12)]
    layers = [layer("model/log/Log", float("inf"), "LOG")]
    layers += [layer(n, 5.0 - i * 0.1) for i, n in enumerate(names)]
    layers += [layer("a/same;x", 0.5), layer("a/same;y", 0.4)]  # the same layer name twice
    bars = layer_error_bars(layers)
    labels = [b.label for b in bars]
    assert len(bars) == len(layers) and len(set(labels)) == len(labels)
    assert labels[1] == "block_0_project_BN/batchnorm/add_1 (CONV_2D)"
    assert labels[-2:] == ["a/same #1 (CONV_2D)", "a/same #2 (CONV_2D)"]
    assert bars[0].rmse_steps is None and "infinity" in bars[0].note
    variant = VariantReport(name="int8", mode="int8", file="int8.tflite", size_bytes=1, size_vs_reference=None,
                            sha256="0", inputs=[], outputs=[], convert_seconds=0.0, layer_errors=layers)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _layer_error_plot(variant, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
    from edgequant.report.render import _variant_details

    assert "not finite" in "\n".join(_variant_details(variant))


def test_plots_and_tables_name_their_metric():
    from edgequant.report.plots import quality_metric
    from edgequant.report.render import parity_verdict, plural
    from edgequant.report.schema import EvaluationReport, VariantReport

    def variant(**e):
        ev = EvaluationReport(samples=10, k=5, mse=0.0, cosine=0.9, throughput=1.0, batch_size=1, **e)
        return VariantReport(name="v", mode="int8", file="v.tflite", size_bytes=1, size_vs_reference=None,
                             sha256="0", inputs=[], outputs=[], convert_seconds=0.0, evaluation=ev)

    assert quality_metric([variant(top1=0.9, agreement=0.9)]).axis == "top-1 accuracy (%)"
    assert quality_metric([variant(agreement=0.9)]).axis == "top-1 agreement with the reference (%)"
    cosine = quality_metric([variant()])
    assert cosine.axis == "cosine similarity to the reference (x100)" and cosine.value(variant()) == 90.0
    assert (plural(1, "gate"), plural(2, "variant")) == ("1 gate", "2 variants")
    float_ok = {"exact": False, "samples": 8, "max_abs_error": 2e-6, "outputs": [{"dtype": "float32"}]}
    float_bad = dict(float_ok, max_abs_error=0.3, top1_agreement=0.75)
    assert parity_verdict(float_ok).startswith("pass: float outputs within")
    assert parity_verdict(float_bad).startswith("FAIL") and "75%" in parity_verdict(float_bad)
    assert parity_verdict({"exact": False, "max_abs_error": 1.0, "outputs": [{"dtype": "int8"}]}).startswith("FAIL")


def test_gates_against_a_degenerate_reference_fail_with_the_reason():
    problems = ["its top-1 class is the same for all 100 samples"]
    results = check_gates("v", Gates(min_agreement_percent=90, max_size_kib=100), size_bytes=1024,
                          evaluation=_evaluation(None, 1.0, 1.0), reference=_evaluation(None, 1.0, 1.0),
                          latency_ms={}, reference_problems=problems)
    agreement_gate, size_gate = results
    assert not agreement_gate.passed and agreement_gate.value == 100.0
    assert "the reference is degenerate: its top-1 class is the same" in agreement_gate.describe()
    assert size_gate.passed and not size_gate.reason  # a size gate does not depend on the reference


def _small_fmnist_recipe(tmp_path, variants: str, evaluation_extra: str = "", preprocess: str = "scale: 0.00392156862745098"):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: small\nmodel: {{path: {REPO}/recipes/fashion_mnist/fashion_mnist_cnn.keras}}\n"
        f"evaluation:\n  source: {{type: fashion-mnist, split: test}}\n  samples: 300\n"
        f"  preprocess: {{{preprocess}}}\n{evaluation_extra}"
        f"benchmark: {{enabled: false}}\noutput_dir: {tmp_path / 'out'}\nvariants:\n{variants}"
    )
    return recipe


@pytest.mark.slow
def test_a_float32_variant_is_the_reference_itself(tmp_path):
    from edgequant.pipeline import build_recipe

    recipe = _small_fmnist_recipe(
        tmp_path, "  - {name: ref, mode: float32}\n  - {name: small, mode: dynamic, gates: {min_agreement_percent: 90}}\n",
        evaluation_extra="  class_names: [tee, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, boot]\n",
    )
    result = build_recipe(recipe)
    report = result.report
    assert report.reference == "ref" and not report.reference_problems and result.passed
    ref = report.variant("ref").evaluation
    assert ref.agreement == 1.0 and ref.cosine == pytest.approx(1.0)
    assert report.variant("small").evaluation.accuracy_drop_points == pytest.approx(
        (ref.top1 - report.variant("small").evaluation.top1) * 100)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    labels = [a["provenance"]["labels"] for a in manifest["artifacts"]]  # evaluation.class_names, per artifact
    assert all(x[0] == "tee" and x[-1] == "boot" for x in labels) and len(labels) == 2
    assert "Reference: the float32 variant `ref`." in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.slow
def test_preprocessing_that_blanks_the_input_is_a_degenerate_reference(tmp_path, capsys):
    """`scale: 0` makes every input zero: agreement is 100% and proves nothing, so the gate fails, with the reason."""
    variants = "  - {name: dyn, mode: dynamic, gates: {min_agreement_percent: 90}}\n"
    recipe = _small_fmnist_recipe(tmp_path, variants, preprocess="scale: 0")
    assert main(["build", str(recipe)]) == 1
    err = capsys.readouterr().err
    assert "edgequant: warning: the float32 reference is degenerate" in err
    assert "dyn: min_agreement_percent FAILED: 100" in err and "the reference is degenerate" in err
    report = Report.model_validate_json((tmp_path / "out" / "report.json").read_text())
    assert report.reference == ".float32-reference"  # no float32 variant: an internal one, never written
    assert not (tmp_path / "out" / ".float32-reference.tflite").exists()
    assert any("top-1 accuracy (" in p and "no better than always guessing" in p for p in report.reference_problems)

    allowed = _small_fmnist_recipe(tmp_path, variants, preprocess="scale: 0",
                                   evaluation_extra="  allow_degenerate_reference: true\n")
    assert main(["build", str(allowed)]) == 0
    report = Report.model_validate_json((tmp_path / "out" / "report.json").read_text())
    assert report.passed and report.reference_problems
    assert "its gates were checked anyway" in report.warnings[0]


def test_a_variant_named_float32_must_be_the_float32_reference(tmp_path, capsys):
    (tmp_path / "m.keras").write_bytes(b"")
    (tmp_path / "r.yaml").write_text("model: {path: m.keras}\nvariants: [{name: float32, mode: dynamic}]\n")
    assert main(["recipe", "check", str(tmp_path / "r.yaml")]) == 2
    assert "a dynamic variant cannot be named 'float32'" in capsys.readouterr().err
