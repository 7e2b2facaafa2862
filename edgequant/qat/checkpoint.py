"""Saving and resuming QAT training state: the model, its fake-quant ranges and its optimizer.

A QAT model saves as tf_keras HDF5 (`.h5`) and reloads only inside tfmot's
`quantize_scope`; tf_keras's `.keras` format cannot reload tfmot's QuantizeLayer
(tfmot 0.8, tf_keras 2.21: "expected 5 variables, but received 3").

A recipe's QAT fine-tune writes one checkpoint per epoch to
`<cache>/qat/<key>/`, where <cache> is $EDGEQUANT_CACHE_DIR, else
$XDG_CACHE_HOME/edgequant, else ~/.cache/edgequant, and <key> hashes the source
model, the variant's settings and its training data. A build that is interrupted
resumes after the last finished epoch; a build that succeeds deletes its folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from edgequant.errors import InputError, ModelFileError
from edgequant.qat.callbacks import accept_keras3_callbacks

STATE = "state.json"


@contextlib.contextmanager
def quantize_scope(*custom_objects: dict):
    """tfmot's quantize_scope with edgequant's QuantizeConfigs (and any `custom_objects` dicts) known."""
    from edgequant.qat._tfmot import quantization_api
    from edgequant.qat.configs import CUSTOM_OBJECTS

    merged = dict(CUSTOM_OBJECTS)
    for extra in custom_objects:
        merged.update(extra)
    with quantization_api().quantize_scope(merged):
        yield


def save(qat_model, path: str | Path) -> Path:
    """Write a QAT model with its optimizer state to `path` (.h5), atomically."""
    path = Path(path)
    if path.suffix.lower() not in (".h5", ".hdf5"):
        raise InputError(f"{path}: save a QAT model as .h5 (tf_keras's .keras format cannot reload tfmot's layers)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        with warnings.catch_warnings():  # tf_keras calls .h5 "legacy"; it is the format tfmot's layers reload from
            warnings.filterwarnings("ignore", message=".*HDF5 file.*", category=UserWarning)
            qat_model.save(tmp, save_format="h5")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path, custom_objects: dict | None = None):
    """A QAT model saved by `save`, compiled and with its optimizer state, ready to `fit` on."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such QAT model file")
    import tf_keras

    try:
        with quantize_scope(custom_objects or {}):
            model = tf_keras.models.load_model(path)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: cannot load the QAT model ({first[:300]})") from None
    return accept_keras3_callbacks(model)



class EpochCheckpoints:
    """One folder holding the QAT model after its last finished epoch, and which epoch that was."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)

    def latest(self) -> tuple[int, Path] | None:
        """(epochs finished, model file) of the last checkpoint, or None."""
        try:
            state = json.loads((self.dir / STATE).read_text())
            epochs, file = int(state["epochs_done"]), self.dir / state["file"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return (epochs, file) if file.is_file() else None

    def save(self, qat_model, epochs_done: int) -> Path:
        file = save(qat_model, self.dir / f"epoch-{epochs_done}.h5")
        state = json.dumps({"epochs_done": epochs_done, "file": file.name})
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".state.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(state)
        os.replace(tmp, self.dir / STATE)  # the state names a file only once that file is complete
        for old in self.dir.glob("epoch-*.h5"):
            if old != file:
                old.unlink(missing_ok=True)
        return file

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
