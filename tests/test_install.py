"""The installed package in its own environment: every module imports, and the CLI's usage errors are one line.

CI runs the suite from a fresh virtual environment without system site-packages (scripts/setup.sh makes
`.venv`), so an import the project never declared fails here instead of on a user's machine.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgequant

BIN = Path(sys.executable).parent


def _commands(group, prefix=()):
    """Every leaf command of the typer app, as the argument list that names it."""
    import typer.main

    click_group = typer.main.get_command(group) if not hasattr(group, "commands") else group
    for name, command in click_group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EDGEQUANT_DEBUG"}
    return subprocess.run([str(BIN / "edgequant"), *args], capture_output=True, text=True, env=env, timeout=120)


def test_runs_in_an_isolated_environment():
    """The suite proves the dependency list only when it runs outside the machine's own site-packages."""
    if not os.environ.get("CI"):
        pytest.skip("only CI is guaranteed to run from scripts/setup.sh's fresh .venv")
    assert sys.prefix != sys.base_prefix, "tests must run from a virtual environment (.venv/bin/python -m pytest)"
    cfg = (Path(sys.prefix) / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(edgequant.__path__, "edgequant.")]
    assert "edgequant.cli" in names and "edgequant.__main__" in names
    code = "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module(n)\nprint('ok')"
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_pip_check_passes():
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("args", [("--version",), ("--help",)])
def test_version_and_help(args):
    done = _run(*args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    if args == ("--version",):
        assert done.stdout.strip() == f"edgequant {edgequant.__version__}"
    else:
        assert "Usage: edgequant" in done.stdout


def test_python_m_edgequant_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "edgequant", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"edgequant {edgequant.__version__}"


def test_every_command_gives_one_line_and_exit_2_on_a_usage_error():
    from edgequant.cli import app

    commands = list(_commands(app))
    assert ("build",) in commands and ("devices", "estimate") in commands and ("recipe", "check") in commands
    for command in commands:
        done = _run(*command, "--no-such-option")
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2, (command, done.returncode, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout, command
        assert len(lines) == 1 and "No such option: --no-such-option" in lines[0], (command, lines)
        assert lines[0].startswith(f"edgequant {' '.join(command)}:"), lines[0]


def test_an_unforeseen_error_gets_its_own_exit_code_and_one_line(tmp_path):
    """Exit 4, not 1 (a failed gate): CI must tell a crash from a rejected model."""
    script = (
        "import sys\nimport edgequant.cli as cli\n"
        "def boom():\n    raise ValueError('deliberate failure')\n"
        "cli.app.command('boom')(boom)\nsys.exit(cli.console_main())\n"
    )
    env = {**{k: v for k, v in os.environ.items() if k != "EDGEQUANT_DEBUG"}, "EDGEQUANT_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script, "boom"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 4
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "ValueError: deliberate failure" in lines[0], lines
    log = Path(lines[0].rsplit("the traceback is in ", 1)[1])
    assert log.parent == tmp_path / "logs" and "Traceback" in log.read_text()
