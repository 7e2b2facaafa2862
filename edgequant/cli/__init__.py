"""The `edgequant` command. Each command group lives in its own module and only calls the library.

Heavy imports (TensorFlow, LiteRT) happen inside commands, so `edgequant --help` stays fast.
"""

import os
import sys
import traceback
from pathlib import Path

import typer

from edgequant.cli import bench, build, inspect_cmd, quick, recipe_cmd, registry_cmd, report_cmd
from edgequant.cli import devices as devices_cmd
from edgequant.cli import push as push_cmd
from edgequant.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EdgequantError
from edgequant.process.interrupts import Interrupted, Terminated, handled, sigterm_arrived, sigterm_stops_any_command
from edgequant.process.native_log import open_run_log
from edgequant.process.scratch import sweep_orphans
from edgequant.version import __version__

app = typer.Typer(
    name="edgequant",
    help="Turn a trained Keras/TensorFlow model into small, fast, verified .tflite artifacts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's help: no "<bool>" after flags, docstrings re-wrapped, not cut mid-sentence
)


def _print_version(value: bool) -> None:
    if value:
        print(f"edgequant {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Turn a trained Keras/TensorFlow model into small, fast, verified .tflite artifacts."""


app.command("build")(build.build)
app.command("quantize")(quick.quantize)
app.command("init")(quick.init)
app.command("inspect")(inspect_cmd.inspect)
app.command("report")(report_cmd.report)
app.command("compare")(report_cmd.compare)
app.command("bench")(bench.bench)
app.command("push")(push_cmd.push)
app.command("promote")(registry_cmd.promote)
app.command("rollback")(registry_cmd.rollback)
app.add_typer(recipe_cmd.app, name="recipe")
app.add_typer(devices_cmd.app, name="devices")

# This run's log: TensorFlow's native output and, after an unforeseen error, the traceback.
_run_log: Path | None = None


def _divert_native_stderr() -> None:
    """Send what TensorFlow's C++ code prints (CUDA probes, oneDNN notes, converter chatter) to this run's log.

    Python's own stderr (progress, errors) keeps the terminal: it is moved to a copy of
    file descriptor 2 before descriptor 2 is pointed at the log. Each run gets its own log,
    so concurrent runs never truncate each other's; EDGEQUANT_DEBUG=1 keeps everything on the terminal.
    """
    global _run_log
    if os.environ.get("EDGEQUANT_DEBUG"):
        return
    try:
        path, log = open_run_log()
    except OSError:
        return
    _run_log = path
    sys.stderr.flush()
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    os.dup2(log, 2)
    os.close(log)
    _python_warnings_to(os.fdopen(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False))


def _python_warnings_to(stream) -> None:
    """Python warnings (LiteRT's UserWarnings, Keras' deprecations: none is edgequant's, whose warnings are in
    its reports) go to `stream`, the run's log, instead of the terminal's stderr."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = show


def _usage_line(exc: typer.exceptions.TyperException) -> str:
    """One line for a usage error; empty when typer has already printed the help it stands for."""
    message = exc.format_message().rstrip(".") if hasattr(exc, "format_message") else str(exc)
    if not message:
        return ""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "edgequant"
    return f"{command}: {message} (see '{command} --help')"


def _internal_error(exc: BaseException) -> int:
    """An error edgequant did not foresee: one line, the traceback kept where the user can find it."""
    summary = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    if _run_log is not None:
        with open(_run_log, "a", encoding="utf-8") as log:
            traceback.print_exception(exc, file=log)
        where = f"the traceback is in {_run_log}"
    else:
        where = "set EDGEQUANT_DEBUG=1 to see the traceback"
    print(f"edgequant: internal error (a bug in edgequant, please report it): {summary}; {where}", file=sys.stderr)
    return EXIT_INTERNAL


def _interrupted(stop: BaseException) -> int:
    """SIGINT (exit 130) or SIGTERM (143): one line. Commands that clean up raise `Interrupted`; a bare
    KeyboardInterrupt typer already turns into exit 130, so it only gets here outside a command."""
    handled()
    print(f"edgequant: {str(stop) or 'interrupted'}", file=sys.stderr)
    return getattr(stop, "exit_code", EXIT_INTERRUPTED)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the app and turns every error into one line and a documented exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    debug = bool(os.environ.get("EDGEQUANT_DEBUG"))
    try:
        code = app(args=argv, standalone_mode=False)
    except EdgequantError as exc:
        if debug:
            traceback.print_exc()
        print(f"edgequant: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (Interrupted, KeyboardInterrupt, typer.Abort) as exc:
        if isinstance(exc.__cause__ or exc.__context__, EOFError):  # click turns an EOFError into Abort: a bug, not a stop
            return _internal_error(exc.__cause__ or exc.__context__)
        return _interrupted(exc)
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    except typer.exceptions.TyperException as exc:  # usage errors: unknown option, missing argument...
        if line := _usage_line(exc):
            print(line, file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        if debug:
            traceback.print_exc()
        return _internal_error(exc)
    if code == EXIT_INTERRUPTED:  # typer's own translation of a KeyboardInterrupt, with no word said
        if sigterm_arrived():
            return _interrupted(Terminated("terminated (SIGTERM)"))
        print("edgequant: interrupted", file=sys.stderr)
    return code if isinstance(code, int) else 0


def console_main() -> int:
    """The `edgequant` console script: `main` with TensorFlow's native log noise kept off the terminal,
    after removing what killed runs left in the temporary directory."""
    _divert_native_stderr()
    sweep_orphans()
    with sigterm_stops_any_command():
        return main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console_main())
