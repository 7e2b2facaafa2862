"""The smaller things that make the tool feel finished: help text, wide tables, readable kernel names,
`inspect` on Keras files, the Python API's errors and its quiet stderr (issue 10, item 12)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgequant.cli import main
from tests.conftest import REPO

COMMANDS = [[], ["build"], ["inspect"], ["report"], ["compare"], ["bench"], ["push"], ["recipe", "check"],
            ["devices"], ["devices", "estimate"], ["devices", "parity"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "edgequant")
def test_help_shows_no_bool_metavar_and_wraps_whole_paragraphs(command, capsys):
    assert main([*command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "<bool>" not in text
    paragraphs = [p.splitlines() for p in text.split("\n\n")]
    for lines in paragraphs:  # prose paragraphs are re-wrapped: no line cut short in mid-sentence
        prose = [line for line in lines if line.startswith("  ") and not line.lstrip().startswith("-")]
        if len(prose) == len(lines) > 1 and not lines[0].strip().endswith(":"):
            assert all(len(line) > 50 for line in prose[:-1]), lines


def test_devices_table_is_not_cut_at_80_columns(capsys):
    from edgequant.devices.profiles import list_profiles

    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    for p in list_profiles():
        assert p.device in out


def test_kernel_names_are_demangled():
    from edgequant.devices.arm.symbols import demangle  # what `edgequant devices` prints kernel names with

    names = demangle(["_ZN6tflite3ops7builtin4conv4EvalEP13TfLiteContextP10TfLiteNode", "xnn_f32_gemm_ukernel"])
    assert names == {"_ZN6tflite3ops7builtin4conv4EvalEP13TfLiteContextP10TfLiteNode":
                     "tflite::ops::builtin::conv::Eval(TfLiteContext*, TfLiteNode*)"}


@pytest.fixture(scope="module")
def keras_with_rescaling(tmp_path_factory):
    import keras

    tmp = tmp_path_factory.mktemp("inspect")
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 127.5, offset=-1),
                              keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
    model.save(tmp / "m.keras")
    model.save(tmp / "m.h5")
    return tmp


@pytest.mark.parametrize("name", ["m.keras", "m.h5"])
def test_inspect_summarises_a_keras_model_and_its_rescaling(keras_with_rescaling, name, capsys):
    assert main(["inspect", str(keras_with_rescaling / name)]) == 0
    out = capsys.readouterr().out
    assert ": (batch, 8, 8, 3)" in out and ": (batch, 5)" in out
    assert "rescales its input" in out and "0.00784314" in out and "-1" in out


def test_recipe_with_an_in_memory_keras_model_says_what_to_do():
    import keras

    import edgequant as eq

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(eq.EdgequantError, match=r"save it first .*ModelSpec\(path="):
        eq.Recipe(model=model, variants=[eq.Float32Variant(name="f")])


def test_python_api_keeps_tensorflows_native_log_off_stderr(tmp_path):
    """Through eq.quantize, the converter's C++ chatter goes to the log file, not the caller's terminal."""
    script = (
        "import sys, keras, numpy as np, edgequant as eq\n"
        "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
        "print('EDGEQUANT STARTS', file=sys.stderr, flush=True)\n"  # what TensorFlow printed on import is the caller's
        "data = eq.quantize(m, 'int8', calibration=np.random.default_rng(0).random((8, 4), dtype=np.float32))\n"
        "print(len(data))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
           "EDGEQUANT_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout.strip().splitlines()[-1]) > 100
    ours = run.stderr.partition("EDGEQUANT STARTS")[2].splitlines()
    native = [line for line in ours if line[:5] in ("W0000", "I0000", "E0000") or "tensorflow/" in line]
    assert not native, native[:5]
    logs = list((tmp_path / "cache" / "logs").glob("*.log"))
    assert logs and sum(log.stat().st_size for log in logs) > 0
