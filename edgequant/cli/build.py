"""`edgequant build recipe.yaml [more.yaml ...]`: build, check and report every variant of each recipe."""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgequant.cli.recipe_cmd import TrustCodeOpt
from edgequant.errors import EXIT_BUILD_FAILED, EXIT_GATE_FAILED, EdgequantError, InputError


def build(
    recipes: Annotated[list[Path], typer.Argument(help="recipe YAML file(s)")],
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="override the recipe's output_dir (one recipe only)")] = None,
    variant: Annotated[Optional[list[str]], typer.Option("--variant", "-v", help="build only this variant (repeatable)")] = None,
    trust_code: TrustCodeOpt = False,
    registry: Annotated[Optional[str], typer.Option("--registry", help="log and register the build in this MLflow store, e.g. sqlite:///mlruns.db")] = None,
    no_devices: Annotated[bool, typer.Option("--no-devices", help="skip the simulated devices (their latency gates fail as not measured)")] = False,
    no_bench: Annotated[bool, typer.Option("--no-bench", help="skip the host benchmark (its latency gates fail as not measured)")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="if another build is writing the output directory, wait for it")] = False,
    ray: Annotated[Optional[str], typer.Option("--ray", metavar="ADDRESS", help="run the emulated device runs as tasks on this Ray cluster ('auto': $RAY_ADDRESS, or the cluster on this machine); needs edgequant[ray]")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="emulated device runs at once (default: the number of cores); the output does not depend on it")] = None,
) -> None:
    """Build every variant of RECIPE: convert, evaluate, benchmark, check gates, write artifacts and report.

    For quick iterations, --no-devices and --no-bench skip the slow latency stages; the report says so, and
    a latency gate on what was skipped fails as "not measured", so a quick build never passes it.

    Several recipes build one after another, each into its own output directory, sharing what they have
    in common (a model is exported once; a model another recipe built is not emulated again). A recipe
    that fails does not stop the others; the exit code is the worst of theirs. An interrupt stops the
    recipe being built (its output directory keeps what it held) and the ones after it.

    Exit codes: 0 success, 1 a gate failed, 2 bad input, 3 a build step failed (also when a variant could
    not be built and the others were written: the summary names it and why), 4 an internal error,
    130 interrupted, 143 terminated.
    """
    options = dict(only=variant or None, trust_code=trust_code, registry=registry, devices=not no_devices,
                   host_benchmark=not no_bench, wait=wait, jobs=jobs, ray=ray)
    if len(recipes) == 1:
        run_build(recipes[0], output_dir=output_dir, **options)
        return
    if output_dir is not None:
        raise InputError("--output-dir: give one recipe, or let each recipe's output_dir apply")
    from edgequant.shared_work import shared_work

    worst = 0
    with shared_work() as shared:
        for i, recipe in enumerate(recipes):
            try:
                run_build(recipe, shared=shared, exits_after=i == len(recipes) - 1, **options)
            except typer.Exit as exc:
                worst = max(worst, exc.exit_code)
            except EdgequantError as exc:
                typer.echo(f"edgequant: error: {exc}", err=True)
                worst = max(worst, exc.exit_code)
    if worst:
        raise typer.Exit(worst)


def run_build(recipe, *, exits_after: bool = True, **options):
    """Build a recipe (file or Recipe) with a progress display, print the summary; exit 1 naming each failed gate.

    SIGINT and SIGTERM stop the build before its commit and never after it (edgequant.process.interrupts); the
    CLI's entry point then exits 130 or 143. `exits_after`: no other build follows in this process.
    """
    from edgequant.process.interrupts import Interrupted, stop_on_signals

    try:
        # a signal after the commit undoes nothing
        with stop_on_signals(ignore_after_commit=exits_after and _is_the_edgequant_process()):
            from edgequant.cli.progress import progress_for_stderr
            from edgequant.cli.render import print_build_summary
            from edgequant.pipeline import build_recipe  # imports TensorFlow: seconds that Ctrl-C may land in

            with progress_for_stderr() as progress:
                result = build_recipe(recipe, progress=progress, **options)
            print_build_summary(result)
            for warning in result.report.warnings:
                typer.echo(f"edgequant: warning: {warning}", err=True)
            for r in result.registered:
                typer.echo(f"registered {r.name} version {r.version}" + (" (candidate)" if r.candidate else ""))
            for gate in result.failed_gates:
                typer.echo(f"edgequant: gate failed: {gate}", err=True)
            for missing in result.report.not_built:
                typer.echo(f"edgequant: variant {missing.name} ({missing.mode}) not built: {missing.reason}", err=True)
    except KeyboardInterrupt as exc:  # SIGINT, or interrupts.Terminated for SIGTERM
        raise Interrupted(exc) from None
    if result.report.not_built:  # the others were written; a requested variant is missing
        raise typer.Exit(EXIT_BUILD_FAILED)
    if not result.passed:
        raise typer.Exit(EXIT_GATE_FAILED)
    return result


def _is_the_edgequant_process() -> bool:
    """True when this command is the process (console script, `python -m edgequant`), which exits after it;
    False when `edgequant.cli.main` is called from other code, whose signal handlers must come back."""
    return getattr(sys.modules.get("__main__"), "__package__", None) == "edgequant" or Path(sys.argv[0]).name == "edgequant"
