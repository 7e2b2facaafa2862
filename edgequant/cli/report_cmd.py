"""`edgequant report BUILD_DIR` and `edgequant compare A.tflite B.tflite --data ...`."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def report(
    build_dir: Annotated[
        Optional[Path], typer.Argument(help="a build's output directory, or its report.json")
    ] = None,
    schema: Annotated[bool, typer.Option("--schema", help="print the JSON Schema of report.json and exit")] = False,
    open_html: Annotated[bool, typer.Option("--open", help="open report.html in the web browser")] = False,
) -> None:
    """Re-render report.md, report.html and the plots of a build from its report.json.

    In an output directory edgequant manages, the re-rendered report is committed as a new build
    (the artifacts hard-linked from the current one): the committed build is never rewritten in place.
    """
    from edgequant.report.render import load_report
    from edgequant.report.schema import Report

    if schema:
        typer.echo(json.dumps(Report.model_json_schema(), indent=2))
        return
    if build_dir is None:
        raise typer.BadParameter("give a build directory, or --schema")
    if build_dir.is_file():
        build_dir = build_dir.parent
    from edgequant.output.output_dir import check_owned, current_build

    build_dir = _output_dir_of(build_dir)
    check_owned(build_dir)
    load_report(current_build(build_dir))  # a folder with no valid report: said before anything is written
    for path in _rerender(build_dir):
        typer.echo(f"wrote {path}")
    if open_html:
        _open_in_browser(build_dir)


def _output_dir_of(folder: Path) -> Path:
    """The output directory a build folder (OUT/.edgequant/builds/ID) belongs to; `folder` itself otherwise."""
    from edgequant.output.output_dir import BUILDS, STATE_DIR

    resolved = folder.resolve()
    if resolved.parent.name == BUILDS and resolved.parent.parent.name == STATE_DIR:
        return resolved.parent.parent.parent
    return folder


def _rerender(out: Path) -> list[Path]:
    """Render the report again: as a new build in an output directory edgequant manages, else in place
    (each file through a new file renamed into place, replacing any link there)."""
    from edgequant.errors import InputError
    from edgequant.output.output_dir import CURRENT, STATE_DIR, rebuild_from_current
    from edgequant.report.render import load_report, render_report

    if (out / STATE_DIR / CURRENT).is_symlink():
        written: list[Path] = []
        rebuild_from_current(out, lambda folder: written.extend(
            p.relative_to(folder) for p in render_report(load_report(folder), folder)))
        return [out / p for p in written]
    try:
        return render_report(load_report(out), out)
    except OSError as exc:
        raise InputError(f"{out}: cannot write the report ({exc.strerror or exc})") from None


def _open_in_browser(build_dir: Path) -> None:
    import webbrowser

    from edgequant.report.html import REPORT_HTML

    page = (build_dir / REPORT_HTML).resolve()
    if webbrowser.open(page.as_uri()):
        typer.echo(f"opened {page}")
    else:
        typer.echo(f"no web browser found: open {page}")


def compare(
    reference: Annotated[Path, typer.Argument(help="reference .tflite (e.g. the float32 build)")],
    candidate: Annotated[Path, typer.Argument(help=".tflite to compare with it")],
    data: Annotated[str, typer.Option(help="fashion-mnist[:train|test], a .npy/.npz file or an image folder")],
    labels: Annotated[Optional[Path], typer.Option(help=".npy of labels (with a .npy --data)")] = None,
    key: Annotated[str, typer.Option(help="array name in a .npz")] = "x",
    labels_key: Annotated[Optional[str], typer.Option(help="labels array name in a .npz")] = None,
    scale: Annotated[Optional[float], typer.Option(help="preprocess: multiply raw values")] = None,
    mean: Annotated[Optional[float], typer.Option(help="preprocess: subtract after scaling")] = None,
    std: Annotated[Optional[float], typer.Option(help="preprocess: divide after subtracting the mean")] = None,
    resize: Annotated[Optional[str], typer.Option(help="preprocess: HxW, e.g. 224x224")] = None,
    color: Annotated[Optional[str], typer.Option(help="preprocess: keep, rgb or grayscale")] = None,
    samples: Annotated[Optional[int], typer.Option(min=1, help="use at most this many samples")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="samples per interpreter call")] = 256,
    top_k: Annotated[int, typer.Option(min=1, help="k of top-k accuracy")] = 5,
    output: Annotated[Optional[str], typer.Option(
        "--output", help="the output to compare on, by name or index (default: every output is listed and the "
        "headline is the worst)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Compare two .tflite models on the same data: accuracy, agreement, output error, throughput.

    Two artifacts of one build use the preprocessing its manifest.json records; options override it.
    """
    from edgequant.measure.compare import build_preprocess, compare_models, data_spec

    recorded = build_preprocess(reference, candidate)
    if recorded is not None:
        typer.echo(f"preprocessing from {recorded[1]}: {recorded[0]}", err=True)
    spec = data_spec(data, labels=labels, key=key, labels_key=labels_key, preprocess=recorded and recorded[0],
                     scale=scale, mean=mean, std=std, resize=resize, color=color, samples=samples)
    chosen = int(output) if output is not None and output.isdigit() else output
    results = compare_models(reference, candidate, spec, batch_size=batch_size, top_k=top_k, output=chosen)
    if as_json:
        typer.echo(json.dumps({name: r.to_dict() for name, r in results.items()}, indent=2))
        return
    from rich.table import Table

    from edgequant.cli.render import wide_console

    first = next(iter(results.values()))
    several = first.outputs > 1
    on = f", output {first.output}" if several and output is not None else \
        f", worst of outputs {first.output}" if several else ""
    table = Table(title=f"{candidate.name} against {reference.name} on {first.samples} samples{on}")
    for col in ("model", "top-1", f"top-{top_k}", "agreement", "MSE", "cosine", "samples/s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for path, r in zip((reference, candidate), results.values()):
        table.add_row(
            str(path), _pct(r.top1), _pct(r.topk), _pct(r.agreement), f"{r.mse:.3g}", f"{r.cosine:.5f}",
            f"{r.throughput:,.0f}",
        )
    wide_console().print(table)
    from edgequant.report.html import near_tie_notes

    for note in near_tie_notes(candidate.name, list(results.values())[-1].to_dict(), reference.name):
        typer.echo(note)
    if several:
        per = Table(title=f"every output of {candidate.name} against {reference.name}'s")
        for col in ("output", "kind", "agreement", "top-1", "cosine", "rel. error", "MSE"):
            per.add_column(col, justify="left" if col in ("output", "kind") else "right")
        for o in list(results.values())[1].per_output:
            per.add_row(f"{o.index}: {o.name}", o.kind, _pct(o.agreement), _pct(o.top1), f"{o.cosine:.5f}",
                        f"{o.relative_error:.3g}", f"{o.mse:.3g}")
        wide_console().print(per)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"
