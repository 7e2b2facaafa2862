"""`build --no-devices / --no-bench` for quick iterations, and progress through the emulated devices."""

from __future__ import annotations

import contextlib

import pytest

from edgequant.cli import main
from edgequant.report.schema import Report
from tests.conftest import FMNIST_MODEL

RECIPE = f"""\
model: {{path: {FMNIST_MODEL}}}
calibration:
  source: {{type: fashion-mnist, split: train}}
  preprocess: {{scale: 0.00392156862745098}}
  samples: 100
evaluation:
  source: {{type: fashion-mnist, split: test}}
  samples: 200
benchmark: {{runs: 5, warmup: 1}}
devices: [rpi4]
variants:
  - {{name: float32, mode: float32}}
  - name: int8
    mode: int8
    analyse_layers: false
    gates: {{min_agreement_percent: 90, max_latency_ms: {{rpi4: 1000, host: 1000}}}}
"""


class RecordingProgress:
    def __init__(self):
        self.tasks: list[dict] = []

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None):
        record = {"description": description, "total": total, "advanced": 0}
        self.tasks.append(record)

        class _Task:
            def advance(self, n: int = 1) -> None:
                record["advanced"] += n

        yield _Task()

    def log(self, message: str) -> None:
        pass


def write_recipe(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE + f"output_dir: {tmp_path / 'out'}\n")
    return recipe, tmp_path / "out"


@pytest.mark.slow
def test_skipped_latency_stages_are_said_and_their_gates_fail_as_not_measured(tmp_path, capsys):
    recipe, out = write_recipe(tmp_path)
    assert main(["build", str(recipe), "--no-devices", "--no-bench"]) == 1
    err = capsys.readouterr().err
    assert "gate failed: int8: max_latency_ms.rpi4 FAILED: not measured (skipped with --no-devices)" in err
    assert "gate failed: int8: max_latency_ms.host FAILED: not measured (skipped with --no-bench)" in err
    report = Report.model_validate_json((out / "report.json").read_text())
    int8 = report.variant("int8")
    assert int8.latency == [] and int8.arm_parity == []
    gates = {g.gate: g for g in int8.gates}
    assert gates["min_agreement_percent"].passed  # what was measured is still checked
    assert gates["max_latency_ms.rpi4"].value is None and not gates["max_latency_ms.rpi4"].passed
    assert any("skipped with --no-devices (rpi4)" in n for n in report.notes)
    assert any("host benchmark: skipped with --no-bench" in n for n in report.notes)
    md = (out / "report.md").read_text()
    assert "| max_latency_ms.rpi4 | not measured (skipped with --no-devices) | 1000 | FAIL |" in md


@pytest.mark.slow
def test_device_stage_advances_once_per_emulated_run(tmp_path):
    from edgequant.pipeline import build_recipe

    recipe, _ = write_recipe(tmp_path)
    progress = RecordingProgress()
    result = build_recipe(recipe, progress=progress, host_benchmark=False)
    emulate = [t for t in progress.tasks if t["description"].startswith("emulate on rpi4")]
    # float32 and int8 estimated, int8's parity checked: three emulated runs, each one a step.
    assert [(t["total"], t["advanced"]) for t in emulate] == [(3, 3)]
    assert "latency of 2 models, parity of 1" in emulate[0]["description"]
    assert not result.passed  # the host gate was not measured
    assert [x.device for x in result.report.variant("int8").latency] == ["rpi4"]


def test_rich_progress_shows_the_time_left():
    from rich.console import Console

    from edgequant.cli.progress import RichProgress

    console = Console(record=True, width=120, force_terminal=False)
    with RichProgress(console) as progress:
        with progress.task("emulate on rpi4", total=4) as task:
            task.advance(2)
    text = console.export_text()
    assert "4/4" in text and "eta 0:00:00" in text
