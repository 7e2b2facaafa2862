"""Render library results for the terminal. Only presentation lives here."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from edgequant.report.formatting import plural


def wide_console(stderr: bool = False) -> Console:
    """A console that does not squeeze tables to 80 columns when output goes to a file or CI log."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=160)


def print_build_summary(result, console: Console | None = None) -> None:
    console = console or wide_console()
    report = result.report
    devices = sorted({lat.device for v in report.variants for lat in v.latency}, key=lambda d: (d != "host", d))
    table = Table(title=f"{report.recipe['name']}: {plural(len(report.variants), 'variant')} in {result.output_dir}")
    for col in ("variant", "mode", "size", "vs f32", "top-1", "drop", "agree"):
        table.add_column(col, justify="left" if col in ("variant", "mode") else "right")
    for d in devices:
        table.add_column(f"{d} ms" + ("" if d == "host" else " (est.)"), justify="right")
    table.add_column("gates")
    for v in report.variants:
        e = v.evaluation
        lat = {x.device: x for x in v.latency}
        row = [
            v.name,
            v.mode,
            f"{v.size_bytes / 1024:,.1f} KiB",
            f"{v.size_vs_reference:.0%}" if v.size_vs_reference else "-",
            f"{e.top1:.2%}" if e and e.top1 is not None else "-",
            f"{e.accuracy_drop_points:+.2f}" if e and e.accuracy_drop_points is not None else "-",
            f"{e.agreement:.2%}" if e and e.agreement is not None else "-",
        ]
        row += [f"{lat[d].ms:.3g}" if d in lat else "-" for d in devices]
        failed = [g for g in v.gates if not g.passed]
        row.append("-" if not v.gates else ("[red]FAIL[/]" if failed else "[green]pass[/]"))
        table.add_row(*row)
    console.print(table)
    from edgequant.report.html import near_tie_notes

    for v in report.variants:
        for note in near_tie_notes(v.name, v.evaluation.model_dump() if v.evaluation else None):
            console.print(note, highlight=False, markup=False, soft_wrap=True)
    mixed = [v for v in report.variants if v.mixed_precision and v.mixed_precision.float_layers]
    for v in mixed:
        console.print(f"{v.name}: kept in float: {', '.join(v.mixed_precision.float_layers)}")
    console.print(f"report: {result.output_dir / 'report.md'}, {result.output_dir / 'report.html'}")
