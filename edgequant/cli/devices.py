"""`edgequant devices`: simulated edge devices (profiles, set-up, estimates, ARM parity).

Every latency printed here is an estimate from instructions counted on an
emulated ARM core and the profile's calibrated cost model, never a measurement.
"""

import json
from pathlib import Path
from typing import Annotated

import typer

from edgequant.report.formatting import plural

app = typer.Typer(
    help="Simulated edge devices: ARM kernels under qemu, estimated latency, ARM parity.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
)

DeviceOpt = Annotated[list[str], typer.Option("--device", "-d", help="profile name (see `edgequant devices`) or a .yaml path")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
KernelsOpt = Annotated[str, typer.Option("--kernels", "-k", help="runtime to estimate for: xnnpack (LiteRT's default) "
                                         "or builtin (TFLite's builtin kernels, XNNPACK off)")]


def _check_model_file(model: Path) -> None:
    """A corrupt .tflite is bad input (exit 2), found here rather than inside the emulated device."""
    from edgequant.model.tflite_file import check_tflite

    check_tflite(model)


def _console():
    from edgequant.cli.render import wide_console

    return wide_console()  # a plain Console squeezes every cell to 80 columns in a CI log


@app.callback()
def devices(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the device profiles (or run a subcommand)."""
    if ctx.invoked_subcommand is None:
        list_devices(as_json=as_json)


@app.command("list")
def list_devices(as_json: JsonOpt = False) -> None:
    """List the device profiles: device, core, emulated CPU, clock, cores, calibration."""
    from edgequant.devices.profiles import list_profiles

    profiles = list_profiles()
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in profiles], indent=2))
        return
    from rich.table import Table

    table = Table(title="device profiles (latencies for emulated ones are estimates)", title_justify="left")
    for col in ("name", "device", "core", "emulated as", "clock GHz", "cores", "memory", "calibration"):
        table.add_column(col, justify="right" if col in ("clock GHz", "cores") else "left")
    for p in profiles:
        if not p.emulated:
            table.add_row(p.name, p.device, p.core, "native (measured)", "-", "-", "-", "measured, not estimated")
            continue
        clock = f"{p.clock_ghz:g}" + (f"/{p.multi_thread_clock_ghz:g}" if p.multi_thread_clock_ghz else "")
        cores = str(p.cores) + "".join(f"+{c.cores}" for c in p.other_cores)
        err, rows = p.calibration_error_pct, p.cost.calibration_rows
        cal = (f"{rows} row{'s' * (rows != 1)}, LODO {err:.0f}%" if rows and err is not None else "no rows") + (
               f", interval x{p.cost.interval_widening:g}" if p.cost.interval_widening > 1 else "")
        table.add_row(p.name, p.device, p.core, f"{p.qemu_cpu} ({p.cpu_part:#x})", clock, cores,
                      f"{p.memory_mb / 1024:g} GB", cal)
    _console().print(table)


@app.command("setup")
def setup(force: Annotated[bool, typer.Option("--force", help="rebuild everything")] = False) -> None:
    """Build the emulated arm64 environment (idempotent; CI runs this once)."""
    from edgequant.devices.arm.install import ensure_arm_environment

    env = ensure_arm_environment(force=force, progress=lambda msg: typer.echo(msg, err=True))
    for step in env.steps:
        detail = f" — {step.detail}" if step.detail else ""
        timing = f" in {step.seconds:.1f} s" if step.action == "built" else ""
        typer.echo(f"{step.action:>8}: {step.name}{timing}{detail}")
    typer.echo(f"ready: {env.home} (qemu {env.qemu}, guest {env.python}, ai-edge-litert {env.litert_version})")


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="profile name or .yaml path")]) -> None:
    """Print one profile, with the /proc/cpuinfo its emulated core sees."""
    import yaml

    from edgequant.devices.profiles import load_profile

    prof = load_profile(name)
    typer.echo(yaml.safe_dump(prof.to_dict(), sort_keys=False, width=110).rstrip())
    if prof.emulated:
        typer.echo("\n# faked /proc/cpuinfo (first core)\n" + prof.cpuinfo_text(1).rstrip())


@app.command("new")
def new(
    like: Annotated[str, typer.Option("--like", help="profile with the same core type (name or .yaml path)")],
    name: Annotated[str, typer.Option("--name", help="name of the new profile (lowercase, digits, - _ .)")],
    clock: Annotated[float | None, typer.Option("--clock", help="clock of the cores in GHz", min=0.1)] = None,
    cores: Annotated[int | None, typer.Option("--cores", help="cores of that type", min=1)] = None,
    memory: Annotated[int | None, typer.Option("--memory", help="RAM in MB", min=1)] = None,
    bandwidth: Annotated[float | None, typer.Option("--bandwidth", help="sustained DRAM bandwidth in GB/s",
                                                    min=0.01)] = None,
    device: Annotated[str | None, typer.Option("--device", help="what the board is, e.g. 'NXP i.MX 8M Plus'")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="file to write (default NAME.yaml)")] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a profile for a board with a known core: `--like`'s core, your clock, cores and memory.

    Its estimates use the core's published timings and the shared fit; as the board has no
    calibration row, its interval is widened. Use it with --device NAME.yaml.
    """
    from edgequant.devices.profiles import derive_profile, save_profile
    from edgequant.errors import InputError

    prof = derive_profile(like, name, clock_ghz=clock, cores=cores, memory_mb=memory,
                          memory_bandwidth_gbs=bandwidth, device=device)
    path = out or Path(f"{name}.yaml")
    if path.exists() and not force:
        raise InputError(f"{path}: exists (use --force to overwrite)")
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: no such directory")
    save_profile(prof, path)
    typer.echo(f"wrote {path}: {prof.device}, {prof.cores}x {prof.core} @ {prof.clock_ghz:g} GHz, "
               f"interval widened x{prof.cost.interval_widening:g}; use --device {path}")


@app.command("estimate")
def estimate(
    model: Annotated[Path, typer.Argument(help=".tflite file")],
    device: DeviceOpt = ["rpi4"],  # noqa: B006 - typer reads the default
    threads: Annotated[int, typer.Option("--threads", "-t", min=1)] = 1,
    kernels: KernelsOpt = "xnnpack",
    as_json: JsonOpt = False,
) -> None:
    """Estimate the latency of a .tflite on simulated devices (counts ARM instructions under qemu)."""
    from edgequant.devices.estimate import estimate_latency

    _check_model_file(model)
    results = [estimate_latency(model, d, threads=threads, kernels=kernels) for d in device]
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    console = _console()
    for r in results:
        console.print(render_estimate(r), soft_wrap=True)  # a layer's line names its kernel in full


def render_estimate(r) -> str:
    by_threads = ", ".join(f"{n}t {ms:.1f}" for n, ms in r.latency_ms_by_threads.items())
    lo, hi = r.interval_ms
    fit = r.memory.fits
    mem = ("fits" if fit else "DOES NOT FIT" if fit is False else "unknown") + (
        f" ({r.memory.required_mb:.0f} MB of {r.memory.available_mb} MB available)" if r.memory.available_mb else "")
    lines = [
        f"[bold]{r.profile}[/] ({r.device}, {r.core}, emulated as {r.qemu_cpu}): "
        f"[bold]{r.latency_ms:.1f} ms ({r.calibration})[/] at {plural(r.threads, 'thread')} — estimate for {r.runtime}",
        f"  interval: ± the 90th percentile of the errors of fits that never saw the model's family, around the "
        f"estimate ({r.interval_group} rows, widened where few); {r.calibration_source}",
        f"  by threads (ms, estimates): {by_threads}",
        f"  {r.instructions_per_invoke:,} ARM instructions per invoke; memory: {mem}",
    ]
    from edgequant.devices.arm.symbols import demangle

    names = demangle([k.symbol for k in r.kernel_shares[:5]])
    for k in r.kernel_shares[:5]:
        lines.append(f"  {k.share:6.1%}  {names.get(k.symbol, k.symbol)}")
    from rich.markup import escape

    lines += [escape(line) for line in layer_lines(r)]
    return "\n".join(lines)


def layer_lines(r) -> list[str]:
    """The slowest layers of an estimate, those that fell back from XNNPACK and the runtime overhead."""
    from edgequant.devices.layers import shown_rows

    layers = [layer.to_dict() for layer in r.layers]
    if not layers:
        return []
    nodes = sum(layer["node"] is not None for layer in layers)
    lines = [f"  slowest layers of {nodes} (estimates: their share of the {r.latency_ms:g} ms estimate at "
             f"{plural(r.threads, 'thread')}):"]
    for node, name, ms, share, kernel in shown_rows(layers):
        what = f"{node} {name} — {kernel}" if kernel != "-" else f"{node}: {name}"  # the overhead has no kernel
        lines.append(f"  {ms:8.3f} ms {share:6.1%}  {what}")
    return lines


@app.command("parity")
def parity(
    model: Annotated[Path, typer.Argument(help=".tflite file")],
    device: DeviceOpt = ["rpi4"],  # noqa: B006
    inputs: Annotated[Path | None, typer.Option(help=".npy of samples stacked on axis 0 (default: 4 random)")] = None,
    samples: Annotated[int, typer.Option(help="samples to take from --inputs", min=1)] = 16,
    as_json: JsonOpt = False,
) -> None:
    """Check that a .tflite computes the same on the device's ARM kernels as on this host."""
    import numpy as np

    from edgequant.devices.parity import check_parity
    from edgequant.errors import DataError

    _check_model_file(model)
    data = None
    if inputs is not None:
        try:
            data = list(np.load(inputs, allow_pickle=False)[:samples])
        except (OSError, ValueError) as exc:
            raise DataError(f"{inputs}: cannot read samples ({exc})") from None
    results = [check_parity(model, d, data) for d in device]
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        from edgequant.report.render import parity_verdict

        for r in results:
            typer.echo(f"{r.profile}: {parity_verdict(r.to_dict())}: {r.summary()}")
    if not all(r.exact or not r.integer_outputs for r in results):
        raise typer.Exit(1)


@app.command("kernels")
def kernels(
    model: Annotated[Path, typer.Argument(help=".tflite file")],
    device: DeviceOpt = ["rpi4"],  # noqa: B006
    top: Annotated[int, typer.Option(min=1)] = 12,
    kernels: KernelsOpt = "xnnpack",
) -> None:
    """Where one invoke's ARM instructions go: kernels and other functions, and the instruction mix."""
    from edgequant.devices.arm.runner import run_on_device
    from edgequant.devices.estimate import count_record, estimate_latency

    _check_model_file(model)
    for d in device:
        run = run_on_device(model, d, kernels=kernels)
        typer.echo(f"{run.profile} ({run.core}, emulated as {run.qemu_cpu}, {kernels} kernels): "
                   f"{run.instructions_per_invoke:,} instructions per invoke")
        from edgequant.devices.arm.symbols import demangle

        names = demangle([k.symbol for k in run.kernel_shares[:top]])
        typer.echo("  mix: " + ", ".join(f"{k} {v:,}" for k, v in run.instruction_mix.items()))
        for k in run.kernel_shares[:top]:
            typer.echo(f"  {k.share:6.1%}  {k.instructions:>14,d}  {names.get(k.symbol, k.symbol)}  [{k.library}]")
        for line in layer_lines(estimate_latency(model, d, kernels=kernels, counts=count_record(run))):
            typer.echo(line)


def bench_on_devices(
    models: dict[str, Path],
    devices: list[str],
    *,
    threads: int = 1,
    kernels: str = "xnnpack",
    parity: bool = False,
    as_json: bool = False,
    console=None,
):
    """Estimate each variant on each device and print the table; returns the DeviceComparison.

    For `edgequant bench model.tflite --device rpi4 --parity`: pass {"float32": a, "int8": b}
    to get the int8 speedup over float32 on each device.
    """
    from edgequant.devices.compare import compare_on_devices
    from edgequant.report.render import parity_verdict

    for path in models.values():
        _check_model_file(path)
    result = compare_on_devices(models, devices, threads=threads, parity=parity, kernels=kernels)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return result
    from rich.table import Table

    from edgequant.devices.estimate import RUNTIMES

    table = Table(title=f"simulated devices, {plural(threads, 'thread')}, {RUNTIMES[kernels]} — latencies are ESTIMATES "
                  "from counted ARM instructions, with the 5th-95th percentile band of the errors on devices "
                  "left out of the fit", title_justify="left")
    for col in ("device", "core", "variant", "est. latency", "interval", "vs float32", "ARM parity", "memory"):
        table.add_column(col)
    for row in result.rows:
        e = row.estimate
        speed = f"{row.speedup_vs_float32:.2f}x" if row.speedup_vs_float32 else "-"
        par = parity_verdict(row.parity.to_dict()) if row.parity else "-"
        fit = e.memory.fits
        mem = f"{e.memory.required_mb:.0f} MB " + ("fits" if fit else "too big" if fit is False else "?")
        table.add_row(row.device, e.core, row.variant, f"~{e.latency_ms:.1f} ms", e.calibration, speed, par, mem)
    (console or _console()).print(table)
    return result


@app.command("cache")
def cache(
    clear: Annotated[bool, typer.Option("--clear", help="remove every cached result")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The cached results of emulated runs (instruction counts, ARM parity checks): a rebuild whose models
    did not change reads them instead of emulating again. --clear removes them (the ARM environment stays)."""
    from edgequant.devices.run_cache import KINDS, entries
    from edgequant.devices.run_cache import clear as clear_cache
    from edgequant.process.cache import cache_dir

    found = clear_cache() if clear else entries()
    if as_json:
        typer.echo(json.dumps({"folder": str(cache_dir()), "cleared": clear, "entries": [
            {"kind": e.kind, "file": e.path.name, "size_bytes": e.size_bytes, "modified": e.modified} for e in found
        ]}, indent=2))
        return
    size = sum(e.size_bytes for e in found)
    by_kind = ", ".join(f"{sum(e.kind == k for e in found)} {k}" for k in KINDS)
    verb = "removed" if clear else "holds"
    typer.echo(f"{cache_dir()}: {verb} {plural(len(found), 'result')} ({by_kind}), {size / 1024:.1f} KiB")
    if not clear:
        for e in found:
            typer.echo(f"  {e.kind:<7} {e.path.name}  {e.size_bytes:>7,d} B  {e.summary()}")
