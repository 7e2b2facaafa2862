"""The model registry against a real MLflow SQLite store: register, candidate, promote, rollback, models:/ references.

Three real builds of the Fashion-MNIST CNN (float32 + int8, small samples, no benchmark):
1. gates pass; 2. a size gate fails; 3. gates pass, with per-tensor int8 scales (so its int8 differs).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from conftest import FMNIST_MODEL

NAME = "fm_registry-int8"


def _recipe(path: Path, *, per_channel: bool, max_size_kib: float) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "fm_registry",
        "model": {"path": str(FMNIST_MODEL)},
        "calibration": {"source": {"type": "fashion-mnist", "split": "train"},
                        "preprocess": {"scale": 1 / 255}, "samples": 50},
        "evaluation": {"source": {"type": "fashion-mnist", "split": "test"}, "samples": 200, "batch_size": 200},
        "benchmark": {"enabled": False},
        "variants": [
            {"name": "float32", "mode": "float32"},
            {"name": "int8", "mode": "int8", "analyse_layers": False, "per_channel": per_channel,
             "gates": {"min_agreement_percent": 90, "max_size_kib": max_size_kib}},
        ],
    }))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(capsys, *args: str) -> tuple[int, str]:
    """The edgequant command in this process: exit code and what it printed."""
    from edgequant.cli import main

    capsys.readouterr()
    code = main(list(args))
    printed = capsys.readouterr()
    return code, printed.out + printed.err


@pytest.mark.slow
def test_candidate_promote_build_promote_rollback(tmp_path, capsys):
    from mlflow import MlflowClient

    from edgequant import fetch
    from edgequant.pipeline import build_recipe

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    first = build_recipe(_recipe(tmp_path / "a.yaml", per_channel=True, max_size_kib=150),
                         output_dir=tmp_path / "b1", registry=uri)
    assert first.passed
    assert [(r.name, r.version, r.candidate) for r in first.registered] == [
        ("fm_registry-float32", "1", False), (NAME, "1", True)]
    assert str(client.get_model_version_by_alias(NAME, "candidate").version) == "1"

    second = build_recipe(_recipe(tmp_path / "b.yaml", per_channel=True, max_size_kib=1),
                          output_dir=tmp_path / "b2", registry=uri)
    assert not second.passed and "max_size_kib" in second.failed_gates[0]
    assert client.get_model_version(NAME, "2").tags["edgequant.gates_passed"] == "False"
    assert str(client.get_model_version_by_alias(NAME, "candidate").version) == "1"  # the failing build is no candidate

    # float and quantized are separate registered models, linked by the source model's hash
    float_version = client.get_model_version("fm_registry-float32", "1")
    assert float_version.tags["edgequant.kind"] == "float"
    assert client.get_model_version(NAME, "1").tags["edgequant.kind"] == "quantized"
    assert float_version.tags["edgequant.source_sha256"] == first.report.source_model["sha256"]
    assert client.get_model_version(NAME, "1").tags["edgequant.source_sha256"] == first.report.source_model["sha256"]

    # the run holds the build: metrics per variant, gate results, report and manifest
    run = client.get_run(client.get_model_version(NAME, "1").run_id)
    assert run.data.metrics["int8.agreement"] == pytest.approx(first.report.variant("int8").evaluation.agreement)
    assert run.data.metrics["int8.gates_passed"] == 1.0
    logged = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"manifest.json", "report.json", "report.md", "gates.json", "recipe.json", "models"} <= logged

    code, printed = _cli(capsys, "promote", NAME, "1", "--registry", uri)
    assert code == 0, printed
    assert "production is version 1" in printed

    third = build_recipe(_recipe(tmp_path / "c.yaml", per_channel=False, max_size_kib=150),
                         output_dir=tmp_path / "b3", registry=uri)
    assert third.passed
    assert str(client.get_model_version_by_alias(NAME, "candidate").version) == "3"
    assert _sha(third.path("int8")) != _sha(first.path("int8"))  # per-tensor scales: another model
    assert _cli(capsys, "promote", NAME, "3", "--registry", uri)[0] == 0
    in_production = fetch(f"models:/{NAME}@production", tmp_path / "fetch3", registry=uri)
    assert _sha(in_production) == _sha(third.path("int8"))

    code, printed = _cli(capsys, "rollback", NAME, "--registry", uri)
    assert code == 0, printed
    assert "from version 3 to version 1" in printed
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "1"
    restored = fetch(f"models:/{NAME}@production", tmp_path / "fetch1", registry=uri)
    assert _sha(restored) == _sha(first.path("int8")) == first.artifact("int8").sha256
    assert (restored.parent / "manifest.json").is_file()  # push reads labels and preprocessing from it

    code, printed = _cli(capsys, "rollback", NAME, "--registry", uri)
    assert code == 2
    assert "nothing to roll back" in printed


def test_registry_commands_without_mlflow_say_what_to_install(tmp_path):
    """With mlflow absent (blocked in a child process), promote and a models:/ push exit 2 naming the extra."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['mlflow'] = None\n"  # as if not installed: importing it raises ImportError
        "from edgequant.cli import main\n"
        "print('promote', main(['promote', 'm-int8', '1', '--registry', sys.argv[1]]))\n"
        "print('push', main(['push', 'models:/m-int8@production']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, f"sqlite:///{tmp_path / 'r.db'}"],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert "promote 2" in done.stdout and "push 2" in done.stdout, done.stdout + done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "edgequant[mlflow]" in ln]
    assert len(lines) == 2 and all("pip install 'edgequant[mlflow]'" in ln for ln in lines), done.stderr
