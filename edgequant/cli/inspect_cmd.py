"""`edgequant inspect model.tflite`: what a .tflite file holds, read from the file itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def inspect(
    model: Annotated[Path, typer.Argument(help=".tflite file")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Print tensors, op counts by type and quantization parameters of a .tflite file.

    A file that the LiteRT interpreter rejects is corrupt: exit 2, as from every other command.
    """
    from edgequant.tflite_file import read_tflite, verify_loadable

    m = read_tflite(model)
    verify_loadable(model)
    if as_json:
        typer.echo(json.dumps(inspection_dict(m), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{model}[/]  {m.size_bytes:,} bytes  sha256 {m.sha256[:16]}…  "
        f"{len(m.operators)} ops, {len(m.tensors)} tensors, {m.num_subgraphs} subgraph(s)"
    )
    console.print(f"weights {m.weight_bytes:,} bytes: {_dtype_summary(m.tensor_dtypes(constant=True))}")
    console.print(f"activations: {_dtype_summary(m.tensor_dtypes(constant=False))}")
    for title, tensors in (("inputs", m.inputs), ("outputs", m.outputs)):
        table = Table(title=title, title_justify="left")
        for col in ("name", "shape", "dtype", "scale", "zero point"):
            table.add_column(col)
        for t in tensors:
            q = t.quantization
            table.add_row(t.name, str(list(t.shape_signature)), t.dtype,
                          _short(q.scale) if q else "-", _short(q.zero_point) if q else "-")
        console.print(table)
    ops = Table(title="operators", title_justify="left")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, n in m.op_counts().most_common():
        ops.add_row(op, str(n))
    console.print(ops)
    quantized = [t for t in m.tensors if t.quantization]
    if quantized:
        qt = Table(title=f"quantized tensors ({len(quantized)})", title_justify="left")
        for col in ("#", "name", "dtype", "shape", "scale", "zero point", "axis"):
            qt.add_column(col, overflow="fold")
        for t in quantized:
            q = t.quantization
            qt.add_row(str(t.index), t.name.split(";")[0][-40:], t.dtype, str(list(t.shape)),
                       _range(q.scale), _range(q.zero_point), str(q.axis) if q.per_channel else "-")
        console.print(qt)


def inspection_dict(m) -> dict:
    return {
        "size_bytes": m.size_bytes,
        "sha256": m.sha256,
        "inputs": [t.to_dict() for t in m.inputs],
        "outputs": [t.to_dict() for t in m.outputs],
        "op_counts": dict(m.op_counts().most_common()),
        "weight_bytes": m.weight_bytes,
        "tensors": [dict(t.to_dict(), index=t.index, constant=t.is_constant) for t in m.tensors],
    }


def _dtype_summary(counts) -> str:
    return ", ".join(f"{n} {dtype}" for dtype, n in counts.most_common()) or "none"


def _short(values) -> str:
    return ", ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values)


def _range(values) -> str:
    """One value, or `min..max xN` for per-channel parameters."""
    lo, hi = min(values), max(values)
    fmt = (lambda v: f"{v:.3g}") if isinstance(lo, float) else str
    return fmt(lo) if lo == hi else f"{fmt(lo)}..{fmt(hi)} x{len(values)}"
