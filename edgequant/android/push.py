"""`edgequant push`: send a .tflite and its app manifest to the demo app, verify, optionally run it.

    push_model(Path("build/fmnist/fmnist_int8.tflite"), inputs=Path("samples.npz"), run=RunOptions())

1. writes the app manifest (and samples.bin from --inputs) into a temporary folder;
2. picks the device (`--serial` or the only one), checks the app is installed;
3. pushes model.tflite, samples.bin, app_manifest.json (last: the app reads it first) into the app's
   external files folder and compares each file's SHA-256 on the device with the local one;
4. with `run`, starts the app with `--ez autorun true`, polls for its result.json (bounded), pulls it,
   and runs the same samples through the host LiteRT interpreter to compare the top-1 answers.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgequant.android.adb import Adb
from edgequant.android.app_manifest import (
    AppPreprocess,
    build_app_manifest,
    read_build_manifest,
    read_labels,
    write_json_atomic,
)
from edgequant.android.device_paths import (
    ACTIVITY,
    APP_ID,
    DEVICE_DIR,
    MANIFEST_FILE,
    MODEL_FILE,
    RESULT_FILE,
    SAMPLES_FILE,
)
from edgequant.api import fetch
from edgequant.errors import BuildError, InputError, ModelFileError, ToolMissingError
from edgequant.process.scratch import scratch_prefix

DELEGATES = ("cpu", "gpu", "nnapi")
DEFAULT_MAX_SAMPLES = 200


@dataclass(frozen=True)
class AppFiles:
    """The files the app reads, staged locally: the model stays where it is."""

    model: Path
    manifest_path: Path
    samples_path: Path | None
    manifest: dict
    samples_available: int = 0  # samples in the .npz, before --max-samples

    def push_order(self) -> list[tuple[Path, str]]:
        """(local file, name on the device); the manifest goes last so the app never sees it before its files."""
        files = [(self.model, MODEL_FILE)]
        if self.samples_path is not None:
            files.append((self.samples_path, SAMPLES_FILE))
        files.append((self.manifest_path, MANIFEST_FILE))
        return files


def write_app_files(
    tflite: Path,
    out_dir: Path,
    *,
    labels: Path | None = None,
    inputs: Path | None = None,
    scale: float | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> AppFiles:
    """Write app_manifest.json (and samples.bin when `inputs` is given) for `tflite` into `out_dir`.

    Name, mode, preprocessing (and class names, if it records them) come from the build's manifest.json
    beside the .tflite when there is one; `labels`, `scale`, `mean`, `std` override them
    (without a build manifest the preprocessing is the identity).
    """
    from edgequant.android.samples import write_samples
    from edgequant.model.tflite_file import read_tflite

    tflite = Path(tflite).resolve()  # one build's folder: a build committed meanwhile cannot mix in
    model = read_tflite(tflite)
    build = read_build_manifest(tflite)
    if build is not None and build.sha256 and build.sha256 != model.sha256:
        raise ModelFileError(
            f"{tflite}: sha256 {model.sha256[:12]}… differs from {build.manifest_path}'s {build.sha256[:12]}…: "
            "the file changed after the build; rebuild or push the built file"
        )
    preprocess = (build.preprocess if build and build.preprocess else AppPreprocess()).with_overrides(scale=scale, mean=mean, std=std)
    if max_samples < 1:
        raise InputError(f"--max-samples must be at least 1, got {max_samples}")
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = None
    if inputs is not None:
        samples = write_samples(Path(inputs), model.inputs[0].shape, preprocess.layout, out_dir, max_samples=max_samples)
    manifest = build_app_manifest(
        model,
        name=build.name if build else tflite.stem,
        mode=build.mode if build else _guess_mode(model),
        labels=read_labels(Path(labels)) if labels is not None else list(build.labels if build else ()),
        preprocess=preprocess,
        samples=samples.to_dict() if samples else None,
        build=build,
    )
    manifest_path = out_dir / MANIFEST_FILE
    write_json_atomic(manifest_path, manifest)
    return AppFiles(tflite, manifest_path, samples.path if samples else None, manifest, samples.available if samples else 0)


def _guess_mode(model) -> str:
    """A label for the report when there is no build manifest: what the input tensor's type says."""
    dtype = model.inputs[0].dtype
    if dtype in ("int8", "uint8"):
        return "int8"
    if dtype == "int16":
        return "int16x8"
    return "float"


@dataclass(frozen=True)
class PushedFile:
    name: str
    remote_path: str
    size_bytes: int
    sha256: str  # equal on both sides: push_model checks it


@dataclass(frozen=True)
class RunOptions:
    """How the app runs the model: delegate, threads, warm-up and timed runs, top-k, time limit."""

    delegate: str = "cpu"
    threads: int = 1
    warmup: int = 5
    runs: int = 50
    top_k: int = 3
    timeout_s: float = 180.0

    def __post_init__(self):
        if self.delegate not in DELEGATES:
            raise InputError(f"--delegate: {self.delegate!r} is not one of {', '.join(DELEGATES)}")
        for name, value, low in (("threads", self.threads, 1), ("warmup", self.warmup, 0), ("runs", self.runs, 1), ("top_k", self.top_k, 1)):
            if value < low:
                raise InputError(f"--{name.replace('_', '-')}: must be at least {low}, got {value}")
        if not self.timeout_s > 0:
            raise InputError(f"--timeout: must be positive, got {self.timeout_s}")

    def intent_extras(self, run_id: str) -> list[str]:
        return [
            "--ez", "autorun", "true",
            "--es", "delegate", self.delegate,
            "--ei", "threads", str(self.threads),
            "--ei", "warmup", str(self.warmup),
            "--ei", "runs", str(self.runs),
            "--ei", "topk", str(self.top_k),
            "--es", "run_id", run_id,
        ]


@dataclass(frozen=True)
class HostComparison:
    """The device's top-1 answers against the host LiteRT interpreter's, on the same samples."""

    samples: int
    top1_agree: int
    host_top1_correct: int | None
    device_top1_correct: int | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PushResult:
    serial: str
    device: dict
    device_dir: str
    files: tuple[PushedFile, ...]
    manifest: dict
    run: dict | None = None
    result_path: Path | None = None
    host: HostComparison | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "serial": self.serial,
            "device": self.device,
            "device_dir": self.device_dir,
            "files": [asdict(f) for f in self.files],
            "model": self.manifest["model"],
            "run": self.run,
            "result_path": str(self.result_path) if self.result_path else None,
            "host_comparison": self.host.to_dict() if self.host else None,
            "notes": list(self.notes),
        }


def push_model(
    tflite: Path,
    *,
    serial: str | None = None,
    labels: Path | None = None,
    inputs: Path | None = None,
    scale: float | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    run: RunOptions | None = None,
    result_path: Path | None = None,
    status: Callable[[str], None] = lambda message: None,
    registry: str | None = None,
) -> PushResult:
    """Push `tflite` to the demo app on a device, verify it, and with `run` run it there and pull the result.

    `tflite` may be a registry reference, models:/NAME@ALIAS, fetched from the MLflow store `registry`.
    """
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("push")) as tmp:
        tflite = fetch(tflite, Path(tmp) / "registry", registry=registry)
        if not tflite.is_file():
            raise ModelFileError(f"{tflite}: no such .tflite file")
        files = write_app_files(
            tflite, Path(tmp), labels=labels, inputs=inputs, scale=scale, mean=mean, std=std, max_samples=max_samples
        )
        if files.samples_path is not None and files.samples_available > files.manifest["samples"]["shape"][0]:
            status(f"pushing the first {files.manifest['samples']['shape'][0]} of {files.samples_available} samples (--max-samples)")
        adb = Adb.connect(serial)
        device = {
            "model": adb.getprop("ro.product.model"),
            "android": adb.getprop("ro.build.version.release"),
            "abi": adb.getprop("ro.product.cpu.abi"),
        }
        status(f"device {adb.serial}: {device['model'] or '?'} (Android {device['android'] or '?'}, {device['abi'] or '?'})")
        _ensure_app(adb, status)
        adb.shell("rm", "-f", f"{DEVICE_DIR}/{RESULT_FILE}")  # a result from an earlier model would mislead
        pushed = []
        for local, name in files.push_order():
            remote = f"{DEVICE_DIR}/{name}"
            adb.push(local, remote)
            local_sha = _sha256(local)
            remote_sha = adb.sha256(remote)
            if remote_sha != local_sha:
                raise BuildError(f"{remote} on {adb.serial}: sha256 {remote_sha[:12]}… differs from the local {local_sha[:12]}… after adb push")
            pushed.append(PushedFile(name, remote, local.stat().st_size, local_sha))
            status(f"pushed {name} ({local.stat().st_size:,} bytes), sha256 verified on the device")
        result = PushResult(adb.serial, device, DEVICE_DIR, tuple(pushed), files.manifest)
        if run is None:
            return result
        device_result = run_app(adb, run, files.manifest, status)
        result_path = Path(result_path) if result_path else tflite.with_name(f"{tflite.stem}.android-result.json")
        write_json_atomic(result_path, device_result)
        host = compare_with_host(files, device_result)
        return PushResult(adb.serial, device, DEVICE_DIR, tuple(pushed), files.manifest, device_result, result_path, host)


def _ensure_app(adb: Adb, status: Callable[[str], None]) -> None:
    listed = adb.shell("pm", "path", APP_ID, check=False)
    if listed.returncode != 0 or "package:" not in listed.stdout:
        raise ToolMissingError(
            f"the demo app {APP_ID} is not installed on {adb.serial}: build and install android_demo (see android_demo/README.md)"
        )
    if adb.exists(DEVICE_DIR):
        return
    # The folder must be created by the app (getExternalFilesDir), not by adb, or the app may not own it.
    status("starting the app once so that it creates its files folder")
    adb.shell("am", "start", "-W", "-n", ACTIVITY, "--ez", "init_only", "true", timeout=60)
    deadline = time.monotonic() + 20
    while not adb.exists(DEVICE_DIR):
        if time.monotonic() > deadline:
            raise ToolMissingError(f"the app did not create {DEVICE_DIR} on {adb.serial}; open it once by hand and retry")
        time.sleep(0.5)


def run_app(adb: Adb, options: RunOptions, manifest: dict, status: Callable[[str], None]) -> dict:
    """Start the app in autorun mode and return its result.json (the pushed model's, this run's)."""
    run_id = uuid.uuid4().hex
    remote = f"{DEVICE_DIR}/{RESULT_FILE}"
    status(f"running on {adb.serial}: {options.delegate}, {options.threads} thread(s), {options.warmup} warm-up + {options.runs} timed runs")
    adb.shell("am", "start", "-S", "-n", ACTIVITY, *options.intent_extras(run_id), timeout=60)
    deadline = time.monotonic() + options.timeout_s
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("result")) as tmp:
        local = Path(tmp) / RESULT_FILE
        while True:
            if adb.exists(remote):
                adb.pull(remote, local)
                try:
                    result = json.loads(local.read_text(encoding="utf-8"))
                except ValueError:
                    result = None  # renamed into place atomically by the app, so only a foreign file lands here
                if isinstance(result, dict) and result.get("run_id") == run_id:
                    break
            if time.monotonic() > deadline:
                raise BuildError(
                    f"the app wrote no {RESULT_FILE} within {options.timeout_s:.0f} s (see `adb -s {adb.serial} logcat -s EdgequantDemo`)"
                )
            time.sleep(1.0)
    if result.get("status") != "ok":
        raise BuildError(f"the app on {adb.serial} failed: {result.get('error') or 'no error message'}")
    device_sha = (result.get("model") or {}).get("sha256")
    if device_sha != manifest["model"]["sha256"]:
        raise BuildError(f"the app ran model sha256 {str(device_sha)[:12]}…, not the pushed {manifest['model']['sha256'][:12]}…")
    return result


def compare_with_host(files: AppFiles, device_result: dict) -> HostComparison | None:
    """Run the pushed samples through the host LiteRT interpreter and count equal top-1 answers."""
    spec = files.manifest.get("samples")
    predictions = device_result.get("predictions") or []
    if spec is None or not predictions:
        return None
    from edgequant.android import app_logic
    from edgequant.android.samples import read_samples
    from edgequant.model.runtime import load_interpreter

    manifest = files.manifest
    preprocess = AppPreprocess.from_manifest(manifest["preprocess"])
    samples = read_samples(spec, files.samples_path.parent)
    interp = load_interpreter(files.model)
    in_detail = interp.get_input_details()[0]
    out_detail = interp.get_output_details()[0]
    agree = host_correct = device_correct = 0
    labels = spec.get("labels")
    for p in predictions:
        i = int(p["sample"])
        interp.set_tensor(in_detail["index"], app_logic.prepare_input(samples[i], preprocess, manifest["inputs"][0]))
        interp.invoke()
        scores = app_logic.dequantize(interp.get_tensor(out_detail["index"]), manifest["outputs"][0])
        host_top1 = app_logic.top_k(scores, 1)[0][0]
        device_top1 = int(p["top"][0]["index"])
        agree += host_top1 == device_top1
        if labels is not None:
            host_correct += host_top1 == labels[i]
            device_correct += device_top1 == labels[i]
    return HostComparison(
        samples=len(predictions),
        top1_agree=agree,
        host_top1_correct=host_correct if labels is not None else None,
        device_top1_correct=device_correct if labels is not None else None,
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
