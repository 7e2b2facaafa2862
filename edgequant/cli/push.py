"""`edgequant push build/x/model.tflite`: send a built model to the Android demo app and optionally run it."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def _floats(text: Optional[str], option: str) -> Optional[list[float]]:
    if text is None:
        return None
    from edgequant.errors import InputError

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def push(
    model: Annotated[Path, typer.Argument(help=".tflite file, usually build/<recipe>/<variant>.tflite, or models:/NAME@ALIAS")],
    serial: Annotated[Optional[str], typer.Option("--serial", "-s", help="device serial (default: the only one connected)")] = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="class names, one per line")] = None,
    inputs: Annotated[Optional[Path], typer.Option("--inputs", help=".npz with samples `x` (raw, at the model's input size) and optional labels `y`")] = None,
    run: Annotated[bool, typer.Option("--run", help="start the app, benchmark on the device and pull its result JSON")] = False,
    # A plain string checked by RunOptions, so a wrong value is a one-line error with exit code 2.
    delegate: Annotated[str, typer.Option("--delegate", help="with --run: cpu (XNNPACK), gpu or nnapi")] = "cpu",
    threads: Annotated[int, typer.Option("--threads", help="with --run: CPU threads")] = 1,
    warmup: Annotated[int, typer.Option("--warmup", help="with --run: untimed runs first")] = 5,
    runs: Annotated[int, typer.Option("--runs", help="with --run: timed runs")] = 50,
    top_k: Annotated[int, typer.Option("--top-k", help="with --run: classes reported per sample")] = 3,
    timeout: Annotated[float, typer.Option("--timeout", help="with --run: seconds to wait for the app's result")] = 180.0,
    scale: Annotated[Optional[float], typer.Option("--scale", help="preprocessing: multiply raw values (default: the recipe's, else 1)")] = None,
    mean: Annotated[Optional[str], typer.Option("--mean", help="preprocessing: mean per channel, comma-separated")] = None,
    std: Annotated[Optional[str], typer.Option("--std", help="preprocessing: std per channel, comma-separated")] = None,
    max_samples: Annotated[int, typer.Option("--max-samples", help="push at most this many samples from --inputs")] = 200,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="with --run: where to save the app's result JSON (default: beside the model)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    registry: Annotated[Optional[str], typer.Option("--registry", envvar="MLFLOW_TRACKING_URI", help="MLflow store for models:/ references (default sqlite:///mlruns.db)")] = None,
) -> None:
    """Push MODEL and its app manifest to the edgequant demo app with adb, verifying SHA-256 on the device.

    Needs adb on PATH, one device (or --serial) and the demo app installed (android_demo/README.md).
    Exit codes: 0 success, 2 bad input / no adb / no device / app missing, 3 the app failed on the device.
    """
    from edgequant.android.push import RunOptions, push_model

    options = RunOptions(delegate, threads, warmup, runs, top_k, timeout) if run else None
    say = (lambda message: None) if as_json else (lambda message: typer.echo(message, err=True))
    result = push_model(
        model,
        serial=serial,
        labels=labels,
        inputs=inputs,
        scale=scale,
        mean=_floats(mean, "--mean"),
        std=_floats(std, "--std"),
        max_samples=max_samples,
        run=options,
        result_path=out,
        status=say,
        registry=registry,
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(f"pushed {result.manifest['model']['name']} to {result.serial}:{result.device_dir} ({len(result.files)} files, sha256 verified)")
    if result.run is None:
        typer.echo("run it from the app, or again with --run")
        return
    lat = result.run["latency"]
    cfg = result.run["config"]
    typer.echo(
        f"device latency ({cfg['delegate']}, {cfg['threads']} thread(s), {lat['runs']} runs after {cfg['warmup_runs']} warm-up): "
        f"mean {lat['mean_ms']:.3f} ms, median {lat['median_ms']:.3f} ms, p90 {lat['p90_ms']:.3f} ms"
    )
    if result.host:
        h = result.host
        line = f"top-1 equal to the host interpreter on {h.top1_agree}/{h.samples} samples"
        if h.device_top1_correct is not None:
            line += f"; accuracy on the device {h.device_top1_correct}/{h.samples}, on the host {h.host_top1_correct}/{h.samples}"
        typer.echo(line)
    typer.echo(f"result: {result.result_path}")
