"""Estimate on the simulated devices: every variant's latency under qemu, and the ARM parity of integer ones.

`estimate_on_devices(ctx, built, latencies)` adds each device's estimate to the variants' latency lists,
records the parity results in `ctx.parity`, and returns the notes the report states. The models are emulated
at the shape the host timed (`BuildContext.at_timed_shape`).
"""

from __future__ import annotations

from contextlib import ExitStack
from itertools import islice

from edgequant.data.stream import iter_samples
from edgequant.process.parallel import ModelRun, run_here
from edgequant.recipe.schema import LOWBIT_MODES
from edgequant.report.schema import LatencyReport
from edgequant.stages.context import INTERNAL_REFERENCE, BuildContext, batch_of_one, field_context


def estimate_on_devices(ctx: BuildContext, built: list, latencies: dict[str, list[LatencyReport]]) -> list[str]:
    """The recipe's simulated devices, unless the user skipped them."""
    notes: list[str] = []
    skipped = [d for d in ctx.recipe.device_names if d in ctx.skipped]
    if skipped:
        notes.append(f"simulated devices: skipped with --no-devices ({', '.join(skipped)}); no latency estimated")
    elif ctx.recipe.devices:
        with field_context(ctx.recipe_path, ["devices"]):
            notes += _estimate(ctx, built, latencies)
    return notes


def _estimate(ctx: BuildContext, built: list, latencies: dict[str, list[LatencyReport]]) -> list[str]:
    """Estimated latency of every variant on each simulated device, and ARM parity of integer variants.

    Every emulated run is its own piece, run `ctx.jobs` at a time; the results are assembled in the
    recipe's order, so the report does not depend on which run finished first."""
    from edgequant.devices import estimate_latency, load_profile
    from edgequant.devices.run_cache import cached_parity

    threads = ctx.recipe.benchmark.threads
    # the files as emulated: at the shape the host timed (a dynamic axis set from the data)
    models = {x.variant.name: ctx.work_file(x.variant.name, ctx.at_timed_shape(x.data)) for x in built}
    if ctx.reference not in models:
        models[ctx.reference] = ctx.work_file(INTERNAL_REFERENCE, ctx.at_timed_shape(ctx.reference_model()))
    parity_samples = _parity_inputs(ctx)
    integer = [x for x in built if x.variant.mode in ("int8", "qat", *LOWBIT_MODES)]
    runs, keys = [], []
    with ExitStack() as tasks:
        for entry in ctx.recipe.device_names:
            profile, kernels = load_profile(ctx.device_path(entry)), ctx.recipe.device_kernels(entry)
            # One step per emulated run (an estimate, or a parity check), so the bar moves and has an ETA.
            task = tasks.enter_context(ctx.progress.task(
                f"emulate on {profile.name} ({profile.core}, {kernels}): latency of {len(built)} models, "
                f"parity of {len(integer)}", total=len(models) + len(integer)))
            for name, path in models.items():
                runs.append(ModelRun(estimate_latency, path, (profile, threads, kernels), task))
                keys.append(("estimate", entry, name))
            for x in integer:
                parity_inputs = _in_input_order(x.data, parity_samples)
                runs.append(ModelRun(cached_parity, models[x.variant.name], (profile, parity_inputs or None), task))
                keys.append(("parity", entry, x.variant.name))
        results = dict(zip(keys, _emulate(ctx, runs)))
    notes = []
    for entry in ctx.recipe.device_names:
        for x in integer:
            ctx.parity.setdefault(x.variant.name, []).append(
                dict(results["parity", entry, x.variant.name], device=entry, model=x.artifact.file))
        reference_est = results["estimate", entry, ctx.reference]
        for x in built:
            est = results["estimate", entry, x.variant.name]
            latencies[x.variant.name].append(
                LatencyReport(
                    device=entry, ms=est.latency_ms, estimate=True,
                    calibration_error_percent=est.calibration_error_pct, interval_ms=list(est.interval_ms),
                    speedup_vs_reference=reference_est.latency_ms / est.latency_ms if est.latency_ms else None,
                    details=dict(est.to_dict(layers=False), model=f"{x.variant.name}.tflite"),  # not the temporary copy
                    layers=[layer.to_dict() for layer in est.layers],
                )
            )
        if not reference_est.calibration_rows:
            notes.append(f"{entry}: no calibration rows of its own: {reference_est.calibration_source}")
    return notes


def _emulate(ctx: BuildContext, runs: list[ModelRun]) -> list:
    if ctx.ray is None:
        return run_here(runs, ctx.jobs)
    from edgequant.process.ray_backend import run_on_ray

    return run_on_ray(runs, ctx.ray)


def _parity_inputs(ctx: BuildContext):
    """Up to 8 data samples of the timed shape (a dynamic axis can make others differ)."""
    spec = ctx.eval_spec or ctx.recipe.calibration
    if spec is None:
        return []
    timed = ctx.timing_sample()
    shapes = _shapes(timed[0]) if timed else None
    samples = (s.x for s in iter_samples(spec, ctx.exported.data_inputs, role="parity"))
    return list(islice((x for x in samples if shapes is None or _shapes(batch_of_one(x)) == shapes), 8))


def _in_input_order(data: bytes, samples: list) -> list:
    """Samples of a model with several inputs as lists in the model's input order (what parity runs take)."""
    if not samples or not isinstance(samples[0], dict):
        return samples
    from edgequant.model.runtime import in_input_order, load_interpreter

    interp = load_interpreter(data, kernels="builtin", allocate=False)
    return [in_input_order(interp, s) for s in samples]


def _shapes(x) -> tuple:
    return tuple(v.shape for v in x.values()) if isinstance(x, dict) else x.shape
