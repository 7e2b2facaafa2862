"""Render library results for the terminal. Only presentation lives here."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_build_summary(result, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"{result.recipe.name}: {len(result.artifacts)} variants in {result.output_dir}")
    for col, justify in (("variant", "left"), ("mode", "left"), ("size", "right"), ("vs float32", "right")):
        table.add_column(col, justify=justify)
    reference = next((a for a in result.artifacts if a.mode == "float32"), None)
    for a in result.artifacts:
        ratio = f"{a.size_bytes / reference.size_bytes:.0%}" if reference else "-"
        table.add_row(a.name, a.mode, f"{a.size_bytes / 1024:,.1f} KiB", ratio)
    console.print(table)
