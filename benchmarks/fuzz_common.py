"""What the fuzzers share: run one input through the real CLI and judge the outcome.

An outcome is acceptable when the command returns one of its documented exit codes
(0 ok, 2 bad input); any exception that reaches the caller is a finding.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ACCEPTED = {0, 2}


def command_line(doc: str, make_seeds=None):
    """The fuzzers' shared options; the rest go to libFuzzer. None when `--make-seeds` was asked for (and done)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--corpus", type=Path, default=None, help="working corpus (default: a copy of the seeds)")
    if make_seeds is not None:
        parser.add_argument("--make-seeds", action="store_true")
    args, libfuzzer_args = parser.parse_known_args()
    if make_seeds is not None and args.make_seeds:
        make_seeds()
        return None
    return args, libfuzzer_args


class Finding(Exception):
    """An input that made the command end in an undocumented way."""


_built: list = []  # the click command tree, built once per process


@contextlib.contextmanager
def _command_built_once():
    """Typer builds the click command tree on every call (240 ms here); build it once, as a shell's
    many invocations would each build it for themselves. The rest of `main` runs as it is, and
    `cli.app` is given back afterwards, so other code in the process (the test suite) sees the real app."""
    import typer

    from edgequant import cli

    if not _built:
        _built.append(typer.main.get_command(cli.app))
    app, cli.app = cli.app, lambda args, standalone_mode: _built[0].main(
        args=args, standalone_mode=standalone_mode, prog_name="edgequant")
    try:
        yield
    finally:
        cli.app = app


def run_cli(argv: list[str]) -> int:
    """Exit code of `edgequant ARGV`, with its output swallowed; exceptions propagate."""
    from edgequant.cli import main

    with _command_built_once(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(argv)
    if code not in ACCEPTED:
        raise Finding(f"exit code {code}: {err.getvalue().strip()[-300:]}")
    if "Traceback" in err.getvalue():
        raise Finding(f"a traceback on stderr: {err.getvalue()[-300:]}")
    return code


def replay(corpus: Path, one) -> Counter:
    """Run every file of `corpus` through `one(bytes) -> exit code`; the count of each code."""
    return Counter(one(p.read_bytes()) for p in sorted(corpus.iterdir()) if p.is_file())


class Tally:
    """Exit codes seen so far, printed every `every` executions (libFuzzer ends the process without atexit)."""

    def __init__(self, name: str, every: int = 1000):
        self.name, self.every = name, every
        self.codes: Counter = Counter()
        self.started = time.monotonic()

    def record(self, code: int) -> None:
        self.codes[code] += 1
        total = sum(self.codes.values())
        if total % self.every == 0:
            print(f"{self.name}: {total} executions in {time.monotonic() - self.started:.0f} s, "
                  f"exit codes {dict(sorted(self.codes.items()))}", file=sys.__stderr__, flush=True)


def fuzz(name: str, seeds: Path, one, *, seconds: int, max_len: int, corpus: Path | None, libfuzzer_args: list[str]):
    """Run libFuzzer on `one(bytes) -> exit code` from a copy of `seeds` (or from `corpus`), for `seconds`."""
    import atheris

    if corpus is None:
        corpus = Path(tempfile.mkdtemp(prefix=f"edgequant-{name}-corpus-"))
        for seed in seeds.iterdir():
            shutil.copy(seed, corpus / seed.name)
    tally = Tally(name)
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", f"-max_len={max_len}", "-timeout=60",
                   *libfuzzer_args, str(corpus)], lambda data: tally.record(one(data)))
    atheris.Fuzz()
