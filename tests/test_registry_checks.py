"""The registry is checked before it is believed (issue 24 items 6-7).

A registry URI a build cannot log to is exit 2 with one line before the build starts (no output
directory written); `promote` refuses a version whose gates failed, naming them, unless --force;
`rollback` with no history says so. All against real MLflow stores.
"""

from __future__ import annotations

import sqlite3
import subprocess

import pytest

from tests.conftest import FMNIST_MODEL
from tests.test_bad_input_matrix import run

pytest.importorskip("mlflow")

RECIPE = f"""\
name: reg
model: {{path: {FMNIST_MODEL}}}
benchmark: {{enabled: false}}
variants:
  - {{name: float32, mode: float32, gates: {{max_size_kib: 1}}}}
  - {{name: dynamic, mode: dynamic}}
"""


@pytest.fixture
def remountable(tmp_path):
    """A tmpfs that the test can turn read-only (permissions alone do not stop root, which CI runs as)."""
    folder = tmp_path / "store"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=True)  # MLflow keeps its SQLite connection open


def bad_uris(tmp_path, remountable) -> dict[str, tuple[str, str]]:
    db = remountable / "mlruns.db"
    connection = sqlite3.connect(db)
    connection.execute("CREATE TABLE t (x)")
    connection.commit()
    connection.close()
    subprocess.run(["mount", "-o", "remount,ro", str(remountable)], check=True)
    return {
        "unknown scheme": ("garbage://x", "cannot open the model registry"),
        "read-only SQLite file": (f"sqlite:///{db}", f"cannot write {db}"),
        "new SQLite file in a read-only folder": (f"sqlite:///{remountable / 'new.db'}", "cannot create the SQLite file"),
        "unreachable server": ("http://127.0.0.1:9", "cannot open the model registry"),
    }


def test_a_registry_that_cannot_take_the_build_is_refused_before_it(tmp_path, remountable, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    for name, (uri, words) in bad_uris(tmp_path, remountable).items():
        out = tmp_path / "out"
        code, errors = run(capsys, ["build", recipe, "-o", out, "--registry", uri])
        assert code == 2 and len(errors) == 1 and words in errors[0], (name, errors)
        assert f"--registry {uri}" in errors[0]
        assert not out.exists(), f"{name}: the build ran before the registry was checked"


@pytest.mark.slow
def test_promote_refuses_failed_gates_and_rollback_without_history_says_so(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    code, _ = run(capsys, ["build", recipe, "-o", tmp_path / "out", "--registry", uri])
    assert code == 1  # float32's size gate failed; both variants are registered

    code, errors = run(capsys, ["promote", "reg-float32", "1", "--registry", uri])
    assert code == 2 and len(errors) == 1
    assert "reg-float32 version 1: its gates failed (max_size_kib:" in errors[0] and "--force" in errors[0]
    code, errors = run(capsys, ["rollback", "reg-float32", "--registry", uri])
    assert code == 2 and "no version is in production; nothing to roll back" in errors[0]

    assert run(capsys, ["promote", "reg-dynamic", "1", "--registry", uri]) == (0, [])  # no gates: nothing failed
    code, errors = run(capsys, ["rollback", "reg-dynamic", "--registry", uri])
    assert code == 2 and "version 1 is the first production version; nothing to roll back to" in errors[0]

    assert run(capsys, ["promote", "reg-float32", "1", "--registry", uri, "--force"]) == (0, [])
