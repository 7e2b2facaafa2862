"""Render a Report as `report.md` and PNG plots. Everything shown comes from report.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

from pydantic import ValidationError

from edgequant.errors import InputError
from edgequant.output.artifacts import REPORT_JSON, write_atomic
from edgequant.report.formatting import kib as _kib
from edgequant.report.formatting import pct as _pct
from edgequant.report.formatting import plural  # noqa: F401 (also imported from here by the pipeline)
from edgequant.report.formatting import pts as _pts
from edgequant.report.html import near_tie_notes, write_html
from edgequant.report.mixed_precision_section import mixed_precision_lines
from edgequant.report.onnx_section import onnx_lines
from edgequant.report.plots import output_note, quality_metric, write_plots
from edgequant.report.schema import Report


def load_report(build_dir: str | Path) -> Report:
    path = Path(build_dir) / REPORT_JSON
    if not path.is_file():
        raise InputError(f"{path}: no report here (run `edgequant build` first)")
    try:
        return Report.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise InputError(f"{path}: not a valid edgequant report ({str(exc).splitlines()[0]})") from None


def render_report(report: Report, out_dir: Path) -> list[Path]:
    """Write report.json, report.md, report.html and the plots into `out_dir`; returns the files written."""
    out_dir = Path(out_dir)
    files = [out_dir / REPORT_JSON, out_dir / "report.md"]
    write_atomic(files[0], report.model_dump_json(indent=2) + "\n")
    plots = write_plots(report, out_dir)
    write_atomic(files[1], markdown(report, [p.name for p in plots]))
    files.append(write_html(report, out_dir, plots))
    return files + plots


def markdown(report: Report, plot_names: list[str]) -> str:
    lines = [f"# edgequant report: {report.recipe.get('name')}", ""]
    failed = len(report.failed_gates)
    status = "all gates passed" if report.passed else f"**{plural(failed, 'gate')} failed**"
    lines += [
        f"Built {report.created} by edgequant {report.edgequant_version} from `{report.source_model.get('path')}` "
        f"(sha256 `{str(report.source_model.get('sha256'))[:16]}…`). {_reference_words(report)} {status}.",
        "",
    ]
    for w in report.warnings:
        lines += [f"> **Warning:** {w}", ""]
    if report.evaluation_data:
        lines += [f"Evaluation data: {report.evaluation_data}.", ""]
    evaluated = [v for v in report.variants if v.evaluation is not None]
    note = output_note(evaluated) if evaluated else ""
    if note:
        lines += [f"The model has {evaluated[0].evaluation.outputs} outputs: every figure below is {note}.", ""]
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
        failed_here = [g.gate for g in v.gates if not g.passed]
        cells.append("-" if not v.gates else ("FAIL: " + ", ".join(failed_here) if failed_here else "pass"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [line for v in evaluated for note in near_tie_notes(v.name, v.evaluation.model_dump())
              for line in (note, "")]
    lines += [f"- {n.name} ({n.mode}): not built: {n.reason}" for n in report.not_built] + (
        [""] if report.not_built else [])
    if evaluated:
        lines += [f"Plots show {quality_metric(evaluated).axis}.", ""]
        lines += _per_output_lines(evaluated)
    lines += _input_lines(report) + _timed_shape_lines(report)
    lines += _device_sections(report)
    if report.failed_gates:
        lines += ["## Failed gates", ""] + [f"- {g}" for g in report.failed_gates] + [""]
    for v in report.variants:
        lines += _variant_details(v)
    lines += _speed_section(report)
    lines += onnx_lines(report)
    # A device's calibration note repeats what its section already says.
    sections = {lat.device for v in report.variants for lat in v.latency if lat.estimate}
    notes = [n for n in report.notes if n.split(":", 1)[0] not in sections]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if plot_names:
        lines += ["## Plots", ""] + [f"![{n}]({n})" for n in plot_names] + [""]
    return "\n".join(lines)


def _per_output_lines(evaluated) -> list[str]:
    """Every output of every variant, by its kind: agreement and accuracy for classes, cosine and error for values."""
    if evaluated[0].evaluation.outputs <= 1 or not evaluated[0].evaluation.per_output:
        return []
    lines = ["## Outputs", "",
             "Each output measured against the reference's: `classes` (class probabilities) by top-1 agreement and "
             "accuracy, `values` by cosine similarity and relative error (RMS error / RMS of the reference). "
             "Judged: used by the gates and the verdict (`evaluation.outputs`).", "",
             "| variant | output | kind | judged | shape | agreement | top-1 | cosine | rel. error | MSE |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for v in evaluated:
        for o in v.evaluation.per_output:
            lines.append(f"| `{v.name}` | {o.index}: `{o.name}` | {o.kind} | {'yes' if o.judged else 'no'} | "
                         f"{list(o.shape)} | {_pct(o.agreement)} | {_pct(o.top1)} | {o.cosine:.5f} | "
                         f"{o.relative_error:.3g} | {o.mse:.3g} |")
    return lines + [""]


def _input_lines(report: Report) -> list[str]:
    """The inputs of a model with several (a one-input model's input is in the variant details)."""
    first = report.variants[0] if report.variants else None
    if first is None or len(first.inputs) <= 1:
        return []
    lines = ["## Inputs", "", "| variant | input | shape | dtype | quantization |", "|---|---|---|---|---|"]
    for v in report.variants:
        for t in v.inputs:
            q = t.get("quantization")
            quant = f"scale {q['scale'][0]:.4g}, zero point {q['zero_point'][0]}" if isinstance(q, dict) and \
                q.get("scale") else "none"
            lines.append(f"| `{v.name}` | `{t.get('name')}` | {t.get('shape_signature') or t.get('shape')} | "
                         f"{t.get('dtype')} | {quant} |")
    return lines + [""]


def _timed_shape_lines(report: Report) -> list[str]:
    """The input shape the host timed (and the devices ran): a dynamic axis takes its size from the data."""
    host = next((lat for v in report.variants for lat in v.latency if lat.device == "host"), None)
    shapes = host.details.get("input_shapes") if host is not None else None
    if not shapes:
        return []
    estimated = any(lat.estimate for v in report.variants for lat in v.latency)
    return [f"Latency timed at input shape {', '.join(map(str, shapes))} ({host.details.get('inputs', 'inputs')})"
            + ("; the simulated devices ran the same shape." if estimated else "."), ""]


def _reference_words(report: Report) -> str:
    if report.reference is None:
        return "No reference."
    if report.reference.startswith("."):
        return "Reference: a float32 conversion of the source model (not one of the variants, not written)."
    return f"Reference: the float32 variant `{report.reference}`."


FLOAT_PARITY_TOLERANCE = 1e-4  # largest difference ARM and x86 float kernels may show (summation order)


def parity_verdict(p: dict) -> str:
    """A verdict for one ARM parity check: pass or FAIL, and why."""
    if p.get("exact"):
        return f"pass: bit-exact ({p.get('samples')} samples)"
    outputs = p.get("outputs", [])
    integer = any(not str(o.get("dtype", "float")).startswith("float") for o in outputs)
    err = p.get("max_abs_error", 0.0)
    if integer:
        return f"FAIL: integer outputs differ (max {err:.3g})"
    agreement = p.get("top1_agreement")
    if err <= FLOAT_PARITY_TOLERANCE and agreement in (None, 1.0):
        return f"pass: float outputs within {FLOAT_PARITY_TOLERANCE:g} (max {err:.3g})"
    top1 = f", top-1 agrees on {agreement:.0%}" if agreement is not None else ""
    return f"FAIL: float outputs differ by up to {err:.3g}{top1} (tolerance {FLOAT_PARITY_TOLERANCE:g})"


def _device_sections(report: Report) -> list[str]:
    """Per simulated device: latency by threads, memory against the device's, flash, speed-up and parity."""
    estimated = {lat.device: lat for v in report.variants for lat in v.latency if lat.estimate}
    if not estimated:
        return []
    lines = [
        "## Simulated devices",
        "",
        "Latencies here are estimates: instructions counted while XNNPACK's ARM kernels run under emulation, "
        "turned into time by a cost model calibrated on published measurements. They are not measurements. "
        "Memory is an upper bound from the file (model, repacked weights, every activation at once, runtime).",
        "",
    ]
    for device, sample in sorted(estimated.items()):
        d = sample.details
        threads = sorted(int(t) for t in d.get("latency_ms_by_threads", {}))
        source = d.get("calibration_source", "")
        lines += [
            f"### {device}: {d.get('device', device)} ({d.get('core', '?')}, emulated as {d.get('qemu_cpu', '?')})",
            "",
            f"Calibration: {d.get('label', 'estimate')}" + (f"; {source}" if source else "") + ".",
            "",
        ]
        header = ["variant", *[f"{n} thread{'s' if n > 1 else ''} (est. ms)" for n in threads],
                  "peak RAM / device", "flash", f"speed-up vs `{report.reference}`", "ARM parity"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for v in report.variants:
            lat = next((x for x in v.latency if x.device == device), None)
            if lat is None:
                continue
            by_threads = lat.details.get("latency_ms_by_threads", {})
            mem = lat.details.get("memory", {})
            fits = mem.get("fits")
            fit = "fits" if fits else "DOES NOT FIT" if fits is False else "?"
            available = f"{mem['available_mb']:,} MB" if mem.get("available_mb") else "unknown"
            parity = next((p for p in v.arm_parity if p.get("device") == device), None)
            cells = [f"`{v.name}`", *[f"{by_threads[str(n)]:.3g}" if str(n) in by_threads else "-" for n in threads],
                     f"{mem.get('required_mb', 0):,.0f} MB of {available} ({fit})", _kib(v.size_bytes),
                     f"{lat.speedup_vs_reference:.2f}x" if lat.speedup_vs_reference else "-",
                     parity_verdict(parity) if parity else "-"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += _slowest_layers(report, device)
    return lines


def _slowest_layers(report: Report, device: str) -> list[str]:
    """Per variant, the layers that take longest on `device` and the runtime overhead (estimates)."""
    from edgequant.devices.layers import shown_rows

    rows = []
    for v in report.variants:
        lat = next((x for x in v.latency if x.device == device), None)
        for node, name, ms, share, kernel in shown_rows([x.model_dump() for x in lat.layers] if lat else []):
            rows.append(f"| `{v.name}` | {node} | {name} | {ms:.3g} | {share:.1%} | {kernel} |")
    if not rows:
        return []
    return ["Slowest layers (estimates: each layer's share of the variant's estimate, by the instructions counted "
            "while it ran; the layers and the runtime overhead add up to it):", "",
            "| variant | node | layer | est. ms | share | ran on |", "|---|---|---|---|---|---|", *rows, ""]


def _speed_section(report: Report) -> list[str]:
    """Why each variant is (not) faster on this host; the edge-device caveat once, not per variant."""
    from edgequant.bench.speed_explanation import DEVICE_HINT

    caveat = f" Do not read this as the edge-device speed: {DEVICE_HINT}."
    texts = [(v.name, v.speed_explanation["text"]) for v in report.variants
             if v.speed_explanation and v.speed_explanation.get("text")]
    if not texts:
        return []
    lines = ["## Speed on this host", ""]
    if any(caveat in text for _, text in texts):
        lines += [f"A host timing does not predict an edge device: {DEVICE_HINT}.", ""]
    for name, text in texts:
        lines += [f"### `{name}`: why it is (not) faster on this host", "", "```", text.replace(caveat, ""), "```", ""]
    return lines


def _layer_rmse(e) -> str:
    return f"{e.rmse_steps:.3f}" if math.isfinite(e.rmse_steps) else "not finite (see the plot)"


def _int8_fixes(v) -> list[str]:
    f = v.int8_fixes
    if f is None:
        return []
    verdict = "kept" if f.kept else f"not kept ({_int8_fixes_not_kept(f)}): the artifact is plain int8"
    lines = [f"### `{v.name}`: all-integer fixes", "",
             f"Asked for: {', '.join(f.requested)}; {verdict}. Decided on {f.decided_on}: agreement with float32 "
             f"{_pct(f.plain['agreement'])} plain, {_pct(f.fixed['agreement'])} fixed; output MSE "
             f"{f.plain['mse']:.3g} plain, {f.fixed['mse']:.3g} fixed.", ""]
    if f.float_check:
        lines.append(f"- equalization: {len(f.equalized_pairs)} layer pairs; float outputs moved by at most "
                     f"{f.float_check['max_abs_change']:.3g} on the calibration data (tolerance "
                     f"{f.float_check['tolerance']:.3g})")
    if f.adaround:
        lines.append(f"- adaptive rounding: {int(f.adaround['layers'])} layers, {int(f.adaround['flipped_weights'])} "
                     f"weights rounded away from nearest; layer output error {f.adaround['output_error_ratio']:.2f}x "
                     "nearest rounding's on the calibration data")
    if f.bias_shift:
        lines.append(f"- bias correction: {int(f.bias_shift['layers'])} layers, largest correction "
                     f"{f.bias_shift['max_correction']:.3g}")
    if f.range_changes is not None:
        lines.append(f"- activation ranges: {f.range_changes} tensors clipped")
    for skipped in f.skipped_layers:
        lines.append(f"- {skipped['fix']} left `{skipped['layer']}` alone: {skipped['reason']}")
    if f.layer_errors_plain and f.kept:
        lines += ["", "Per-layer error of plain int8, before the fixes (RMSE in steps, worst first): "
                  + ", ".join(f"`{e.layer}` {e.rmse_steps:.2f}" for e in f.layer_errors_plain[:5])
                  + ". The table below is after them."]
    elif f.layer_errors_plain:
        lines += ["", "The per-layer table below is of plain int8, the artifact: the fixes were not kept."]
    return lines + [""]


def _int8_fixes_not_kept(f) -> str:
    """Why the fixed model was not kept: worse, equal, or better by less than the noise of the samples judged."""
    sig = f.significance
    better = f.fixed["agreement"] > f.plain["agreement"] or (
        f.fixed["agreement"] == f.plain["agreement"] and f.fixed["mse"] < f.plain["mse"])
    if sig is None or not better:
        return "no better than plain int8 on that data"
    if f.fixed["agreement"] > f.plain["agreement"]:
        gain = (f"it agreed with float32 more often, {_pct(f.fixed['agreement'])} against {_pct(f.plain['agreement'])}, "
                f"but by {sig['agreement']:.1f} standard errors of the paired per-sample differences")
    else:
        gain = f"its output MSE was lower, but by {sig['mse']:.1f} standard errors of the paired per-sample differences"
    return (f"{gain}, and {sig['sigmas']:g} are needed: on this few samples the gain is not significant; "
            "more calibration samples would decide it")


def _variant_details(v) -> list[str]:
    lines: list[str] = []
    if v.gates:
        lines += [f"### `{v.name}` gates", "", "| gate | value | limit | status |", "|---|---|---|---|"]
        for g in v.gates:
            est = " (estimate)" if g.estimate else ""
            value = f"not measured ({g.not_measured})" if g.not_measured else f"{g.value:.4g}{est}"
            status = "pass" if g.passed else ("FAIL: " + g.reason if g.reason else "FAIL")
            lines.append(f"| {g.gate} | {value} | {g.limit:g} | {status} |")
        lines.append("")
    if v.mixed_precision is not None:
        lines += mixed_precision_lines(v.name, v.mixed_precision)
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
            lines.append(f"| `{e.layer}` | {e.op} | {_layer_rmse(e)} | {e.rmse:.3g} | {e.max_abs_error:.3g} |")
        lines.append("")
    return lines
