"""`report.html`: the build's report as one self-contained page a person opens in a browser.

Everything comes from report.json (read by field name, so fields added later are
shown where known and ignored otherwise) and the PNG plots beside it, inlined as
base64. The page loads nothing: no scripts, fonts, stylesheets or images from
anywhere, and its Content-Security-Policy forbids it.

At the top, a plain-language verdict: which artifact to ship on which device, and why.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from edgequant.output.artifacts import write_atomic
from edgequant.report.schema import Report

REPORT_HTML = "report.html"
DEFAULT_MAX_DROP_POINTS = 1.0  # the verdict's accuracy bar for a variant with no gate of its own
DEFAULT_MIN_AGREEMENT = 0.98  # the same bar when the evaluation data has no labels
# Near-ties explain a low agreement only where the outputs are close: a variant with large errors flips classes
# whatever their margin. Measured relative errors: int8 of a near-tied and of a well-separated Fashion-MNIST
# classifier (tests/unseen_models.py) 0.013 and 0.010, deepcut's int8, which lost most of its agreement, 0.316.
NEAR_TIE_MAX_ERROR = 0.05
ROUNDING_STEPS = 0.2887  # RMSE of rounding alone, in quantization steps (1/sqrt(12))

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:1.2em;
color:#1d2430;background:#fff}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #d8dde6;padding-bottom:.2em}
h3{font-size:1.05em;margin-top:1.3em}.meta{color:#5a6475;font-size:.9em}
.verdict{background:#eef6ee;border:1px solid #9ccc9c;border-radius:6px;padding:.6em 1.1em;margin:1em 0}
.verdict.bad{background:#fdf0ef;border-color:#e3a19b}.verdict li{margin:.35em 0}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}th,td{border:1px solid #d8dde6;padding:.3em .6em}
th{background:#f3f5f8;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.pass{color:#1b7a1b;font-weight:600}.fail{color:#b3261e;font-weight:600}.est{color:#5a6475;font-size:.85em}
.wide{overflow-x:auto}table.layers td:last-child{word-break:break-all;font-size:.9em}
img{max-width:100%;height:auto;border:1px solid #e3e7ee;margin:.5em 0}
pre{background:#f6f8fa;padding:.7em;white-space:pre-wrap;font-size:.85em}
"""
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def write_html(report: Report, out_dir: Path, plots: list[Path]) -> Path:
    """Write report.html into `out_dir`, with `plots` (PNG files) inlined; returns its path."""
    path = Path(out_dir) / REPORT_HTML
    write_atomic(path, render_html(report.model_dump(mode="json"), plots))
    return path


def render_html(report: dict[str, Any], plots: list[Path]) -> str:
    name = escape(str(report.get("recipe", {}).get("name", "build")))
    variants = report.get("variants", [])
    body = [
        f"<h1>edgequant report: {name}</h1>",
        _meta(report),
        _verdict(report),
        "<h2>Variants</h2>",
        _variant_table(report),
        "".join(f"<p>{escape(n)}</p>" for v in variants for n in near_tie_notes(v["name"], v.get("evaluation"))),
        _outputs_table(report),
    ]
    for device in _devices(variants):
        body.append(_device_section(report, device))
    body.append(_plots(plots))
    for v in variants:
        body.append(_variant_details(v))
    notes = report.get("notes") or []
    if notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(str(n))}</li>" for n in notes) + "</ul>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_CSP}\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>edgequant report: {name}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )


def _meta(report: dict) -> str:
    source = report.get("source_model", {})
    recipe = report.get("recipe", {})
    facts = [
        f"Built {escape(str(report.get('created', '?')))} by edgequant {escape(str(report.get('edgequant_version', '?')))}",
        f"model <code>{escape(str(source.get('path', '?')))}</code> ({escape(str(source.get('kind', '?')))})",
    ]
    if recipe.get("path"):
        facts.append(f"recipe <code>{escape(str(recipe['path']))}</code>")
    if report.get("evaluation_data"):
        facts.append(f"evaluated on {escape(str(report['evaluation_data']))}")
    return f"<p class=\"meta\">{'; '.join(facts)}.</p>"


# --- reading report.json defensively --------------------------------------------------------------


def _devices(variants: list[dict]) -> list[str]:
    names = {lat.get("device") for v in variants for lat in v.get("latency", [])}
    return sorted((d for d in names if d), key=lambda d: (d != "host", d))


def _latency(v: dict, device: str) -> dict | None:
    return next((lat for lat in v.get("latency", []) if lat.get("device") == device), None)


def _reference(report: dict) -> dict | None:
    return next((v for v in report.get("variants", []) if v.get("name") == report.get("reference")), None)


def _interval(lat: dict, ms: float) -> tuple[float, float] | None:
    """The uncertainty interval of an estimate of `ms`: the estimator's own interval (given for its thread
    count, applied here as the same relative bounds), else the device profile's calibration error."""
    details = lat.get("details", {})
    for key, value in details.items():
        if key.endswith("interval_ms") and isinstance(value, (list, tuple)) and len(value) == 2 and lat.get("ms"):
            return ms * float(value[0]) / lat["ms"], ms * float(value[1]) / lat["ms"]
    error = lat.get("calibration_error_percent")
    return (ms * (1 - error / 100), ms * (1 + error / 100)) if error is not None else None


def _uncertainty(lat: dict) -> str:
    details = lat.get("details", {})
    label = details.get("label")
    if label:
        return str(label)
    error = lat.get("calibration_error_percent")
    return f"estimate (±{error:.0f}%)" if error is not None else "estimate, error unknown"


# --- the verdict ----------------------------------------------------------------------------------


def _acceptable(v: dict) -> tuple[bool, str]:
    """Whether a variant may be shipped, and the accuracy it keeps, in words."""
    gates = v.get("gates", [])
    failed = [g for g in gates if not g.get("passed")]
    if failed:
        return False, "failed " + ", ".join(_gate_words(g) for g in failed)
    e = v.get("evaluation")
    if e is None:
        return True, "accuracy not measured (the recipe has no evaluation data)"
    drop, agreement = e.get("accuracy_drop_points"), e.get("agreement")
    if drop is not None:
        words = f"top-1 {_pct(e.get('top1'))}, {abs(drop):.2f} points {'below' if drop > 0 else 'above'} float32"
        return (True, words) if gates or drop <= DEFAULT_MAX_DROP_POINTS else (False, words)
    if agreement is not None:
        words = f"agrees with float32 on {_pct(agreement)} of samples"
        return (True, words) if gates or agreement >= DEFAULT_MIN_AGREEMENT else (False, words)
    return True, f"cosine {e.get('cosine', 0):.4f} to float32's outputs"


def near_tie_notes(variant: str, evaluation: dict | None, reference: str = "the float32 model") -> list[str]:
    """Why a variant's top-1 agreement is below the verdict's bar while its outputs are close, where near-ties in
    the reference explain it (the rule: edgequant.measure.evaluate): what report.md, report.html and the CLI say."""
    outputs = (evaluation or {}).get("per_output") or []
    notes = []
    for o in outputs:
        close = o["relative_error"] <= NEAR_TIE_MAX_ERROR
        if not (o.get("near_ties") and o["agreement"] < DEFAULT_MIN_AGREEMENT and close):
            continue
        on = f" (output {o['name']})" if len(outputs) > 1 else ""
        notes.append(f"{variant}{on}: top-1 agreement {_pct(o['agreement'])} with cosine {o['cosine']:.5f}: "
                     f"{o['near_ties']} of {o['disagreements']} disagreements are near-ties in {reference} (its "
                     f"top-2 margin < {o['near_tie_margin']:.2g}, twice {variant}'s RMS output error), where a small "
                     "error flips the top class.")
    return notes


def _verdict(report: dict) -> str:
    variants = report.get("variants", [])
    reference = _reference(report)
    items: list[str] = []
    for device in _devices(variants):
        items.append(_device_verdict(device, variants, reference))
    if not items:
        ok = [v for v in variants if _acceptable(v)[0]]
        if ok:
            best = min(ok, key=lambda v: v.get("size_bytes", 0))
            items.append(f"Smallest acceptable artifact: <b>{escape(best['name'])}.tflite</b> "
                         f"({_kib(best.get('size_bytes'))}; {escape(_acceptable(best)[1])}). No latency was measured.")
    for v in variants:
        ok, why = _acceptable(v)
        if not ok:
            items.append(f"Do not ship <b>{escape(v['name'])}</b>: {escape(why)}.")
    bar = (f"A variant without gates counts as acceptable when it stays within {DEFAULT_MAX_DROP_POINTS:g} point "
           f"of float32's top-1 (or agrees on {DEFAULT_MIN_AGREEMENT:.0%} of samples without labels); a variant with "
           "gates, when they pass. Simulated-device latencies are estimates, not measurements.")
    kind = "verdict" if report.get("passed", True) else "verdict bad"
    status = "All gates passed." if report.get("passed", True) else \
        f"{len(report.get('failed_gates', []))} gate(s) failed: the build exits 1."
    return (f"<section class=\"{kind}\" id=\"verdict\"><h2>Verdict</h2><p><b>{status}</b></p><ul>"
            + "".join(f"<li>{i}</li>" for i in items) + f"</ul><p class=\"est\">{bar}</p></section>")


def _device_verdict(device: str, variants: list[dict], reference: dict | None) -> str:
    estimated = any((_latency(v, device) or {}).get("estimate") for v in variants)
    where = f"On <b>{escape(device)}</b>" + (f" ({escape(_device_words(variants, device))})" if estimated else
                                              " (this machine, measured)")
    candidates = []
    for v in variants:
        lat = _latency(v, device)
        fits = (lat or {}).get("details", {}).get("memory", {}).get("fits")
        if lat is not None and _acceptable(v)[0] and fits is not False:
            candidates.append((lat["ms"], v.get("size_bytes", 0), v, lat))
    if not candidates:
        return f"{where}: no variant is acceptable and fits; keep float32 or relax the recipe."
    ms, _, best, lat = min(candidates, key=lambda c: (c[0], c[1]))
    text = _why(best, lat, device, reference, variants)
    smallest = min(candidates, key=lambda c: (c[1], c[0]))[2]
    if smallest is not best and best.get("size_bytes") and smallest["size_bytes"] <= 0.9 * best["size_bytes"]:
        small_lat = _latency(smallest, device)
        text += (f" If flash matters more than time: <b>{escape(smallest['name'])}.tflite</b>, "
                 f"{_kib(smallest.get('size_bytes'))}, {smallest['size_bytes'] / best['size_bytes']:.0%} of that size "
                 f"at {_ms(small_lat['ms'])} ms ({small_lat['ms'] / ms:.1f}x the time).")
    return f"{where}: ship <b>{escape(best['name'])}.tflite</b>: {text}"


def _why(v: dict, lat: dict, device: str, reference: dict | None, variants: list[dict] = ()) -> str:
    """Why a variant is the one to ship on a device: its time, speed-up, size, accuracy and ARM parity."""
    reasons = [f"{'estimated ' if lat.get('estimate') else ''}{_ms(lat.get('ms'))} ms"]
    ref_lat = _latency(reference, device) if reference is not None else None
    if v is reference:
        reasons.append("the float reference: no accuracy lost; " + _faster_but_rejected(v, lat, device, variants))
    else:
        speed = lat.get("speedup_vs_reference")
        if speed and ref_lat is not None:
            reasons.append(f"{speed:.1f}x the speed of float32 ({_ms(ref_lat['ms'])} ms)")
        if reference is not None and reference.get("size_bytes"):
            reasons.append(f"{_kib(v.get('size_bytes'))}, {v['size_bytes'] / reference['size_bytes']:.0%} "
                           "of float32's size")
        reasons.append(_acceptable(v)[1])
    parity = next((p for p in v.get("arm_parity", []) if p.get("device") == device), None)
    if parity is not None:
        reasons.append(str(parity.get("summary", "")))
    return "; ".join(escape(r) for r in reasons if r) + "."


def _faster_but_rejected(shipped: dict, lat: dict, device: str, variants: list[dict]) -> str:
    """What the quantized variants did on this device, from the same figures the table shows: none was faster,
    or the faster ones are not acceptable (and why)."""
    faster = [(other, olat) for other in variants if other is not shipped
              and (olat := _latency(other, device)) is not None and olat.get("ms") is not None
              and olat["ms"] < lat["ms"]]
    if not faster:
        return "no quantized variant was faster here"
    words = []
    for other, olat in sorted(faster, key=lambda f: f[1]["ms"]):
        ok, why = _acceptable(other)
        fits = (olat.get("details") or {}).get("memory", {}).get("fits")
        reason = why if not ok else "it does not fit the device's memory" if fits is False else "not acceptable"
        speed = olat.get("speedup_vs_reference")
        words.append(f"{other['name']} was faster ({_ms(olat['ms'])} ms"
                     + (f", {speed:.1f}x" if speed else "") + f") but {reason}")
    return "; ".join(words)


def _device_words(variants: list[dict], device: str) -> str:
    lat = next(lat for v in variants if (lat := _latency(v, device)) is not None)
    details = lat.get("details", {})
    words = ", ".join(str(x) for x in (details.get("device"), details.get("core")) if x)
    # the heading covers every variant: the runtime, not the first variant's interval that its label carries
    what = f"estimates for {details['runtime']}" if details.get("runtime") else _uncertainty(lat)
    return f"{words}; {what}" if words else what


# --- tables --------------------------------------------------------------------------------------


def _variant_table(report: dict) -> str:
    variants = report.get("variants", [])
    devices = _devices(variants)
    head = ["variant", "mode", "size", "vs float32", "top-1", "drop (pts)", "agreement", "cosine"]
    head += [f"{d} ms" + (" (est.)" if d != "host" else "") for d in devices] + ["gates"]
    rows = []
    for v in variants:
        e = v.get("evaluation") or {}
        cells = [f"<code>{escape(v.get('name', ''))}</code>", escape(v.get("mode", "")), _num(_kib(v.get("size_bytes"))),
                 _num(_ratio(v.get("size_vs_reference"))), _num(_pct(e.get("top1"))),
                 _num(_signed(e.get("accuracy_drop_points"))), _num(_pct(e.get("agreement"))),
                 _num(f"{e['cosine']:.5f}" if e.get("cosine") is not None else "-")]
        for d in devices:
            lat = _latency(v, d)
            speed = lat.get("speedup_vs_reference") if lat else None
            cells.append(_num(f"{_ms(lat['ms'])}" + (f" ({speed:.2f}x)" if speed else "") if lat else "-"))
        cells.append(_gates_cell(v))
        rows.append(cells)
    return _table(head, rows, table_id="variants")


def _outputs_table(report: dict) -> str:
    """Every output of a model with several, measured by its kind; the variant table shows the worst judged one."""
    evaluated = [v for v in report.get("variants", []) if (v.get("evaluation") or {}).get("per_output")]
    if not evaluated or len(evaluated[0]["evaluation"]["per_output"]) <= 1:
        return ""
    rows = []
    for v in evaluated:
        for o in v["evaluation"]["per_output"]:
            rows.append([f"<code>{escape(v['name'])}</code>", f"{o.get('index')}: <code>{escape(str(o.get('name')))}</code>",
                         escape(str(o.get("kind"))), "yes" if o.get("judged") else "no",
                         _num(_pct(o.get("agreement"))), _num(_pct(o.get("top1"))),
                         _num(f"{o['cosine']:.5f}" if o.get("cosine") is not None else "-"),
                         _num(f"{o['relative_error']:.3g}" if o.get("relative_error") is not None else "-")])
    return ("<h3>Outputs</h3><p>Each output against the reference's: class probabilities by top-1 agreement, "
            "other outputs by cosine similarity and relative error. The table above shows the worst judged output "
            "(<code>evaluation.outputs</code>).</p>"
            + _table(["variant", "output", "kind", "judged", "agreement", "top-1", "cosine", "rel. error"], rows,
                     table_id="outputs"))


def _device_section(report: dict, device: str) -> str:
    variants = report.get("variants", [])
    if device == "host":
        return _host_section(report)
    lats = {v["name"]: _latency(v, device) for v in variants if _latency(v, device) is not None}
    if not lats:
        return ""
    first = next(iter(lats.values()))
    threads = sorted({int(t) for lat in lats.values()
                      for t in lat.get("details", {}).get("latency_ms_by_threads", {})})
    used = first.get("details", {}).get("threads")
    head = ["variant", *[f"{t} thread{'s' if t > 1 else ''}, ms" for t in threads],
            "speed-up vs float32" + (f" ({used} thread{'s' if used > 1 else ''})" if used else ""), "peak RAM / device memory", "flash (file size)", "ARM parity (int8, QAT)"]
    rows = []
    for v in variants:
        lat = lats.get(v["name"])
        if lat is None:
            continue
        details = lat.get("details", {})
        by_threads = details.get("latency_ms_by_threads", {})
        cells = [f"<code>{escape(v['name'])}</code>"]
        for t in threads:
            ms = by_threads.get(str(t))
            cells.append(_num(_with_interval(lat, ms) if ms is not None else "-"))
        speed = lat.get("speedup_vs_reference")
        cells.append(_num(f"{speed:.2f}x" if speed else "-"))
        cells.append(_memory_cell(details.get("memory", {})))
        cells.append(_num(_kib(v.get("size_bytes"))))
        parity = next((p for p in v.get("arm_parity", []) if p.get("device") == device), None)
        cells.append(escape(str(parity.get("summary"))) if parity else "-")
        rows.append(cells)
    title = f"{escape(device)}: {escape(_device_words(variants, device))}"
    source = first.get("details", {}).get("calibration_source")
    explain = ("Estimated latency: instructions counted while XNNPACK's ARM kernels run under emulation, turned into "
               "time by a cost model calibrated on published measurements; not a measurement. The interval is the "
               "estimate's uncertainty. Peak RAM is an upper bound read from the model file "
               "(file + repacked weights + every activation at once + runtime).")
    return (f"<h2 id=\"device-{escape(device)}\">{title}</h2><p class=\"est\">{explain}"
            + (f" Calibration: {escape(str(source))}." if source else "") + "</p>"
            + "<div class=\"wide\">" + _table(head, rows, table_id=f"device-table-{device}", css="device-table")
            + "</div>" + _slowest_layers(variants, device))


def _slowest_layers(variants: list[dict], device: str) -> str:
    """Per variant, the layers that take longest on `device` and the runtime overhead (estimates)."""
    from edgequant.devices.layers import shown_rows

    rows = []
    for v in variants:
        for node, name, ms, share, kernel in shown_rows((_latency(v, device) or {}).get("layers") or []):
            rows.append([f"<code>{escape(v['name'])}</code>", escape(node), escape(name), _num(f"{ms:.3g}"),
                         _num(f"{share:.1%}"), escape(kernel)])
    if not rows:
        return ""
    return ("<p class=\"est\">Slowest layers: estimates, each layer's share of the variant's estimate by the "
            "instructions counted while it ran; the layers and the runtime overhead add up to it.</p>"
            + _table(["variant", "node", "layer", "est. ms", "share", "ran on"], rows,
                     table_id=f"device-layers-{device}", css="layers"))


def _host_section(report: dict) -> str:
    host = report.get("host") or {}
    cpu = host.get("model_name") or host.get("cpu") or ""
    head = ["variant", "median ms", "p90 ms", "speed-up vs float32", "threads", "kernels"]
    rows = []
    for v in report.get("variants", []):
        lat = _latency(v, "host")
        if lat is None:
            continue
        d = lat.get("details", {})
        stats = d.get("latency", {}) if isinstance(d.get("latency"), dict) else {}
        speed = lat.get("speedup_vs_reference")
        rows.append([f"<code>{escape(v['name'])}</code>", _num(_ms(lat.get("ms"))), _num(_ms(stats.get("p90_ms"))),
                     _num(f"{speed:.2f}x" if speed else "-"), _num(str(d.get("threads", "-"))),
                     escape(str(d.get("kernels", "-")))])
    timed = next((lat.get("details", {}) for v in report.get("variants", []) if (lat := _latency(v, "host"))), {})
    shapes = timed.get("input_shapes")
    at = (f" Timed at input shape {escape(', '.join(map(str, shapes)))} ({escape(str(timed.get('inputs', '')))})."
          if shapes else "")
    note = (f"Measured on this machine{': ' + escape(str(cpu)) if cpu else ''}.{at} A host figure says little about "
            "an edge device: see the simulated devices.")
    return f"<h2 id=\"device-host\">host (measured)</h2><p class=\"est\">{note}</p>" + _table(head, rows)


def _variant_details(v: dict) -> str:
    name = escape(v.get("name", ""))
    parts = []
    if v.get("gates"):
        rows = [[escape(str(g.get("gate"))), _num(escape(_gate_value(g))), _num(f"{g.get('limit', 0):g}"),
                 _status(g.get("passed")) if g.get("passed") or not g.get("reason") else
                 f"<td class=\"fail\">FAIL: {escape(g['reason'])}</td>"] for g in v["gates"]]
        parts.append(f"<h3>{name}: gates</h3>" + _table(["gate", "value", "limit", "status"], rows))
    mp = v.get("mixed_precision")
    if mp:
        parts.append(_mixed_precision(name, mp))
    errors = v.get("layer_errors") or []
    if errors:
        rows = [[f"<code>{escape(str(e.get('layer')))}</code>", escape(str(e.get("op"))),
                 _num(f"{e.get('rmse_steps', 0):.3f}"), _num(f"{e.get('rmse', 0):.3g}"),
                 _num(f"{e.get('max_abs_error', 0):.3g}")] for e in errors[:15]]
        parts.append(f"<h3>{name}: per-layer quantization error</h3><p>RMSE of each layer's int8 output against "
                     f"float, in quantization steps (rounding alone gives {ROUNDING_STEPS:.2f}); worst first"
                     + (f", top 15 of {len(errors)}" if len(errors) > 15 else "") + ".</p>"
                     + _table(["layer", "op", "RMSE (steps)", "RMSE", "max abs error"], rows))
    text = (v.get("speed_explanation") or {}).get("text")
    if text:
        parts.append(f"<h3>{name}: why it is (not) faster on this host</h3><pre>{escape(str(text))}</pre>")
    return "\n".join(parts)


def _mixed_precision(name: str, mp: dict) -> str:
    kept = ", ".join(f"<code>{escape(str(n))}</code>" for n in mp.get("float_layers", [])) or "none"
    ops = ", ".join(escape(str(o)) for o in mp.get("float_ops", [])) or "none"
    out = f"<h3>{name}: layers kept in float</h3><p>Layers: {kept}. Op types: {ops}.</p>"
    steps = mp.get("steps") or []
    if mp.get("automatic") and steps:
        base = steps[0].get("size_bytes") or 0
        rows = []
        for s in steps:
            e, price = s.get("evaluation", {}), s.get("price", {})
            shipped = " (shipped)" if s.get("step") == mp.get("shipped_step") else ""
            device_ms = f"{price['estimated_ms']:.3g} on {escape(str(price.get('device')))}" if price.get("estimated_ms") else "-"
            rows.append([_num(f"{s.get('step')}{shipped}"),
                         f"<code>{escape(s['added_layer'])}</code>" if s.get("added_layer") else "plain int8",
                         _num(_pct(e.get("top1"))), _num(_pct(e.get("agreement"))),
                         _num("-" if s.get("p_value") is None else f"{s['p_value']:.2g}"),
                         _num(_kib(s.get("size_bytes"))), _num(f"{((s.get('size_bytes') or 0) - base) / 1024:+,.1f} KiB"),
                         _num(device_ms), _status(s.get("gates_passed"))])
        out += (f"<p>{escape(str(mp.get('outcome') or ''))} Each step keeps one more layer in float, judged on "
                f"{escape(str(mp.get('selection_data') or 'the selection data'))}:</p>"
                + _table(["step", "layer added", "top-1", "agreement", "p (gain)", "size", "size cost", "estimated ms",
                          "gates"],
                         rows, table_id=f"mixed-{name}"))
    return out


def _plots(plots: list[Path]) -> str:
    images = []
    for path in plots:
        if path.suffix.lower() != ".png" or not path.is_file():
            continue
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        alt = escape(path.stem.replace("_", " "))
        images.append(f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{alt}\"><figcaption class=\"est\">"
                      f"{escape(path.name)}</figcaption></figure>")
    return "<h2>Plots</h2>" + "".join(images) if images else ""


# --- small formatting helpers --------------------------------------------------------------------


def _table(head: list[str], rows: list[list[str]], *, table_id: str = "", css: str = "") -> str:
    attrs = (f" id=\"{escape(table_id)}\"" if table_id else "") + (f" class=\"{css}\"" if css else "")
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table{attrs}><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _num(text: str) -> str:
    return f"<td class=\"n\">{escape(text)}</td>"


def _status(passed: bool | None) -> str:
    if passed is None:
        return "<td>-</td>"
    return "<td class=\"pass\">pass</td>" if passed else "<td class=\"fail\">FAIL</td>"


def _gates_cell(v: dict) -> str:
    gates = v.get("gates", [])
    if not gates:
        return "<td>-</td>"
    failed = [g.get("gate") for g in gates if not g.get("passed")]
    if failed:
        return f"<td class=\"fail\">FAIL: {escape(', '.join(map(str, failed)))}</td>"
    return "<td class=\"pass\">pass</td>"


def _gate_value(g: dict) -> str:
    """The measured value, or why there is none (a stage skipped with --no-devices / --no-bench)."""
    if g.get("value") is None:
        return f"not measured ({g.get('not_measured') or 'skipped'})"
    return f"{g['value']:.4g}" + (" (estimate)" if g.get("estimate") else "")


def _gate_words(g: dict) -> str:
    return f"{g.get('gate')} ({_gate_value(g)} against {g.get('limit', 0):g})"


def _memory_cell(memory: dict) -> str:
    need, have, fits = memory.get("required_mb"), memory.get("available_mb"), memory.get("fits")
    if need is None:
        return "<td>-</td>"
    text = f"{need:,.1f} MB" + (f" / {have:,} MB" if have else "")
    if fits is None:
        return _num(text)
    return f"<td class=\"n {'pass' if fits else 'fail'}\">{escape(text)} {'fits' if fits else 'does not fit'}</td>"


def _with_interval(lat: dict, ms: float) -> str:
    interval = _interval(lat, ms)
    return f"{_ms(ms)} ({interval[0]:.2g}–{interval[1]:.2g})" if interval else _ms(ms)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _kib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:,.1f} KiB"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}%"


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2f}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"
