"""Emulated device runs as Ray tasks (`edgequant build --ray ADDRESS`), for builds one machine is too small for.

Each run (an estimate, an ARM parity check) becomes one task; the model travels as bytes through
Ray's object store, once per model. A worker runs it with its own edgequant and its own ARM
environment and cache of emulated results (`edgequant devices setup` on each node), and returns
the result; the driver alone writes the output directory, as a local build does. Ray is the
optional extra `edgequant[ray]`, imported only here.

A worker without the ARM environment fails its task at once with one line saying so: it never
starts building the environment itself (minutes of downloads on a node that may have no network).
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path

from edgequant.errors import EdgequantError, ToolMissingError
from edgequant.extras import require
from edgequant.process.parallel import ModelRun

POLL_SECONDS = 0.5  # the driver waits in slices this long, so Ctrl-C reaches it


def run_on_ray(runs: Sequence[ModelRun], address: str) -> list:
    """The runs' results, in order, from tasks on the Ray cluster at `address` ("auto": $RAY_ADDRESS or
    the cluster running on this machine)."""
    ray = require("ray", "ray", "--ray")
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ToolMissingError(f"--ray {address}: cannot connect to a Ray cluster there: {exc}") from None
    remote = ray.remote(_on_worker)
    models = {}
    refs = []
    for run in runs:
        if run.model not in models:
            models[run.model] = ray.put(run.model.read_bytes())
        refs.append(remote.remote(run.function, models[run.model], run.model.name, run.args))
    steps = dict(zip(refs, runs))
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
            for ref in done:
                _result(ray, ref)  # raises the task's own error as soon as it arrives
                steps[ref].task.advance()
        return [_result(ray, ref) for ref in refs]
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)  # ends the worker, and with it its qemu (setpriv --pdeathsig)
        raise


def _result(ray, ref):
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, EdgequantError):
            raise exc.cause from None
        raise


def _on_worker(function, model_bytes: bytes, name: str, args: tuple):
    """On a Ray worker: `function(model, *args)` on a copy of the model, if this node can emulate."""
    from edgequant.process.cache import cache_dir

    if not (cache_dir() / "arm64" / "state.json").is_file():
        raise ToolMissingError(
            f"Ray worker on {socket.gethostname()} (pid {os.getpid()}): no ARM environment in {cache_dir()}: "
            "run `edgequant devices setup` on every node of the cluster"
        )
    with tempfile.TemporaryDirectory(prefix="edgequant-ray-") as folder:
        model = Path(folder) / name
        model.write_bytes(model_bytes)
        return function(model, *args)
