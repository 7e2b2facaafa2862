"""What a recipe may execute, and the one opt-in that allows more.

By default a recipe runs no code of its author's: models load in Keras safe mode and
files whose loading would run Python (Lambda layers) are refused, and so are `callable`
data sources. `--trust-code`, `trust_code: true` in the recipe or `trust_code=True` in
Python allow both, as Keras's `safe_mode=False` and Hugging Face's `trust_remote_code` do.
"""

from __future__ import annotations

from edgequant.errors import InputError

OPT_IN = "allow it with --trust-code (or `trust_code: true` in the recipe, trust_code=True in Python) if you trust it"


def untrusted(what: str) -> InputError:
    """The error for code that would run without the opt-in; `what` says what and where."""
    return InputError(f"{what}; {OPT_IN}")
