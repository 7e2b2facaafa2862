"""Figures behind `edgequant bench` and its speed explanation, reproducible on this machine.

    python benchmarks/host_figures.py mobilenetv2 OUT_DIR
        keras.applications.MobileNetV2(weights=None), 224x224x3, exported once and converted to
        float32, dynamic-range, int8 (int8 interface, 16 random calibration images) and float16.
        Then:  edgequant bench OUT_DIR/*.tflite --kernels xnnpack,builtin --threads 1,2 --runs 100
    python benchmarks/host_figures.py table OUT_DIR [--runs 100]
        the same four variants, benchmarked interleaved (XNNPACK and builtin kernels, 1 thread) with
        edgequant's host benchmark; the table is written to docs/results/host_mobilenetv2.md.
    python benchmarks/host_figures.py probe-xnnpack
        converts a one-op model per (op, tensor type) and checks which ones XNNPACK takes in the real
        execution plan, against edgequant.bench.xnnpack_support.SUPPORTED; prints each disagreement.
    python benchmarks/host_figures.py kernels MODEL.tflite [...] [--runs 200] [--threads 1]
        which XNNPACK microkernels the time goes to, sampled with Linux `perf record` (apt: linux-perf);
        answers "does XNNPACK use AVX-512 VNNI here?" by measurement, not from /proc/cpuinfo.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# ---- MobileNetV2 variants -------------------------------------------------------------------------

def mobilenetv2(out_dir: Path) -> list[Path]:
    import keras
    import numpy as np
    import tensorflow as tf

    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        keras.applications.MobileNetV2(weights=None).export(f"{tmp}/saved", verbose=False)

        def convert(**settings) -> bytes:
            converter = tf.lite.TFLiteConverter.from_saved_model(f"{tmp}/saved")
            for key, value in settings.items():
                setattr(converter, key, value)
            return converter.convert()

        def calibration():
            rng = np.random.default_rng(0)
            for _ in range(16):
                yield [rng.uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)]

        opt = [tf.lite.Optimize.DEFAULT]
        variants = {
            "float32": {},
            "dynamic": dict(optimizations=opt),
            "int8": dict(optimizations=opt, representative_dataset=calibration,
                         target_spec=tf.lite.TargetSpec(supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8]),
                         inference_input_type=tf.int8, inference_output_type=tf.int8),
            "float16": dict(optimizations=opt, target_spec=tf.lite.TargetSpec(supported_types=[tf.float16])),
        }
        paths = []
        for name, settings in variants.items():
            path = out_dir / f"mobilenetv2_{name}.tflite"
            tmp_path = path.with_suffix(".tmp")
            tmp_path.write_bytes(convert(**settings))
            os.replace(tmp_path, path)
            paths.append(path)
            print(path, path.stat().st_size)
    return paths


# ---- XNNPACK coverage probe -------------------------------------------------------------------------

def _probe_cases():
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def w(*shape):
        return tf.constant(rng.standard_normal(shape).astype(np.float32) * 0.1)

    return {
        "abs": lambda x: tf.abs(x),
        "add": lambda x: x + x * 0.5 + w(16),
        "avgpool": lambda x: tf.nn.avg_pool2d(x, 2, 2, "VALID"),
        "batchmatmul": lambda x: tf.matmul(tf.reshape(x, [1, 64, 16]), tf.reshape(x, [1, 64, 16]), transpose_b=True),
        "batchmatmul_const": lambda x: tf.matmul(tf.reshape(x, [1, 64, 16]), w(1, 16, 64)),
        "ceil": lambda x: tf.math.ceil(x),
        "concat": lambda x: tf.concat([x, x * 2.0], -1),
        "conv": lambda x: tf.nn.relu(tf.nn.conv2d(x, w(3, 3, 16, 64), 1, "SAME") + w(64)),
        "depth_to_space": lambda x: tf.nn.depth_to_space(x, 2),
        "dwconv": lambda x: tf.nn.depthwise_conv2d(tf.nn.conv2d(x, w(1, 1, 16, 128), 1, "SAME"), w(3, 3, 128, 1),
                                                   [1, 1, 1, 1], "SAME"),
        "div": lambda x: x / (tf.abs(x) + 1.0),
        "elu": lambda x: tf.nn.elu(x),
        "exp": lambda x: tf.exp(x),
        "floor": lambda x: tf.floor(x),
        "fc": lambda x: tf.matmul(tf.reshape(x, [1, 1024]), w(1024, 32)) + w(32),
        "gelu": lambda x: tf.nn.gelu(x),
        "hard_swish": lambda x: x * tf.nn.relu6(x + 3.0) / 6.0,
        "leaky_relu": lambda x: tf.nn.leaky_relu(x, 0.2),
        "log": lambda x: tf.math.log(tf.abs(x) + 1.0),
        "logistic": lambda x: tf.sigmoid(x),
        "maxpool": lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID"),
        "maximum": lambda x: tf.maximum(x, x * 0.3),
        "minimum": lambda x: tf.minimum(x, x * 0.3),
        "mean": lambda x: tf.reduce_mean(x, [1, 2]),
        "mul": lambda x: x * x,
        "neg": lambda x: -x,
        "pad": lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]),
        "reduce_max": lambda x: tf.reduce_max(x, [1, 2]),
        "reduce_min": lambda x: tf.reduce_min(x, [1, 2]),
        "relu": lambda x: tf.nn.relu(tf.concat([x, x], -1)),
        "relu6": lambda x: tf.nn.relu6(x),
        "relu_n1_to_1": lambda x: tf.clip_by_value(x, -1.0, 1.0),
        "reshape": lambda x: tf.reshape(x, [1, 64, 16]) * 2.0,
        "resize_bilinear": lambda x: tf.image.resize(x, [16, 16]),
        "round": lambda x: tf.round(x),
        "rsqrt": lambda x: tf.math.rsqrt(tf.abs(x) + 1.0),
        "sqrt": lambda x: tf.sqrt(tf.abs(x)),
        "square": lambda x: tf.square(x),
        "squared_difference": lambda x: tf.math.squared_difference(x, x * 0.5),
        "sin": lambda x: tf.sin(x),
        "cos": lambda x: tf.cos(x),
        "slice": lambda x: tf.slice(x, [0, 1, 1, 0], [1, 4, 4, 16]),
        "softmax": lambda x: tf.nn.softmax(x),
        "space_to_depth": lambda x: tf.nn.space_to_depth(x, 2),
        "split": lambda x: tf.split(x, 2, -1)[0] * tf.split(x, 2, -1)[1],
        "strided_slice_unit": lambda x: x[:, 1:7, 1:7, :] * 2.0,
        "strided_slice_step2": lambda x: x[:, ::2, 1:7, :],  # falls back: XNNPACK needs strides of 1
        "sub": lambda x: x - x * 0.5,
        "sum": lambda x: tf.reduce_sum(x, [1, 2]),
        "tanh": lambda x: tf.tanh(x),
        "transpose": lambda x: tf.transpose(x, [0, 3, 1, 2]),
        "transpose_conv": lambda x: tf.nn.conv2d_transpose(x, w(3, 3, 32, 16), [1, 16, 16, 32], 2, "SAME"),
        # expected to fall back
        "gather": lambda x: tf.gather(x, [0, 2, 4], axis=3),
        "argmax": lambda x: tf.cast(tf.argmax(x, -1), tf.float32),
        "pack": lambda x: tf.stack([x, x], 1),
        "broadcast_to": lambda x: tf.broadcast_to(tf.reduce_mean(x, [1, 2], keepdims=True), [1, 8, 8, 16]),
        "select": lambda x: tf.where(x > 0, x, x * 0.1),
        "cumsum": lambda x: tf.cumsum(x, axis=3),
        "sign": lambda x: tf.sign(x),
        "l2_normalize": lambda x: tf.math.l2_normalize(x, -1),
        "log_softmax": lambda x: tf.nn.log_softmax(x),
        "resize_nearest": lambda x: tf.image.resize(x, [16, 16], method="nearest"),
        "reduce_prod": lambda x: tf.reduce_prod(x, [1, 2]),
    }


def _uint8_probe_model() -> bytes:
    """A TF1 fake-quant graph converted with inference_type=uint8: a real qu8 model."""
    import numpy as np
    import tensorflow as tf

    tf1 = tf.compat.v1
    rng = np.random.default_rng(0)
    graph = tf.Graph()

    def fq(t):
        return tf.quantization.fake_quant_with_min_max_args(t, -6.0, 6.0)

    def const(*shape):
        return fq(tf.constant(rng.standard_normal(shape).astype(np.float32) * 0.1))

    with graph.as_default():
        x = tf1.placeholder(tf.float32, [1, 8, 8, 16], name="x")
        c = fq(tf.nn.relu6(tf.nn.conv2d(fq(x), const(3, 3, 16, 32), 1, "SAME")))
        d = fq(tf.nn.depthwise_conv2d(c, const(3, 3, 32, 1), [1, 1, 1, 1], "SAME"))
        p = fq(tf.nn.max_pool2d(fq(d + c), 2, 2, "VALID"))
        a = fq(tf.nn.avg_pool2d(p, 2, 2, "VALID"))
        m = fq(tf.reduce_mean(fq(tf.concat([a, a], -1)), [1, 2]))
        f = fq(tf.matmul(m, const(64, 10)))
        s = fq(tf.nn.softmax(fq(f * f)))
        out = tf.identity(fq(tf.reshape(fq(tf.sigmoid(s)), [1, 2, 5])), name="out")
        with tf1.Session(graph=graph) as session:
            converter = tf1.lite.TFLiteConverter.from_session(session, [x], [out])
            converter.inference_type = tf.uint8
            converter.quantized_input_stats = {"x": (128.0, 127.0 / 6)}
            return converter.convert()


def probe_xnnpack() -> int:
    import numpy as np
    import tensorflow as tf

    from edgequant.bench.xnnpack_support import CONDITIONS, classify_operators, is_verified, xnnpack_takes
    from edgequant.model.runtime import execution_plan, load_interpreter
    from edgequant.model.tflite_file import read_tflite

    shape = [1, 8, 8, 16]

    def calibration():
        rng = np.random.default_rng(1)
        for _ in range(4):
            yield [rng.standard_normal(shape).astype(np.float32)]

    opt = [tf.lite.Optimize.DEFAULT]
    settings = {
        "fp32": {},
        "fp16w": dict(optimizations=opt, target_spec=tf.lite.TargetSpec(supported_types=[tf.float16])),
        "dynamic": dict(optimizations=opt),
        "int8": dict(optimizations=opt, representative_dataset=calibration,
                     target_spec=tf.lite.TargetSpec(supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8])),
        "int16x8": dict(optimizations=opt, representative_dataset=calibration, target_spec=tf.lite.TargetSpec(
            supported_ops=[tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8])),
    }
    models: list[tuple[str, bytes]] = []
    for name, fn in _probe_cases().items():
        function = tf.function(tf.autograph.experimental.do_not_convert(fn), input_signature=[tf.TensorSpec(shape, tf.float32)])
        concrete = function.get_concrete_function()
        for variant, kw in settings.items():
            converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], function)
            for key, value in kw.items():
                setattr(converter, key, value)
            try:
                models.append((f"{name}/{variant}", converter.convert()))
            except Exception as exc:  # the converter itself refuses some (op, int16x8) pairs
                print(f"{name}/{variant}: not convertible ({str(exc).splitlines()[0][:90]})")
    models.append(("uint8 graph/qu8", _uint8_probe_model()))

    observed: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for label, data in models:
        info = read_tflite(data)
        try:
            plan = execution_plan(load_interpreter(data))
        except Exception as exc:
            print(f"{label}: does not load ({exc})")
            continue
        for op, cls in zip(info.operators, classify_operators(info)):
            observed[(op.op_type, cls)][op.index in plan.delegated] += 1

    disagreements = 0
    print(f"\n{'op':24} {'class':8} {'delegated/seen':>15}  table")
    for (op_type, cls), counts in sorted(observed.items()):
        taken, seen = counts[True], counts[True] + counts[False]
        predicted = xnnpack_takes(op_type, cls)
        agree = (taken == seen) if predicted else (taken == 0)
        conditional = predicted and op_type in CONDITIONS and not agree
        mark = f"   (some not taken: {CONDITIONS[op_type]})" if conditional else "" if agree else "   <-- DISAGREES"
        agree = agree or conditional
        if not agree:
            disagreements += 1
        print(f"{op_type:24} {cls:8} {taken:>7}/{seen:<7}  {'yes' if predicted else 'no'}"
              f"{'' if is_verified(op_type, cls) else ' (unverified)'}{mark}")
    print(f"\n{disagreements} disagreement(s) between the table and the interpreter")
    return 1 if disagreements else 0


# ---- which XNNPACK kernels run (perf) -----------------------------------------------------------------

_LOOP = """
import sys, numpy as np
from edgequant.model.runtime import load_interpreter
from edgequant.model.inputs import generate_inputs
from edgequant.model.runtime import set_inputs
interp = load_interpreter(sys.argv[1], threads=int(sys.argv[3]))
set_inputs(interp, generate_inputs(interp.get_input_details()))
for _ in range(int(sys.argv[2])):
    interp.invoke()
"""


def kernels(models: list[Path], runs: int, threads: int, top: int) -> int:
    perf = shutil.which("perf")
    if not perf:
        print("perf is not installed (apt-get install linux-perf)", file=sys.stderr)
        return 2
    for model in models:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "perf.data"
            subprocess.run([perf, "record", "-q", "-e", "cpu-clock", "-F", "2000", "-o", str(data), sys.executable,
                            "-c", _LOOP, str(model), str(runs), str(threads)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            report = subprocess.run([perf, "report", "-i", str(data), "--stdio", "--sort", "symbol"],
                                    check=True, capture_output=True, text=True).stdout
        rows = []
        for line in report.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0].endswith("%") and parts[1] == "[.]":
                rows.append((float(parts[0][:-1]), parts[2]))
        xnn = [(p, s) for p, s in rows if s.startswith("xnn_")]
        families = Counter()
        for p, s in xnn:
            families[s.rsplit("__", 1)[-1] if "__" in s else "other"] += p
        print(f"\n{model}: {sum(p for p, _ in xnn):.1f}% of samples in XNNPACK symbols; by ISA suffix: "
              + ", ".join(f"{k} {v:.1f}%" for k, v in families.most_common(6)))
        for p, s in rows[:top]:  # all symbols: builtin kernels (tflite::...) show where XNNPACK does not run
            print(f"  {p:5.1f}%  {s[:110]}")
    return 0


def table(out_dir: Path, runs: int) -> int:
    """MobileNetV2's variants through `edgequant.bench`, interleaved, as a Markdown table in docs/results/."""
    from results_page import write_results

    from edgequant.bench.cpu_features import read_host_features
    from edgequant.bench.host import benchmark
    from edgequant.bench.speed_explanation import explain_speed

    paths = mobilenetv2(out_dir)
    results = benchmark(paths, kernels=["xnnpack", "builtin"], threads=[1], runs=runs, warmup=10)
    host = read_host_features()
    lines = ["| variant | kernels | median ms | p90 ms | std ms | ops taken by XNNPACK | size KiB |",
             "|---|---|---:|---:|---:|---|---:|"]
    for r in results:
        variant = Path(r.model).stem.removeprefix("mobilenetv2_")
        taken = f"{r.delegated_operators}/{r.operators}" if r.kernels == "xnnpack" else "-"
        lines.append(f"| {variant} | {r.kernels} | {r.latency.median_ms:.1f} | {r.latency.p90_ms:.1f} | "
                     f"{r.latency.std_ms:.1f} | {taken} | {r.size_bytes / 1024:.0f} |")
    verdicts = [f"- {Path(p).stem.removeprefix('mobilenetv2_')}: {explain_speed(p, host, name=str(p), results=results).verdict}"
                for p in paths if "float32" not in Path(p).name]
    load = results[0].host.get("loadavg_1min") if results else None
    body = "\n".join(lines) + (
        f"\n\nkeras.applications MobileNetV2 1.0 224 (weights=None), 1 thread, {runs} timed runs per configuration, "
        f"all configurations interleaved round-robin"
        + (f" (load average {load:.1f} when it started)" if isinstance(load, (int, float)) else "")
        + ". The verdicts of `edgequant bench`'s why-section on this host:\n\n" + "\n".join(verdicts))
    print(body)
    write_results("host_mobilenetv2", body)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="figures behind edgequant bench")
    sub = parser.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("mobilenetv2")
    mk.add_argument("out_dir", type=Path)
    tp = sub.add_parser("table")
    tp.add_argument("out_dir", type=Path)
    tp.add_argument("--runs", type=int, default=100)
    sub.add_parser("probe-xnnpack")
    kp = sub.add_parser("kernels")
    kp.add_argument("models", nargs="+", type=Path)
    kp.add_argument("--runs", type=int, default=200)
    kp.add_argument("--threads", type=int, default=1)
    kp.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    if args.command == "mobilenetv2":
        mobilenetv2(args.out_dir)
        return 0
    if args.command == "table":
        return table(args.out_dir, args.runs)
    if args.command == "probe-xnnpack":
        return probe_xnnpack()
    return kernels(args.models, args.runs, args.threads, args.top)


if __name__ == "__main__":
    sys.exit(main())
