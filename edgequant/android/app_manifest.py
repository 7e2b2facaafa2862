"""The app manifest: everything the demo app needs to feed a model and read its answer.

One format, written here and read by the Kotlin core (android_demo/core/.../AppManifest.kt).
Its JSON Schema is `app_manifest.schema.json` beside this file. Version 1:

    {
      "format": "edgequant-app-manifest", "version": 1, "created_by": "edgequant 0.1.0",
      "model": {"file": "model.tflite", "name": "fmnist_int8", "mode": "int8", "size_bytes": 11200, "sha256": "<hex>"},
      "inputs":  [{"name": "serving_default_x:0", "shape": [1, 28, 28, 1], "dtype": "int8",
                   "quantization": {"scale": [0.00392156862], "zero_point": [-128], "axis": 0}}],
      "outputs": [{"name": "StatefulPartitionedCall:0", "shape": [1, 10], "dtype": "int8",
                   "quantization": {"scale": [0.00390625], "zero_point": [-128], "axis": 0}}],
      "labels": ["T-shirt/top", "Trouser", ...],
      "preprocess": {"scale": 0.00392156862745098, "mean": [0.0], "std": [1.0], "layout": "nhwc"},
      "quantization_rounding": "half_to_even",
      "samples": {"file": "samples.bin", "dtype": "uint8", "shape": [10, 28, 28, 1], "sha256": "<hex>", "labels": [9, 2, ...]},
      "provenance": {"build_manifest": "manifest.json", "source_model_sha256": "<hex>", "recipe_sha256": "<hex>"}
    }

Tensors come from the .tflite file itself (`read_tflite`); name, mode, preprocessing and provenance
from the build's `manifest.json` beside it when there is one. `quantization` is null for float tensors.
Preprocessing, in float32: x = float32(raw) * scale; x = (x - mean[c]) / std[c]; then quantize with
q = clamp(round_half_to_even(x / scale + zero_point)) as `edgequant.model.runtime.quantize_input`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgequant.android.device_paths import MODEL_FILE
from edgequant.errors import InputError, ModelFileError
from edgequant.output.artifacts import MANIFEST, with_provenance

FORMAT = "edgequant-app-manifest"
VERSION = 1
ROUNDING = "half_to_even"
SCHEMA_FILE = Path(__file__).with_name("app_manifest.schema.json")

# Element types the app can feed and read (android_demo/core DType).
APP_DTYPES = ("float32", "int8", "uint8", "int16", "int32")


@dataclass(frozen=True)
class AppPreprocess:
    """How the app turns a raw sample into model input: `(x * scale - mean[c]) / std[c]`, in float32."""

    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "nhwc"

    def __post_init__(self):
        if self.layout not in ("nhwc", "nchw"):
            raise InputError(f"preprocess.layout: {self.layout!r} is not one of nhwc, nchw")
        if not self.mean or not self.std:
            raise InputError("preprocess: mean and std need at least one value each")
        if any(not s > 0 for s in self.std):
            raise InputError(f"preprocess.std: every value must be > 0, got {list(self.std)}")

    @classmethod
    def from_recipe(cls, data: dict, origin: str) -> "AppPreprocess":
        """From a recipe's `preprocess` section (as the build manifest records it)."""
        try:
            mean, std = data.get("mean", 0.0), data.get("std", 1.0)
            return cls(
                scale=float(data.get("scale", 1.0)),
                mean=tuple(float(m) for m in (mean if isinstance(mean, list) else [mean])),
                std=tuple(float(s) for s in (std if isinstance(std, list) else [std])),
                layout=str(data.get("layout", "nhwc")),
            )
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{origin}: recipe.preprocess: {exc}") from None

    @classmethod
    def from_manifest(cls, data: dict) -> "AppPreprocess":
        """From an app manifest's `preprocess` entry (the inverse of `to_dict`)."""
        return cls(float(data["scale"]), tuple(data["mean"]), tuple(data["std"]), str(data["layout"]))

    def with_overrides(self, *, scale: float | None, mean: list[float] | None, std: list[float] | None) -> "AppPreprocess":
        return AppPreprocess(
            scale=self.scale if scale is None else scale,
            mean=self.mean if mean is None else tuple(mean),
            std=self.std if std is None else tuple(std),
            layout=self.layout,
        )

    def to_dict(self) -> dict:
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std), "layout": self.layout}


@dataclass(frozen=True)
class BuildInfo:
    """What the build's manifest.json says about one artifact."""

    manifest_path: Path
    name: str
    mode: str
    sha256: str
    preprocess: AppPreprocess | None
    labels: tuple[str, ...] = ()
    source_model_sha256: str | None = None
    recipe_sha256: str | None = None
    extra: dict = field(default_factory=dict)


def read_build_manifest(tflite: Path) -> BuildInfo | None:
    """The entry for `tflite` in the `manifest.json` beside it, or None when there is no such file.

    What it says about the artifact (preprocessing, labels, hashes) comes from the artifact's own
    provenance, which a later partial rebuild of other variants leaves as it was.
    Raises ModelFileError when the manifest exists but does not list the file, or lists another SHA-256.
    """
    path = tflite.parent / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        artifacts = data["artifacts"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: not a build manifest ({type(exc).__name__}: {exc})") from None
    entry = next((a for a in artifacts if isinstance(a, dict) and Path(str(a.get("file", ""))).name == tflite.name), None)
    if entry is None:
        raise ModelFileError(f"{path}: lists no artifact with file {tflite.name!r}")
    provenance = with_provenance(entry, data).get("provenance")
    if not isinstance(provenance, dict):
        raise ModelFileError(f"{path}: artifact {tflite.name!r} has no provenance, so its preprocessing is unknown; rebuild it")
    recipe = provenance.get("recipe") or {}
    preprocess = provenance.get("preprocess")
    labels = provenance.get("labels") or ()  # class names, when the build records them
    return BuildInfo(
        manifest_path=path,
        name=str(entry.get("name") or tflite.stem),
        mode=str(entry.get("mode") or "unknown"),
        sha256=str(entry.get("sha256") or ""),
        preprocess=AppPreprocess.from_recipe(preprocess, str(path)) if isinstance(preprocess, dict) else None,
        labels=tuple(str(v) for v in labels) if isinstance(labels, list) else (),
        source_model_sha256=(provenance.get("source_model") or {}).get("sha256"),
        recipe_sha256=recipe.get("sha256"),
    )


def tensor_entry(tensor) -> dict:
    """A `read_tflite` tensor as the app manifest describes it."""
    if tensor.dtype not in APP_DTYPES:
        raise ModelFileError(
            f"tensor {tensor.name!r} is {tensor.dtype}; the demo app feeds and reads {', '.join(APP_DTYPES)}"
        )
    if any(d <= 0 for d in tensor.shape_signature[1:]) or any(d <= 0 for d in tensor.shape):
        raise ModelFileError(f"tensor {tensor.name!r} has a dynamic shape {list(tensor.shape_signature)}; the app needs a static one")
    q = tensor.quantization
    return {
        "name": tensor.name,
        "shape": list(tensor.shape),
        "dtype": tensor.dtype,
        "quantization": None if q is None else {"scale": list(q.scale), "zero_point": list(q.zero_point), "axis": q.axis},
    }


def build_app_manifest(
    model,
    *,
    name: str,
    mode: str,
    labels: list[str],
    preprocess: AppPreprocess,
    samples: dict | None,
    build: BuildInfo | None,
) -> dict:
    """The manifest dict for a `read_tflite` model. `samples` is `samples.SamplesFile.to_dict()` or None."""
    from edgequant.version import __version__

    inputs = [tensor_entry(t) for t in model.inputs]
    outputs = [tensor_entry(t) for t in model.outputs]
    if inputs[0]["quantization"] and len(inputs[0]["quantization"]["scale"]) > 1:
        raise ModelFileError(f"input {inputs[0]['name']!r} is quantized per channel; the app needs one scale")
    classes = outputs[0]["shape"][-1]
    if labels and len(labels) != classes:
        raise InputError(f"{len(labels)} labels for {classes} output classes (output {outputs[0]['name']!r}, shape {outputs[0]['shape']})")
    return {
        "format": FORMAT,
        "version": VERSION,
        "created_by": f"edgequant {__version__}",
        "model": {"file": MODEL_FILE, "name": name, "mode": mode, "size_bytes": model.size_bytes, "sha256": model.sha256},
        "inputs": inputs,
        "outputs": outputs,
        "labels": list(labels),
        "preprocess": preprocess.to_dict(),
        "quantization_rounding": ROUNDING,
        "samples": samples,
        "provenance": {
            "build_manifest": build.manifest_path.name if build else None,
            "source_model_sha256": build.source_model_sha256 if build else None,
            "recipe_sha256": build.recipe_sha256 if build else None,
        },
    }


def read_labels(path: Path) -> list[str]:
    """One label per line; blank lines at the end are ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read labels ({exc.strerror or exc})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputError(f"{path}: no labels (expected one per line)")
    return [line.strip() for line in lines]


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON next to its final place, then rename, so no reader ever sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
