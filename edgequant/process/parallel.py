"""Independent pieces of a build run side by side on threads (`edgequant build --jobs N`).

The pieces worth running in parallel are emulated device runs: each is a qemu process, so a thread
that waits on it costs nothing and N of them keep N cores busy. Results come back in the order the
pieces were given, whatever order they finish in, so a parallel build writes exactly what a serial one does.

Conversions stay one after another, measured on this 2-core machine while other work shared it
(load average 2 to 3.5): TFLiteConverter holds the GIL, so two MobileNetV2 conversions on two
threads took as long as serially (25.3 s against 26.2 s); in worker processes (one per core, this
process converting its share meanwhile) the 5-variant MobileNetV2 build took 79.2, 74.5 and 93.5 s
against 63.4, 76.7 and 62.4 s one after another: each worker imports TensorFlow and loads the
SavedModel again, and there was no idle core to win it back. A conversion keeps one core busy
(0.99 cores over 14.8 s for two), so on an idle machine worker processes might pay; that is untested.

What conversions share instead is the reading of the SavedModel, which TFLiteConverter did three
times per conversion (4.5 s of a 6 s MobileNetV2 conversion): `convert.make_converter` reads it once
per export, with byte-identical results. One float conversion and one calibration pass cannot feed
every mode: in TF 2.21, float16 and dynamic-range quantization are options of the MLIR conversion
itself, not passes over a float .tflite; int8 and int16x8 calibrate the same way, but int16x8 is
quantized by TF's older quantizer, which calibrates again inside `calibrate_and_quantize`, so one
calibration could feed both only through its private calibrator object. Not done.

When one piece fails or the build is interrupted, no further piece starts, and the subprocesses the
running pieces started are killed: a thread blocked in `subprocess.run` cannot be interrupted, and
its qemu would otherwise run on for minutes after Ctrl-C.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def default_jobs() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class ModelRun:
    """One emulated run: `function(model, *args)`; one step of the progress task `task` when it is done."""

    function: Callable
    model: Path
    args: tuple
    task: Any


def run_here(runs: Sequence[ModelRun], jobs: int) -> list:
    """The runs' results, `jobs` at a time on this machine."""
    return run_all([_stepping(run) for run in runs], jobs)


def _stepping(run: ModelRun) -> Callable:
    def piece():
        result = run.function(run.model, *run.args)
        run.task.advance()
        return result

    return piece


def run_all(pieces: Sequence[Callable[[], T]], jobs: int) -> list[T]:
    """Call every piece, at most `jobs` at once; their results in the pieces' order.

    A piece that raises stops the rest; the exception of the first failed piece (in the given order) is raised.
    """
    if jobs <= 1 or len(pieces) <= 1:
        return [piece() for piece in pieces]
    before = _child_pids()
    pool = ThreadPoolExecutor(max_workers=min(jobs, len(pieces)), thread_name_prefix="edgequant-job")
    futures = [pool.submit(piece) for piece in pieces]
    try:
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            raise failed.exception()
        return [f.result() for f in futures]
    except BaseException:
        for f in futures:
            f.cancel()
        while not all(f.done() for f in futures):  # a running piece may start its subprocess after a kill
            _kill(_child_pids() - before)  # the running pieces then fail fast; their errors are not the cause
            wait(futures, timeout=0.1)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _child_pids() -> set[int]:
    """This process's child processes, from /proc."""
    me, children = os.getpid(), set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # it ended while we looked
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])  # the name in parentheses may hold spaces
        if ppid == me:
            children.add(int(entry.name))
    return children


def _kill(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
