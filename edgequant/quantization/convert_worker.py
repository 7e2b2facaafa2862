"""Conversions in a child process, so that a converter that crashes costs one variant and not the build.

TFLiteConverter is native code: on some models it dies with SIGSEGV (its int8 calibration of a recurrent
model's WHILE loop does, on every such model tried) and would take the whole build, and the Python
process of an API user, down with it. A build therefore converts in one long-lived child process
(`ConversionWorker`): it imports TensorFlow once and reads each SavedModel once (convert.make_converter's
cache), then converts variant after variant on request. When it dies, the request gets ConverterCrashed
("the converter crashed (signal 11)") and the next request starts a new child.

The child exports Keras model files too (`ConversionWorker.export`), so that a build whose stages need no
Keras model never imports TensorFlow in the parent: importing it in both processes cost a MobileNetV2 build
5.3 s of CPU, which was wall time whenever the other core was busy. The child imports TensorFlow as soon as
it starts, while the parent still reads the recipe and checks the calibration data.

The child runs no code of the recipe's: calibration samples are read by the parent (where data errors
are raised and the progress bar advances) and sent one by one as the converter asks for them, so memory
does not grow with the number of samples. Messages are framed bytes on two pipes (multiprocessing's
Connection, without pickle): JSON for requests and answers, `numpy.save` (allow_pickle=False) for samples.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from edgequant import errors
from edgequant.data.stream import InputSpec
from edgequant.errors import BuildError
from edgequant.model.source_model import ExportedModel, export_model, load_keras_model, source_kind
from edgequant.quantization.convert import sample_array

_SAMPLE, _END = b"S", b"E"


class ConverterCrashed(BuildError):
    """The converter's process was killed by a signal (a crash inside TensorFlow's native code)."""

    def __init__(self, label: str, signum: int):
        self.signum = signum
        super().__init__(f"{label}: the converter crashed (signal {signum})")
        self.reason = f"the converter crashed (signal {signum})"


class ConversionWorker:
    """A child process that converts variants of SavedModels; use as a context manager (or call close())."""

    def __init__(self):
        self._process: subprocess.Popen | None = None
        self._to_child: Connection | None = None
        self._from_child: Connection | None = None

    def __enter__(self) -> "ConversionWorker":
        self._start()  # TensorFlow's import in the child overlaps what the parent does next
        return self

    def __exit__(self, kind, *exc) -> None:
        if kind is not None and self._process is not None:  # interrupted or failed: its conversion is not wanted
            self._process.kill()
        self.close()

    def convert(self, saved_model_dir: Path, variant, representative=None) -> bytes:
        """The variant's .tflite bytes, as convert.convert_variant makes them, converted in the child.

        Raises BuildError as convert_variant does, ConverterCrashed when the child dies, and whatever the
        representative data raises (a DataError names the sample)."""
        request = {"saved_model": str(saved_model_dir), "variant": variant.model_dump(mode="json"),
                   "representative": representative is not None}
        _, data = self._exchange(request, f"variant {variant.name!r} ({variant.mode})", representative)
        return data

    def export(self, path: Path, workdir: Path, input_shape: list[int] | None = None, *, trust_code: bool = False,
               custom_objects=()) -> ExportedModel:
        """source_model.export_model's export, made in the child for a Keras model file; its Keras model is
        loaded again in this process only if a stage asks for it (ExportedModel.keras_model).

        Raises what export_model raises, and ConverterCrashed when the child dies."""
        kind = source_kind(path)
        if kind not in ("keras", "h5-keras3", "h5-tf_keras") or custom_objects:
            # SavedModels and ONNX files are read here (the recipe check reads a SavedModel's signature here
            # first anyway), and custom objects are imported from this process's sys.path, not the child's
            return export_model(path, workdir, input_shape, trust_code=trust_code, custom_objects=custom_objects)
        request = {"export": {"path": str(path), "workdir": str(workdir), "input_shape": input_shape,
                              "trust_code": trust_code}}
        answer, _ = self._exchange(request, f"{path}: exporting the model")
        exported = answer["exported"]
        return ExportedModel(
            Path(exported["saved_model_dir"]), tuple(InputSpec(n, tuple(s), d) for n, s, d in exported["inputs"]),
            kind, exported["sha256"], recurrent=tuple(exported["recurrent"]),
            load_keras=lambda: load_keras_model(path, kind, trust_code=trust_code),
        )

    def _exchange(self, request: dict, label: str, representative=None) -> tuple[dict, bytes | None]:
        """The child's answer to `request` and the bytes that follow it (a conversion's), sending it the samples
        it asks for."""
        if self._process is None or self._process.poll() is not None:
            self._start()
        data_error = None
        try:
            self._to_child.send_bytes(json.dumps(request).encode())
            samples = iter(representative()) if representative is not None else iter(())
            while True:
                message = self._from_child.recv_bytes()
                if message != _SAMPLE:
                    break
                try:
                    sample = next(samples, None) if data_error is None else None
                except Exception as exc:  # noqa: BLE001 - raised again below, once the child has finished
                    data_error, sample = exc, None
                self._to_child.send_bytes(_END if sample is None else _SAMPLE + _encode(sample))
            answer = json.loads(message)
            data = self._from_child.recv_bytes() if answer["ok"] and "exported" not in answer else None
        except (EOFError, OSError):
            signum = self._reap()
            if data_error is not None:
                raise data_error from None
            raise ConverterCrashed(label, signum) from None
        if data_error is not None:
            raise data_error
        if not answer["ok"]:
            kind = getattr(errors, answer["error"], None)
            kind = kind if isinstance(kind, type) and issubclass(kind, errors.EdgequantError) else BuildError
            raise kind(answer["message"])
        return answer, data

    def close(self) -> None:
        if self._process is None:
            return
        for conn in (self._to_child, self._from_child):
            conn.close()
        try:
            self._process.wait(timeout=10)  # the child ends at the end of its input
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def _start(self) -> None:
        if self._process is not None:
            self.close()
        request_read, request_write = os.pipe()
        answer_read, answer_write = os.pipe()
        # stdout goes where stderr goes (the run log): TensorFlow prints there, and the terminal is the CLI's
        self._process = subprocess.Popen(
            [sys.executable, "-m", "edgequant.quantization.convert_worker", str(request_read), str(answer_write)],
            pass_fds=(request_read, answer_write), stdin=subprocess.DEVNULL, stdout=2,
        )
        os.close(request_read)
        os.close(answer_write)
        self._to_child, self._from_child = Connection(request_write), Connection(answer_read)

    def _reap(self) -> int:
        """The signal that ended the child (its exit status if it exited), after it has ended."""
        for conn in (self._to_child, self._from_child):
            conn.close()
        code = self._process.wait()
        self._process = None
        return -code if code < 0 else code


def _encode(sample) -> bytes:
    buffer = io.BytesIO()
    if isinstance(sample, dict):
        np.savez(buffer, **{name: sample_array(v) for name, v in sample.items()})
    else:
        np.save(buffer, sample_array(sample), allow_pickle=False)
    return buffer.getvalue()


def _decode(data: bytes):
    loaded = np.load(io.BytesIO(data), allow_pickle=False)
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        return {name: loaded[name] for name in loaded.files}


def _serve(requests: Connection, answers: Connection) -> None:
    """The child: convert each request until the parent closes the pipe."""
    from pydantic import TypeAdapter

    from edgequant.quantization.convert import convert_variant
    from edgequant.recipe.schema import Variant

    adapter = TypeAdapter(Variant)
    while True:
        try:
            request = json.loads(requests.recv_bytes())
        except EOFError:
            return
        if "export" in request:
            try:
                answer = {"ok": True, "exported": _export(**request["export"])}
            except Exception as exc:  # noqa: BLE001 - every failure is the parent's to report
                answer = _failure(exc, f"{request['export']['path']}: cannot export the model")
            answers.send_bytes(json.dumps(answer).encode())
            continue
        variant = adapter.validate_json(json.dumps(request["variant"]))

        def representative():
            while True:
                answers.send_bytes(_SAMPLE)
                message = requests.recv_bytes()
                if message == _END:
                    return
                yield _decode(message[len(_SAMPLE):])

        try:
            data = convert_variant(Path(request["saved_model"]), variant,
                                   representative if request["representative"] else None)
        except Exception as exc:  # noqa: BLE001 - every failure is the parent's to report
            answers.send_bytes(json.dumps(_failure(exc, f"variant {variant.name!r}")).encode())
            continue
        answers.send_bytes(json.dumps({"ok": True}).encode())
        answers.send_bytes(data)


def _export(path: str, workdir: str, input_shape: list[int] | None, trust_code: bool) -> dict:
    exported = export_model(Path(path), Path(workdir), input_shape, trust_code=trust_code)
    return {"saved_model_dir": str(exported.saved_model_dir), "sha256": exported.source_sha256,
            "inputs": [[i.name, list(i.shape), i.dtype] for i in exported.inputs],
            "recurrent": list(exported.recurrent)}


def _failure(exc: Exception, label: str) -> dict:
    if isinstance(exc, errors.EdgequantError):
        return {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    return {"ok": False, "error": "BuildError", "message": f"{label}: {exc}"}


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it closes the pipes
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow  # noqa: F401 - now, while the parent has other work, rather than at the first request

    _serve(Connection(int(argv[0])), Connection(int(argv[1])))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # without TensorFlow's teardown (1.6 s after a MobileNetV2 build), which close() would wait for


if __name__ == "__main__":
    main(sys.argv[1:])
