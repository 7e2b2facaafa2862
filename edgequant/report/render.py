"""Render a Report as `report.md` and PNG plots. Everything shown comes from report.json."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from edgequant.artifacts import write_atomic
from edgequant.errors import InputError
from edgequant.report.schema import Report

REPORT_JSON = "report.json"


def load_report(build_dir: str | Path) -> Report:
    path = Path(build_dir) / REPORT_JSON
    if not path.is_file():
        raise InputError(f"{path}: no report here (run `edgequant build` first)")
    try:
        return Report.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise InputError(f"{path}: not a valid edgequant report ({str(exc).splitlines()[0]})") from None


def render_report(report: Report, out_dir: Path) -> list[Path]:
    """Write report.json, report.md and the plots into `out_dir`; returns the files written."""
    out_dir = Path(out_dir)
    files = [out_dir / REPORT_JSON, out_dir / "report.md"]
    write_atomic(files[0], report.model_dump_json(indent=2) + "\n")
    plots = _plots(report, out_dir)
    write_atomic(files[1], markdown(report, [p.name for p in plots]))
    return files + plots


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}%"


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2f}"


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def markdown(report: Report, plot_names: list[str]) -> str:
    lines = [f"# edgequant report: {report.recipe.get('name')}", ""]
    status = "all gates passed" if report.passed else f"**{len(report.failed_gates)} gate(s) failed**"
    lines += [
        f"Built {report.created} by edgequant {report.edgequant_version} from `{report.source_model.get('path')}` "
        f"(sha256 `{str(report.source_model.get('sha256'))[:16]}…`). Reference: `{report.reference}`. {status}.",
        "",
    ]
    if report.evaluation_data:
        lines += [f"Evaluation data: {report.evaluation_data}.", ""]
    devices = sorted({lat.device for v in report.variants for lat in v.latency}, key=lambda d: (d != "host", d))
    header = ["variant", "mode", "size", "vs ref", "top-1", "drop (pts)", "agreement", "cosine"]
    header += [f"{d} ms" + (" (est.)" if d != "host" else "") for d in devices] + ["gates"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for v in report.variants:
        e = v.evaluation
        latency = {lat.device: lat for lat in v.latency}
        cells = [
            f"`{v.name}`",
            v.mode,
            _kib(v.size_bytes),
            f"{v.size_vs_reference:.0%}" if v.size_vs_reference is not None else "-",
            _pct(e.top1) if e else "-",
            _pts(e.accuracy_drop_points) if e else "-",
            _pct(e.agreement) if e else "-",
            f"{e.cosine:.5f}" if e else "-",
        ]
        for d in devices:
            lat = latency.get(d)
            speed = f" ({lat.speedup_vs_reference:.2f}x)" if lat and lat.speedup_vs_reference else ""
            cells.append(f"{lat.ms:.3g}{speed}" if lat else "-")
        failed = [g.gate for g in v.gates if not g.passed]
        cells.append("-" if not v.gates else ("FAIL: " + ", ".join(failed) if failed else "pass"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    estimated = {lat.device: lat for v in report.variants for lat in v.latency if lat.estimate}
    if estimated:
        lines += [
            "Latencies marked (est.) are estimates for simulated devices: instructions counted while XNNPACK's ARM "
            "kernels run under emulation, turned into time by a cost model calibrated on published measurements. "
            "They are not measurements. Each device's calibration:",
            "",
        ]
        for device, lat in sorted(estimated.items()):
            label = lat.details.get("label") or (
                f"estimate (±{lat.calibration_error_percent:.0f}%)" if lat.calibration_error_percent else "estimate"
            )
            source = lat.details.get("calibration_source", "")
            lines.append(f"- {device} ({lat.details.get('core', '?')}): {label}" + (f"; {source}" if source else ""))
        lines.append("")
    if report.failed_gates:
        lines += ["## Failed gates", ""] + [f"- {g}" for g in report.failed_gates] + [""]
    for v in report.variants:
        lines += _variant_details(v)
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    if plot_names:
        lines += ["## Plots", ""] + [f"![{n}]({n})" for n in plot_names] + [""]
    return "\n".join(lines)


def _int8_fixes(v) -> list[str]:
    f = v.int8_fixes
    if f is None:
        return []
    verdict = "kept" if f.kept else "not kept (no better than plain int8 on that data): the artifact is plain int8"
    lines = [f"### `{v.name}`: all-integer fixes", "",
             f"Asked for: {', '.join(f.requested)}; {verdict}. Decided on {f.decided_on}: agreement with float32 "
             f"{_pct(f.plain['agreement'])} plain, {_pct(f.fixed['agreement'])} fixed; output MSE "
             f"{f.plain['mse']:.3g} plain, {f.fixed['mse']:.3g} fixed.", ""]
    if f.float_check:
        lines.append(f"- equalization: {len(f.equalized_pairs)} layer pairs; float outputs moved by at most "
                     f"{f.float_check['max_abs_change']:.3g} on the calibration data (tolerance "
                     f"{f.float_check['tolerance']:.3g})")
    if f.bias_shift:
        lines.append(f"- bias correction: {int(f.bias_shift['layers'])} layers, largest correction "
                     f"{f.bias_shift['max_correction']:.3g}")
    if f.range_changes is not None:
        lines.append(f"- activation ranges: {f.range_changes} tensors clipped")
    if f.layer_errors_plain:
        lines += ["", "Per-layer error of plain int8, before the fixes (RMSE in steps, worst first): "
                  + ", ".join(f"`{e.layer}` {e.rmse_steps:.2f}" for e in f.layer_errors_plain[:5])
                  + ". The table below is after them."]
    return lines + [""]


def _variant_details(v) -> list[str]:
    lines: list[str] = []
    if v.gates:
        lines += [f"### `{v.name}` gates", "", "| gate | value | limit | status |", "|---|---|---|---|"]
        for g in v.gates:
            est = " (estimate)" if g.estimate else ""
            lines.append(f"| {g.gate} | {g.value:.4g}{est} | {g.limit:g} | {'pass' if g.passed else 'FAIL'} |")
        lines.append("")
    mp = v.mixed_precision
    if mp is not None:
        kept = ", ".join(f"`{n}`" for n in mp.float_layers) or "none"
        ops = ", ".join(mp.float_ops) or "none"
        lines += [f"### `{v.name}`: layers kept in float", "", f"Layers: {kept}. Op types: {ops}.", ""]
        if mp.automatic:
            base = mp.plain_int8
            if base is not None:
                lines.append(
                    f"Plain int8 (nothing in float): top-1 {_pct(base.top1)}, drop {_pts(base.accuracy_drop_points)} "
                    f"pts, {_kib(mp.plain_int8_size_bytes or 0)}."
                )
            outcome = "passed its gates" if mp.searched_to_pass else "did not pass within max_float_layers"
            lines += [f"The automatic search {outcome}. Each step keeps one more layer in float:", ""]
            lines += ["| step | layers added (a layer and the ops reading its output) | top-1 | drop (pts) | agreement "
                      "| size | size cost | host ms | latency cost |",
                      "|---|---|---|---|---|---|---|---|---|"]
            previous: list[str] = []
            for i, s in enumerate(mp.steps, 1):
                added = ", ".join(f"`{n}`" for n in s.float_layers if n not in previous)
                previous = s.float_layers
                ms = f"{s.host_latency_ms:.3g}" if s.host_latency_ms is not None else "-"
                dms = f"{s.latency_delta_ms:+.3g}" if s.latency_delta_ms is not None else "-"
                lines.append(
                    f"| {i} | {added} | {_pct(s.evaluation.top1)} | {_pts(s.evaluation.accuracy_drop_points)} |"
                    f" {_pct(s.evaluation.agreement)} |"
                    f" {_kib(s.size_bytes)} | {s.size_delta_bytes / 1024:+,.1f} KiB | {ms} | {dms} |"
                )
            lines.append("")
    lines += _int8_fixes(v)
    if v.layer_errors:
        lines += [
            f"### `{v.name}`: per-layer quantization error",
            "",
            "RMSE of each layer's int8 output against float, in quantization steps (rounding alone gives 0.29); "
            "worst first.",
            "",
            "| layer | op | RMSE (steps) | RMSE | max abs error |",
            "|---|---|---|---|---|",
        ]
        for e in v.layer_errors[:15]:
            lines.append(f"| `{e.layer}` | {e.op} | {e.rmse_steps:.3f} | {e.rmse:.3g} | {e.max_abs_error:.3g} |")
        lines.append("")
    if v.speed_explanation and v.speed_explanation.get("text"):
        lines += [f"### `{v.name}`: why it is (not) faster on this host", "", "```", v.speed_explanation["text"], "```", ""]
    for p in v.arm_parity:
        lines.append(f"- `{v.name}` ARM parity on {p.get('device')}: {p.get('summary', p)}")
    return lines


def _plots(report: Report, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    written: list[Path] = []
    evaluated = [v for v in report.variants if v.evaluation is not None]
    if evaluated:
        labelled = all(v.evaluation.top1 is not None for v in evaluated)
        quality = "top-1 accuracy (%)" if labelled else "agreement with reference (%)"

        def value(v):
            return 100 * (v.evaluation.top1 if labelled else (v.evaluation.agreement or v.evaluation.cosine))

        devices = sorted({lat.device for v in evaluated for lat in v.latency}, key=lambda d: (d != "host", d))
        panels = 1 + len(devices)
        cols = min(panels, 2)
        rows = (panels + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
        flat = [ax for row in axes for ax in row]
        for ax in flat[panels:]:
            ax.set_visible(False)
        colors = plt.get_cmap("tab10")
        markers = "osD^v<>pXh"
        style = {v.name: dict(color=colors(i % 10), marker=markers[i % len(markers)]) for i, v in enumerate(evaluated)}
        ax = flat[0]
        for v in evaluated:
            ax.scatter(v.size_bytes / 1024, value(v), s=60, label=v.name, **style[v.name])
        ax.set_xlabel("size (KiB)")
        ax.set_ylabel(quality)
        ax.set_title("accuracy against size")
        ax.grid(alpha=0.3)
        _honest_ylim(ax, [value(v) for v in evaluated])
        ax.legend(fontsize=8, loc="best")
        for ax, device in zip(flat[1:], devices):
            times = []
            for v in evaluated:
                lat = next((lat for lat in v.latency if lat.device == device), None)
                if lat is not None:
                    ax.scatter(lat.ms, value(v), s=60, label=v.name, **style[v.name])
                    times.append(lat.ms)
            est = " (estimate)" if device != "host" else " (measured)"
            if times and max(times) > 10 * min(times):
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            _honest_ylim(ax, [value(v) for v in evaluated])
            ax.set_xlabel(f"latency on {device}{est}, ms")
            ax.set_ylabel(quality)
            ax.set_title(f"accuracy against latency: {device}{est}")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        written.append(_save(fig, out_dir / "accuracy_size_latency.png"))
        plt.close(fig)
    for v in report.variants:
        if not v.layer_errors:
            continue
        layers = v.layer_errors[:20][::-1]
        fig, ax = plt.subplots(figsize=(10, 0.35 * len(layers) + 1.6))
        labels = ["/".join(e.layer.split("/")[-2:])[-40:] + f" ({e.op})" for e in layers]
        ax.barh(labels, [e.rmse_steps for e in layers], color="tab:orange")
        ax.axvline(0.2887, color="gray", linestyle="--", label="rounding noise alone (0.29 steps)")
        ax.set_xlabel("RMSE of int8 output against float, in quantization steps")
        ax.set_title(f"{v.name}: per-layer quantization error, worst at the top", fontsize=10)
        ax.legend(loc="lower right")
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"layer_error_{v.name}.png"))
        plt.close(fig)
    return written


def _honest_ylim(ax, values: list[float], min_span: float = 2.0) -> None:
    """Show at least `min_span` points, so a 0.05-point difference does not fill the plot."""
    lo, hi = min(values), max(values)
    if hi - lo < min_span:
        middle = (hi + lo) / 2
        lo, hi = middle - min_span / 2, middle + min_span / 2
    pad = (hi - lo) * 0.1
    ax.set_ylim(lo - pad, min(hi + pad, 100.5))


def _save(fig, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_atomic(path, buf.getvalue())
    return path
