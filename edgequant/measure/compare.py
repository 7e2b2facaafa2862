"""Compare any two .tflite models on the same data (the engine behind `edgequant compare`).

Two artifacts of one build are compared with the preprocessing that build recorded in its
manifest.json, so `compare` reports what the build reported on the same data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from edgequant.data.stream import InputSpec, iter_batches
from edgequant.errors import DataError, InputError
from edgequant.measure.evaluate import Evaluation, evaluate
from edgequant.model.tflite_file import check_tflite
from edgequant.recipe.schema import DataSpec


def build_preprocess(*models: Path) -> tuple[dict, Path] | None:
    """The preprocessing the build that wrote `models` recorded, and its manifest; None if they are not one build's.

    Every model must sit beside the same manifest.json, which must list it with the same SHA-256.
    """
    from edgequant.model.source_model import file_sha256
    from edgequant.output.artifacts import MANIFEST

    manifests = {Path(m).resolve().parent / MANIFEST for m in models}
    if len(manifests) != 1 or not (manifest_path := manifests.pop()).is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    entries = {a.get("file"): a for a in manifest.get("artifacts", []) if isinstance(a, dict)}
    preprocess = []
    for m in models:
        entry = entries.get(Path(m).name)
        if entry is None or entry.get("sha256") != file_sha256(Path(m)):
            return None
        # manifest version 2 keeps each artifact's own provenance; version 1 had one recipe-wide preprocess
        preprocess.append((entry.get("provenance") or {}).get("preprocess")
                          or (manifest.get("recipe") or {}).get("preprocess"))
    if preprocess[0] is None or any(p != preprocess[0] for p in preprocess):
        return None
    return preprocess[0], manifest_path


def data_spec(
    data: str,
    *,
    labels: Path | None = None,
    key: str = "x",
    labels_key: str | None = None,
    preprocess: dict | None = None,
    scale: float | None = None,
    mean: float | None = None,
    std: float | None = None,
    resize: str | None = None,
    color: str | None = None,
    samples: int | None = None,
    option: str = "--data",
) -> DataSpec:
    """A DataSpec from command-line words: `fashion-mnist[:split]`, a .npy/.npz file or an image folder.

    `preprocess` (a recorded one) is the starting point; each option given replaces its field.
    `option` is the command-line option the words came from, for error messages.
    """
    if data.startswith("fashion-mnist"):
        source = {"type": "fashion-mnist", "split": data.partition(":")[2] or "test"}
    else:
        path = Path(data)
        if not path.exists():
            raise InputError(f"{option} {data}: no such file or folder")
        if path.is_dir():
            source = {"type": "images", "path": str(path)}
        elif path.suffix == ".npz":
            source = {"type": "npz", "path": str(path), "key": key, "labels_key": labels_key}
        else:
            source = {"type": "npy", "path": str(path), "labels": str(labels) if labels else None}
    preprocess = dict(preprocess or {})
    given = {"scale": scale, "mean": mean, "std": std, "color": color}
    preprocess.update({k: v for k, v in given.items() if v is not None})
    if resize:
        try:
            h, w = (int(v) for v in resize.lower().split("x"))
        except ValueError:
            raise InputError(f"--resize {resize!r}: expected HxW, e.g. 224x224") from None
        preprocess["resize"] = [h, w]
    try:
        return DataSpec.model_validate({"source": source, "preprocess": preprocess, "samples": samples})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"{option} {data}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def _data_dtype(detail: dict) -> str:
    """The dtype the data must have for an input: its own for ids and pixels, which the stream keeps exact and
    checks (see edgequant.data.stream), float32 for a quantized input (the interpreter runner quantizes it)."""
    dtype = np.dtype(detail["dtype"])
    return "float32" if dtype.kind == "f" or detail["quantization"][0] != 0 else dtype.name


def compare_models(
    reference: Path, candidate: Path, spec: DataSpec, *, batch_size: int = 256, top_k: int = 5,
    output: str | int | None = None,
) -> dict[str, Evaluation]:
    """Evaluation of both models (keys: their paths), the candidate measured against the reference.

    Every output is measured (`per_output`); `output` (a name or index) picks the one the headline figures
    are for, else they are the worst over all outputs.
    """
    from edgequant.model.runtime import load_interpreter, named_inputs

    inputs = {}
    for model in (reference, candidate):
        check_tflite(model)  # a corrupt file: exit 2 with the same words as every command
        interp = load_interpreter(model, kernels="builtin", allocate=False)
        inputs[model] = [InputSpec(name, tuple(int(d) for d in (
            d["shape_signature"] if d.get("shape_signature") is not None and len(d["shape_signature"]) else d["shape"]
        )[1:]), _data_dtype(d)) for name, d in named_inputs(interp)]
    described = {model: ", ".join(f"{list(i.shape)} {i.dtype}" for i in v) for model, v in inputs.items()}
    if len(set(described.values())) != 1:
        raise InputError(f"{reference} and {candidate} take different inputs: "
                         + " against ".join(described[m] for m in (reference, candidate)))
    model_inputs = inputs[reference]
    batches = iter_batches(spec, model_inputs if len(model_inputs) > 1 else model_inputs[0], batch_size,
                           role="comparison")
    try:
        return evaluate({str(reference): reference, str(candidate): candidate}, batches, reference=str(reference),
                        top_k=top_k, outputs=[output] if output is not None else None)
    except DataError as exc:  # there is no recipe here: point at the options instead
        message = str(exc).partition(" (check the recipe")[0]
        raise DataError(f"{message} (check --resize, --color, --scale, --mean, --std)") from None
