"""Compare any two .tflite models on the same data (the engine behind `edgequant compare`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from edgequant.data.stream import InputSpec, iter_batches
from edgequant.errors import InputError
from edgequant.evaluate import Evaluation, evaluate
from edgequant.recipe.schema import DataSpec
from edgequant.tflite_file import read_tflite


def data_spec(
    data: str,
    *,
    labels: Path | None = None,
    key: str = "x",
    labels_key: str | None = None,
    scale: float = 1.0,
    mean: float = 0.0,
    std: float = 1.0,
    resize: str | None = None,
    samples: int | None = None,
    option: str = "--data",
) -> DataSpec:
    """A DataSpec from command-line words: `fashion-mnist[:split]`, a .npy/.npz file or an image folder.

    `option` is the command-line option the words came from, for error messages."""
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
    preprocess: dict = {"scale": scale, "mean": mean, "std": std}
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


def compare_models(
    reference: Path, candidate: Path, spec: DataSpec, *, batch_size: int = 256, top_k: int = 5
) -> dict[str, Evaluation]:
    """Evaluation of both models (keys: their paths), the candidate measured against the reference."""
    ref_info, cand_info = read_tflite(reference), read_tflite(candidate)
    shapes = {tuple(m.inputs[0].shape_signature[1:]) for m in (ref_info, cand_info)}
    if len(shapes) != 1:
        raise InputError(f"{reference} and {candidate} take different inputs: {sorted(shapes)}")
    model_input = InputSpec(ref_info.inputs[0].name, shapes.pop())
    batches = iter_batches(spec, model_input, batch_size, role="comparison")
    results = evaluate({str(reference): reference, str(candidate): candidate}, batches, reference=str(reference),
                       top_k=top_k)
    return results
