"""Links planted in an output directory: edgequant never writes or deletes through them (issue 24, items 2-4).

Every path edgequant writes or deletes under the output directory gets a link to a folder or file
outside it: `.edgequant`, its `builds`, `current`, `previous`, `lock` and a build folder; each
report file, the manifest, an artifact and `recipe.yaml`. Then `build`, a `-v` rebuild,
`quantize`, `report` and `init` run. A link in `.edgequant/` stops the command with one line
(exit 2); a link at a file name is replaced by the new file. Afterwards every link target is
byte-identical and nothing outside the output directory changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from edgequant.output.output_dir import STATE_DIR
from tests.conftest import FMNIST_MODEL
from tests.test_bad_input_matrix import run

RECIPE = f"""\
model: {{path: {FMNIST_MODEL}}}
benchmark: {{enabled: false}}
variants:
  - {{name: float32, mode: float32}}
  - {{name: dynamic, mode: dynamic}}
"""
FILE_NAMES = ["report.md", "report.html", "report.json", "manifest.json", "float32.tflite", "recipe.yaml"]


def snapshot(folder: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file's SHA-256 and every link's target under `folder`, links not followed."""
    seen = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            if skip is not None and (path == skip or skip in path.parents):
                continue
            key = str(path.relative_to(folder))
            if path.is_symlink():
                seen[key] = "-> " + os.readlink(path)
            elif path.is_file():
                seen[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                seen[key] = "dir"
    return seen


@pytest.fixture(scope="module")
def good_out(tmp_path_factory) -> Path:
    """A committed build, copied (links kept) for each case."""
    from edgequant.cli import main

    folder = tmp_path_factory.mktemp("good")
    (folder / "recipe.yaml").write_text(RECIPE)
    assert main(["build", str(folder / "recipe.yaml"), "-o", str(folder / "out")]) == 0
    return folder / "out"


@pytest.fixture
def victim(tmp_path) -> Path:
    """What the links lead to: files and folders of the user's, outside the output directory."""
    home = tmp_path / "home"
    (home / "projects" / "thesis").mkdir(parents=True)
    (home / "projects" / "thesis" / "chapter1.tex").write_text("years of work\n")
    (home / "photos").mkdir()
    (home / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 not really a cat")
    (home / ".bashrc").write_text("export PATH=$HOME/bin:$PATH\n")
    return home


def copy_of(good_out: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(good_out, out, symlinks=True)
    return out


def plant(out: Path, part: str, home: Path) -> None:
    """Replace `part` of the output directory's state by a link (or a folder) the user made."""
    state = out / STATE_DIR
    if part == ".edgequant":
        shutil.rmtree(state)
        state.symlink_to(home)
    elif part == "builds":
        shutil.rmtree(state / "builds")
        (state / "builds").symlink_to(home)
    elif part in ("current", "previous"):
        (state / part).unlink(missing_ok=True)
        (state / part).symlink_to(home / "projects")
    elif part == "current relative":
        (state / "current").unlink()
        (state / "current").symlink_to("../../home/projects")
    elif part == "lock":
        (state / "lock").unlink(missing_ok=True)
        (state / "lock").symlink_to(home / ".bashrc")
    elif part == "a build folder":
        (state / "builds" / "20260101T000000.000000Z-1").symlink_to(home / "photos")
    elif part == "current as a plain folder":
        target = (state / "current").resolve()
        (state / "current").unlink()
        shutil.copytree(target, state / "current")
    else:
        raise ValueError(part)


STATE_PARTS = [".edgequant", "builds", "current", "current relative", "previous", "lock", "a build folder",
               "current as a plain folder"]


def command_line(command: str, tmp_path: Path, out: Path) -> list:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    return {
        "build": ["build", recipe, "-o", out],
        "-v rebuild": ["build", recipe, "-o", out, "-v", "dynamic"],
        "report": ["report", out],
        "quantize": ["quantize", FMNIST_MODEL, "--dynamic", "-o", out, "--force"],
    }[command]


@pytest.mark.slow
@pytest.mark.parametrize("part", STATE_PARTS)
@pytest.mark.parametrize("command", ["build", "-v rebuild", "report", "quantize"])
def test_a_link_in_the_state_folder_stops_the_command(good_out, victim, tmp_path, capsys, command, part):
    out = copy_of(good_out, tmp_path)
    plant(out, part, victim)
    argv = command_line(command, tmp_path, out)
    before = snapshot(tmp_path, skip=out)
    code, errors = run(capsys, argv)
    assert code == 2 and len(errors) == 1, errors
    assert "edgequant owns .edgequant/" in errors[0] and "deletes nothing it did not create" in errors[0]
    if part == "current as a plain folder":
        assert "a folder, not the link to a build" in errors[0] and "tmp" not in errors[0].split(":")[-1]
    after = snapshot(tmp_path, skip=out)
    if command == "quantize":  # it writes its recipe.yaml into the output directory only
        assert before == after
    assert before == after


@pytest.mark.slow
@pytest.mark.parametrize("command", ["build", "-v rebuild", "report", "quantize"])
def test_links_at_file_names_are_replaced_not_written_through(good_out, victim, tmp_path, capsys, command):
    out = copy_of(good_out, tmp_path)
    for name in FILE_NAMES:
        (out / name).unlink(missing_ok=True)
        (out / name).symlink_to(victim / ".bashrc")
    (out / "report_plot.png").symlink_to(victim / "photos" / "cat.jpg")  # a name edgequant does not write: kept
    argv = command_line(command, tmp_path, out)
    before = snapshot(tmp_path, skip=out)
    code, errors = run(capsys, argv)
    assert (code, errors) == (0, [])
    assert snapshot(tmp_path, skip=out) == before
    written = FILE_NAMES if command == "quantize" else [n for n in FILE_NAMES if n != "recipe.yaml"]
    for name in written:
        path = out / name
        assert not path.is_symlink() or not path.resolve().is_relative_to(victim), name
        assert path.read_bytes() != (victim / ".bashrc").read_bytes(), name
    if command != "quantize":
        assert os.readlink(out / "recipe.yaml") == str(victim / ".bashrc")  # not edgequant's to touch
    assert os.readlink(out / "report_plot.png") == str(victim / "photos" / "cat.jpg")


def test_report_never_rewrites_the_committed_build(good_out, tmp_path, capsys):
    """`report` commits a new build; the folder a reader holds keeps its bytes (item 10)."""
    out = copy_of(good_out, tmp_path)
    committed = (out / STATE_DIR / "current").resolve()
    before = snapshot(committed)
    (committed / "report.md").write_text("edited by hand\n")  # what a re-render must fix, in a new build
    before = snapshot(committed)
    assert run(capsys, ["report", out]) == (0, [])
    assert snapshot(committed) == before
    new = (out / STATE_DIR / "current").resolve()
    assert new != committed and (out / "report.md").read_text().startswith("# edgequant report")
    assert (new / "float32.tflite").samefile(committed / "float32.tflite")  # the artifacts, hard-linked


def test_init_replaces_a_link_with_force(victim, tmp_path, capsys):
    link = tmp_path / "recipe.yaml"
    link.symlink_to(victim / ".bashrc")
    before = snapshot(victim)
    code, errors = run(capsys, ["init", FMNIST_MODEL, "-o", link])
    assert code == 2 and "already exists (use --force" in errors[0]
    dangling = tmp_path / "dangling.yaml"
    dangling.symlink_to(victim / "new-file")
    code, errors = run(capsys, ["init", FMNIST_MODEL, "-o", dangling])
    assert code == 2 and "already exists" in errors[0]
    assert run(capsys, ["init", FMNIST_MODEL, "-o", link, "--force"]) == (0, [])
    assert not link.is_symlink() and "Starter recipe" in link.read_text()
    assert snapshot(victim) == before


def test_quantize_keeps_the_users_recipe_and_leaves_its_own_when_the_build_fails(tmp_path, capsys):
    """Item 4, and issue 23 item 9: an edited recipe.yaml is kept without --force; a failed build leaves the recipe."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "recipe.yaml").write_text("# my own recipe\n")
    code, errors = run(capsys, ["quantize", FMNIST_MODEL, "--dynamic", "-o", out])
    assert code == 2 and f"{out / 'recipe.yaml'}: already exists (use --force" in errors[0]
    assert (out / "recipe.yaml").read_text() == "# my own recipe\n"
    assert not (out / STATE_DIR).exists()

    (out / STATE_DIR).mkdir()
    (out / STATE_DIR / "builds").symlink_to(tmp_path)  # the build fails at the output directory
    code, errors = run(capsys, ["quantize", FMNIST_MODEL, "--dynamic", "-o", out, "--force"])
    assert code == 2 and "edgequant owns" in errors[0]
    assert "edgequant build" in (out / "recipe.yaml").read_text()  # the recipe to fix and repeat
