"""ONNX in: convert an .onnx model once, offline, to a TensorFlow SavedModel (edgequant.measure.onnx_parity checks it).

The converter is onnx2tf (the `onnx` extra). It rewrites the graph from ONNX's NCHW to
TFLite's NHWC, so the SavedModel, and every .tflite built from it, takes NHWC input:
a recipe for an ONNX model keeps `preprocess.layout: nhwc`, and the ONNX model's own
layout is recorded in the manifest and the report. The conversion runs in a child
process (onnx2tf sets process-wide TensorFlow state) and is cached by the ONNX file's
SHA-256 under `<cache>/onnx/`, so a second build of the same model does not convert again.

onnx2tf's newest releases pin tensorflow 2.19, numpy 1.26 and protobuf 4; the
`onnx` extra takes the newest release without those pins (1.28.8), which converts
under TensorFlow 2.21 (checked against onnxruntime on every build).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgequant.errors import BuildError, ModelFileError
from edgequant.extras import require
from edgequant.model.saved_model import saved_model_inputs
from edgequant.process.cache import cache_dir

CONVERTER = "onnx2tf"

_CONVERT = (
    "import sys, onnx2tf; "
    "onnx2tf.convert(input_onnx_file_path=sys.argv[1], output_folder_path=sys.argv[2], non_verbose=True)"
)


@dataclass(frozen=True)
class OnnxSource:
    """The original ONNX model: its input as ONNX declares it, and the layout the converted model takes."""

    path: str
    input_name: str
    input_shape: tuple[int, ...]  # without batch, -1 where dynamic, in the ONNX model's own layout
    onnx_layout: str  # "nchw", "nhwc" or "other" (not a 4-D image input)
    tflite_layout: str  # the layout of the converted SavedModel's (and every .tflite's) input
    converter: str  # "onnx2tf <version>"

    def to_dict(self) -> dict:
        return asdict(self)

    def to_onnx_layout(self, x: np.ndarray) -> np.ndarray:
        """A batch in the converted model's layout, rearranged for the ONNX model."""
        if self.onnx_layout == "nchw" and self.tflite_layout == "nhwc":
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x


def import_onnx(path: Path, sha256: str, input_shape: list[int] | None = None) -> tuple[Path, tuple, OnnxSource]:
    """The SavedModel converted from the ONNX model at `path` (converted now, or taken from the cache): its folder,
    its inputs, and what the ONNX model was (source_model.export_model wraps them in its ExportedModel)."""
    if input_shape is not None:
        raise ModelFileError(f"{path}: input_shape cannot override an ONNX model's input; export it with that shape")
    require("onnx2tf", "onnx", f"{path}: an ONNX model")
    import onnx2tf

    name, shape = onnx_input(path)
    converter = f"{CONVERTER} {onnx2tf.__version__}"
    target = cache_dir() / "onnx" / f"{sha256}-{CONVERTER}-{onnx2tf.__version__}"
    if not (target / "saved_model.pb").is_file():
        _convert(path, target)
    inputs = saved_model_inputs(target)
    tf_shape = inputs[0].shape
    source = OnnxSource(str(path), name, shape, *_layouts(shape, tf_shape), converter)
    return target, inputs, source


def onnx_input(path: Path) -> tuple[str, tuple[int, ...]]:
    onnx = require("onnx", "onnx", f"{path}: an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError ... on a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a valid ONNX model ({first[:300]})") from None
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelFileError(f"{path}: the ONNX model has {len(inputs)} inputs; edgequant supports one input")
    dims = inputs[0].type.tensor_type.shape.dim[1:]
    return inputs[0].name, tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)


def _layouts(onnx_shape: tuple[int, ...], tf_shape: tuple[int, ...]) -> tuple[str, str]:
    if len(onnx_shape) != 3 or len(tf_shape) != 3:
        return "other", "other"
    if tuple(tf_shape) == (onnx_shape[1], onnx_shape[2], onnx_shape[0]) and tuple(tf_shape) != tuple(onnx_shape):
        return "nchw", "nhwc"
    return ("nhwc", "nhwc") if tuple(tf_shape) == tuple(onnx_shape) else ("other", "other")


def _convert(path: Path, target: Path) -> None:
    """Run onnx2tf in a child process into a scratch folder beside `target`, then move the SavedModel into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as scratch:
        out = Path(scratch) / "saved_model"
        done = subprocess.run(
            [sys.executable, "-c", _CONVERT, str(path), str(out)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0 or not (out / "saved_model.pb").is_file():
            lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
            errors = [ln for ln in lines if "Error" in ln or "error" in ln] or lines or ["no output"]
            raise BuildError(f"{path}: {CONVERTER} could not convert the ONNX model ({errors[-1].strip()[:300]})")
        for extra in out.glob("*.tflite"):  # onnx2tf writes its own .tflite files too; edgequant converts its own
            extra.unlink()
        if target.exists():  # another build finished the same conversion first
            return
        shutil.move(str(out), str(target))
