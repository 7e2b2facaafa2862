"""`edgequant recipe schema|check`: the recipe format, for editors and CI."""

import json
from pathlib import Path
from typing import Annotated

import typer

from edgequant.report.formatting import plural

app = typer.Typer(
    help="Recipe format: print the JSON Schema, validate a recipe.", no_args_is_help=True, rich_markup_mode=None
)


@app.command("schema")
def schema() -> None:
    """Print the recipe's JSON Schema (point your editor's YAML language server at it)."""
    from edgequant.recipe.schema import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


TrustCodeOpt = Annotated[
    bool,
    typer.Option("--trust-code", help="allow callable data sources and models with Lambda layers (they run Python); "
                 "EDGEQUANT_TRUST_CODE=1 does the same. A recipe cannot ask for it"),
]


@app.command("check")
def check(recipe: Annotated[Path, typer.Argument(help="recipe YAML file")], trust_code: TrustCodeOpt = False) -> None:
    """Validate a recipe and the files it names, as the build would, before any work.

    It runs no code of the recipe's, even with --trust-code (which then accepts callable sources and
    Lambda layers, unrun).

    Exit 0 if it is valid, 2 with every problem (file:line:col, field, what was expected), one per line.
    """
    from edgequant.errors import EXIT_BAD_INPUT
    from edgequant.recipe.loader import load_recipe
    from edgequant.recipe_check import recipe_problems

    problems = recipe_problems(recipe, trust_code=trust_code)
    for problem in problems:
        typer.echo(f"edgequant: error: {problem}", err=True)
    if problems:
        raise typer.Exit(EXIT_BAD_INPUT)
    r = load_recipe(recipe)
    modes = ", ".join(f"{v.name} ({v.mode})" for v in r.variants)
    typer.echo(f"{recipe}: valid recipe '{r.name}': {plural(len(r.variants), 'variant')}: {modes}")
