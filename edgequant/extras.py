"""Optional extras (`edgequant[onnx]`, `edgequant[mlflow]`): imported only when a recipe or command asks for them."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgequant.errors import ToolMissingError


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import `module`, or fail in one line (exit 2) naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ToolMissingError(
            f"{what} needs the '{extra}' extra ({module} is not installed): pip install 'edgequant[{extra}]'"
        ) from None
