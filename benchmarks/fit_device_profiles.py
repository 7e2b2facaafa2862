"""Count instructions on emulated ARM cores and fit the shared cost parameters of the device estimates.

    python benchmarks/fit_device_profiles.py measure   # build the models, count instructions (~1 h)
    python benchmarks/fit_device_profiles.py fit       # fit; print every row's held-out errors, validation
    python benchmarks/fit_device_profiles.py fit --write-profiles   # also write cost_params.json, profiles
    python benchmarks/fit_device_profiles.py fit --write-docs       # also write docs/results/device_fit.md

`measure` builds keras.applications models (weights=None: weights do not
change speed) as fp32 and int8 .tflite files in ~/.cache/edgequant/calibration_models,
counts the instructions of one invoke (total and by class: dot product, FP and
integer multiply-accumulate, other SIMD, loads, stores, scalar) on each row's
core under qemu, with the row's kernel family (XNNPACK or TFLite's builtin
kernels), and writes them with each model's weight and activation bytes to
benchmarks/device_counts.json. That file is kept in the repo, so `fit` needs
neither the models nor qemu.

`fit` reads benchmarks/device_calibration.csv (published figures, each tagged
with its device profile, model, kernel family, threads, OS and use: `fit`, `ratio
only` for int8/fp32 pairs whose absolute times cannot be compared, `uncited, not
used` for figures no reachable source has), fits the few
parameters every device shares (latency_model.CostParams) and validates them the
way the estimates are used: each row is predicted by fits that never saw its
device (device out), its model family (family out: MobileNet, EfficientNet/Det,
Inception/ResNet, NASNet, detectors) or both at once. It prints every row's
errors, each validation's median |error|, share within ±25%, median signed
error and interval coverage, overall and by core type, precision, threads,
kernels, family and device, then the int8/fp32 and 1->4-thread speed-ups and
builtin-kernel estimates. The intervals estimates quote come from the family-out
errors; the coverage printed for a row uses intervals built without the rows its
own fit left out. `--write-docs` writes the same tables to
docs/results/device_fit.md.

After measuring a real device, add its rows to the CSV (same columns) and re-run both.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from edgequant.devices import latency_model  # noqa: E402
from edgequant.devices.core_timings import PRICED  # noqa: E402
from edgequant.devices.profiles import DERIVED_INTERVAL_WIDENING, PROFILE_DIR, load_profile  # noqa: E402

COUNTS_FILE = REPO / "benchmarks" / "device_counts.json"
DEFAULT_CSV = REPO / "benchmarks" / "device_calibration.csv"

# name -> (keras.applications constructor, kwargs, input side)
MODELS = {
    "mobilenet_v1": ("MobileNet", {"alpha": 1.0}, 224),
    "mobilenet_v1_025": ("MobileNet", {"alpha": 0.25}, 224),
    "mobilenet_v2": ("MobileNetV2", {"alpha": 1.0}, 224),
    "mobilenet_v3_large": ("MobileNetV3Large", {"include_preprocessing": False}, 224),
    "mobilenet_v3_small": ("MobileNetV3Small", {"include_preprocessing": False}, 224),
    "inception_v3": ("InceptionV3", {}, 299),
    "nasnet_mobile": ("NASNetMobile", {}, 224),
    "inception_resnet_v2": ("InceptionResNetV2", {}, 299),
    # not in keras.applications: built from its definition by benchmarks/efficientnet_lite.py
    "efficientnet_lite0": ("efficientnet_lite", {}, 224),
    "efficientnet_lite2": ("efficientnet_lite", {}, 260),
    # detectors ending in TFLite_Detection_PostProcess, built by benchmarks/efficientdet_lite.py
    "efficientdet_lite0": ("efficientdet_lite", {}, 320),
    "efficientdet_lite2": ("efficientdet_lite", {}, 448),
    "efficientdet_lite4": ("efficientdet_lite", {}, 640),
}
PRECISIONS = ("fp32", "int8")
FAMILIES = ("xnnpack", "builtin")
# Counted beyond the calibration rows, for the README's tables: int8/fp32 and thread speed-ups
# (XNNPACK) and builtin-kernel estimates, MobileNet v1/v2, on the Raspberry Pi and Pixel profiles.
TABLE_JOBS = [(m, p, d, k) for k in FAMILIES for m in ("mobilenet_v1", "mobilenet_v2") for p in PRECISIONS
              for d in ("pixel4", "rpi3", "rpi4", "pixel3")]
# The speed-up tables' models: those of TABLE_JOBS and the detector the Raspberry Pi 4/5 rows measured.
TABLE_MODELS = ("mobilenet_v1", "mobilenet_v2", "efficientdet_lite0")
BIG_MODELS = ("inception_resnet_v2", "inception_v3", "efficientdet_lite4")  # tens of minutes each emulated on a busy machine


def _priority(job: tuple, calibration: bool) -> int:
    """Emulation order: the calibration rows' MobileNet v1/v2, NASNet, the XNNPACK tables, MobileNet v3,
    the builtin tables, the big models."""
    model, _, _, kernels = job
    if model in BIG_MODELS:
        return 5
    if calibration:
        return {"mobilenet_v1": 0, "mobilenet_v2": 0, "nasnet_mobile": 1}.get(model, 3)
    return 2 if kernels == "xnnpack" else 4


def models_dir() -> Path:
    from edgequant.process.cache import cache_dir

    return cache_dir() / "calibration_models"


def build_model(name: str, precision: str) -> Path:
    """Model `name` of MODELS as a .tflite (int8: full integer, int8 input and output; the detectors:
    uint8 input, float detections)."""
    path = models_dir() / f"{name}_{precision}.tflite"
    if path.is_file():
        return path
    import numpy as np
    import tensorflow as tf

    ctor, kwargs, side = MODELS[name]
    tf.keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as scratch:  # the detector's SavedModel, converted from there
        if ctor == "efficientdet_lite":
            import efficientdet_lite

            converter = efficientdet_lite.converter(name, Path(scratch) / "saved_model")
        elif ctor == "efficientnet_lite":
            import efficientnet_lite

            converter = tf.lite.TFLiteConverter.from_keras_model(efficientnet_lite.build(name, side))
        else:
            model = getattr(tf.keras.applications, ctor)(input_shape=(side, side, 3), weights=None, **kwargs)
            converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if precision == "int8":
            rng = np.random.default_rng(0)
            # Random calibration data: the scales it picks do not change which kernels run or how long they take.
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (
                [rng.random((1, side, side, 3), dtype=np.float32)] for _ in range(4))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if ctor == "efficientdet_lite":  # as published: uint8 image in, float detections out of the post-process
                converter.inference_input_type = tf.uint8
            else:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        data = converter.convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


# A row whose absolute figure cannot be compared (whole-pipeline time, threads not stated) but whose
# int8/fp32 ratio to a row of the same source, device and model can.
RATIO_ONLY = "ratio only"


def read_rows(csv_path: Path) -> list[dict]:
    """Calibration rows with the profile, model, precision, threads and kernels they are tagged with."""
    rows = []
    with open(csv_path, newline="") as f:
        for i, r in enumerate(csv.DictReader(f), start=2):
            rows.append({
                "line": i, "device": r["device"], "profile": r["profile"] or None, "model": r["model_key"] or None,
                "precision": "int8" if r["precision"].lower().startswith("int8") else "fp32",
                "threads": int(r["threads_n"]) if r["threads_n"] else None, "kernels": r["kernels"],
                "os_bits": int(r["os_bits"]), "published_ms": float(r["latency_ms"]),
                "skip": None if r["use"] == "fit" or r["use"].startswith(RATIO_ONLY) else r["use"].removeprefix(
                    "not estimated: "),
                "ratio_only": r["use"].startswith(RATIO_ONLY), "uncited": r["use"].startswith("uncited"),
                "label": r["model"], "source": r["source_url_or_repo_path"],
                "end2end_bench": "end2end" in r["runtime_and_version"],
            })
    return rows


def count_key(model: str, precision: str, profile, kernels: str) -> str:
    return f"{model}|{precision}|{profile.qemu_cpu}|{profile.cpu_implementer:#x}:{profile.cpu_part:#x}|{kernels}"


def measure(args) -> None:
    from edgequant.devices.arm.install import ensure_arm_environment
    from edgequant.devices.arm.runner import run_on_device
    from edgequant.devices.layers import serial_instructions

    env = ensure_arm_environment(progress=print)
    counts = json.loads(COUNTS_FILE.read_text()) if COUNTS_FILE.is_file() else {"counts": {}, "models": {}}
    # the uncited rows too: the fit prints their estimates beside them
    jobs = [(r["model"], r["precision"], r["profile"], r["kernels"]) for r in read_rows(Path(args.csv))
            if not r["skip"] or r["uncited"]]
    jobs = [(j, True) for j in jobs] + [(j, False) for j in TABLE_JOBS if j not in jobs]
    jobs = [j for j, calibration in sorted(jobs, key=lambda jc: _priority(*jc))]
    for model, precision, profile_name, kernels in dict.fromkeys(jobs):
        if args.skip and re.search(args.skip, model):
            continue
        profile = load_profile(profile_name)
        key = count_key(model, precision, profile, kernels)
        if key in counts["counts"] and not (args.force and re.search(args.only, key)):
            continue
        path = build_model(model, precision)
        record_model(counts, model, precision)
        start = time.monotonic()
        run = run_on_device(path, profile, kernels=kernels, env=env)
        counts["counts"][key] = {
            "instructions": run.instructions_per_invoke,
            "litert": env.litert_version,
            "mix": run.instruction_mix,
            "top_kernels": [[k.symbol, round(k.share, 3)] for k in run.kernel_shares[:4]],
            "serial_instructions": serial_instructions([layer.to_dict() for layer in run.layers]),
        }
        print(f"{key:70s} {run.instructions_per_invoke:>14,d} insns  ({time.monotonic() - start:.0f} s emulated)",
              flush=True)
        _save_counts(counts)


def record_model(counts: dict, model: str, precision: str) -> None:
    """The model's weight and activation bytes, its node count and its streaming nodes' bytes in `counts`."""
    from edgequant.model.tflite_file import read_tflite

    info = read_tflite(build_model(model, precision))
    counts["models"][f"{model}|{precision}"] = {
        "weight_bytes": info.weight_bytes, "activation_bytes": info.activation_bytes,
        "operators": len(info.operators), "sha256": info.sha256,
        # the bytes each streaming node reads and writes, by kind (node order does not matter to the cost model)
        "streaming_nodes": {kind: sorted(b for k, b in latency_model.streaming_nodes(info) if k == kind)
                            for kind in ("stream", "depthwise")},
    }


def sizes(args) -> None:
    """Record the streaming nodes' bytes of every counted model that lacks them (builds the model; no emulation)."""
    counts = json.loads(COUNTS_FILE.read_text())
    for key, entry in list(counts["models"].items()):
        model, precision = key.split("|")
        if "streaming_nodes" not in entry and not (args.skip and re.search(args.skip, model)):
            record_model(counts, model, precision)
            if counts["models"][key]["sha256"] != entry["sha256"]:  # sizes come from the architecture alone
                print(f"{key}: rebuilt with other bytes than the file counted (sha256); same architecture")
                counts["models"][key]["sha256"] = entry["sha256"]
            nodes = counts["models"][key]["streaming_nodes"]
            print(f"{key:30s} {sum(nodes['stream']) / 1e6:.1f} MB through streaming nodes, "
                  f"{sum(nodes['depthwise']) / 1e6:.1f} MB through depthwise convolutions", flush=True)
            _save_counts(counts)


def _save_counts(counts: dict) -> None:
    counts["counts"] = dict(sorted(counts["counts"].items()))
    counts["models"] = dict(sorted(counts["models"].items()))
    tmp = COUNTS_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(counts, indent=1) + "\n")
    os.replace(tmp, COUNTS_FILE)


# The shared parameters (latency_model.CostParams): a price per instruction class, in-order and
# builtin-kernel factors, memory efficiency, contention, and the XNNPACK delegate factor (rows measured with
# XNNPACK's own end2end_bench are predicted without it). Fitted in log space with weak priors at
# "as published" (price 1), so a class the rows barely exercise keeps its published timing. The dot-product
# price has a looser prior: only int8 rows on dot-product cores price it (2 absolute rows, 4 ratio pairs), and at
# 0.7 the prior outweighed their consistent ~10% error (left out: int8/fp32 ratios -9.6% at 0.7, -6.9% at 1.5).
# The delegate factor has no published value to centre on: nothing says how much slower the interpreter's
# delegate runs XNNPACK's kernels than end2end_bench does. So its prior is nearly flat (sigma 2) and the 8 rows
# measured through the interpreter set it; at 0.5 the prior held it at 1.20 and those rows stayed 6-31% too fast.
CLASSES = PRICED
FACTORS = ("in_order_factor", "builtin_factor", "memory_efficiency", "delegate_factor")
PRIOR_SIGMA = {**dict.fromkeys(CLASSES, 0.7), "dot": 1.5, "in_order_factor": 1.0, "builtin_factor": 0.5,
               "memory_efficiency": 1.5, "delegate_factor": 2.0}
CONTENTION_PRIOR = (0.05, 0.1)  # mean, sigma


def usable_rows(rows: list[dict], counts: dict) -> list[tuple[dict, latency_model.Workload]]:
    """The rows to fit, with their workloads; a row without counts yet is marked skipped."""
    out = []
    for r in rows:
        if r["skip"] or r["ratio_only"]:
            continue
        w = workload_for(r, counts)
        if w is None:
            r["skip"] = "no instruction counts in device_counts.json (run `measure`)"
            continue
        out.append((r, w))
    return out


# Threads assumed for a ratio-only pair that does not state them: one core's int8/fp32 ratio is
# what the dot-product price sets (the fit prints the 4-thread ratio beside it, as a sensitivity).
RATIO_THREADS = 1


def ratio_pairs(rows: list[dict], counts: dict) -> list[tuple]:
    """(fp32 row, its workload, int8 row, its workload) of the ratio-only rows with counts; one pair per
    source, device and model."""
    by: dict[tuple, dict] = {}
    for r in rows:
        if r["ratio_only"]:
            by.setdefault((r["source"], r["profile"], r["model"]), {})[r["precision"]] = r
    pairs = []
    for pair in by.values():
        if set(pair) != {"fp32", "int8"}:
            raise SystemExit(f"ratio-only rows come in fp32/int8 pairs: line {next(iter(pair.values()))['line']}")
        f, i = ({**pair[p], "threads": pair[p]["threads"] or RATIO_THREADS} for p in ("fp32", "int8"))
        wf, wi = workload_for(f, counts), workload_for(i, counts)
        if wf is None or wi is None:
            for r in (pair["fp32"], pair["int8"]):
                r["skip"] = "no instruction counts in device_counts.json (run `measure`)"
            continue
        pairs.append((f, wf, i, wi))
    return pairs


def ratio_log_error(pair: tuple, params: latency_model.CostParams) -> float:
    """log of the estimated int8/fp32 ratio over the published one."""
    import math

    f, wf, i, wi = pair
    return math.log(predict(i, wi, params) / predict(f, wf, params) * f["published_ms"] / i["published_ms"])


def workload_for(row: dict, counts: dict) -> latency_model.Workload | None:
    profile = load_profile(row["profile"])
    entry = counts["counts"].get(count_key(row["model"], row["precision"], profile, row["kernels"]))
    model = counts["models"].get(f"{row['model']}|{row['precision']}")
    if entry is None or model is None:
        return None
    return latency_model.Workload(entry["instructions"], entry["mix"], model["weight_bytes"],
                                  model["activation_bytes"], row["kernels"],
                                  serial_instructions=entry.get("serial_instructions", 0),
                                  nodes=model.get("operators", 0),
                                  streaming_nodes=tuple((kind, b) for kind, node_bytes in
                                                        model.get("streaming_nodes", {}).items() for b in node_bytes))


# A cost-model variant: the structural choices the fit tries. `fixed` holds CostParams fields at a value instead
# of fitting them. MODEL is the one shipped; `fit --sensitivity` validates every variant the same way and
# writes what each does to the three validation figures.
@dataclasses.dataclass(frozen=True)
class Variant:
    label: str
    fixed: dict = dataclasses.field(default_factory=dict)
    free: tuple = ()  # OPTIONAL parameters this variant fits (the others stay at their OPTIONAL value)

    def held(self) -> dict:
        return {**{k: v for k, v in OPTIONAL.items() if k not in self.free}, **self.fixed}


# Parameters only some variants fit, and their value when not fitted (the term switched off).
OPTIONAL = {"node_kcycles": 0.0, "node_sync_kcycles": 0.0, "stream_factor": 1.0}
NODES = ("node_kcycles", "node_sync_kcycles")

STREAM = {"streaming": True}
STREAM_DW = {"streaming": True, "streaming_depthwise": True}
# On-chip capacity: 1 MiB, the middle of the caches the Linux device trees give for the Raspberry Pi boards (0.5 MiB
# bcm2837 L2, 1 MiB bcm2711 L2, 0.5 + 2 MiB bcm2712 L2 and L3; linux 6.12 arch/arm*/boot/dts/broadcom); 0.5 and 2 MiB
# are validated beside it.
ON_CHIP = {"on_chip_kb": 1024.0}
VARIANTS = (
    Variant("p 3, delegate factor, streaming and depthwise nodes past 1 MiB on chip, at their own fitted share of "
            "bandwidth", {"roofline_p": 3.0, **STREAM_DW, **ON_CHIP}, ("stream_factor",)),
    Variant("the same, past 0.5 MiB on chip", {"roofline_p": 3.0, **STREAM_DW, "on_chip_kb": 512.0},
            ("stream_factor",)),
    Variant("the same, past 2 MiB on chip", {"roofline_p": 3.0, **STREAM_DW, "on_chip_kb": 2048.0},
            ("stream_factor",)),
    Variant("the same, past 1 MiB on chip, at DRAM bandwidth", {"roofline_p": 3.0, **STREAM_DW, **ON_CHIP}),
    Variant("the same, past 1 MiB on chip, no delegate factor",
            {"roofline_p": 3.0, "delegate_factor": 1.0, **STREAM_DW, **ON_CHIP}),
    Variant("p 3, delegate factor, every streaming and depthwise node's bytes at DRAM bandwidth (before: nothing on "
            "chip)", {"roofline_p": 3.0, **STREAM_DW}),
    Variant("smoothed roofline (p 3), XNNPACK delegate factor: no streaming term", {"roofline_p": 3.0}),
    Variant("compute and memory added (p 1), delegate factor", {"roofline_p": 1.0}),
    Variant("p fitted, delegate factor", {}),
    Variant("p fitted, no delegate factor", {"delegate_factor": 1.0}),
    Variant("p 3, delegate factor, weights read by every thread", {"roofline_p": 3.0, "weights_per_thread": True}),
    Variant("p fitted, delegate factor, weights read by every thread", {"weights_per_thread": True}),
    Variant("p 3, delegate factor, a cost per node (dispatch, and thread-pool sync per extra thread)",
            {"roofline_p": 3.0}, NODES),
    Variant("p 3, no delegate factor, a cost per node", {"roofline_p": 3.0, "delegate_factor": 1.0}, NODES),
    Variant("p 3, delegate factor, streaming nodes' bytes (not depthwise) added", {"roofline_p": 3.0, **STREAM}),
    Variant("p 3, no delegate factor, streaming and depthwise bytes added",
            {"roofline_p": 3.0, "delegate_factor": 1.0, **STREAM_DW}),
    Variant("p fitted, delegate factor, streaming and depthwise bytes added", STREAM_DW),
    Variant("p 3, delegate factor, streaming and depthwise bytes added, a cost per node",
            {"roofline_p": 3.0, **STREAM_DW}, NODES),
    Variant("p 3, delegate factor, streaming and depthwise bytes added at their own fitted share of bandwidth",
            {"roofline_p": 3.0, **STREAM_DW}, ("stream_factor",)),
)
MODEL = VARIANTS[0]

# Every fitted parameter: (CostParams field, fitted in log space, start, lower, upper bound, prior mean, prior sigma)
# in the fitted space. Log-space parameters are multipliers with their prior at 1 (as published).
ROOFLINE_PRIOR = (2.0, 2.0)  # p between adding (1) and taking the slower (large): nothing published, a weak prior
# Per-node costs in thousands of cycles: nothing published for these runtimes' dispatch and barrier on these boards,
# so a weak prior at 0 (the term off) that the rows must overcome; a few kilocycles is a typical barrier.
NODE_PRIOR = (0.0, 30.0)
PARAMETERS = (
    [(f"price.{c}", True, 0.0, -4.0, 4.0, 0.0, PRIOR_SIGMA[c]) for c in CLASSES]
    + [(f, True, 0.0, -4.0, 4.0, 0.0, PRIOR_SIGMA[f]) for f in FACTORS]
    + [("contention", False, CONTENTION_PRIOR[0], 0.0, 0.5, *CONTENTION_PRIOR),
       ("roofline_p", False, ROOFLINE_PRIOR[0], 1.0, 8.0, *ROOFLINE_PRIOR)]
    + [(f, False, 1.0, 0.0, 500.0, *NODE_PRIOR) for f in NODES]
    + [("stream_factor", True, 0.0, -3.0, 3.0, 0.0, 1.0)]
)


def unpack(x, variant: Variant) -> latency_model.CostParams:
    import math

    values = variant.held()
    free = [p for p in PARAMETERS if p[0] not in values]
    for (name, log, *_), v in zip(free, x):
        values[name] = math.exp(v) if log else float(v)
    price = {c: values.pop(f"price.{c}") for c in CLASSES}
    return latency_model.CostParams(price=price, **values)


def fit_params(data: list[tuple[dict, latency_model.Workload]], ratios: list[tuple] = (),
               variant: Variant = MODEL) -> latency_model.CostParams:
    import numpy as np
    from scipy.optimize import least_squares

    free = [p for p in PARAMETERS if p[0] not in variant.held()]
    x0 = np.array([p[2] for p in free])
    bounds = (np.array([p[3] for p in free]), np.array([p[4] for p in free]))

    def residuals(x):
        p = unpack(x, variant)
        res = [np.log(predict(r, w, p) / r["published_ms"]) for r, w in data]
        res += [ratio_log_error(pair, p) for pair in ratios]
        res += [(v - spec[5]) / spec[6] for spec, v in zip(free, x)]
        return res

    return unpack(least_squares(residuals, x0, bounds=bounds, method="trf").x, variant)


def predict(row: dict, workload: latency_model.Workload, params: latency_model.CostParams) -> float:
    return latency_model.estimate_ms(workload, load_profile(row["profile"]), row["threads"], params,
                                     end2end_bench=row.get("end2end_bench", False))


# Model families. Leave-one-family-out fits without every row of a family and predicts them: the estimate of a
# model the fit has never seen, which is what a user's model is. The Pixel 6 ratio pairs belong to their model's
# family like any row.
MODEL_FAMILIES = {"MobileNet": ("mobilenet",), "EfficientNet/Det": ("efficientnet", "efficientdet"),
                  "Inception/ResNet": ("inception", "resnet"), "NASNet": ("nasnet",), "detectors": ("ssd",)}


def model_family(model: str) -> str:
    return next(f for f, prefixes in MODEL_FAMILIES.items() if model.startswith(prefixes))


# How the estimates are validated: the group (device, model family; None for any) a row is predicted with.
# The fit for a group leaves out every row of its device and every row of its family ("both out": a model
# family on a device the fit has seen neither of).
VALIDATIONS = {
    "device out": lambda r: (r["profile"], None),
    "family out": lambda r: (None, model_family(r["model"])),
    "both out": lambda r: (r["profile"], model_family(r["model"])),
}
# The errors the shipped intervals are built from: a user's model is, as a rule, of a family the fit never saw,
# on a shipped device (a device made with `devices new` widens the interval further).
INTERVAL_VALIDATION = "family out"
NOMINAL_COVERAGE = 0.90  # of the bands latency_model.interval_from_errors draws (90th percentile of |error|)


def leaves_out(group: tuple, row: dict) -> bool:
    """Whether the fit that predicts `group` leaves `row` out."""
    device, family = group
    return row["profile"] == device or (family is not None and model_family(row["model"]) == family)


def held_out(data, ratios, validation: str, variant: Variant = MODEL) -> tuple[list[float], list[float]]:
    """log(estimate / published) of every row and log error of every ratio pair, each predicted by a fit
    without the rows (and pairs) `validation` leaves out for it."""
    import math

    group_of = VALIDATIONS[validation]
    out, ratio_out = [0.0] * len(data), [0.0] * len(ratios)
    for g in dict.fromkeys([group_of(r) for r, _ in data] + [group_of(pair[0]) for pair in ratios]):
        params = fit_params([d for d in data if not leaves_out(g, d[0])],
                            [pair for pair in ratios if not leaves_out(g, pair[0])], variant)
        for i, (r, w) in enumerate(data):
            if group_of(r) == g:
                out[i] = math.log(predict(r, w, params) / r["published_ms"])
        for j, pair in enumerate(ratios):
            if group_of(pair[0]) == g:
                ratio_out[j] = ratio_log_error(pair, params)
    return out, ratio_out


def group_keys(row: dict) -> list[str]:
    core = load_profile(row["profile"]).core
    return latency_model.interval_group(core, row["precision"], row["kernels"])


def interval_table(data, log_errors, ratios=(), ratio_errors=(), keep=lambda r: True, symmetric=None) -> dict:
    """Interval bands by group from held-out errors of the rows `keep` accepts. int8 on dot-product cores has
    few absolute rows: its band adds to them the fp32 rows' errors on those cores plus each held-out int8/fp32
    ratio error, widened for the number of absolute rows and ratio pairs (not for the fp32 rows)."""
    groups: dict[str, list[float]] = {}
    for (r, _), e in zip(data, log_errors):
        if keep(r):
            for g in group_keys(r):
                groups.setdefault(g, []).append(e)
    table = {g: latency_model.interval_from_errors(v, symmetric=symmetric) for g, v in sorted(groups.items())}
    for kernels in latency_model.KERNEL_FAMILIES:
        ratio_errs = [e for pair, e in zip(ratios, ratio_errors) if keep(pair[0]) and pair[0]["kernels"] == kernels]
        fp32, absolute = groups.get(f"dot|fp32|{kernels}", []), groups.get(f"dot|int8|{kernels}", [])
        if len(absolute) < latency_model.MIN_INTERVAL_ROWS and fp32 and ratio_errs:
            table[f"dot|int8|{kernels}"] = latency_model.interval_from_errors(
                absolute + [f + e for f in fp32 for e in ratio_errs], evidence=len(absolute) + len(ratio_errs),
                symmetric=symmetric)
    return table


def coverage(data, log_errors, ratios, ratio_errors, validation: str, params, symmetric=None) -> list[bool]:
    """Whether each row's held-out interval holds its published figure; the interval comes from the same
    validation's errors on the rows the row's own fit left in (none of its device or family, as it applies)."""
    import dataclasses
    import math

    group_of = VALIDATIONS[validation]
    tables: dict[tuple, dict] = {}
    out = []
    for (r, _), e in zip(data, log_errors):
        g = group_of(r)
        if g not in tables:
            tables[g] = interval_table(data, log_errors, ratios, ratio_errors, keep=lambda x: not leaves_out(g, x),
                                       symmetric=symmetric)
        trial = dataclasses.replace(params, intervals=tables[g])
        low, high, _ = latency_model.interval_ms(math.exp(e) * r["published_ms"], load_profile(r["profile"]).core,
                                                 r["precision"], r["kernels"], params=trial)
        out.append(low <= r["published_ms"] <= high)
    return out


def summary(errors_pct: list[float], covered: list[bool] | None = None) -> dict:
    import statistics

    if not errors_pct:
        return {"rows": 0}
    return {"rows": len(errors_pct), "median_abs": statistics.median(abs(e) for e in errors_pct),
            "within25": sum(abs(e) <= 25 for e in errors_pct) / len(errors_pct),
            "signed": statistics.median(errors_pct),
            "coverage": sum(covered) / len(covered) if covered else None}


def summary_text(s: dict) -> str:
    if not s["rows"]:
        return "-"
    cov = f" / {s['coverage']:.0%}" if s.get("coverage") is not None else ""
    return f"{s['median_abs']:.1f}% / {s['within25']:.0%} / {s['signed']:+.1f}%{cov}"


# Targets of leave-one-model-family-out (issue 26): median |error|, share within ±25%, |median signed|, coverage.
TARGETS = {"median_abs": 15.0, "within25": 0.80, "signed": 10.0, "coverage": 0.85}


def meets(s: dict) -> dict[str, bool]:
    return {"median_abs": s["median_abs"] <= TARGETS["median_abs"], "within25": s["within25"] >= TARGETS["within25"],
            "signed": abs(s["signed"]) <= TARGETS["signed"], "coverage": (s["coverage"] or 0) >= TARGETS["coverage"]}


def validate(data, ratios, variant: Variant = MODEL) -> dict:
    """The three validations: per validation, held-out log errors of rows and ratio pairs, and coverage."""
    params = fit_params(data, ratios, variant)
    out = {"params": params}
    for v in VALIDATIONS:
        errs, ratio_errs = held_out(data, ratios, v, variant)
        out[v] = {"errors": errs, "ratio_errors": ratio_errs,
                  "covered": coverage(data, errs, ratios, ratio_errs, v, params),
                  # the other way of drawing the band, for comparison
                  "covered_other": coverage(data, errs, ratios, ratio_errs, v, params,
                                            symmetric=not latency_model.SYMMETRIC_INTERVALS)}
    return out


def fit(args) -> None:
    import math

    counts = json.loads(COUNTS_FILE.read_text())
    rows = read_rows(Path(args.csv))
    data = usable_rows(rows, counts)
    ratios = ratio_pairs(rows, counts)
    result = validate(data, ratios)
    chosen = result[INTERVAL_VALIDATION]
    params = latency_model.CostParams(**{
        **result["params"].to_dict(),
        "intervals": interval_table(data, chosen["errors"], ratios, chosen["ratio_errors"]),
        "source": f"fitted on {len(data)} rows and {len(ratios)} int8/fp32 ratio pairs of {args.csv_name}; "
                  f"intervals from the {INTERVAL_VALIDATION} errors"})
    pct = {v: [math.expm1(e) * 100 for e in result[v]["errors"]] for v in VALIDATIONS}
    ratio_pct = {v: [math.expm1(e) * 100 for e in result[v]["ratio_errors"]] for v in VALIDATIONS}
    overall = {v: summary(pct[v], result[v]["covered"]) for v in VALIDATIONS}

    print("Shared parameters (all rows):")
    print("  " + parameters_text(params) + "\n")
    print(f"{'line':>4s} {'profile':10s} {'model':20s} {'prec':4s} {'k':8s} {'thr':>3s} {'published':>9s} {'fit':>8s} "
          + " ".join(f"{v:>11s}" for v in VALIDATIONS))
    for i, (r, w) in enumerate(data):
        est = predict(r, w, params)
        cells = " ".join(f"{pct[v][i]:>+8.1f}%{' ' if result[v]['covered'][i] else '!'} " for v in VALIDATIONS)
        print(f"{r['line']:>4d} {r['profile']:10s} {r['model'][:20]:20s} {r['precision']:4s} {r['kernels']:8s} "
              f"{r['threads']:>3d} {r['published_ms']:>9.1f} {(est / r['published_ms'] - 1) * 100:>+7.1f}% {cells}")
    print("  (! : the held-out interval misses the published figure)")
    for j, (f, wf, i, wi) in enumerate(ratios):
        est = predict(i, wi, params) / predict(f, wf, params)
        four = [{**r, "threads": 4} for r in (f, i)]
        est4 = predict(four[1], wi, params) / predict(four[0], wf, params)
        print(f"{f['line']:>4d} {f['profile']:10s} {f['model'][:20]:20s} int8/fp32 ratio only ({RATIO_THREADS}t assumed): "
              f"published {i['published_ms'] / f['published_ms']:.2f}, fit {est:.2f} (4t {est4:.2f}), held out "
              + ", ".join(f"{v} {ratio_pct[v][j]:+.1f}%" for v in VALIDATIONS))
    for r in rows:
        if r["uncited"]:
            w = workload_for(r, counts)
            est = f"estimate {predict(r, w, params):.1f} ms" if w else "no counts"
            print(f"{r['line']:>4d} {r['profile']:10s} {r['model'][:20]:20s} {r['precision']:4s} {r['kernels']:8s} "
                  f"{r['threads']:>3d} {r['published_ms']:>9.1f}  {est} (uncited, not used)")
        elif r["skip"]:
            print(f"{r['line']:>4d} {(r['profile'] or '-'):10s} {r['label'][:20]:20s} not estimated: {r['skip']}")

    groups = breakdown(data, pct, result)
    tried = sensitivity(data, ratios) if args.sensitivity else []
    print("\nValidation (median |error| / within ±25% / median signed / interval coverage, "
          f"nominal {NOMINAL_COVERAGE:.0%}):")
    for v in VALIDATIONS:
        print(f"  {v:12s} {overall[v]['rows']:>3d} rows  {summary_text(overall[v])}")
    other = "asymmetric 5th-95th percentile" if latency_model.SYMMETRIC_INTERVALS else "symmetric"
    print(f"  coverage with the {other} band instead: " + ", ".join(
        f"{v} {sum(result[v]['covered_other']) / len(data):.0%}" for v in VALIDATIONS))
    if ratios:
        print("  int8/fp32 ratio pairs (median |error| / within ±25% / median signed): "
              + "; ".join(f"{v} {summary_text(summary(ratio_pct[v]))}" for v in VALIDATIONS))
    for label, rows_by in groups.items():
        print(f"\n{label}:")
        for key, by_v in rows_by.items():
            print(f"  {key:26s} " + "  ".join(f"{v}: {summary_text(s)} ({s['rows']})" for v, s in by_v.items()))
    if tried:
        print("\nCost-model variants (validation: median |error| / within ±25% / median signed / coverage):")
        for variant, fitted, by_v in tried:
            print(f"  {variant.label}{' (shipped)' if variant == MODEL else ''}\n    " + "\n    ".join(
                f"{v:12s} {summary_text(s)}" for v, s in by_v.items()) + f"\n    fitted: {parameters_text(fitted)}")
    import contextlib
    import io

    tables = io.StringIO()
    with contextlib.redirect_stdout(tables):
        print_tables(counts, rows, params, ratios)
    print(tables.getvalue(), end="")

    if args.write_docs:
        write_results(Path(args.write_docs), data, rows, params, pct, ratio_pct, result, overall, groups, ratios,
                      tried, tables.getvalue())
        write_readme_block(README, overall)
        print(f"\nwrote {args.write_docs} and the device-fit block of {README.relative_to(REPO)}")
    if args.write_profiles:
        latency_model.PARAMS_FILE.write_text(json.dumps(params.to_dict(), indent=1) + "\n")
        lodo_pct = {}
        for (r, _), e in zip(data, pct["device out"]):
            lodo_pct.setdefault(r["profile"], []).append(abs(e))
        for name in sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")):
            if load_profile(name).emulated:
                write_cost(name, lodo_pct.get(name, []), rows)
        print(f"\nwrote {latency_model.PARAMS_FILE} and the cost: block of the profiles in {PROFILE_DIR}")


def sensitivity(data, ratios) -> list[tuple]:
    """(variant, its fit on every row, its summary per validation) for every cost-model variant."""
    import math

    out = []
    for variant in VARIANTS:
        result = validate(data, ratios, variant)
        out.append((variant, result["params"], {
            v: summary([math.expm1(e) * 100 for e in result[v]["errors"]], result[v]["covered"]) for v in VALIDATIONS}))
    return out


def parameters_text(params) -> str:
    return ("price per class: " + ", ".join(f"{c} {v:.2f}" for c, v in params.price.items())
            + f"; in-order factor {params.in_order_factor:.2f}, builtin factor {params.builtin_factor:.2f}, "
              f"memory efficiency {params.memory_efficiency:.2f}, contention {params.contention:.3f}, "
              f"XNNPACK delegate factor {params.delegate_factor:.2f}, roofline p {params.roofline_p:.2f}"
            + (f", {params.node_kcycles:.1f} + {params.node_sync_kcycles:.1f} per extra thread kilocycles per node"
               if params.node_kcycles or params.node_sync_kcycles else "")
            + (f", streaming share of bandwidth x{params.stream_factor:.2f}" if params.stream_factor != 1.0 else "")
            + (f", {params.on_chip_kb / 1024:g} MiB on chip" if params.on_chip_kb else ""))


def breakdown(data, pct, result) -> dict[str, dict[str, dict]]:
    """Per grouping (core type, precision, threads, kernels, model family, device), each group's summary in
    each validation."""
    keys = {
        "By core type": lambda r: load_profile(r["profile"]).core,
        "By precision": lambda r: r["precision"] + (
            " (dot-product core)" if latency_model.timings(load_profile(r["profile"]).core).dot_product else ""),
        "By thread count": lambda r: f"{r['threads']} thread{'s' * (r['threads'] > 1)}",
        "By kernel family": lambda r: r["kernels"],
        "By model family": lambda r: model_family(r["model"]),
        "By device": lambda r: r["profile"],
    }
    out = {}
    for label, key in keys.items():
        out[label] = {}
        for k in sorted(dict.fromkeys(key(r) for r, _ in data), key=str):
            idx = [i for i, (r, _) in enumerate(data) if key(r) == k]
            out[label][k] = {v: summary([pct[v][i] for i in idx], [result[v]["covered"][i] for i in idx])
                             for v in VALIDATIONS}
    return out


RESULTS_MD = REPO / "docs" / "results" / "device_fit.md"
README = REPO / "README.md"
README_START, README_END = "<!-- device-fit:start -->", "<!-- device-fit:end -->"
TARGET_TEXT = {"median_abs": "median \\|error\\| ≤ 15%", "within25": "≥ 80% within ±25%",
               "signed": "median signed within ±10%", "coverage": "coverage ≥ 85%"}


def summary_cells(s: dict) -> str:
    """One validation's four figures as table cells: median |error|, within ±25%, median signed, coverage."""
    return f"{s['median_abs']:.1f}% | {s['within25']:.0%} | {s['signed']:+.1f}% | {s['coverage']:.0%}"


def targets_text(overall: dict) -> str:
    """Each family-out target, and whether the fit meets it."""
    return "Family-out targets: " + ", ".join(
        f"{TARGET_TEXT[k]} ({'met' if met else 'not met'})" for k, met in meets(overall["family out"]).items())


def write_readme_block(path: Path, overall: dict) -> None:
    """The README's block between README_START and README_END: the three validations and the targets."""
    lines = [README_START,
             "| device estimates held out by | median \\|error\\| | within ±25% | median signed | interval coverage |",
             "|---|---:|---:|---:|---:|"]
    for v in VALIDATIONS:
        lines.append(f"| {v.removesuffix(' out')} | {summary_cells(overall[v])} |")
    # the blank line ends the table; the end marker shares the last line to keep the block to 8 lines
    lines += ["", targets_text(overall) + f"; nominal coverage {NOMINAL_COVERAGE:.0%}. Written by "
              "`benchmarks/fit_device_profiles.py fit --write-docs`: [the device model's fit]"
              f"(docs/results/device_fit.md). {README_END}"]
    text = path.read_text()
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.S)
    if len(pattern.findall(text)) != 1:
        raise SystemExit(f"{path}: no single {README_START} ... {README_END} block to replace")
    text = pattern.sub(lambda m: "\n".join(lines), text)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def provenance() -> str:
    """Date, commit and machine of a generated results file."""
    import datetime
    import platform
    import subprocess

    def git(*a):
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " with uncommitted changes"
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"Generated by `python benchmarks/fit_device_profiles.py fit --sensitivity --write-docs` on {when}, commit {commit}, "
            f"on {platform.machine()} ({cpu}, {os.cpu_count()} cores). The fit is a pure function of "
            f"benchmarks/device_calibration.csv and benchmarks/device_counts.json: the machine does not change it.")


def write_results(path: Path, data, rows, params, pct, ratio_pct, result, overall, groups, ratios, tried,
                  tables: str) -> None:
    """docs/results/device_fit.md: the validation tables, every row's held-out errors, the parameters."""
    vs = list(VALIDATIONS)
    cell = "median \\|error\\| / within ±25% / median signed / interval coverage"
    lines = ["# Device estimates: fit and validation", "", provenance(), "",
             f"{len(data)} published rows and {len(ratios)} int8/fp32 ratio pairs are fitted "
             f"(benchmarks/device_calibration.csv, use `fit` and `ratio only`). Each validation refits the shared "
             "parameters without the rows it holds out and predicts them: **device out** holds out every row of the "
             "predicted row's device, **family out** every row of its model family "
             f"({', '.join(MODEL_FAMILIES)}), **both out** both at once. Errors are estimate / published − 1 "
             "(negative: the estimate is too fast). Coverage: the share of rows whose published figure lies in the "
             "interval built from the same validation's errors on the rows that fit kept (nominal "
             f"{NOMINAL_COVERAGE:.0%}, widened where rows are few); the shipped intervals are built from the "
             f"**{INTERVAL_VALIDATION}** errors of every row.", "",
             "## Validation", "",
             "<!-- --8<-- [start:validation] -->",  # docs/guides/devices.md includes this part
             "| validation | rows | median \\|error\\| | within ±25% | median signed | interval coverage |",
             "|---|---:|---:|---:|---:|---:|"]
    for v in vs:
        lines.append(f"| {v} | {overall[v]['rows']} | {summary_cells(overall[v])} |")
    other = ("the asymmetric 5th–95th percentile band around the median error (before issue 26)"
             if latency_model.SYMMETRIC_INTERVALS else "the symmetric band")
    lines += ["", f"Intervals are {'± the 90th percentile of |error| around the estimate' if latency_model.SYMMETRIC_INTERVALS else 'the 5th–95th percentile band of the errors'} "
              f"(latency_model.interval_from_errors). Coverage with {other} instead: "
              + ", ".join(f"{v} {sum(result[v]['covered_other']) / len(data):.0%}" for v in vs) + "."]
    lines += ["", targets_text(overall) + ".", "<!-- --8<-- [end:validation] -->"]
    if ratios:
        lines += ["", "int8/fp32 ratio pairs (" + ", ".join(f"{f['profile']} {f['model']}" for f, *_ in ratios)
                  + "), " + "; ".join(f"{v}: {summary_text(summary(ratio_pct[v]))}" for v in vs)
                  + " (median |error| / within ±25% / median signed)."]
    for label, by_key in groups.items():
        lines += ["", f"## {label}", "", f"Each cell: {cell}.", "",
                  "| group | rows | " + " | ".join(vs) + " |", "|---|---:|" + "---|" * len(vs)]
        for key, by_v in by_key.items():
            lines.append(f"| {key} | {by_v[vs[0]]['rows']} | " + " | ".join(summary_text(by_v[v]) for v in vs) + " |")
    lines += ["", "## Every row", "",
              "Held-out errors; ✗ marks a held-out interval that misses the published figure.", "",
              "| line | device | model | precision | kernels | threads | published ms | estimate ms (all rows) | "
              + " | ".join(vs) + " |", "|---:|---|---|---|---|---:|---:|---:|" + "---:|" * len(vs)]
    for i, (r, w) in enumerate(data):
        lines.append(f"| {r['line']} | {r['profile']} | {r['model']} | {r['precision']} | {r['kernels']} | "
                     f"{r['threads']} | {r['published_ms']:g} | {predict(r, w, params):.1f} | "
                     + " | ".join(f"{pct[v][i]:+.1f}%{'' if result[v]['covered'][i] else ' ✗'}" for v in vs) + " |")
    left_out = [r for r in rows if r["skip"]]
    if left_out:
        lines += ["", "## Rows not estimated", "", "| line | device | model | why |", "|---:|---|---|---|"]
        lines += [f"| {r['line']} | {r['profile'] or '-'} | {r['label']} | {r['skip']} |" for r in left_out]
    lines += ["", "## Shared parameters", "", parameters_text(params) + "."]
    lines += ["", "## Speed-ups and builtin-kernel estimates (shipped parameters)", "", "```", tables.strip("\n"), "```"]
    if tried:
        lines += ["", "## Cost-model variants tried", "",
                  "Each variant fitted and validated as above (`fit --sensitivity`); the shipped one is marked. "
                  f"Cells: {cell}.", "", "| variant | " + " | ".join(vs) + " | fitted on every row |",
                  "|---|" + "---|" * len(vs) + "---|"]
        for variant, fitted, by_v in tried:
            lines.append(f"| {variant.label}{' **(shipped)**' if variant == MODEL else ''} | "
                         + " | ".join(summary_text(by_v[v]) for v in vs) + f" | {parameters_text(fitted)} |")
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def print_tables(counts: dict, rows: list[dict], params, ratios: list[tuple]) -> None:
    """The README's tables: int8/fp32 and 1->4-thread speed-ups, builtin-kernel estimates."""
    def est(model, precision, profile, kernels, threads):
        row = {"model": model, "precision": precision, "profile": profile, "kernels": kernels, "threads": threads}
        w = workload_for(row, counts)
        return predict(row, w, params) if w else None

    def published(profile, model, precision, kernels, threads):
        return next((r["published_ms"] for r in rows if r["profile"] == profile and r["model"] == model and
                     r["precision"] == precision and r["kernels"] == kernels and r["threads"] == threads and
                     not r["skip"] and not r["ratio_only"]), None)

    def ratio(a, b):
        return f"{a / b:.2f}x" if a and b else "-"

    print("\nint8 speed-up over fp32 (estimated, and published where the calibration set has both):")
    for profile, kernels, threads in (("pixel4", "xnnpack", 1), ("pixel4", "builtin", 4), ("pixel3", "builtin", 4),
                                      ("rpi3", "xnnpack", 1), ("rpi3", "xnnpack", 4), ("rpi4", "xnnpack", 1),
                                      ("rpi4", "xnnpack", 4), ("rpi5", "xnnpack", 1), ("rpi5", "xnnpack", 4)):
        core = load_profile(profile).core
        for model in TABLE_MODELS:
            e = ratio(est(model, "fp32", profile, kernels, threads), est(model, "int8", profile, kernels, threads))
            p = ratio(published(profile, model, "fp32", kernels, threads),
                      published(profile, model, "int8", kernels, threads))
            if e != "-":
                print(f"  {core:11s} {profile:7s} {kernels:8s} {threads}t {model:18s} estimated {e:>6s}  "
                      f"published {p:>6s}")
    for f, wf, i, wi in ratios:
        print(f"  {load_profile(f['profile']).core:11s} {f['profile']:7s} {f['kernels']:8s} {f['threads']}t "
              f"{f['model']:18s} estimated {ratio(predict(f, wf, params), predict(i, wi, params)):>6s}  published "
              f"{ratio(f['published_ms'], i['published_ms']):>6s}  (ratio-only pair, threads assumed)")
    for (profile, label, threads), by in published_pairs(rows, "precision").items():
        if {"fp32", "int8"} <= set(by):
            print(f"  {load_profile(profile).core:11s} {profile:7s} {threads}t {label[:40]:40s} published "
                  f"{by['fp32'] / by['int8']:.2f}x  (a model edgequant cannot build offline: no estimate)")

    print("\n1 -> 4 thread speed-up (estimated; published figures where they exist):")
    for profile in ("rpi3", "rpi4", "rpi5", "pixel4", "pixel2"):
        core = load_profile(profile).core
        for model in TABLE_MODELS:
            for precision in PRECISIONS:
                e = ratio(est(model, precision, profile, "xnnpack", 1), est(model, precision, profile, "xnnpack", 4))
                p = ratio(published(profile, model, precision, "xnnpack", 1),
                          published(profile, model, precision, "xnnpack", 4))
                if e != "-":
                    print(f"  {core:11s} {profile:7s} {model:18s} {precision:4s} estimated {e:>6s}  published {p:>6s}")
    for (profile, label, precision), by in published_pairs(rows, "threads").items():
        if {1, 4} <= set(by):
            print(f"  {load_profile(profile).core:11s} {profile:7s} {label[:30]:30s} {precision:4s} published "
                  f"{by[1] / by[4]:.2f}x  (a model edgequant cannot build offline: no estimate)")

    print("\nBuiltin kernels (XNNPACK off), 4 threads, next to XNNPACK:")
    for profile in ("pixel4", "pixel3", "rpi4", "rpi3"):
        for model in ("mobilenet_v1", "mobilenet_v2"):
            for precision in PRECISIONS:
                b = est(model, precision, profile, "builtin", 4)
                x = est(model, precision, profile, "xnnpack", 4)
                p = published(profile, model, precision, "builtin", 4)
                if b:
                    print(f"  {profile:7s} {model:13s} {precision:4s} builtin {b:7.1f} ms  xnnpack "
                          f"{(f'{x:7.1f} ms' if x else '      -'):>10s}  published builtin "
                          f"{(f'{p:.1f} ms' if p else '-'):>8s}")


def published_pairs(rows: list[dict], vary: str) -> dict[tuple, dict]:
    """Published figures of the models edgequant cannot build, grouped so that only `vary`
    (precision or threads) differs within a group: the source of published speed-ups."""
    groups: dict[tuple, dict] = {}
    for r in rows:
        if r["model"] or not r["profile"] or r["threads"] is None:
            continue
        label = re.sub(r"\b(float32|int8)\b", "", r["label"]).strip()
        fixed = r["threads"] if vary == "precision" else r["precision"]
        groups.setdefault((r["profile"], label, fixed), {})[r[vary]] = r["published_ms"]
    return groups


def write_cost(name: str, lodo_pct: list[float], rows: list[dict]) -> None:
    """Replace the `cost:` block of a shipped profile, keeping the rest of the file (and its comments)."""
    import statistics

    path = PROFILE_DIR / f"{name}.yaml"
    own = [r for r in rows if r["profile"] == name]
    fitted = [r for r in own if not r["skip"] and not r["ratio_only"]]
    if fitted:
        source = (f"{len(fitted)} published row{'s' * (len(fitted) != 1)} in benchmarks/device_calibration.csv; "
                  f"{statistics.median(lodo_pct):.0f}% median error when left out of the fit")
    else:
        source = ("no calibration rows of its own: estimated from its core's published timings and the shared fit, "
                  f"interval widened x{DERIVED_INTERVAL_WIDENING} as for a profile made with `devices new`")
    notes = [f"{n} {what}" for n, what in (
        (sum(r["ratio_only"] and not r["skip"] for r in own) // 2, "int8/fp32 ratio pair(s) fitted"),
        (sum(r["uncited"] for r in own), "uncited rows not used"),
        (sum(bool(r["skip"]) and not r["uncited"] for r in own), "other rows not estimated: see the CSV's use column"),
    ) if n]
    if notes:
        source += f" ({'; '.join(notes)})"
    lodo = f"{statistics.median(lodo_pct):.1f}" if lodo_pct else "null"
    block = (
        "cost:  # written by benchmarks/fit_device_profiles.py fit --write-profiles\n"
        f"  source: {json.dumps(source)}\n"
        f"  calibration_rows: {len(fitted)}\n"
        f"  lodo_error_pct: {lodo}\n"
    )
    if not fitted:
        block += f"  interval_widening: {DERIVED_INTERVAL_WIDENING}\n"
    text = path.read_text()
    text, n = re.subn(r"(?m)^cost:.*\n(?:[ \t]+.*\n?)*", block, text)
    if n != 1:
        raise SystemExit(f"{path}: no single `cost:` block to replace")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    load_profile(path)  # still a valid profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["measure", "sizes", "fit"])
    parser.add_argument("--csv", default=str(DEFAULT_CSV), help="published latency rows")
    parser.add_argument("--force", action="store_true", help="measure again counts already in the file")
    parser.add_argument("--only", default="", help="with --force: only the counts whose key matches this regex")
    parser.add_argument("--skip", default="", help="with measure: skip the models matching this regex")
    parser.add_argument("--write-docs", nargs="?", const=str(RESULTS_MD), default=None, metavar="PATH",
                        help=f"with fit: write the validation tables to PATH (default {RESULTS_MD.relative_to(REPO)})")
    parser.add_argument("--sensitivity", action="store_true",
                        help="with fit: validate every cost-model variant (VARIANTS) too; several minutes")
    parser.add_argument("--write-profiles", action="store_true",
                        help="write the fitted parameters (cost_params.json) and the profiles' cost: blocks")
    args = parser.parse_args()
    args.csv_name = Path(args.csv).name
    if args.command == "measure":
        measure(args)
    elif args.command == "sizes":
        sizes(args)
    else:
        fit(args)


if __name__ == "__main__":
    main()
