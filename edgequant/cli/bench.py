"""`edgequant bench model.tflite [...]`: host latency and memory through the LiteRT interpreter, and why
a quantized variant is (not) faster. Renders `edgequant.bench` results; measures nothing itself."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgequant.errors import InputError


def bench(
    models: Annotated[list[Path], typer.Argument(help=".tflite file(s); several are benchmarked interleaved")],
    threads: Annotated[Optional[list[str]], typer.Option("--threads", "-t", help="thread count(s), repeatable or comma-separated: -t 1 -t 2")] = None,
    runs: Annotated[int, typer.Option("--runs", "-n", help="timed invokes per configuration")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", help="untimed invokes per configuration first")] = 5,
    kernels: Annotated[Optional[list[str]], typer.Option("--kernels", "-k", help="xnnpack (default delegate), builtin, reference; repeatable or comma-separated")] = None,
    input_data: Annotated[Optional[Path], typer.Option("--input", help="real input data: .npy (one input) or .npz keyed by input name")] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of generated inputs")] = 0,
    float_inputs: Annotated[str, typer.Option("--float-inputs", help="generated float inputs: uniform ([0,1)) or normal")] = "uniform",
    explain: Annotated[bool, typer.Option("--explain/--no-explain", help="explain why each variant is (not) faster")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output on stdout")] = False,
    samples: Annotated[bool, typer.Option("--samples", help="with --json, include every raw sample")] = False,
    device: Annotated[Optional[list[str]], typer.Option("--device", "-d", help="simulated device profile (name or YAML path), repeatable: estimates instead of host timing")] = None,
    parity: Annotated[bool, typer.Option("--parity", help="with --device: run the same inputs on x86 and on the emulated ARM core and compare outputs")] = False,
) -> None:
    """Time .tflite models on this host (or estimate them on simulated devices with --device).

    Load and first-invoke time, steady-state latency (mean, median, p90, p99, min, std), RSS,
    threads. Several models, kernel choices or thread counts run interleaved round-robin, so
    their comparison holds on a busy machine.

    Exit codes: 0 success, 2 bad input (not a .tflite, truncated, custom op, bad option).
    """
    from edgequant.model.tflite_file import check_tflite

    for model in dict.fromkeys(models):
        check_tflite(model)  # the same check as every other command's: a corrupt file is exit 2, in the same words
    thread_counts = [_positive_int(v) for v in _split(threads or ["1"])]
    if device:
        _bench_on_devices(models, _split(device), thread_counts, parity, as_json, _split(kernels or ["xnnpack"]))
        return
    if parity:
        raise InputError("--parity compares the host with an emulated ARM core: add --device NAME")
    from edgequant.bench.host import benchmark

    kernel_choices = _split(kernels or ["xnnpack"])
    if float_inputs not in ("uniform", "normal"):
        raise InputError(f"--float-inputs: '{float_inputs}' is not one of uniform, normal")
    quiet = as_json
    with _progress(disabled=quiet) as progress:
        results = benchmark(models, kernels=kernel_choices, threads=thread_counts, runs=runs, warmup=warmup,
                            input_data=input_data, seed=seed, float_distribution=float_inputs, progress=progress)
    explanations = []
    if explain:
        from edgequant.bench.cpu_features import read_host_features
        from edgequant.bench.speed_explanation import explain_speed

        host = read_host_features()
        explanations = [explain_speed(m, host, name=str(m), results=results) for m in dict.fromkeys(models)]
    if as_json:
        payload = {
            "results": [r.to_dict(samples=samples) for r in results],
            "explanations": [e.to_dict() for e in explanations],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    _render(results, explanations)


def _bench_on_devices(models: list[Path], devices: list[str], threads: list[int], parity: bool, as_json: bool,
                      kernels: list[str]) -> None:
    """Estimates on simulated devices. A float32 model among `models` is the base of the int8 speedup."""
    from edgequant.cli.devices import bench_on_devices
    from edgequant.model.tflite_file import read_tflite

    if len(threads) != 1:
        raise InputError("--threads: with --device, give one thread count (estimates cover 1..cores anyway)")
    if len(kernels) != 1 or kernels[0] not in ("xnnpack", "builtin"):
        raise InputError(f"--kernels: with --device, give one of xnnpack, builtin (got {','.join(kernels)})")
    named: dict[str, Path] = {}
    for path in models:
        info = read_tflite(path)
        is_float = {t.dtype for t in info.inputs + info.outputs} == {"float32"} and not any(
            t.quantization for t in info.tensors if not t.is_constant
        ) and "float16" not in info.tensor_dtypes(constant=True) and "int8" not in info.tensor_dtypes(constant=True)
        named["float32" if is_float and "float32" not in named else path.stem] = path
    from edgequant.cli.render import wide_console

    bench_on_devices(named, devices, threads=threads[0], kernels=kernels[0], parity=parity, as_json=as_json,
                     console=wide_console())


def _split(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in str(value).split(",") if v.strip()]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"--threads: '{text}' is not a whole number") from None
    if value < 1:
        raise InputError(f"--threads: {value} is not a positive thread count")
    return value


class _progress:
    """A rich progress bar on stderr (stdout stays clean for --json), fed by the benchmark's callback."""

    def __init__(self, disabled: bool):
        self.disabled = disabled
        self._bar = None
        self._tasks: dict[str, int] = {}

    def __enter__(self):
        return None if self.disabled else self.update

    def update(self, phase: str, done: int, total: int) -> None:
        if self._bar is None:  # started on the first report, so an early input error prints nothing else
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self._bar.__enter__()
        if phase not in self._tasks:
            label = {"load": "loading", "warmup": "warm-up rounds", "runs": "timed rounds"}.get(phase, phase)
            self._tasks[phase] = self._bar.add_task(label, total=total)
        self._bar.update(self._tasks[phase], completed=done, total=total)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False


def _render(results, explanations) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 160))  # the table needs it; a pipe would otherwise get 80
    names = _short_names([r.model for r in results])
    table = Table(title=f"host latency in ms: {results[0].runs} timed runs after {results[0].warmup} warm-up, "
                        "configurations interleaved round-robin", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("model", "precision", "kernels", "thr", "load", "1st", "median", "p90", "p99", "mean",
                "min", "std", "+RSS MiB", "XNNPACK"):
        table.add_column(col, justify="left" if col in ("model", "precision", "kernels") else "right", no_wrap=True)
    for r in results:
        s = r.latency
        table.add_row(
            names[r.model], r.precision, r.kernels, str(r.threads), f"{r.load_ms:.1f}", f"{r.first_invoke_ms:.2f}",
            f"[bold]{s.median_ms:.3f}[/]", f"{s.p90_ms:.3f}", f"{s.p99_ms:.3f}", f"{s.mean_ms:.3f}", f"{s.min_ms:.3f}",
            f"{s.std_ms:.3f}", f"{r.rss_increase_bytes / 2**20:.1f}",
            f"{r.delegated_operators}/{r.operators}" + (f" in {r.delegate_partitions}" if r.delegate_partitions > 1 else ""),
        )
    console.print(table)
    first = results[0]
    cvs = [r.latency.cv for r in results]
    host = first.host
    console.print(
        f"peak RSS of this process {first.peak_rss_bytes / 2**20:.0f} MiB; 'RSS +MiB' is what loading, allocating and "
        f"first invoking each configuration added. Inputs: {first.inputs}. Runtime: {first.runtime}."
    )
    console.print(
        f"noise: coefficient of variation {min(cvs):.1%}-{max(cvs):.1%}, median CPU/wall per invoke "
        f"{min(r.cpu_per_wall for r in results):.2f}-{max(r.cpu_per_wall for r in results):.2f}; load average "
        f"{host.get('loadavg_1min') or float('nan'):.2f} -> {host.get('loadavg_1min_end') or float('nan'):.2f} on "
        f"{host.get('cpus')} CPUs ({host.get('cpu', '?')})."
    )
    for e in explanations:
        console.print()
        console.print(e.text(), markup=False, highlight=False)


def _short_names(paths: list[str]) -> dict[str, str]:
    """File names when they are unique, full paths otherwise."""
    unique = list(dict.fromkeys(paths))
    bases = [Path(p).stem for p in unique]
    if len(set(bases)) == len(bases):
        return dict(zip(unique, bases))
    return {p: p for p in unique}
