"""The report's PNG plots, and the data behind each one (testable without reading pixels).

Every plot names the metric it shows. For a model with several outputs, the figures are the
worst over the judged outputs (`evaluation.outputs`); the plots say which.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

from edgequant.output.artifacts import write_atomic
from edgequant.report.schema import LayerErrorReport, Report, VariantReport

ROUNDING_NOISE_STEPS = 0.2887  # RMSE of uniform rounding, in steps: 1/sqrt(12)
LAYER_BARS = 20  # the worst layers shown in the per-layer plot
LABEL_WIDTH = 48  # characters per line of a layer label (longer names wrap, never clipped)


@dataclass(frozen=True)
class Metric:
    """The figure a quality plot shows: its axis label, short name, and value for a variant (in percent)."""

    axis: str
    short: str
    key: str  # "top1", "agreement" or "cosine"

    def value(self, v: VariantReport) -> float:
        return 100 * getattr(v.evaluation, self.key)


def quality_metric(evaluated: list[VariantReport]) -> Metric:
    """Top-1 accuracy with labels; else top-1 agreement with the reference (classifiers); else cosine similarity."""
    if all(v.evaluation.top1 is not None for v in evaluated):
        return Metric("top-1 accuracy (%)", "accuracy", "top1")
    if all(v.evaluation.agreement is not None for v in evaluated):
        return Metric("top-1 agreement with the reference (%)", "agreement", "agreement")
    return Metric("cosine similarity to the reference (x100)", "cosine x100", "cosine")


def output_note(evaluated: list[VariantReport]) -> str:
    """Which outputs the headline figures are the worst of, for a model with several ('' for one output)."""
    e = evaluated[0].evaluation
    if e.outputs <= 1:
        return ""
    judged = [n for n in e.output.split(", ") if n]
    which = f"output '{judged[0]}'" if len(judged) == 1 else f"outputs {', '.join(repr(n) for n in judged)}"
    return f"the worst over {which}; each output's own figures are listed under Outputs"


@dataclass(frozen=True)
class LayerBar:
    label: str  # unique among the bars
    rmse_steps: float | None  # None: not finite
    note: str  # words for a value that cannot be drawn


def layer_error_bars(layer_errors: list[LayerErrorReport], top: int = LAYER_BARS) -> list[LayerBar]:
    """One bar per distinct layer, worst first, labelled uniquely (name tails grow until they differ)."""
    shown = layer_errors[:top]
    names = [e.layer.split(";")[0] for e in shown]
    labels = _unique_tails(names)
    bars = []
    for e, label in zip(shown, labels):
        finite = math.isfinite(e.rmse_steps)
        note = "" if finite else f"error not finite ({_non_finite_reason(e)})"
        bars.append(LayerBar(f"{label} ({e.op})", e.rmse_steps if finite else None, note))
    return bars


def _non_finite_reason(e: LayerErrorReport) -> str:
    if math.isnan(e.rmse_steps):
        return "NaN: the float output itself has NaN values"
    return "the float output reaches infinity (e.g. the log of 0), which int8 cannot represent"


def _unique_tails(names: list[str]) -> list[str]:
    """The shortest '/'-separated tail of each name that no other name shares; '#n' for identical names."""
    parts = [n.split("/") for n in names]
    depth = [min(2, len(p)) for p in parts]
    while True:
        tails = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clashes = {t for t in tails if tails.count(t) > 1}
        grow = [i for i, t in enumerate(tails) if t in clashes and depth[i] < len(parts[i])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    seen: dict[str, int] = {}
    out = []
    for t in tails:
        seen[t] = seen.get(t, 0) + 1
        out.append(t if tails.count(t) == 1 else f"{t} #{seen[t]}")
    return out


def write_plots(report: Report, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    written: list[Path] = []
    evaluated = [v for v in report.variants if v.evaluation is not None]
    if evaluated:
        written.append(_quality_plot(evaluated, out_dir / "accuracy_size_latency.png"))
    for v in report.variants:
        if v.layer_errors:
            written.append(_layer_error_plot(v, out_dir / f"layer_error_{v.name}.png"))
    return written


def _quality_plot(evaluated: list[VariantReport], path: Path) -> Path:
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    metric = quality_metric(evaluated)
    values = [metric.value(v) for v in evaluated]
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
    for v, value in zip(evaluated, values):
        ax.scatter(v.size_bytes / 1024, value, s=60, label=v.name, **style[v.name])
    ax.set_xlabel("size (KiB)")
    ax.set_ylabel(metric.axis)
    ax.set_title(f"{metric.short} against size")
    ax.grid(alpha=0.3)
    _honest_ylim(ax, values)
    ax.legend(fontsize=8, loc="best")
    for ax, device in zip(flat[1:], devices):
        times = []
        for v, value in zip(evaluated, values):
            lat = next((lat for lat in v.latency if lat.device == device), None)
            if lat is not None:
                ax.scatter(lat.ms, value, s=60, label=v.name, **style[v.name])
                times.append(lat.ms)
        est = " (estimate)" if device != "host" else " (measured)"
        if times and max(times) > 10 * min(times):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        _honest_ylim(ax, values)
        ax.set_xlabel(f"latency on {device}{est}, ms")
        ax.set_ylabel(metric.axis)
        ax.set_title(f"{metric.short} against latency: {device}{est}")
        ax.grid(alpha=0.3)
    note = output_note(evaluated)
    if note:
        fig.suptitle(note, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _layer_error_plot(v: VariantReport, path: Path) -> Path:
    import matplotlib.pyplot as plt

    bars = layer_error_bars(v.layer_errors)
    labels = ["\n".join(textwrap.wrap(b.label, LABEL_WIDTH, break_on_hyphens=False)) for b in bars]
    lines = sum(label.count("\n") + 1 for label in labels)
    fig, ax = plt.subplots(figsize=(11, 0.3 * lines + 0.15 * len(bars) + 1.8))
    positions = list(range(len(bars)))[::-1]  # worst at the top
    finite = [b.rmse_steps for b in bars if b.rmse_steps is not None]
    ax.barh(positions, [b.rmse_steps or 0.0 for b in bars], color="tab:orange")
    for y, b in zip(positions, bars):
        if b.rmse_steps is None:
            ax.text(0, y, "  " + b.note, va="center", fontsize=8, color="tab:red")
    ax.set_yticks(positions, labels, fontsize=8)
    ax.set_ylim(-0.6, len(bars) - 0.4)
    ax.axvline(ROUNDING_NOISE_STEPS, color="gray", linestyle="--", label="rounding noise alone (0.29 steps)")
    if finite:
        ax.set_xlim(0, max(max(finite), ROUNDING_NOISE_STEPS) * 1.1)
    ax.set_xlabel("RMSE of int8 output against float, in quantization steps")
    ax.set_title(f"{v.name}: per-layer quantization error, worst at the top", fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _honest_ylim(ax, values: list[float], min_span: float = 2.0) -> None:
    """Show at least `min_span` points, so a 0.05-point difference does not fill the plot."""
    lo, hi = min(values), max(values)
    if hi - lo < min_span:
        middle = (hi + lo) / 2
        lo, hi = middle - min_span / 2, middle + min_span / 2
    pad = (hi - lo) * 0.1
    ax.set_ylim(lo - pad, min(hi + pad, 100.5))


def _save(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_atomic(path, buf.getvalue())
