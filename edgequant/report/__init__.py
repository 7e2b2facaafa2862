"""The build report: one JSON document (`report.json`), rendered to Markdown and PNG plots."""

from edgequant.report.schema import Report, VariantReport
from edgequant.report.render import render_report, load_report

__all__ = ["Report", "VariantReport", "render_report", "load_report"]
