"""The `edgequant` command. Each command group lives in its own module and only calls the library.

Heavy imports (TensorFlow, LiteRT) happen inside commands, so `edgequant --help` stays fast.
"""

from __future__ import annotations

import os
import sys

import typer

from edgequant.cli import bench, build, inspect_cmd, recipe_cmd, report_cmd
from edgequant.cli import push as push_cmd
from edgequant.cli import devices as devices_cmd
from edgequant.errors import EXIT_INTERRUPTED, EdgequantError

app = typer.Typer(
    name="edgequant",
    help="Turn a trained Keras/TensorFlow model into small, fast, verified .tflite artifacts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's help: no "<bool>" after flags, docstrings re-wrapped, not cut mid-sentence
)
app.command("build")(build.build)
app.command("inspect")(inspect_cmd.inspect)
app.command("report")(report_cmd.report)
app.command("compare")(report_cmd.compare)
app.command("bench")(bench.bench)
app.command("push")(push_cmd.push)
app.add_typer(recipe_cmd.app, name="recipe")
app.add_typer(devices_cmd.app, name="devices")


def _divert_native_stderr() -> None:
    """Send what TensorFlow's C++ code prints (CUDA probes, oneDNN notes, converter chatter) to a log file.

    Python's own stderr (progress, errors) keeps the terminal: it is moved to a copy of
    file descriptor 2 before descriptor 2 is pointed at the log. EDGEQUANT_DEBUG=1 keeps everything.
    """
    if os.environ.get("EDGEQUANT_DEBUG"):
        return
    from edgequant.cache import cache_dir

    log_dir = cache_dir()
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        log = os.open(log_dir / "native-stderr.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError:
        return
    sys.stderr.flush()
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    os.dup2(log, 2)
    os.close(log)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the app and turns known errors into one line and an exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        code = app(args=argv, standalone_mode=False)
    except EdgequantError as exc:
        if os.environ.get("EDGEQUANT_DEBUG"):
            raise
        print(f"edgequant: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgequant: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # click's usage errors carry their own exit code
        import click

        # typer vendors its own click: its usage errors are not click's classes, but behave alike.
        if isinstance(exc, click.ClickException) or (hasattr(exc, "show") and hasattr(exc, "exit_code")):
            exc.show()
            return 2
        if isinstance(exc, click.exceptions.Abort):
            return EXIT_INTERRUPTED
        raise
    return code if isinstance(code, int) else 0


def console_main() -> int:
    """The `edgequant` console script: `main` with TensorFlow's native log noise kept off the terminal."""
    _divert_native_stderr()
    return main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console_main())
