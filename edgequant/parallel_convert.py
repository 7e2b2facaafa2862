"""Conversions of one exported model side by side, in worker processes.

TFLiteConverter holds the GIL while it converts: two conversions on two threads of one process took
as long as one after the other (MobileNetV2, float16 and dynamic: 26.2 s serial, 25.3 s on two threads).
So the conversions run in other processes, and this process converts its share meanwhile. A worker
pays for its start (importing TensorFlow, about 4-5 s here), so this only pays for models whose
conversion takes longer than that: the exported SavedModel must hold at least MIN_BYTES.

Why not derive every variant from one float conversion and one calibration pass: in TF 2.21,
float16 and dynamic-range quantization are options of the MLIR conversion itself, not passes over a
float .tflite, so each needs its own conversion. int8 and int16x8 do go float model -> calibration
(min/max of every tensor: the same statistics for both) -> quantizer, so one calibration could feed
both; but only through private modules (tensorflow.lite.python.optimize.calibrator and
convert.mlir_quantize) whose signatures change between TF releases. Not done, and not measured: it
would save one calibration pass, at the price of depending on private API.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from edgequant.interrupts import check
from edgequant.parallel import run_all
from edgequant.recipe.schema import CALIBRATED_MODES, CallableSource

MIN_BYTES = 8 << 20  # a SavedModel this big takes longer to convert than a worker takes to start
MODES = ("float32", "float16", "dynamic", "int8", "int16x8")  # qat trains first; auto float layers search


def worth_converting_side_by_side(saved_model_dir: Path, variants: list, calibration, jobs: int) -> list:
    """The variants to convert side by side, or [] when that gains nothing."""
    chosen = [v for v in variants if v.mode in MODES]
    if jobs < 2 or len(chosen) < 2:
        return []
    if calibration is not None and isinstance(calibration.source, CallableSource):  # runs user code: stays here
        return []
    size = sum(f.stat().st_size for f in saved_model_dir.rglob("*") if f.is_file())
    return chosen if size >= MIN_BYTES else []


def convert_side_by_side(saved_model_dir: Path, chosen: list, calibration, model_input, counts: dict,
                         jobs: int, task) -> dict[str, bytes | Exception]:
    """{variant name: its .tflite bytes, or the error its conversion raised}; `counts`: calibration samples
    per variant name. One step of `task` per conversion."""
    workers = min(jobs - 1, len(chosen) - 1)
    here = -(-(len(chosen) + workers) // (workers + 1))  # a worker's start costs about one conversion
    local, remote = chosen[:here], chosen[here:]

    def args(v):
        return str(saved_model_dir), v, calibration, model_input, counts.get(v.name)

    def convert_here():
        done = []
        for v in local:
            check()  # a signal stops this after the conversion under way
            done.append(_convert(*args(v)))
            task.advance()
        return done

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        def convert_there(v):
            def piece():
                result = pool.submit(_convert, *args(v)).result()
                task.advance()
                return result

            return piece

        here_results, *there = run_all([convert_here, *map(convert_there, remote)], jobs=1 + len(remote))
    return dict(zip([v.name for v in chosen], [*here_results, *there]))


def _convert(saved_model_dir: str, variant, calibration, model_input, count: int | None) -> bytes | Exception:
    """The conversion, or its error: raised later where a serial build raises it (in the variant's context)."""
    from edgequant.convert import convert_variant
    from edgequant.data.stream import iter_samples
    from edgequant.errors import EdgequantError

    representative = None
    if variant.mode in CALIBRATED_MODES:
        def representative():
            return (s.x for s in iter_samples(calibration, model_input, limit=count, role="calibration"))
    try:
        return convert_variant(Path(saved_model_dir), variant, representative)
    except EdgequantError as exc:
        return exc
