"""The documentation: the site builds with `mkdocs build --strict` (no broken link, anchor or included file), its
runnable examples run, its results tables are generated files, and the README stays short with working links."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
EXAMPLES = DOCS / "examples"
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.MULTILINE)


def _pages() -> list[Path]:
    return [p for p in DOCS.rglob("*.md") if "results" not in p.relative_to(DOCS).parts[:1]]


def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                          "-d", str(tmp_path / "site")], capture_output=True, text=True, env=env, cwd=REPO)
    problems = [line for line in run.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert run.returncode == 0, "\n".join(problems) or run.stderr[-3000:]
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for generated in ("edgequant build", "edgequant devices estimate", "--trust-code"):  # from the Typer app
        assert generated in cli
    recipe = (tmp_path / "site" / "reference" / "recipe" / "index.html").read_text(encoding="utf-8")
    assert "max_accuracy_drop_points" in recipe and "Int8Variant" in recipe  # from the JSON Schema
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "calibration" in api and "trust_code" in api  # from edgequant.api's docstrings


def test_every_example_is_shown_on_a_page():
    included = {m for page in _pages() for m in SNIPPET.findall(page.read_text(encoding="utf-8"))}
    examples = {f"examples/{p.name}" for p in EXAMPLES.iterdir() if p.is_file()}
    assert examples, "no runnable examples"
    assert examples <= included, f"examples no page shows: {sorted(examples - included)}"


def test_results_tables_are_generated_files():
    """Every file under docs/results/ but the index says which benchmark script wrote it, when, and at which commit."""
    for path in (DOCS / "results").glob("*.md"):
        if path.name == "index.md":
            continue
        head = "\n".join(path.read_text(encoding="utf-8").splitlines()[:5])
        assert re.search(r"(generated|written|measured) by `?(python )?benchmarks/\w+\.py", head, re.IGNORECASE), f"{path}: not a generated file"
        assert re.search(r"\d{4}-\d{2}-\d{2}", head) and "commit" in head, f"{path}: no date or commit"


def test_readme_is_short_and_its_links_resolve():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 160
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert links
    missing = [link for link in links if "://" not in link and not (REPO / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


# ---- the runnable examples -----------------------------------------------------------------------

@pytest.fixture
def workdir(tmp_path):
    """A folder where `edgequant` is this checkout's, and `recipes/` the repository's (read-only use)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "edgequant"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m edgequant "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    work = tmp_path / "work"
    work.mkdir()
    (work / "recipes").symlink_to(REPO / "recipes")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "EDGEQUANT_CACHE_DIR": os.environ.get("EDGEQUANT_CACHE_DIR", str(Path.home() / ".cache" / "edgequant"))}
    return work, env


def _run_shell(example: str, work: Path, env: dict) -> subprocess.CompletedProcess:
    run = subprocess.run(["bash", "-euo", "pipefail", str(EXAMPLES / example)], cwd=work, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, f"{example} exited {run.returncode}:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    return run


@pytest.mark.slow
def test_getting_started_quickstart_runs(workdir):
    work, env = workdir
    run = _run_shell("quickstart.sh", work, env)
    out = work / "build" / "quickstart"
    report = json.loads((out / "report.json").read_text())
    int8 = next(v for v in report["variants"] if v["name"] == "int8")
    assert int8["evaluation"]["samples"] == 10_000
    assert int8["evaluation"]["top1"] > 0.85  # the project's CNN scores about 90% in float32
    assert (out / "recipe.yaml").is_file() and "INT8" in run.stdout.upper()


def test_small_recipe_checks(workdir):
    work, env = workdir
    run = subprocess.run(["edgequant", "recipe", "check", str(EXAMPLES / "recipe.yaml")], cwd=work, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_own_board_profile_example_runs(workdir):
    work, env = workdir
    _run_shell("own_board.sh", work, env)
    profile = (work / "imx8mp.yaml").read_text()
    assert "NXP i.MX 8M Plus" in profile and "1.8" in profile
    shown = subprocess.run(["edgequant", "devices", "show", "imx8mp.yaml"], cwd=work, env=env, capture_output=True,
                           text=True)
    assert shown.returncode == 0 and "imx8mp" in shown.stdout, shown.stderr


@pytest.mark.slow
def test_python_example_runs(workdir):
    work, env = workdir
    run = subprocess.run([sys.executable, str(EXAMPLES / "python_quantize.py")], cwd=work, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    line = re.search(r"int8: ([\d.]+) KiB, top-1 ([\d.]+)%, agreement with float32 ([\d.]+)%", run.stdout)
    assert line, run.stdout
    assert float(line.group(2)) > 85 and float(line.group(3)) > 95
