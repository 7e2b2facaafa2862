"""The report.md section of an int8 variant with layers kept in float (`float_layers`, or the automatic search)."""

from __future__ import annotations

from edgequant.report.formatting import kib as _kib
from edgequant.report.formatting import pct as _pct
from edgequant.report.formatting import pts as _pts
from edgequant.report.schema import MixedPrecisionReport


def mixed_precision_lines(name: str, mp: MixedPrecisionReport) -> list[str]:
    """The report.md section of a variant with layers kept in float."""
    kept = ", ".join(f"`{n}`" for n in mp.float_layers) or "none"
    ops = ", ".join(mp.float_ops) or "none"
    lines = [f"### `{name}`: layers kept in float", "", f"Layers: {kept}. Op types: {ops}.", ""]
    if not mp.automatic:
        return lines
    lines += [
        f"The automatic search: {mp.outcome}. Each step keeps one more layer (and the ops reading its output) in "
        f"float. The steps were evaluated on {mp.selection_data}. The variant's own figures elsewhere in this report "
        "come from the other evaluation samples, which the search never saw.",
        "p (gain): the one-sided sign test's p-value that the step is more faithful to float32 than the best step "
        "before it, on the same samples; a higher score counts as a gain only when it is significant.",
        "",
    ]
    estimated = next((s.price.device for s in mp.steps if s.price.device), None)
    est_header = f" | {estimated} ms (est.)" if estimated else ""
    lines += [
        f"| step | layers added | top-1 | drop (pts) | agreement | cosine | p (gain) | gates | size "
        f"| vs step 0{est_header} | host ms (measured, ±sd) |",
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if estimated else "") + "---|",
    ]
    previous: list[str] = []
    base = mp.steps[0].size_bytes if mp.steps else 0
    for s in mp.steps:
        added = ", ".join(f"`{n}`" for n in s.float_layers if n not in previous) or "(none: plain int8)"
        previous = s.float_layers
        e, p = s.evaluation, s.price
        shipped = " **shipped**" if s.step == mp.shipped_step else ""
        est = ""
        if estimated:
            est = f" | {p.estimated_ms:.3g} ({p.estimate_label})" if p.estimated_ms is not None else " | -"
        host = f"{p.host_median_ms:.3g} ± {p.host_std_ms:.2g}" if p.host_median_ms is not None else "-"
        lines.append(
            f"| {s.step}{shipped} | {added} | {_pct(e.top1)} | {_pts(e.accuracy_drop_points)} | {_pct(e.agreement)} "
            f"| {e.cosine:.4f} | {'-' if s.p_value is None else f'{s.p_value:.2g}'} "
            f"| {'pass' if s.gates_passed else 'fail'} | {_kib(s.size_bytes)} "
            f"| {(s.size_bytes - base) / 1024:+,.1f} KiB{est} | {host} |"
        )
    lines.append("")
    if mp.skipped_layers:
        lines += [f"Not tried: `{layer}` ({why})." for layer, why in mp.skipped_layers.items()] + [""]
    return lines
