"""Bad input: exit code 2, one line that names the file and the field, and nothing lost on disk."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgequant.cli import main
from tests.conftest import FMNIST_MODEL

GOOD = f"""\
model:
  path: {FMNIST_MODEL}
calibration:
  source: {{type: fashion-mnist, split: train}}
  preprocess: {{scale: 0.00392156862745098}}
  samples: 20
variants:
  - {{name: float32, mode: float32}}
  - {{name: int8, mode: int8}}
"""


def run(capsys, *argv) -> tuple[int, str]:
    """Exit code and the error line (progress bars share stderr with it; the error is its last line)."""
    code = main(list(map(str, argv)))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("edgequant: error: ")]
    assert len(errors) <= 1, errors
    return code, errors[0] if errors else ""


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_one_line(err: str) -> None:
    assert err.startswith("edgequant: error: ") and "\n" not in err, err


def test_unknown_mode(tmp_path, capsys):
    recipe = write(tmp_path, GOOD.replace("mode: int8", "mode: int3"))
    code, err = run(capsys, "recipe", "check", recipe)
    assert code == 2
    assert_one_line(err)
    assert f"{recipe}:9:" in err and "variants[1].mode: 'int3' is not one of float32, float16, dynamic, int8" in err


def test_unknown_key_is_rejected_with_a_suggestion(tmp_path, capsys):
    recipe = write(tmp_path, GOOD.replace("samples: 20", "sampels: 20"))
    code, err = run(capsys, "build", recipe)
    assert code == 2
    assert_one_line(err)
    assert f"{recipe}:6:3: calibration.sampels: unknown key 'sampels'; did you mean 'samples'?" in err


def test_missing_model_file(tmp_path, capsys):
    recipe = write(tmp_path, GOOD.replace(str(FMNIST_MODEL), "nowhere/model.keras"))
    code, err = run(capsys, "build", recipe)
    assert code == 2
    assert_one_line(err)
    assert f"{recipe}:2:3: model.path: no such file or directory: {tmp_path}/nowhere/model.keras" in err


def test_invalid_yaml(tmp_path, capsys):
    code, err = run(capsys, "recipe", "check", write(tmp_path, "model: [unclosed\n"))
    assert code == 2 and "not valid YAML" in err
    assert_one_line(err)


def test_calibration_shape_mismatch(tmp_path, capsys):
    recipe = write(tmp_path, GOOD.replace("preprocess: {", "preprocess: {resize: [32, 32], "))
    code, err = run(capsys, "build", recipe)
    assert code == 2
    assert_one_line(err)
    assert f"{recipe}:3:1: calibration: calibration sample 0 from fashion-mnist/train has shape (32, 32, 1)" in err
    assert "expects (28, 28, 1)" in err


def test_nan_in_calibration_data_names_the_sample(tmp_path, capsys):
    x = np.random.default_rng(0).random((20, 28, 28, 1), dtype=np.float32)
    x[7, 3, 3, 0] = np.nan
    np.save(tmp_path / "calib.npy", x)
    recipe = write(tmp_path, GOOD.replace("{type: fashion-mnist, split: train}", "{type: npy, path: calib.npy}"))
    code, err = run(capsys, "build", recipe)
    assert code == 2
    assert_one_line(err)
    assert f"calibration: calibration sample 7 from {tmp_path}/calib.npy contains NaN" in err


def test_pickled_npy_is_refused(tmp_path, capsys):
    np.save(tmp_path / "calib.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    recipe = write(tmp_path, GOOD.replace("{type: fashion-mnist, split: train}", "{type: npy, path: calib.npy}"))
    code, err = run(capsys, "build", recipe)
    assert code == 2 and "without pickle" in err


def test_failed_build_leaves_earlier_artifacts_intact(tmp_path, capsys):
    out = tmp_path / "out"
    good = write(tmp_path, GOOD + f"output_dir: {out}\n")
    assert run(capsys, "build", good)[0] == 0
    before = snapshot(out)
    assert {"float32.tflite", "int8.tflite", "manifest.json", "report.json", "report.md"} <= set(before)

    x = np.zeros((20, 28, 28, 1), dtype=np.float32)
    x[19] = np.inf  # the last sample: the failure comes after the float32 variant could have been written
    np.save(tmp_path / "bad.npy", x)
    bad = write(
        tmp_path,
        GOOD.replace("{type: fashion-mnist, split: train}", "{type: npy, path: bad.npy}") + f"output_dir: {out}\n",
        "bad.yaml",
    )
    code, err = run(capsys, "build", bad)
    assert code == 2 and "calibration sample 19" in err and "infinite" in err
    assert snapshot(out) == before  # same files, same bytes, no staging folder left behind


def snapshot(out: Path) -> dict[str, str]:
    """Every path under `out` (links not followed), with the SHA-256 of each file and the target of each link."""
    return {
        str(p.relative_to(out)): f"-> {os.readlink(p)}" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*")) if p.is_symlink() or p.is_file()
    }


def test_unknown_variant_on_the_command_line(tmp_path, capsys):
    code, err = run(capsys, "build", write(tmp_path, GOOD), "--variant", "int9")
    assert code == 2 and "--variant 'int9': the recipe has no such variant (it has float32, int8)" in err


def test_console_script_exit_code_and_clean_stderr(tmp_path):
    """The installed entry point keeps the exit code (and TensorFlow's native logs off stderr)."""
    recipe = write(tmp_path, GOOD.replace("mode: int8", "mode: int3"))
    proc = subprocess.run(
        [sys.executable, "-m", "edgequant", "build", str(recipe)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "'int3' is not one of" in proc.stderr


@pytest.mark.parametrize("content", [b"", b"not a flatbuffer at all", b"\x1c\x00\x00\x00TFL3" + b"\x00" * 8])
def test_inspect_rejects_broken_tflite(tmp_path, capsys, content):
    path = tmp_path / "broken.tflite"
    path.write_bytes(content)
    code, err = run(capsys, "inspect", path)
    assert code == 2
    assert_one_line(err)
    assert str(path) in err
