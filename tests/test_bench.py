"""Host benchmark, inputs, XNNPACK coverage and the speed explanation, on small real models.

The models are a small Keras conv net (28x28x1 in, 10 classes) converted here with TFLiteConverter
to float32, float16, dynamic-range and int8 (int8 interface and float interface). No assertion is
about time: the kernel choices are told apart by the execution plan and the allocated tensors.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

FMNIST_IMAGES = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    net = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        keras.layers.DepthwiseConv2D(3, activation="relu"),
        keras.layers.Conv2D(32, 1, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(64, activation="relu"),  # 2048 weights: quantized by dynamic range (>= 1024)
        keras.layers.Dense(10),
        keras.layers.Softmax(),
    ])
    rng = np.random.default_rng(0)

    def calibration():
        for _ in range(8):
            yield [rng.random((1, 28, 28, 1), dtype=np.float32)]

    def convert(**settings) -> bytes:
        converter = tf.lite.TFLiteConverter.from_keras_model(net)
        for key, value in settings.items():
            setattr(converter, key, value)
        return converter.convert()

    opt = [tf.lite.Optimize.DEFAULT]
    int8_ops = tf.lite.TargetSpec(supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8])
    variants = {
        "float32": convert(),
        "float16": convert(optimizations=opt, target_spec=tf.lite.TargetSpec(supported_types=[tf.float16])),
        "dynamic": convert(optimizations=opt),
        "int8": convert(optimizations=opt, representative_dataset=calibration, target_spec=int8_ops,
                        inference_input_type=tf.int8, inference_output_type=tf.int8),
        "int8_float_io": convert(optimizations=opt, representative_dataset=calibration, target_spec=int8_ops),
    }
    folder = tmp_path_factory.mktemp("bench_models")
    paths = {}
    for name, data in variants.items():
        paths[name] = folder / f"small_{name}.tflite"
        paths[name].write_bytes(data)
    return paths


@pytest.fixture(scope="module")
def bad_models(models, tmp_path_factory) -> dict[str, Path]:
    """A text file, a truncated .tflite, and the float32 model with SOFTMAX renamed to a custom op."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    folder = tmp_path_factory.mktemp("bad_models")
    data = models["float32"].read_bytes()
    not_tflite = folder / "notes.tflite"
    not_tflite.write_text("this is a text file, not a model\n" * 20)
    truncated = folder / "truncated.tflite"
    truncated.write_bytes(data[: len(data) // 2])

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    for code in model.operatorCodes:
        if code.builtinCode == schema.BuiltinOperator.SOFTMAX:
            code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
            code.customCode = b"EdgequantTestOp"
            custom_index = model.operatorCodes.index(code)
    for op in model.subgraphs[0].operators:
        if op.opcodeIndex == custom_index:
            op.builtinOptionsType, op.builtinOptions, op.customOptions = 0, None, [1, 2, 3]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    custom = folder / "custom_op.tflite"
    custom.write_bytes(bytes(builder.Output()))
    return {"not_tflite": not_tflite, "truncated": truncated, "custom_op": custom}


# ---- statistics and schedule ------------------------------------------------------------------

def test_stats_match_numpy_on_the_returned_samples(models):
    from edgequant.bench.host import benchmark

    (result,) = benchmark([models["float32"]], runs=40, warmup=2)
    samples = np.asarray(result.samples_ms)
    assert samples.shape == (40,) and len(result.cpu_ms) == 40
    s = result.latency
    rtol = 1e-12  # the same float64 arithmetic: only rounding may differ
    assert s.n == 40
    assert s.mean_ms == pytest.approx(samples.mean(), rel=rtol)
    assert s.median_ms == pytest.approx(np.median(samples), rel=rtol)
    assert s.p90_ms == pytest.approx(np.percentile(samples, 90), rel=rtol)
    assert s.p99_ms == pytest.approx(np.percentile(samples, 99), rel=rtol)
    assert s.min_ms == samples.min() and s.max_ms == samples.max()
    assert s.std_ms == pytest.approx(samples.std(ddof=1), rel=rtol)
    assert s.min_ms <= s.median_ms <= s.p90_ms <= s.p99_ms <= s.max_ms
    assert result.load_ms > 0 and result.first_invoke_ms > 0
    assert result.peak_rss_bytes >= result.rss_increase_bytes >= 0


def test_stats_of_known_samples():
    from edgequant.bench.host import LatencyStats

    s = LatencyStats.from_samples([1.0, 2.0, 3.0, 4.0, 10.0])
    assert (s.mean_ms, s.median_ms, s.min_ms, s.max_ms) == (4.0, 3.0, 1.0, 10.0)
    assert s.p90_ms == pytest.approx(7.6)  # linear interpolation between 4 and 10 at rank 3.6
    assert s.std_ms == pytest.approx(np.sqrt(50 / 4))


def test_round_robin_schedule_rotates_the_start():
    from edgequant.bench.host import round_robin_schedule

    assert round_robin_schedule(3, 3) == [0, 1, 2, 1, 2, 0, 2, 0, 1]
    assert round_robin_schedule(1, 4) == [0, 0, 0, 0]


def test_configurations_run_interleaved(models):
    from edgequant.bench.host import benchmark

    runs = 6
    results = benchmark([models["float32"], models["int8"]], kernels=["xnnpack", "builtin"], threads=[1], runs=runs, warmup=1)
    assert [(Path(r.model).stem, r.kernels) for r in results] == [
        ("small_float32", "xnnpack"), ("small_float32", "builtin"), ("small_int8", "xnnpack"), ("small_int8", "builtin")]
    n = len(results)
    order = [None] * (n * runs)
    for i, r in enumerate(results):
        assert len(r.sequence) == runs
        for position in r.sequence:
            order[position] = i
    # every round invokes every configuration exactly once, each round starting one later
    for round_index in range(runs):
        window = order[round_index * n:(round_index + 1) * n]
        assert sorted(window) == list(range(n))
        assert window[0] == round_index % n


# ---- kernel choices -----------------------------------------------------------------------------

def test_kernel_choices_differ_in_their_execution_plan(models):
    from edgequant.bench.host import benchmark

    xnnpack, builtin, reference = benchmark([models["float32"]], kernels=["xnnpack", "builtin", "reference"], runs=2, warmup=0)
    assert xnnpack.delegated_operators == xnnpack.operators == 7 and xnnpack.delegate_partitions == 1
    assert builtin.delegated_operators == reference.delegated_operators == 0
    # the optimized builtin kernels allocate temporaries (im2col and friends) that the reference ones do not
    assert builtin.tensors_allocated > reference.tensors_allocated > xnnpack.tensors_allocated


def test_kernel_choices_compute_the_same_outputs(models):
    from edgequant.model.inputs import generate_inputs
    from edgequant.model.runtime import load_interpreter, set_inputs

    outputs = {}
    for kernels in ("xnnpack", "builtin", "reference"):
        interp = load_interpreter(models["float32"], kernels=kernels)
        set_inputs(interp, generate_inputs(interp.get_input_details(), seed=3))
        interp.invoke()
        outputs[kernels] = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_allclose(outputs["builtin"], outputs["xnnpack"], atol=1e-5)  # float reassociation only
    np.testing.assert_allclose(outputs["reference"], outputs["xnnpack"], atol=1e-5)


def test_threads_start_worker_threads(models):
    from edgequant.bench.host import benchmark

    one, two = benchmark([models["float32"]], threads=[1, 2], runs=2, warmup=0)
    assert (one.threads, two.threads) == (1, 2)
    assert one.threads_started == 0 and two.threads_started >= 1  # XNNPACK's pool adds a worker for 2 threads


# ---- inputs -------------------------------------------------------------------------------------

def _detail(dtype, shape=(1, 64, 64), scale=0.0, zero_point=0, name="x"):
    return {"name": name, "index": 0, "shape": np.array(shape), "dtype": dtype, "quantization": (scale, zero_point)}


def test_generated_float_inputs():
    from edgequant.model.inputs import generate_input

    rng = np.random.default_rng(0)
    uniform = generate_input(_detail(np.float32), rng)
    assert uniform.dtype == np.float32 and uniform.shape == (1, 64, 64)
    assert uniform.min() >= 0.0 and uniform.max() < 1.0 and abs(uniform.mean() - 0.5) < 0.02
    normal = generate_input(_detail(np.float32), rng, "normal")
    assert abs(normal.mean()) < 0.05 and abs(normal.std() - 1.0) < 0.05  # 4096 samples: tolerances ~4 sigma


@pytest.mark.parametrize("dtype, scale, zero_point", [(np.int8, 0.02, -5), (np.uint8, 1 / 255, 0), (np.int16, 1e-4, 0)],
                         ids=["int8", "uint8", "int16"])
def test_generated_quantized_inputs_span_the_real_domain(dtype, scale, zero_point):
    from edgequant.model.inputs import generate_input, quantized_real_range

    detail = _detail(dtype, scale=scale, zero_point=zero_point)
    values = generate_input(detail, np.random.default_rng(0))
    info = np.iinfo(dtype)
    assert values.dtype == dtype
    low, high = quantized_real_range(detail)
    real = (values.astype(np.float64) - zero_point) * scale
    assert low - scale / 2 <= real.min() and real.max() <= high + scale / 2
    span = info.max - info.min
    assert values.min() <= info.min + 0.02 * span and values.max() >= info.max - 0.02 * span  # reaches both ends


def test_generated_plain_integer_and_bool_inputs():
    from edgequant.model.inputs import UNQUANTIZED_INT_HIGH, generate_input

    rng = np.random.default_rng(0)
    ids = generate_input(_detail(np.int32), rng)
    assert ids.dtype == np.int32 and ids.min() == 0 and ids.max() == UNQUANTIZED_INT_HIGH - 1
    mask = generate_input(_detail(np.bool_), rng)
    assert mask.dtype == np.bool_ and 0.4 < mask.mean() < 0.6


def test_real_fashion_mnist_input_is_quantized_for_an_int8_model(models, tmp_path):
    from edgequant.bench.host import benchmark
    from edgequant.data.idx import iter_idx
    from edgequant.model.inputs import read_inputs
    from edgequant.model.runtime import load_interpreter

    images = np.stack(list(itertools.islice(iter_idx(FMNIST_IMAGES), 4)))[..., None].astype(np.float32) / 255.0
    npy = tmp_path / "four_images.npy"
    np.save(npy, images)
    interp = load_interpreter(models["int8"])
    (array,) = read_inputs(npy, interp.get_input_details())
    assert array.shape == (1, 28, 28, 1) and np.array_equal(array, images[:1])  # the first sample of the batch
    (result,) = benchmark([models["int8"]], runs=3, warmup=0, input_data=npy)
    assert result.inputs == f"real data from {npy}"


def test_set_inputs_quantizes_real_values_and_rejects_misfits(models, tmp_path):
    from edgequant.errors import DataError
    from edgequant.model.inputs import read_inputs
    from edgequant.model.runtime import load_interpreter, quantize_input, set_inputs

    interp = load_interpreter(models["int8"])
    (detail,) = interp.get_input_details()
    real = np.linspace(0, 1, 28 * 28, dtype=np.float64).reshape(1, 28, 28, 1)
    set_inputs(interp, [real])
    np.testing.assert_array_equal(interp.get_tensor(detail["index"]), quantize_input(real.astype(np.float32), detail))
    with pytest.raises(DataError, match=r"shape \[1, 28, 28\], the model expects \[1, 28, 28, 1\]"):
        set_inputs(interp, [real[..., 0]])
    with pytest.raises(DataError, match="no data for model input"):
        set_inputs(interp, {"wrong_name": real})
    npz = tmp_path / "data.npz"
    np.savez(npz, other=real)
    with pytest.raises(DataError, match="no array for input"):
        read_inputs(npz, [detail])


# ---- speed explanation --------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["float32", "float16", "dynamic", "int8", "int8_float_io"])
def test_support_table_agrees_with_the_interpreter(models, variant):
    from edgequant.bench.cpu_features import read_host_features
    from edgequant.bench.speed_explanation import explain_speed

    e = explain_speed(models[variant], read_host_features())
    assert e.delegated_observed is not None
    assert e.mismatches == [], e.text()
    assert e.precision == {"int8_float_io": "int8"}.get(variant, variant)


def test_int8_explanation_finds_softmax_fallback_and_edge_quantization(models):
    from edgequant.bench.speed_explanation import explain_speed

    e = explain_speed(models["int8_float_io"])
    fallback = [(c.op_type, c.tensor_class) for c in e.coverage if c.xnnpack_observed < c.count]
    assert fallback == [("SOFTMAX", "qs8")]
    assert (e.quant.quantize_at_edges, e.quant.dequantize_at_edges, e.quant.inside) == (1, 1, 0)
    assert any("SOFTMAX" in f for f in e.findings)
    float16 = explain_speed(models["float16"])
    assert float16.quant.dequantize_weights > 0 and float16.delegated_observed == float16.operators


def test_verdict_says_plainly_when_int8_is_not_faster(models):
    """The verdict on real results whose int8 samples are replaced by float32's times a known factor."""
    from dataclasses import replace

    from edgequant.bench.host import LatencyStats, benchmark
    from edgequant.bench.speed_explanation import explain_speed

    f32, i8 = benchmark([models["float32"], models["int8"]], runs=5, warmup=0)

    def scaled(factor):
        samples = [x * factor for x in f32.samples_ms]
        return replace(i8, samples_ms=samples, latency=LatencyStats.from_samples(samples))

    e = explain_speed(models["int8"], name=i8.model, results=[f32, scaled(1.1)])
    assert e.comparisons[0].paired_ratio == pytest.approx(1.1)
    assert e.verdict.startswith("On this host with xnnpack, int8 is NOT faster than float32") and "--device" in e.verdict
    e = explain_speed(models["int8"], name=i8.model, results=[f32, scaled(0.5)])
    assert e.verdict.startswith("On this host with xnnpack, int8 is faster than float32") and "2.00x faster" in e.verdict
    assert "--device" not in e.verdict
    e = explain_speed(models["int8"], name=i8.model, results=[f32, scaled(0.95)])
    assert "not clearly faster (0.95x the time" in e.verdict


def test_cpu_features_from_cpuinfo_texts():
    from edgequant.bench.cpu_features import parse_cpuinfo

    x86 = parse_cpuinfo("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_1 avx fma avx2 avx512f "
                        "avx512bw avx512vl avx512_vnni\nprocessor\t: 1\n", arch="x86_64")
    assert x86.cores == 2 and x86.int8_dot_product == "AVX-512 VNNI" and x86.int8_kernel_family == "avx512vnni"
    no_vnni = parse_cpuinfo("flags\t: fpu sse4_1 avx fma avx2\n", arch="x86_64")
    assert no_vnni.int8_dot_product is None and no_vnni.int8_kernel_family.startswith("avx2")
    a76 = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp "
                        "cpuid asimdrdm lrcpc dcpop asimddp\nCPU part\t: 0xd0b\n")
    assert a76.is_arm and a76.int8_dot_product == "dot product (SDOT)" and a76.int8_kernel_family == "neondot"
    a72 = parse_cpuinfo("Features\t: fp asimd evtstrm crc32 cpuid\n", arch="aarch64")
    assert a72.int8_dot_product is None and a72.int8_kernel_family.startswith("neon (no")


# ---- CLI ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case, message", [
    ("not_tflite", "not a .tflite file"),
    ("truncated", "corrupt or truncated .tflite file"),
    ("custom_op", "uses custom op(s) EdgequantTestOp"),
])
def test_bad_models_get_one_line_and_exit_2(bad_models, capsys, case, message):
    from edgequant.cli import main

    code = main(["bench", str(bad_models[case]), "--runs", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and err.startswith("edgequant: error: ") and message in err
    assert str(bad_models[case]) in err


def test_custom_op_model_is_refused_by_the_interpreter_too(bad_models):
    from edgequant.errors import ModelFileError
    from edgequant.model.runtime import load_interpreter

    with pytest.raises(ModelFileError, match="uses custom op 'EdgequantTestOp'"):
        load_interpreter(bad_models["custom_op"])


def test_bad_options_exit_2(models, capsys):
    from edgequant.cli import main

    assert main(["bench", str(models["float32"]), "--threads", "0"]) == 2
    assert main(["bench", str(models["float32"]), "--kernels", "gpu"]) == 2
    assert "unknown kernels gpu" in capsys.readouterr().err


def test_json_output_parses(models, capsys):
    from edgequant.cli import main

    code = main(["bench", str(models["float32"]), str(models["int8"]), "-t", "1,2", "--runs", "3", "--warmup", "1",
                 "--json", "--samples"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    results = payload["results"]
    assert [(Path(r["model"]).stem, r["threads"]) for r in results] == [
        ("small_float32", 1), ("small_float32", 2), ("small_int8", 1), ("small_int8", 2)]
    for r in results:
        assert len(r["samples_ms"]) == 3 and r["latency"]["median_ms"] == pytest.approx(np.median(r["samples_ms"]))
        assert r["kernels"] == "xnnpack" and r["peak_rss_bytes"] > 0
    explained = {Path(e["model"]).stem: e for e in payload["explanations"]}
    assert explained["small_int8"]["precision"] == "int8"
    assert len(explained["small_int8"]["comparisons"]) == 2  # against float32 at 1 and 2 threads
    assert explained["small_int8"]["verdict"].startswith("On this host with xnnpack, int8 is")


def test_table_output_names_every_configuration(models, capsys):
    from edgequant.cli import main

    assert main(["bench", str(models["float32"]), "-k", "xnnpack,reference", "--runs", "2", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "small_float32" in out and "reference" in out and "median" in out and "noise:" in out
