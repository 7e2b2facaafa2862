"""Packages whose public names are imported on first use (PEP 562), so importing the package stays cheap.

`edgequant --help` imports the package root; with its names resolved lazily it loads neither numpy nor pydantic.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """The `__getattr__` of `package`: each name in `exports` comes from its module when first asked for."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
