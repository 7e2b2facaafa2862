"""`edgequant promote NAME VERSION` and `edgequant rollback NAME`: move a registered model's `production` alias."""

from typing import Annotated

import typer

from edgequant.output.registry import DEFAULT_URI

RegistryOption = Annotated[
    str, typer.Option("--registry", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI (needs edgequant[mlflow])")
]


def promote(
    name: Annotated[str, typer.Argument(help="registered model, <recipe>-<variant>")],
    version: Annotated[str, typer.Argument(help="the version to put in production")],
    registry: RegistryOption = DEFAULT_URI,
    force: Annotated[bool, typer.Option("--force", help="promote a version whose gates failed")] = False,
) -> None:
    """Point NAME's `production` alias at VERSION (the previous one is kept for rollback).

    A version whose gates failed is refused, naming them, unless --force.
    """
    from edgequant.output.registry import promote as promote_version

    previous = promote_version(name, version, registry, force=force)
    before = f" (was version {previous})" if previous else ""
    typer.echo(f"{name}: production is version {version}{before}")


def rollback(
    name: Annotated[str, typer.Argument(help="registered model, <recipe>-<variant>")],
    registry: RegistryOption = DEFAULT_URI,
) -> None:
    """Move NAME's `production` alias back to the version that was production before."""
    from edgequant.output.registry import rollback as rollback_version

    current, restored = rollback_version(name, registry)
    typer.echo(f"{name}: production rolled back from version {current} to version {restored}")
