"""Wrong exit codes of issue 24 (items 10, 11, 13 and the smaller list): each is exit 2 with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FMNIST_MODEL, REPO
from tests.test_bad_input_matrix import run

TINY = REPO / "tests" / "fuzz_corpus" / "tflite" / "float32.tflite"  # an 8x8x1 model of a few kB


@pytest.mark.parametrize("content", [b"", np.lib.format.MAGIC_PREFIX + b"\x01\x00"], ids=["empty", "cut short"])
def test_bench_input_that_is_empty_or_cut_short(tmp_path, capsys, content):
    """Item 11: a zero-byte .npy was 'interrupted', exit 130 (click turns EOFError into an abort)."""
    data = tmp_path / "x.npy"
    data.write_bytes(content)
    code, errors = run(capsys, ["bench", TINY, "--input", data, "--runs", "1", "--warmup", "0"])
    assert code == 2 and len(errors) == 1 and str(data) in errors[0], errors


@pytest.mark.parametrize("option", ["--batch-size", "--samples", "--top-k"])
def test_compare_counts_below_one(tmp_path, capsys, option):
    """Item 13: --batch-size 0 ran, with 'inf' samples/s."""
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((4, 8, 8, 1), np.float32))
    code, errors = run(capsys, ["compare", TINY, TINY, "--data", data, option, "0"])
    assert code == 2, errors


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_quantize_scale_not_finite(tmp_path, capsys, value):
    """Item 10: --scale nan ended in exit 4 (a recipe that did not validate, read back)."""
    code, errors = run(capsys, ["quantize", FMNIST_MODEL, "--calib", "fashion-mnist", "--scale", value,
                                "-o", tmp_path / "out"])
    assert code == 2 and len(errors) == 1 and f"--scale {float(value)}: expected a finite number" in errors[0]
    assert not (tmp_path / "out").exists()


def test_recipe_scale_not_finite(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{path: {FMNIST_MODEL}}}\ncalibration: {{source: {{type: fashion-mnist}}, "
                      "preprocess: {scale: .nan}}\nvariants: [{name: int8, mode: int8}]\n")
    code, errors = run(capsys, ["recipe", "check", recipe])
    assert code == 2 and "calibration.preprocess.scale" in errors[0]


def test_quantize_checks_calib_before_loading_the_model(tmp_path, capsys, monkeypatch):
    """Smaller list: a missing --calib was noticed after the model loaded (15 s)."""
    import edgequant.quick

    def no_loading(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(edgequant.quick, "read_model_facts", no_loading)
    code, errors = run(capsys, ["quantize", FMNIST_MODEL, "--calib", tmp_path / "missing.npy", "-o", tmp_path / "o"])
    assert code == 2 and errors == [f"edgequant: error: --calib {tmp_path / 'missing.npy'}: no such file or folder"]
    code, errors = run(capsys, ["init", FMNIST_MODEL, "--eval", tmp_path / "gone", "-o", tmp_path / "r.yaml"])
    assert code == 2 and "--eval" in errors[0] and "no such file or folder" in errors[0]


@pytest.mark.parametrize("out", ["/", "/.", "//"])
def test_output_dir_root_is_refused(tmp_path, capsys, out):
    """Smaller list: `output_dir: /` was accepted."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{path: {FMNIST_MODEL}}}\noutput_dir: '{out}'\nvariants: [{{name: f, mode: float32}}]\n")
    for command in (["recipe", "check", recipe], ["build", recipe]):
        code, errors = run(capsys, command)
        assert code == 2 and len(errors) == 1 and "the root folder cannot be an output directory" in errors[0]


def test_report_on_a_read_only_folder(tmp_path, capsys):
    """Item 10: `report` on a read-only folder was exit 4."""
    import shutil
    import subprocess

    from tests.test_output_dir_links import RECIPE

    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (tmp_path / "r.yaml").write_text(RECIPE.replace("  - {name: dynamic, mode: dynamic}\n", ""))
        assert run(capsys, ["build", tmp_path / "r.yaml", "-o", folder / "out"]) == (0, [])
        plain = folder / "plain"
        shutil.copytree(folder / "out" / ".edgequant" / "current", plain)  # a report outside an output directory
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        for target in (folder / "out", plain):
            code, errors = run(capsys, ["report", target])
            assert code == 2 and len(errors) == 1 and "Read-only file system" in errors[0], errors
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)
