"""The build report: one JSON document (`report.json`), rendered to Markdown and PNG plots.

Names resolve lazily: `edgequant --help` imports the CLI's formatting helpers from here without pydantic.
"""

from edgequant.lazy import lazy_exports

_EXPORTS = {
    "Report": "edgequant.report.schema",
    "VariantReport": "edgequant.report.schema",
    "render_report": "edgequant.report.render",
    "load_report": "edgequant.report.render",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
