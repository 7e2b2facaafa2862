"""Models with several inputs, several outputs or a dynamic axis, built for real (issue 23, items 2 and 5-8).

The models are trained here in seconds on Fashion-MNIST (tests/io_models.py); every figure checked is
compared with an independent loop over the LiteRT interpreter.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests import io_models

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return interp.get_signature_runner()


def _independent(path, feeds: list[dict]) -> dict[str, np.ndarray]:
    """Every output by signature name, one sample at a time, dequantized: a loop of its own."""
    runner = _interpreter(path)
    details = runner.get_output_details()
    inputs = runner.get_input_details()
    outs: dict[str, list] = {}
    for feed in feeds:
        args = {}
        for name, x in feed.items():
            d = inputs[name]
            if d["dtype"] == np.float32:
                args[name] = x[None].astype(np.float32)
            else:
                scale, zero = d["quantization"]
                args[name] = np.clip(np.round(x[None] / scale + zero), -128, 127).astype(d["dtype"])
        y = runner(**args)
        for name, v in y.items():
            scale, zero = details[name]["quantization"]
            v = v.astype(np.float32) if scale == 0 else (v.astype(np.float32) - zero) * scale
            outs.setdefault(name, []).append(v[0])
    return {k: np.stack(v) for k, v in outs.items()}


def _cosine(a, b):
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).mean())


# --- cosine of an all-zero output (item 7) ---------------------------------------------------------------


def test_cosine_counts_an_all_zero_output_as_0_not_a_perfect_1(tmp_path):
    """A ReLU layer pushed below zero outputs all zeros: against a non-zero reference that is cosine 0."""
    import keras

    from edgequant.measure.evaluate import evaluate
    from edgequant.model.source_model import export_keras_model
    from edgequant.quantization.convert import convert_variant
    from edgequant.recipe.schema import Float32Variant

    keras.utils.set_random_seed(0)
    inputs = keras.Input((784,))
    model = keras.Model(inputs, keras.layers.Dense(8, activation="relu")(inputs))
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    dense.set_weights([np.abs(kernel), bias])  # non-negative pixels, non-negative weights: never all zero
    reference = convert_variant(export_keras_model(model, tmp_path / "a").saved_model_dir, Float32Variant(name="r"))
    dense.set_weights([np.abs(kernel), bias - 1e4])  # always below zero: every output all zero
    dead = convert_variant(export_keras_model(model, tmp_path / "b").saved_model_dir, Float32Variant(name="d"))
    x, _ = io_models.fashion("test", 24)
    results = evaluate({"ref": reference, "dead": dead}, [(x.reshape(24, -1), None)], reference="ref")
    assert results["ref"].cosine == 1.0
    assert results["dead"].cosine == 0.0  # before: 1.0, as if the dead model were perfect
    assert results["dead"].per_output[0].relative_error == pytest.approx(1.0)


def test_cosine_rows_of_zero_vectors():
    from edgequant.measure.evaluate import cosine_rows

    a = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0], [2.0, 2.0]])
    assert cosine_rows(a, b).tolist() == [1.0, 0.0, 0.0, pytest.approx(1.0)]


# --- a model with two inputs and two outputs (items 2, 6, 8) ------------------------------------------------


@pytest.fixture(scope="module")
def two_io_build(tmp_path_factory):
    """The two-input, two-output model built for real: float32, dynamic, int8 (float I/O) and int8 (int8 I/O)."""
    from edgequant.pipeline import build_recipe

    work = tmp_path_factory.mktemp("two_io")
    model = io_models.two_input_model(work / "two.keras")
    x, y = io_models.fashion("test", 48)
    data = io_models.two_input_data(x)
    np.savez(work / "calib.npz", data["image"][:40], data["row_means"][:40])  # by position: arr_0, arr_1
    np.savez(work / "eval.npz", **data, y=y)  # by input name
    recipe = work / "two.yaml"
    recipe.write_text(
        f"name: two\nmodel: {{path: {model}}}\n"
        f"calibration: {{source: {{type: npz, path: {work}/calib.npz}}, samples: 500}}\n"
        f"evaluation: {{source: {{type: npz, path: {work}/eval.npz, labels_key: y}}, batch_size: 16}}\n"
        "benchmark: {runs: 3, warmup: 1}\n"
        f"output_dir: {work}/out\nvariants:\n"
        "  - {name: float32, mode: float32}\n  - {name: dynamic, mode: dynamic}\n"
        "  - {name: int8f, mode: int8, input_type: float32, output_type: float32}\n"
        "  - {name: int8, mode: int8, ranges: percentile}\n"
    )
    return build_recipe(recipe), data, y, work


@pytest.mark.slow
def test_two_inputs_feed_every_stage_and_are_listed(two_io_build):
    result, data, _, _ = two_io_build
    report = result.report
    for v in report.variants:
        assert len(v.inputs) == 2, v.name
    int8 = report.variant("int8")
    assert {t["dtype"] for t in int8.inputs} == {"int8"} and all(t["quantization"] for t in int8.inputs)
    assert int8.layer_errors  # the per-layer analysis ran on both inputs
    shapes = sorted(map(str, next(lat for lat in int8.latency if lat.device == "host").details["input_shapes"]))
    assert shapes == ["[1, 28, 28, 1]", "[1, 28]"]  # the host timed real data of both inputs
    md = (result.output_dir / "report.md").read_text()
    assert "## Inputs" in md and "row_means" in md and "image" in md
    assert any("int8 fixes (ranges:percentile) not applied" in n and "2" in n for n in report.notes)


@pytest.mark.slow
def test_manifest_states_the_calibration_samples_read_not_asked(two_io_build):
    result = two_io_build[0]
    manifest = json.loads((result.output_dir / "manifest.json").read_text())
    calibrations = {a["name"]: a["provenance"]["calibration"] for a in manifest["artifacts"]}
    assert calibrations["int8f"].endswith(", 40 samples")  # the recipe asks 500; the file holds 40
    assert calibrations["float32"] is None


@pytest.mark.slow
def test_every_output_is_measured_by_its_kind_equal_to_an_independent_loop(two_io_build):
    result, data, y, _ = two_io_build
    feeds = [{k: v[i] for k, v in data.items()} for i in range(len(y))]
    reference = _independent(result.path("float32"), feeds)
    for name in ("int8f", "int8", "dynamic"):
        e = result.report.variant(name).evaluation
        got = _independent(result.path(name), feeds)
        box, probs = e.per_output
        assert (box.name, box.kind, box.agreement) == ("box", "values", None)  # before: argmax of 4 offsets
        assert (probs.name, probs.kind) == ("probs", "classes")
        agreement = float((got["probs"].argmax(1) == reference["probs"].argmax(1)).mean())
        assert probs.agreement == pytest.approx(agreement)
        assert probs.top1 == pytest.approx(float((got["probs"].argmax(1) == y).mean()))
        for o in (box, probs):
            assert o.cosine == pytest.approx(_cosine(got[o.name], reference[o.name]), abs=1e-6)
        assert e.agreement == probs.agreement and e.cosine == min(box.cosine, probs.cosine)
        assert e.output == "box, probs" and e.outputs == 2


@pytest.mark.slow
def test_evaluation_outputs_choose_the_headline_and_compare_output_names_it(two_io_build, capsys):
    from edgequant.cli import main
    from edgequant.errors import InputError
    from edgequant.measure.evaluate import evaluate

    result, data, y, work = two_io_build
    models = {"float32": result.path("float32"), "int8": result.path("int8f")}
    batches = [(data, y)]
    probs_only = evaluate(models, batches, reference="float32", outputs=["probs"])["int8"]
    box_only = evaluate(models, batches, reference="float32", outputs=[0])["int8"]
    assert probs_only.cosine == probs_only.per_output[1].cosine and probs_only.output == "probs"
    assert box_only.cosine == box_only.per_output[0].cosine and box_only.agreement is None
    assert [o.judged for o in box_only.per_output] == [True, False]
    logits = evaluate(models, batches, reference="float32", output_kinds={"box": "classes"})["int8"]
    assert logits.per_output[0].kind == "classes" and logits.per_output[0].agreement is not None
    with pytest.raises(InputError, match=r"evaluation.outputs: the model has no output 'scores'; its outputs are "
                                         r"0: box, 1: probs"):
        evaluate(models, batches, reference="float32", outputs=["scores"])
    args = ["compare", str(result.path("float32")), str(result.path("int8f")), "--data", str(work / "eval.npz"),
            "--labels-key", "y", "--output", "probs", "--json"]
    assert main(args) == 0
    compared = list(json.loads(capsys.readouterr().out).values())[1]
    assert compared["output"] == "probs" and compared["agreement"] == probs_only.agreement


@pytest.mark.slow
def test_quantize_takes_an_npz_per_input_for_calib_and_eval(two_io_build, tmp_path):
    from edgequant.cli import main

    result, _, _, work = two_io_build
    out = tmp_path / "quick"
    args = ["quantize", str(work / "two.keras"), "--int8", "--calib", str(work / "calib.npz"), "--eval",
            str(work / "eval.npz"), "--no-bench", "--output-dir", str(out)]
    assert main(args) == 0  # before: "the model has 2 inputs; edgequant supports one input"
    report = json.loads((out / "report.json").read_text())
    int8 = next(v for v in report["variants"] if v["name"] == "int8")
    assert [o["name"] for o in int8["evaluation"]["per_output"]] == ["box", "probs"] and len(int8["inputs"]) == 2
    assert "no preprocess: the model has 2 inputs" in (out / "recipe.yaml").read_text()


# --- a dynamic sequence length (item 5) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sequence_build(tmp_path_factory):
    from edgequant.pipeline import build_recipe

    work = tmp_path_factory.mktemp("seq")
    model = io_models.sequence_tagger(work / "seq.keras")
    x, _ = io_models.fashion("test", 32)
    np.save(work / "seq.npy", io_models.sequences(x))
    recipe = work / "seq.yaml"
    recipe.write_text(
        f"name: seq\nmodel: {{path: {model}}}\n"
        f"calibration: {{source: {{type: npy, path: {work}/seq.npy}}, samples: 500}}\n"
        f"evaluation: {{source: {{type: npy, path: {work}/seq.npy}}}}\n"
        "benchmark: {runs: 3, warmup: 1}\n"
        f"output_dir: {work}/out\nvariants:\n  - {{name: float32, mode: float32}}\n"
        "  - {name: int8, mode: int8, input_type: float32, output_type: float32, analyse_layers: false}\n"
    )
    return build_recipe(recipe), io_models.sequences(x)


@pytest.mark.slow
def test_the_manifest_of_a_one_input_model_states_the_calibration_samples_read(sequence_build):
    result, seq = sequence_build
    manifest = json.loads((result.output_dir / "manifest.json").read_text())
    int8 = next(a for a in manifest["artifacts"] if a["name"] == "int8")
    assert int8["provenance"]["calibration"].endswith(f", {len(seq)} samples")  # before: "500 samples", as asked


@pytest.mark.slow
def test_a_dynamic_axis_is_timed_at_the_datas_shape_and_said(sequence_build):
    result, seq = sequence_build
    for v in result.report.variants:
        host = next(lat for lat in v.latency if lat.device == "host")
        assert host.details["input_shapes"] == [[1, 28, 4]]  # before: generated [1, 1, 4], whose output is empty
        assert host.details["inputs"] == "real data: the first evaluation sample"
    md = (result.output_dir / "report.md").read_text()
    assert "Latency timed at input shape [1, 28, 4] (real data: the first evaluation sample)." in md
    assert "Timed at input shape [1, 28, 4] (real data: the first evaluation sample)." in \
        (result.output_dir / "report.html").read_text()
    e = result.report.variant("int8").evaluation
    reference = _independent(result.path("float32"), [{"input": s} for s in seq])["output_0"]
    got = _independent(result.path("int8"), [{"input": s} for s in seq])["output_0"]
    assert e.per_output[0].shape == [14, 3] and e.per_output[0].kind == "classes"
    assert e.agreement == pytest.approx(float((got.argmax(-1) == reference.argmax(-1)).mean()))


def test_a_model_whose_output_is_empty_at_the_shape_given_is_not_timed(tmp_path):
    """A tagger of every row but the first: at the file's placeholder length 1 its output is [1, 0, 8]."""
    import keras

    from edgequant.bench.host import benchmark
    from edgequant.errors import DataError
    from edgequant.model.source_model import export_keras_model
    from edgequant.quantization.convert import convert_variant
    from edgequant.recipe.schema import Float32Variant

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, 4))
    tags = keras.layers.Cropping1D((1, 0))(keras.layers.Conv1D(8, 1, activation="relu")(inputs))
    exported = export_keras_model(keras.Model(inputs, tags), tmp_path)
    model = convert_variant(exported.saved_model_dir, Float32Variant(name="tagger"))
    with pytest.raises(DataError, match=r"output '.*' is empty \(shape \[1, 0, 8\]\) at input shape \[1, 1, 4\]: "
                                        "a time for computing nothing would mislead"):
        benchmark([model], runs=2, warmup=0)  # before: timed, 0 positions computed
    x, _ = io_models.fashion("test", 1)
    timed = benchmark([model], runs=2, warmup=0, inputs=io_models.sequences(x))[0]
    assert timed.input_shapes == [[1, 28, 4]] and timed.inputs == "real data"


# --- verdict lines from the same numbers (the "Smaller" list) --------------------------------------------


def _variant(name, mode, ms, speedup, gates_passed=True, agreement=1.0):
    return {"name": name, "mode": mode, "size_bytes": 4000 if mode == "float32" else 1000,
            "evaluation": {"agreement": agreement, "cosine": 0.99},
            "gates": [{"gate": "min_agreement_percent", "limit": 99.0, "value": agreement * 100,
                       "passed": gates_passed}],
            "latency": [{"device": "host", "ms": ms, "estimate": False, "speedup_vs_reference": speedup}]}


def test_the_verdict_never_says_no_variant_was_faster_beside_a_faster_one():
    from edgequant.report.html import _verdict

    report = {"reference": "float32", "passed": False, "failed_gates": ["int8: min_agreement_percent FAILED"],
              "variants": [_variant("float32", "float32", 6.7, 1.0),
                           _variant("int8", "int8", 1.0, 6.7, gates_passed=False, agreement=0.8)]}
    html = _verdict(report)
    assert "no quantized variant was faster here" not in html
    assert "int8 was faster (1 ms, 6.7x) but failed min_agreement_percent" in html
    alone = {"reference": "float32", "passed": True, "variants": [_variant("float32", "float32", 6.7, 1.0),
                                                                   _variant("dynamic", "dynamic", 9.0, 0.74)]}
    assert "no quantized variant was faster here" in _verdict(alone)


def test_the_dynamic_range_depthwise_note_follows_the_measured_ratio():
    from edgequant.bench.speed_explanation import LatencyComparison, _dynamic_depthwise_finding

    def comparison(ratio):
        return LatencyComparison(reference="float32", kernels="xnnpack", threads=1, median_ms=ratio * 10,
                                 reference_median_ms=10.0, paired_ratio=ratio, noise_cv=0.01, cpu_per_wall=1.0)

    faster = _dynamic_depthwise_finding([comparison(1 / 1.84)])
    assert "1.84x faster" in faster and "slower" not in faster  # before: "slower than float32 here"
    assert "not faster than float32 here" in _dynamic_depthwise_finding([comparison(1.3)])
