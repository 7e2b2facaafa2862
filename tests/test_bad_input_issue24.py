"""Wrong exit codes of issue 24 (items 10, 11, 13 and the smaller list): each is exit 2 with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FMNIST_MODEL, REPO
from tests.test_bad_input_matrix import run

TINY = REPO / "tests" / "fuzz_corpus" / "tflite" / "float32.tflite"  # an 8x8x1 model of a few kB


def _unclosed_header() -> bytes:
    """A .npy whose header (a Python literal numpy tokenizes) lacks its closing parenthesis: found by fuzz_quantize."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 8, 8, 1), np.float32))
    return buf.getvalue().replace(b"'shape': (2, 8, 8, 1)", b"'shape': (2, 8, 8, 1 ")


@pytest.mark.parametrize("content", [b"", np.lib.format.MAGIC_PREFIX + b"\x01\x00", _unclosed_header()],
                         ids=["empty", "cut short", "unclosed header"])
def test_bench_input_that_is_empty_or_cut_short(tmp_path, capsys, content):
    """Item 11: a zero-byte .npy was 'interrupted', exit 130 (click turns EOFError into an abort)."""
    data = tmp_path / "x.npy"
    data.write_bytes(content)
    code, errors = run(capsys, ["bench", TINY, "--input", data, "--runs", "1", "--warmup", "0"])
    assert code == 2 and len(errors) == 1 and str(data) in errors[0], errors


def test_quantize_calib_with_an_unclosed_header(tmp_path, capsys):
    data = tmp_path / "x.npy"
    data.write_bytes(_unclosed_header())
    code, errors = run(capsys, ["quantize", FMNIST_MODEL, "--calib", data, "-o", tmp_path / "out"])
    assert code == 2 and len(errors) == 1 and "cannot read as a .npy array" in errors[0], errors


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


def _non_utf8_names(model):
    for t in model.subgraphs[0].tensors:
        t.name = b"\xff\xfe" + (t.name or b"")


def _no_outputs(model):
    model.subgraphs[0].outputs = []


def _bad_reshape(model):
    from ai_edge_litert import schema_py_generated as schema

    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.RESHAPE:
            model.buffers[model.subgraphs[0].tensors[op.inputs[1]].buffer].data = np.array([3, 7], np.int32).tobytes()
            if op.builtinOptions is not None:
                op.builtinOptions.newShape = [3, 7]


@pytest.mark.parametrize("edit", [_non_utf8_names, _no_outputs, _bad_reshape], ids=["names", "no outputs", "reshape"])
def test_a_corrupt_tflite_is_exit_2_from_every_command_in_the_same_words(tmp_path, capsys, edit):
    """Item 12: these mutants were exit 4 from some commands, and inspect accepted files bench refused."""
    from tests.test_bad_input_matrix import tflite_with

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(tflite_with(edit))
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((2, 8, 8, 1), np.float32))
    seen = set()
    for argv in (["inspect", bad], ["inspect", bad, "--json"], ["bench", bad, "--runs", "1", "--warmup", "0"],
                 ["compare", TINY, bad, "--data", data], ["devices", "estimate", bad, "-d", "rpi4"],
                 ["bench", bad, "--device", "rpi4"]):
        code, errors = run(capsys, argv)
        assert code == 2 and len(errors) == 1 and str(bad) in errors[0], (argv, errors)
        seen.add(errors[0])
    assert len(seen) == 1, seen  # decided by one check, said in one way


def test_recipe_check_opens_onnx_files(tmp_path, capsys):
    """Smaller list: an empty or cut-short .onnx passed `recipe check` and failed the build."""
    pytest.importorskip("onnx")
    good = (REPO / "tests" / "fuzz_corpus" / "onnx" / "conv_nchw.onnx").read_bytes()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {path: m.onnx}\nvariants: [{name: f, mode: float32}]\n")
    for content in (b"", good[: len(good) // 2]):
        (tmp_path / "m.onnx").write_bytes(content)
        code, errors = run(capsys, ["recipe", "check", recipe])
        assert code == 2 and len(errors) == 1 and "model.path" in errors[0] and "not a valid ONNX model" in errors[0]
    (tmp_path / "m.onnx").write_bytes(good)
    assert run(capsys, ["recipe", "check", recipe]) == (0, [])
