"""`edgequant inspect model.tflite`: what a .tflite file holds, read from the file itself.

A Keras source model (.keras, .h5) is loaded and summarised instead: its input and output
shapes, and whether it rescales its input itself (a Rescaling layer), which decides the
recipe's preprocess.
"""

import json
from pathlib import Path
from typing import Annotated

import typer


def inspect(
    model: Annotated[Path, typer.Argument(help=".tflite file, or a Keras .keras/.h5 source model")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Print tensors, op counts by type and quantization parameters of a .tflite file.

    For a .keras or .h5 model: input and output shapes, and any Rescaling layer inside.
    A .tflite file that the LiteRT interpreter rejects is corrupt: exit 2, as from every other command.
    """
    if model.suffix.lower() in KERAS_SUFFIXES:
        _inspect_keras(model, as_json)
        return
    from edgequant.model.tflite_file import check_tflite

    m = check_tflite(model)
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


KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def keras_summary(path: Path) -> dict:
    """Shapes, size and the Rescaling layers (nested models included) of a Keras model file."""
    from edgequant.model.source_model import load_keras_model, source_kind
    from edgequant.process.native_log import native_log_to_file

    kind = source_kind(path)
    with native_log_to_file():
        model = load_keras_model(path, kind)
    rescaling = [
        {"layer": layer.name, "scale": _plain(layer.scale), "offset": _plain(layer.offset)}
        for layer in _all_layers(model) if type(layer).__name__ == "Rescaling"
    ]
    return {
        "path": str(path),
        "kind": kind,
        "inputs": [{"name": t.name, "shape": list(t.shape)} for t in model.inputs],
        "outputs": [{"name": t.name, "shape": list(t.shape)} for t in model.outputs],
        "layers": len(_all_layers(model)),
        "parameters": int(model.count_params()),
        "rescaling": rescaling,
    }


def _all_layers(model) -> list:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out += _all_layers(layer)
    return out


def _plain(value):
    import numpy as np

    array = np.asarray(value, dtype=float)
    return float(array) if array.ndim == 0 else array.tolist()


def _num(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _inspect_keras(path: Path, as_json: bool) -> None:
    info = keras_summary(path)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{path}  {info['kind']}  {info['layers']} layers, {info['parameters']:,} parameters")
    for role in ("inputs", "outputs"):
        for t in info[role]:
            shape = ", ".join("batch" if d is None else str(d) for d in t["shape"])
            typer.echo(f"{role[:-1]} {t['name']}: ({shape})")
    if info["rescaling"]:
        for r in info["rescaling"]:
            typer.echo(f"rescales its input: layer {r['layer']} computes x * {_num(r['scale'])} + {_num(r['offset'])} "
                       "(feed raw pixel values: no scale in the recipe's preprocess)")
    else:
        typer.echo("no Rescaling layer: the recipe's preprocess must scale inputs as the model was trained")


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
