"""The quick path's options for models the defaults do not fit, its output when stderr is redirected, and the
run logs (issue 23, smaller items): real builds, a real LiteRT warning, real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgequant.cli import main
from edgequant.model.tflite_file import read_tflite
from edgequant.report.schema import Report
from tests.conftest import FMNIST_MODEL, REPO


def test_log_rotation_keeps_the_log_of_every_running_process(tmp_path, monkeypatch):
    from edgequant.process.native_log import KEPT_RUN_LOGS, open_run_log

    monkeypatch.setenv("EDGEQUANT_CACHE_DIR", str(tmp_path))
    logs = tmp_path / "logs"
    logs.mkdir()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    try:
        oldest = logs / f"20260101T000000-{running.pid}.log"  # a long build, older than every other run's log
        oldest.write_text("its traceback will go here\n")
        for i in range(KEPT_RUN_LOGS + 5):
            (logs / f"20260102T{i:06d}-{dead}.log").write_text("a finished run\n")
        path, fd = open_run_log()
        os.close(fd)
    finally:
        running.kill()
        running.wait()
    assert oldest.exists()
    assert path.exists() and path.name.endswith(f"-{os.getpid()}.log")
    # the finished runs' logs are rotated: the newest KEPT_RUN_LOGS in all, plus the running build's
    assert len(list(logs.glob("*.log"))) == KEPT_RUN_LOGS + 1


def test_a_litert_warning_goes_to_the_run_log_not_the_terminal(tmp_path):
    """The range setting's interpreter keeps every tensor, and LiteRT warns about it with a UserWarning."""
    model = REPO / "tests" / "fuzz_corpus" / "tflite" / "float32.tflite"
    script = (
        "import sys\nimport numpy as np\nimport edgequant.cli as cli\n"
        "def peek():\n"
        "    from edgequant.int8_fixes.ranges import _activation_samples\n"
        f"    data = open({str(model)!r}, 'rb').read()\n"
        "    from edgequant.model.tflite_file import read_tflite\n"
        "    shape = read_tflite(data).inputs[0].shape[1:]\n"
        "    _activation_samples(data, lambda: iter(np.zeros((1, *shape), np.float32)), [])\n"
        "cli.app.command('peek')(peek)\nsys.exit(cli.console_main())\n"
    )
    env = {**{k: v for k, v in os.environ.items() if k != "EDGEQUANT_DEBUG"}, "EDGEQUANT_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script, "peek"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    (log,) = (tmp_path / "logs").glob("*.log")
    assert "UserWarning" in log.read_text() and "experimental_preserve_all_tensors" in log.read_text()


def test_progress_prints_lines_when_stderr_is_not_a_terminal(capsys):
    from edgequant.cli.progress import LineProgress, progress_for_stderr

    with progress_for_stderr() as progress:  # pytest captures stderr: not a terminal
        assert isinstance(progress, LineProgress)
        with progress.task("calibrate + convert int8 (int8)", total=3) as task:
            task.advance(3)
        progress.log("a note")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[edgequant] calibrate + convert int8 (int8) ..."
    assert lines[1].startswith("[edgequant] calibrate + convert int8 (int8): done in ") and lines[1].endswith(" s")
    assert lines[2] == "[edgequant] a note"


@pytest.mark.slow
def test_quantize_options_for_io_types_shape_and_quick_looks(tmp_path, capsys, monkeypatch):
    """--input-type/--output-type/--input-shape/--no-bench/--no-devices reach the recipe and the build; the build
    prints progress lines to a redirected stderr, and a slow calibration leaves out the default analysis."""
    import edgequant.stages.variants

    monkeypatch.setattr(edgequant.stages.variants, "ANALYSIS_CALIBRATION_SECONDS", 0.0)  # every calibration is "slow"
    out = tmp_path / "out"
    code = main(["quantize", str(FMNIST_MODEL), "--calib", "fashion-mnist", "--samples", "20", "--eval",
                 "fashion-mnist", "--scale", str(1 / 255), "--input-type", "float32", "--output-type", "uint8",
                 "--input-shape", "28,28,1", "--no-bench", "--no-devices", "--device", "rpi4", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    recipe = (out / "recipe.yaml").read_text()
    assert "input_type: float32" in recipe and "output_type: uint8" in recipe and "input_shape: [28, 28, 1]" in recipe
    info = read_tflite(out / "int8.tflite")
    assert (info.inputs[0].dtype, info.outputs[0].dtype) == ("float32", "uint8")
    report = Report.model_validate_json((out / "report.json").read_text())
    assert report.variant("int8").latency == [] and report.variant("int8").layer_errors == []
    notes = "\n".join(report.notes)
    assert "no per-layer analysis: calibrating took" in notes
    assert "host benchmark: skipped with --no-bench" in notes and "skipped with --no-devices (rpi4)" in notes
    assert "[edgequant] export fashion_mnist_cnn.keras ..." in err and "[edgequant] evaluate 2 models: done in" in err


@pytest.mark.parametrize("args, message", [
    (["--input-type", "int4"], "--input-type int4: choose from float32, int8, uint8"),
    (["--dynamic", "--output-type", "uint8"], "--output-type sets the int8 variant's output type: add --int8"),
    (["--input-shape", "28,-1"], "--input-shape '28,-1': expected positive sizes without the batch"),
    (["--input-shape", "28,28"], "--input-shape 28,28: the model's input has 3 dimensions without the batch"),
])
def test_quantize_option_errors_are_one_line(tmp_path, capsys, args, message):
    code = main(["quantize", str(FMNIST_MODEL), "--calib", "fashion-mnist", "-o", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
