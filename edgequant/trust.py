"""What a recipe may execute, and the one opt-in that allows more.

By default edgequant runs no code that came with its input: models load in Keras safe mode,
files whose loading would run Python (Lambda layers) are refused, and so are `callable` data
sources. The opt-in comes only from the person running edgequant, never from the file being
judged (as Hugging Face's `trust_remote_code` is an argument, not a field of the model's
config): `--trust-code` on the command line, `trust_code=True` in Python, or the environment
variable EDGEQUANT_TRUST_CODE=1. A recipe has no way to ask for it. `edgequant recipe check`
runs no user code even with the opt-in: it reads model configs and checks a callable's
`module:function` form without importing it.
"""

from __future__ import annotations

import os

from edgequant.errors import InputError

ENV = "EDGEQUANT_TRUST_CODE"
OPT_IN = f"allow it with --trust-code (or {ENV}=1, trust_code=True in Python) if you trust it"
# What a recipe that still carries the old key is told.
RECIPE_KEY_GONE = (f"a recipe cannot grant itself trust: remove `trust_code`; the person running edgequant "
                   f"opts in with --trust-code, {ENV}=1 or trust_code=True in Python")


def trusted(opt_in: bool = False) -> bool:
    """Whether user code may run: the caller's explicit opt-in, or EDGEQUANT_TRUST_CODE=1 in the environment."""
    return bool(opt_in) or os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes")


def untrusted(what: str) -> InputError:
    """The error for code that would run without the opt-in; `what` says what and where."""
    return InputError(f"{what}; {OPT_IN}")
