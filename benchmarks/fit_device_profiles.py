"""Measure instruction counts on emulated ARM cores and fit the device profiles' cost parameters.

    python benchmarks/fit_device_profiles.py measure   # build the models, count instructions (~20 min)
    python benchmarks/fit_device_profiles.py fit       # fit, print every calibration row (seconds)
    python benchmarks/fit_device_profiles.py fit --write-profiles   # also update profiles/*.yaml

`measure` builds keras.applications models (weights=None: weights do not
change speed) as fp32 and int8 .tflite files in ~/.cache/edgequant/calibration_models,
counts the instructions of one invoke on each calibration core under qemu and
writes them, with each model's weight and activation bytes, to
benchmarks/device_counts.json. That file is kept in the repo, so `fit` needs
neither the models nor qemu.

`fit` reads /work/shared/device_reference/published_latency.csv (or --csv), fits
a handful of parameters per core type (latency_model.fit_core) and prints, for
every calibration row, the estimate next to the published figure and the error.

After measuring a real device, add its rows to the CSV (same columns) and re-run `fit`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgequant.devices import latency_model  # noqa: E402
from edgequant.devices.profiles import PROFILE_DIR, load_profile  # noqa: E402

COUNTS_FILE = REPO / "benchmarks" / "device_counts.json"
DEFAULT_CSV = REPO.parent / "shared" / "device_reference" / "published_latency.csv"

# name -> (keras.applications constructor, kwargs, input side)
MODELS = {
    "mobilenet_v1": ("MobileNet", {"alpha": 1.0}, 224),
    "mobilenet_v2": ("MobileNetV2", {"alpha": 1.0}, 224),
    "mobilenet_v3_large": ("MobileNetV3Large", {"include_preprocessing": False}, 224),
    "mobilenet_v3_small": ("MobileNetV3Small", {"include_preprocessing": False}, 224),
    "inception_v3": ("InceptionV3", {}, 299),
}
PRECISIONS = ("fp32", "int8")

# Which profile stands for the device of each published row (matched on the
# `device` column), and the kernels its runtime used.
ROW_DEVICES = [
    (r"^Google Pixel \(Pixel 1", "pixel1"),
    (r"^Google Pixel 2", "pixel2"),
    (r"^Google Pixel 3a", "pixel3a"),
    (r"^Google Pixel 4", "pixel4"),
    (r"^Raspberry Pi 3", "rpi3"),
    (r"^Raspberry Pi 4", "rpi4"),
    (r"^Raspberry Pi 5", "rpi5"),
]
ROW_MODELS = [
    (r"MobileNet v1 1\.0X|Mobilenet_1\.0_224", "mobilenet_v1"),
    (r"MobileNet v2 1\.0X", "mobilenet_v2"),
    (r"MobileNet v3 Large", "mobilenet_v3_large"),
    (r"MobileNet v3 Small", "mobilenet_v3_small"),
    (r"Inception ?V3", "inception_v3"),
]


def models_dir() -> Path:
    from edgequant.cache import cache_dir

    return cache_dir() / "calibration_models"


def build_model(name: str, precision: str) -> Path:
    """keras.applications `name` as a .tflite (int8: full integer, int8 input and output)."""
    path = models_dir() / f"{name}_{precision}.tflite"
    if path.is_file():
        return path
    import numpy as np
    import tensorflow as tf

    ctor, kwargs, side = MODELS[name]
    tf.keras.utils.set_random_seed(0)
    model = getattr(tf.keras.applications, ctor)(input_shape=(side, side, 3), weights=None, **kwargs)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision == "int8":
        rng = np.random.default_rng(0)
        # Random calibration data: the scales it picks do not change which kernels run or how long they take.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.random((1, side, side, 3), dtype=np.float32)] for _ in range(4))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    data = converter.convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _match(table, text):
    return next((value for pattern, value in table if re.search(pattern, text)), None)


def read_rows(csv_path: Path) -> list[dict]:
    """Published rows with the profile, model key, precision, threads and kernels they map to."""
    rows = []
    with open(csv_path, newline="") as f:
        for r in csv.DictReader(f):
            profile = _match(ROW_DEVICES, r["device"])
            model = _match(ROW_MODELS, r["model"])
            precision = "int8" if r["precision"].lower().startswith("int8") else "fp32"
            threads = int(re.match(r"\d+", r["threads"]).group())
            runtime = r["runtime_and_version"]
            kernels = "builtin" if "XNNPACK not mentioned" in runtime else "xnnpack"
            os_bits = 32 if re.search(r"32-bit", runtime) else 64
            skip = None
            if model is None:
                skip = f"model '{r['model']}' cannot be built offline"
            elif profile is None:
                skip = "no profile for this device"
            elif os_bits == 32 and profile == "rpi4":
                skip = "32-bit OS (the 64-bit row of the same model is fitted)"
            rows.append({
                "device": r["device"], "profile": profile, "model": model, "precision": precision,
                "threads": threads, "kernels": kernels, "os_bits": os_bits,
                "published_ms": float(r["latency_ms"]), "skip": skip, "label": r["model"],
            })
    return rows


def count_key(model: str, precision: str, profile, kernels: str) -> str:
    return f"{model}|{precision}|{profile.qemu_cpu}|{profile.cpu_implementer:#x}:{profile.cpu_part:#x}|{kernels}"


def measure(args) -> None:
    from edgequant.devices.arm.install import ensure_arm_environment
    from edgequant.devices.arm.runner import run_on_device
    from edgequant.tflite_file import read_tflite

    env = ensure_arm_environment(progress=print)
    counts = json.loads(COUNTS_FILE.read_text()) if COUNTS_FILE.is_file() else {"counts": {}, "models": {}}
    jobs = set()
    for row in read_rows(Path(args.csv)):
        if row["model"] and row["profile"]:
            jobs.add((row["model"], row["precision"], row["profile"], row["kernels"]))
    for model in MODELS:  # the report's table: every model, both precisions, on A53, A72, A76
        for precision in PRECISIONS:
            for profile in args.report_profiles.split(","):
                jobs.add((model, precision, profile, "xnnpack"))
    for model, precision, profile_name, kernels in sorted(jobs):
        profile = load_profile(profile_name)
        key = count_key(model, precision, profile, kernels)
        if key in counts["counts"] and not (args.force and re.search(args.only, key)):
            continue
        path = build_model(model, precision)
        info = read_tflite(path)
        counts["models"][f"{model}|{precision}"] = {
            "weight_bytes": info.weight_bytes, "activation_bytes": info.activation_bytes,
            "operators": len(info.operators), "sha256": info.sha256,
        }
        start = time.monotonic()
        run = run_on_device(path, profile, kernels=kernels, env=env)
        counts["counts"][key] = {
            "instructions": run.instructions_per_invoke,
            "litert": env.litert_version,
            "by_class": latency_model.instructions_by_class(run.instructions_by_symbol),
            "top_kernels": [[k.symbol, round(k.share, 3)] for k in run.kernel_shares[:4]],
        }
        print(f"{key:70s} {run.instructions_per_invoke:>14,d} insns  ({time.monotonic() - start:.0f} s emulated)",
              flush=True)
        _save_counts(counts)


def _save_counts(counts: dict) -> None:
    counts["counts"] = dict(sorted(counts["counts"].items()))
    counts["models"] = dict(sorted(counts["models"].items()))
    tmp = COUNTS_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(counts, indent=1) + "\n")
    os.replace(tmp, COUNTS_FILE)


# How each profile gets its parameters. "fit" lists the free parameters fitted on
# that profile's own rows; the others come from `borrow` (another profile) or are
# set as said in `notes`. cpi_int8 = cpi_float where no int8 row exists: XNNPACK's
# float and int8 GEMM kernels both keep the same NEON pipes busy (fmla vs sdot).
PLAN = {
    "pixel1": {"fit": ["cpi_float", "effective_bandwidth_gbs", "contention"]},
    "pixel2": {"fit": ["cpi_float", "effective_bandwidth_gbs", "contention"]},
    "pixel3a": {"fit": ["cpi_float", "effective_bandwidth_gbs", "contention"]},
    "rpi4": {"fit": ["cpi_float", "cpi_int8", "effective_bandwidth_gbs"], "contention": "rpi4"},
    "rpi3": {"fit": ["cpi_float", "cpi_int8", "effective_bandwidth_gbs"], "contention": "rpi4",
             "note": "its rows are from a 32-bit OS (the RPi 4's 32- and 64-bit rows differ by up to 18%, "
                     "which this error does not include)"},
    "pixel4": {"fit": ["cpi_float"], "borrow": "pixel3a"},
    "rpi5": {"borrow": "pixel4", "contention": "rpi5"},
    "pixel3": {"borrow": "pixel3a"},
    "pixel6": {"borrow": "pixel4"},
    "cortex-a55": {"borrow": "rpi3"},
}
ORDER = ["pixel1", "pixel2", "pixel3a", "rpi4", "rpi3", "pixel4", "rpi5", "pixel3", "pixel6", "cortex-a55"]
START = {"cpi_float": 1.0, "cpi_int8": 1.0, "effective_bandwidth_gbs": 5.0, "contention": 0.05}


def board_contention(rows: list[dict], device_pattern: str) -> tuple[float, str]:
    """Contention of a board from its published 1- and 4-thread EfficientDet-Lite0 rows.

    Only the ratio of the two figures is used (the model itself cannot be built
    offline): with latency(n) = compute * (1 + s (n - 1)) / n, s = (4 / ratio - 1) / 3,
    taking the geometric mean of the fp32 and int8 ratios. Ignoring the memory
    term makes this an upper bound on s.
    """
    import math

    ratios = []
    for precision in PRECISIONS:
        by_threads = {r["threads"]: r["published_ms"] for r in rows
                      if re.search(device_pattern, r["device"]) and r["label"].startswith("EfficientDet")
                      and r["precision"] == precision}
        if 1 in by_threads and 4 in by_threads:
            ratios.append(by_threads[1] / by_threads[4])
    ratio = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    s = (4 / ratio - 1) / 3
    return s, f"contention {s:.3f} from the EfficientDet-Lite0 1-vs-4-thread ratio on that board ({ratio:.2f}x)"


def workload_for(row: dict, counts: dict, profile) -> latency_model.Workload | None:
    entry = counts["counts"].get(count_key(row["model"], row["precision"], profile, row["kernels"]))
    model = counts["models"].get(f"{row['model']}|{row['precision']}")
    if entry is None or model is None:
        return None
    return latency_model.Workload(entry["instructions"], entry["by_class"], model["weight_bytes"],
                                  model["activation_bytes"])


def predict(row, workload, profile, params: dict) -> float:
    p = latency_model.CostParams(params["cpi_float"], params["cpi_int8"], params["effective_bandwidth_gbs"],
                                 params["contention"])
    return latency_model.estimate_ms(workload, p, clock_ghz=profile.clock_ghz, threads=row["threads"],
                                     cores=profile.cores, multi_thread_clock_ghz=profile.multi_thread_clock_ghz)


def fit_profile(name: str, rows: list[dict], counts: dict, fitted: dict, all_rows: list[dict]) -> dict:
    """Parameters for one profile, following PLAN; returns them with source and error."""
    import numpy as np
    from scipy.optimize import least_squares

    plan = PLAN[name]
    profile = load_profile(name)
    params = dict(fitted[plan["borrow"]]["params"]) if "borrow" in plan else dict(START)
    notes = []
    if "borrow" in plan:
        donor = f"{plan['borrow']} ({fitted[plan['borrow']]['core']})"
        borrowed = [k for k in START if k not in plan.get("fit", []) and k != plan.get("contention") and
                    not (k == "contention" and "contention" in plan) and
                    not (k == "cpi_int8" and "cpi_float" in plan.get("fit", []))]
        notes.append(f"{', '.join(borrowed)} from {donor}" if plan.get("fit") else f"borrowed from {donor}")
    if "contention" in plan:
        board = {"rpi4": r"^Raspberry Pi 4", "rpi5": r"^Raspberry Pi 5"}[plan["contention"]]
        params["contention"], why = board_contention(all_rows, board)
        notes.append(why if plan["contention"] == name else f"{why} ({plan['contention']})")
    free = plan.get("fit", [])
    own = [r for r in rows if r["profile"] == name and not r["skip"]]
    data = [(r, workload_for(r, counts, profile)) for r in own]
    missing = [r for r, w in data if w is None]
    if missing:
        raise SystemExit(f"{name}: no instruction counts for {len(missing)} rows: run `measure` first")
    if free:
        if "cpi_int8" not in free and not any(r["precision"] == "int8" for r in own):
            notes.append("cpi_int8 = cpi_float (no int8 rows for this core)")

        def unpack(x):
            p = dict(params)
            for k, v in zip(free, x):
                p[k] = float(np.exp(v)) if k != "contention" else float(v)
            if "cpi_int8" not in free:
                p["cpi_int8"] = p["cpi_float"]
            return p

        x0 = [np.log(params[k]) if k != "contention" else params[k] for k in free]
        lo = [np.log(0.05) if k != "contention" else 0.0 for k in free]
        hi = [np.log(100.0) if k != "contention" else 1.0 for k in free]
        if len(free) > len(data):
            raise SystemExit(f"{name}: {len(free)} free parameters for {len(data)} rows")

        def solve(subset):
            def residuals(x):
                p = unpack(x)
                return [np.log(predict(r, w, profile, p) / r["published_ms"]) for r, w in subset]
            return unpack(least_squares(residuals, x0, bounds=(lo, hi), method="trf").x)

        params = solve(data)
        notes.insert(0, f"fitted {', '.join(free)} on {len(data)} published rows ({own[0]['device']})")
        # Leave-one-out: refit without each row and predict it; a fairer error than the fit's own.
        holdout = []
        for i, (r, w) in enumerate(data):
            rest = data[:i] + data[i + 1:]
            if len(rest) < len(free) or ("cpi_int8" in free and not any(x["precision"] == "int8" for x, _ in rest)):
                holdout = None
                break
            holdout.append(abs(predict(r, w, profile, solve(rest)) / r["published_ms"] - 1))
    errors = [abs(predict(r, w, profile, params) / r["published_ms"] - 1) for r, w in data]
    result = {"params": params, "rows": len(data) if free else 0, "core": profile.core,
              "error": max(errors) * 100 if errors and len(data) > len(free) else None,
              "holdout": max(holdout) * 100 if free and holdout else None}
    if "borrow" in plan:
        donor = fitted[plan["borrow"]]
        same_core = donor["core"] == profile.core
        if result["rows"] == 0:
            result["error"], result["holdout"] = (donor["error"], donor["holdout"]) if same_core else (None, None)
        if not same_core and result["rows"] == 0:
            notes.append(f"a different core: no calibration error for {profile.core}")
    if "note" in plan:
        notes.append(plan["note"])
    if free and result["error"] is None:
        notes.append(f"{len(data)} row(s) for {len(free)} parameter(s): exact by construction, no error estimate")
    result["source"] = "; ".join(notes)
    return result


def fit(args) -> None:
    counts = json.loads(COUNTS_FILE.read_text())
    rows = read_rows(Path(args.csv))
    fitted = {}
    for name in ORDER:
        fitted[name] = fit_profile(name, rows, counts, fitted, rows)

    print(f"{'device':28s} {'model':20s} {'prec':4s} {'thr':>3s} {'published':>9s} {'estimate':>9s} {'error':>7s}  note")
    for r in rows:
        head = f"{r['device'][:28]:28s} {(r['model'] or r['label'])[:20]:20s} {r['precision']:4s} {r['threads']:>3d} " \
               f"{r['published_ms']:>9.1f}"
        profile = load_profile(r["profile"]) if r["profile"] else None
        w = workload_for(r, counts, profile) if profile and r["model"] else None
        if w is None:
            print(f"{head} {'-':>9s} {'-':>7s}  not estimated: {r['skip'] or 'no counts'}")
            continue
        est = predict(r, w, profile, fitted[r["profile"]]["params"])
        err = (est / r["published_ms"] - 1) * 100
        note = f"not fitted: {r['skip']}" if r["skip"] else ("fitted" if fitted[r["profile"]]["rows"] else "")
        if not r["skip"] and r["os_bits"] == 32:
            note += " (32-bit OS row: the only data for this board)"
        print(f"{head} {est:>9.1f} {err:>+6.1f}%  {note}")
    print()
    print(f"{'profile':11s} {'core':11s} {'cpi_f':>6s} {'cpi_i8':>6s} {'GB/s':>6s} {'contn':>6s} {'rows':>4s} "
          f"{'max err':>7s} {'LOO err':>7s}  source")
    for name in ORDER:
        f = fitted[name]
        p = f["params"]
        err = f"{f['error']:.1f}%" if f["error"] is not None else "-"
        loo = f"{f['holdout']:.1f}%" if f["holdout"] is not None else "-"
        print(f"{name:11s} {f['core'][:11]:11s} {p['cpi_float']:6.3f} {p['cpi_int8']:6.3f} "
              f"{p['effective_bandwidth_gbs']:6.2f} {p['contention']:6.3f} {f['rows']:>4d} {err:>7s} {loo:>7s}  "
              f"{f['source']}")
    if args.write_profiles:
        for name in ORDER:
            write_cost(name, fitted[name])
        print(f"\nwrote the cost: block of {len(ORDER)} profiles in {PROFILE_DIR}")


def write_cost(name: str, fitted: dict) -> None:
    """Replace the `cost:` block of a shipped profile, keeping the rest of the file (and its comments)."""
    path = PROFILE_DIR / f"{name}.yaml"
    p = fitted["params"]
    error = f"{fitted['error']:.1f}" if fitted["error"] is not None else "null"
    holdout = f"{fitted['holdout']:.1f}" if fitted["holdout"] is not None else "null"
    block = (
        "cost:  # written by benchmarks/fit_device_profiles.py fit --write-profiles\n"
        f"  cpi_float: {p['cpi_float']:.4f}\n"
        f"  cpi_int8: {p['cpi_int8']:.4f}\n"
        f"  effective_bandwidth_gbs: {p['effective_bandwidth_gbs']:.3f}\n"
        f"  contention: {p['contention']:.4f}\n"
        f"  source: {json.dumps(fitted['source'])}\n"
        f"  calibration_error_pct: {error}\n"
        f"  holdout_error_pct: {holdout}\n"
        f"  calibration_rows: {fitted['rows']}\n"
    )
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
    parser.add_argument("command", choices=["measure", "fit"])
    parser.add_argument("--csv", default=str(DEFAULT_CSV), help="published latency rows")
    parser.add_argument("--force", action="store_true", help="measure again counts already in the file")
    parser.add_argument("--only", default="", help="with --force: only the counts whose key matches this regex")
    parser.add_argument("--report-profiles", default="rpi3,rpi4,pixel4",
                        help="profiles whose cores get every model counted (A53, A72, A76)")
    parser.add_argument("--write-profiles", action="store_true", help="write fitted parameters into profiles/*.yaml")
    args = parser.parse_args()
    if args.command == "measure":
        measure(args)
    else:
        fit(args)


if __name__ == "__main__":
    main()
