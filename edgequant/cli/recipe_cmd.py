"""`edgequant recipe schema|check`: the recipe format, for editors and CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgequant.report.render import plural

app = typer.Typer(
    help="Recipe format: print the JSON Schema, validate a recipe.", no_args_is_help=True, rich_markup_mode=None
)


@app.command("schema")
def schema() -> None:
    """Print the recipe's JSON Schema (point your editor's YAML language server at it)."""
    from edgequant.recipe.schema import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command("check")
def check(recipe: Annotated[Path, typer.Argument(help="recipe YAML file")]) -> None:
    """Validate a recipe: exit 0 if it is valid, 2 with file:line:col and the field if not."""
    from edgequant.recipe.loader import load_recipe

    r = load_recipe(recipe)
    modes = ", ".join(f"{v.name} ({v.mode})" for v in r.variants)
    typer.echo(f"{recipe}: valid recipe '{r.name}': {plural(len(r.variants), 'variant')}: {modes}")
