"""`edgequant build recipe.yaml`: build, check and report every variant of a recipe."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgequant.errors import EXIT_GATE_FAILED, EXIT_INTERRUPTED


def build(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file")],
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="override the recipe's output_dir")] = None,
    variant: Annotated[Optional[list[str]], typer.Option("--variant", "-v", help="build only this variant (repeatable)")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="if another build is writing the output directory, wait for it")] = False,
) -> None:
    """Build every variant of RECIPE: convert, evaluate, benchmark, check gates, write artifacts and report.

    Exit codes: 0 success, 1 a gate failed, 2 bad input, 3 a build step failed, 130 interrupted, 143 terminated.
    """
    from edgequant.interrupts import handled, stop_on_signals

    try:
        with stop_on_signals(ignore_after_commit=_is_the_edgequant_process()):  # a signal after the commit undoes nothing
            from edgequant.cli.progress import RichProgress
            from edgequant.cli.render import print_build_summary
            from edgequant.pipeline import build_recipe  # imports TensorFlow: seconds that Ctrl-C may land in

            with RichProgress() as progress:
                result = build_recipe(recipe, output_dir=output_dir, only=variant or None, progress=progress, wait=wait)
            print_build_summary(result)
            for gate in result.failed_gates:
                typer.echo(f"edgequant: gate failed: {gate}", err=True)
    except KeyboardInterrupt as exc:  # SIGINT, or Terminated for SIGTERM
        handled()
        typer.echo(f"edgequant: {str(exc) or 'interrupted'}", err=True)
        raise typer.Exit(getattr(exc, "exit_code", EXIT_INTERRUPTED)) from None
    if not result.passed:
        raise typer.Exit(EXIT_GATE_FAILED)


def _is_the_edgequant_process() -> bool:
    """True when this command is the process (console script, `python -m edgequant`), which exits after it;
    False when `edgequant.cli.main` is called from other code, whose signal handlers must come back."""
    return getattr(sys.modules.get("__main__"), "__package__", None) == "edgequant" or Path(sys.argv[0]).name == "edgequant"
