"""A test hook: `EDGEQUANT_FAULT_POINT=<point>:<action>` makes a build fail at a named point.

tests/test_fault_injection.py uses it to stop real builds exactly where timing alone would rarely
land. Unset (always, outside that test), `reached()` returns at once and does nothing.

Points, in the order a build reaches them:
  exported       the model is exported (TensorFlow has run)
  converted      every variant is converted, evaluated and measured
  staged         every file of the new build is written to its `.partial` folder
  linked         the build folder is complete and the top-level links are in place, before the switch
  switched       the `current` link points at the new build, before old links and versions are removed

Actions: `sigint`, `sigterm`, `sigkill` (the signal, sent to this process); `swallowed-sigint` (a
SIGINT whose KeyboardInterrupt is caught and dropped, as TensorFlow's cleanup code does); `oserror`
(an OSError, EIO, as a failing disk gives); `wait-for=<file>` (pause until the file exists, at most
ten minutes: a test holds a build there while it starts another).
"""

from __future__ import annotations

import errno
import os
import signal
import time

POINTS = ("exported", "converted", "staged", "linked", "switched")
_SIGNALS = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}


def reached(point: str) -> None:
    spec = os.environ.get("EDGEQUANT_FAULT_POINT")
    if not spec:
        return
    assert point in POINTS, point
    name, _, action = spec.partition(":")
    if name != point:
        return
    if action == "oserror":
        raise OSError(errno.EIO, f"injected fault at {point}")
    if action.startswith("wait-for="):
        deadline = time.monotonic() + 600
        while not os.path.exists(action.removeprefix("wait-for=")) and time.monotonic() < deadline:
            time.sleep(0.1)
        return
    if action == "swallowed-sigint":
        try:
            _signal_self(signal.SIGINT)
        except KeyboardInterrupt:
            pass  # dropped, as an exception raised inside a __del__ or finalizer is
        return
    if action not in _SIGNALS:
        raise ValueError(f"EDGEQUANT_FAULT_POINT={spec!r}: unknown action (expected {', '.join([*_SIGNALS, 'swallowed-sigint', 'oserror', 'wait-for=FILE'])})")
    _signal_self(_SIGNALS[action])


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(1)  # the handler runs at the next bytecode; SIGKILL ends the process before this returns
