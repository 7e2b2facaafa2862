"""Errors a user can act on, and the exit code each one maps to.

Exit codes (documented in the README):
  0  success
  1  a gate failed (the build finished and wrote its report)
  2  bad input: recipe, file, model, data, device or missing tool the user can fix
  3  a build step failed for another reason (converter or runtime error); when only some variants could
     not be built (the converter refused one, or crashed), the others are written and the build exits 3
  4  an unforeseen internal error (a bug): one line, the traceback in the run's log
  130 interrupted (SIGINT)
  143 terminated (SIGTERM)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUILD_FAILED = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130


class EdgequantError(Exception):
    """Base of every error edgequant reports as a one-line message."""

    exit_code = EXIT_BAD_INPUT


class InputError(EdgequantError):
    """The user gave something edgequant cannot use: the message says what and where."""


class RecipeError(InputError):
    """An invalid recipe. `where` is 'file:line:col', `field` the dotted field path."""

    def __init__(self, message: str, *, where: str = "", field: str = ""):
        self.where = where
        self.field = field
        prefix = ": ".join(p for p in (where, field) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class DataError(InputError):
    """Calibration or evaluation data that does not fit the model (shape, dtype, NaN)."""


class ModelFileError(InputError):
    """A model file that is missing, unreadable, corrupt or unsupported."""


class ToolMissingError(InputError):
    """An external tool or device (adb, qemu, a phone) is not available."""


class BuildError(EdgequantError):
    """A build step failed for a reason that is not the user's input."""

    exit_code = EXIT_BUILD_FAILED
