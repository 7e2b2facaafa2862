"""The ONNX part of report.md: the ONNX source's check against onnxruntime, and the variants written as ONNX."""

from __future__ import annotations

from edgequant.report.formatting import pct as _pct
from edgequant.report.formatting import pts as _pts
from edgequant.report.schema import Report


def onnx_lines(report: Report) -> list[str]:
    lines: list[str] = []
    check = report.onnx_source_check
    if check:
        verdict = "agrees" if check["passed"] else "**does not agree**"
        agreement = check.get("top1_agreement")
        lines += [
            "## ONNX source",
            "",
            f"`{report.reference}` (.tflite, {check['tflite_layout'].upper()} input) {verdict} with {check['runtime']} "
            f"on the original ONNX model ({check['onnx_layout'].upper()} input), converted by {check['converter']}: "
            f"{check['samples']} samples, max |diff| {check['max_abs_diff']:.2e}, mean |diff| "
            f"{check['mean_abs_diff']:.2e} (tolerance atol {check['atol']:g} + rtol {check['rtol']:g})"
            + (f", top-1 agreement {agreement * 100:.1f}%." if agreement is not None else "."),
            "",
        ]
    if report.onnx_artifacts:
        lines += [
            "## ONNX artifacts (onnxruntime)",
            "",
            "| file | quantization | size | top-1 | drop (pts) | agreement | host ms (onnxruntime) | .tflite top-1 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        by_name = {v.name: v for v in report.variants}
        for a in report.onnx_artifacts:
            e = a.evaluation
            tflite = by_name.get(a.variant)
            tflite_top1 = tflite.evaluation.top1 if tflite and tflite.evaluation else None
            lines.append(
                f"| {a.file} | {a.quantization} | {a.size_bytes / 1024:,.1f} KiB | {_pct(e.top1 if e else None)} "
                f"| {_pts(e.accuracy_drop_points if e else None)} | {_pct(e.agreement if e else None)} "
                f"| {'-' if a.host_latency_ms is None else f'{a.host_latency_ms:.3f}'} | {_pct(tflite_top1)} |"
            )
        lines += ["", f"Runtime: {report.onnx_artifacts[0].runtime}; drop and agreement against the float32 .tflite.", ""]
    return lines

