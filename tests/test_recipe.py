"""The recipe format: shipped recipes, JSON Schema, Python objects, hashing."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import edgequant as eq
from edgequant.cli import main
from edgequant.errors import RecipeError
from edgequant.recipe.loader import load_recipe, recipe_hash
from edgequant.recipe.schema import json_schema
from tests.conftest import REPO

SHIPPED = sorted((REPO / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_recipe_is_valid(path, capsys):
    assert main(["recipe", "check", str(path)]) == 0
    assert "valid recipe" in capsys.readouterr().out
    assert load_recipe(path).model.path.exists()


def test_committed_json_schema_is_current():
    """docs/recipe.schema.json is what `edgequant recipe schema` prints: regenerate it when the schema changes."""
    committed = json.loads((REPO / "docs" / "recipe.schema.json").read_text())
    assert committed == json_schema()


def test_schema_cli_prints_json_schema(capsys):
    assert main(["recipe", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "edgequant recipe"
    assert set(schema["required"]) == {"model", "variants"}
    modes = {v["properties"]["mode"]["const"] for k, v in schema["$defs"].items() if k.endswith("Variant")}
    assert modes == {"float32", "float16", "dynamic", "int8", "int16x8", "qat", "int4", "ternary", "binary"}


def test_paths_are_relative_to_the_recipe_file(tmp_path):
    (tmp_path / "m.keras").write_bytes(b"")
    (tmp_path / "r.yaml").write_text("model: {path: m.keras}\nvariants: [{name: a, mode: float32}]\n")
    recipe = load_recipe(tmp_path / "r.yaml")
    assert recipe.model.path == tmp_path / "m.keras"
    assert recipe.output_dir == tmp_path / "build" / "r"
    assert recipe.name == "r"


def test_python_objects_are_the_same_recipe_as_yaml(tmp_path):
    (tmp_path / "m.keras").write_bytes(b"")
    yaml_text = """\
name: demo
model: {path: m.keras}
calibration: {source: {type: fashion-mnist}, preprocess: {scale: 0.5}, samples: 10}
output_dir: out
variants:
  - {name: q, mode: int8, per_channel: false}
"""
    (tmp_path / "r.yaml").write_text(yaml_text)
    from_yaml = load_recipe(tmp_path / "r.yaml")
    in_python = eq.Recipe(
        name="demo",
        model=eq.ModelSpec(path=tmp_path / "m.keras"),
        calibration=eq.DataSpec(source=eq.FashionMnistSource(), preprocess=eq.Preprocess(scale=0.5), samples=10),
        output_dir=tmp_path / "out",
        variants=[eq.Int8Variant(name="q", per_channel=False)],
    )
    assert in_python == from_yaml
    assert recipe_hash(in_python) == recipe_hash(from_yaml)


def test_recipe_hash_ignores_formatting_but_not_content(tmp_path):
    (tmp_path / "m.keras").write_bytes(b"")
    a = tmp_path / "a.yaml"
    a.write_text("name: x\nmodel: {path: m.keras}\nvariants: [{name: a, mode: float32}]\n")
    b = tmp_path / "b.yaml"
    b.write_text("# comment\nname: x\nvariants:\n  - name: a\n    mode: float32\nmodel:\n  path: m.keras\n")
    c = tmp_path / "c.yaml"
    c.write_text("name: x\nmodel: {path: m.keras}\nvariants: [{name: a, mode: float16}]\n")
    assert recipe_hash(load_recipe(a)) == recipe_hash(load_recipe(b)) != recipe_hash(load_recipe(c))


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        ("variants: [{name: a, mode: float32}]\n", r"r.yaml:1:1: model: this field is required"),
        (
            "model: {path: m.keras}\nvariants: [{name: a, mode: int8}]\n",
            r"variants \['a'\] need a `calibration` section",
        ),
        (
            "model: {path: m.keras}\nvariants: [{name: a, mode: float32}, {name: a, mode: dynamic}]\n",
            "two variants are named 'a'",
        ),
        ("model: {path: m.keras}\nvariants: [{name: 'bad name', mode: float32}]\n", r"variants\[0\].name"),
        ("model: {path: m.keras, input_shape: [0, 3]}\nvariants: [{name: a, mode: float32}]\n", "positive integer"),
        (
            "model: {path: m.keras}\ncalibration: {source: {type: callable, target: 'nocolon'}}\n"
            "variants: [{name: a, mode: int8}]\n",
            "calibration.source.target: 'nocolon' is not of the form 'package.module:function'",
        ),
        ("- just\n- a list\n", "a recipe is a YAML mapping"),
    ],
    ids=["missing-model", "int8-without-calibration", "duplicate-names", "bad-name", "bad-shape", "bad-callable", "list"],
)
def test_invalid_recipes_name_file_and_field(tmp_path, yaml_text, expected):
    (tmp_path / "m.keras").write_bytes(b"")
    (tmp_path / "r.yaml").write_text(yaml_text)
    with pytest.raises(RecipeError, match=expected) as info:
        load_recipe(tmp_path / "r.yaml")
    assert str(info.value).startswith(str(tmp_path / "r.yaml"))


def test_yaml_is_loaded_safely(tmp_path):
    (tmp_path / "r.yaml").write_text("model: !!python/object/apply:os.system ['true']\nvariants: []\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(tmp_path / "r.yaml")


def test_missing_recipe_file():
    with pytest.raises(RecipeError, match="no such recipe file: nowhere.yaml"):
        load_recipe(Path("nowhere.yaml"))


def test_recipe_check_reports_every_error_in_one_run_sorted_by_position(tmp_path, capsys):
    (tmp_path / "m.keras").write_bytes(b"")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: {path: m.keras}\n"
        "calibration: {source: {type: fashion-mnist}, sampels: 10}\n"
        "benchmark: {runs: 1.5}\n"
        "variants:\n"
        "  - {name: a, mode: int3}\n"
        "  - {name: b, mode: int8, per_channel: 'no'}\n"
    )
    assert main(["recipe", "check", str(recipe)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"edgequant: error: {recipe}:2:46: calibration.sampels: unknown key 'sampels'; did you mean 'samples'?",
        f"edgequant: error: {recipe}:3:13: benchmark.runs: Input should be a valid integer, got 1.5",
        f"edgequant: error: {recipe}:5:15: variants[0].mode: 'int3' is not one of float32, float16, dynamic, int8, "
        "int16x8, qat, int4, ternary, binary",
        f"edgequant: error: {recipe}:6:27: variants[1].per_channel: Input should be a valid boolean, got \"no\"",
    ]


def test_cross_field_errors_are_all_reported_at_their_own_lines(tmp_path):
    (tmp_path / "m.keras").write_bytes(b"")
    (tmp_path / "r.yaml").write_text(
        "model: {path: m.keras}\n"
        "variants:\n"
        "  - {name: a, mode: int8}\n"
        "  - {name: a, mode: float32, gates: {max_latency_ms: {rpi4: 2}}}\n"
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "r.yaml")
    assert [str(e).split(": ", 1)[0].rsplit("/", 1)[-1] for e in info.value.errors] == [
        "r.yaml:3:15", "r.yaml:4:6", "r.yaml:4:55"]
    assert "need a `calibration` section" in str(info.value.errors[0])
    assert "two variants are named 'a'" in str(info.value.errors[1])
    assert "gates latency on 'rpi4', which is not measured" in str(info.value.errors[2])


@pytest.fixture(scope="module")
def tiny_saved_model(tmp_path_factory):
    import tensorflow as tf

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": x * 2.0}

    path = tmp_path_factory.mktemp("sm") / "saved"
    module = Doubler()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


def check_errors(folder: Path, capsys, text: str) -> tuple[Path, list[str]]:
    """`recipe check` on `text`, which must fail: the recipe's path and the error lines."""
    recipe = folder / "r.yaml"
    recipe.write_text(text)
    assert main(["recipe", "check", str(recipe)]) == 2
    return recipe, capsys.readouterr().err.splitlines()


def test_recipe_check_refuses_what_a_saved_model_cannot_do(tmp_path, tiny_saved_model, capsys):
    """Combinations the build refuses only after exporting are refused by `recipe check`, before any work."""
    np.save(tmp_path / "x.npy", np.zeros((4, 8), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(4, np.int64))
    recipe, lines = check_errors(tmp_path, capsys, f"model: {{path: {tiny_saved_model}, input_shape: [8]}}\n"
                                 "calibration: {source: {type: npy, path: x.npy, labels: y.npy}}\n"
                                 "variants: [{name: q, mode: qat}]\n")
    assert len(lines) == 2
    assert f"{recipe}:1:" in lines[0] and "model.input_shape: cannot override a SavedModel's signature" in lines[0]
    assert f"{recipe}:3:22: variants[0].mode: variant 'q': QAT fine-tunes Keras layers" in lines[1]


def test_recipe_check_reads_a_saved_model_signature_for_the_shape_check(tmp_path, tiny_saved_model, capsys):
    _, lines = check_errors(tmp_path, capsys, f"model: {{path: {tiny_saved_model}}}\n"
                            "calibration: {source: {type: fashion-mnist}, samples: 4}\n"
                            "variants: [{name: q, mode: int8}]\n")
    assert len(lines) == 1
    assert "calibration sample 0 from fashion-mnist/train has shape (28, 28, 1)" in lines[0] and "expects (4,)" in lines[0]


class RecordingProgress:
    def __init__(self):
        self.tasks: list[str] = []

    @contextmanager
    def task(self, description: str, total=None):
        self.tasks.append(description)
        yield SimpleNamespace(advance=lambda n=1: None)

    def log(self, message: str) -> None:
        pass


def test_calibration_shapes_are_checked_before_the_export(tmp_path):
    """Every calibration sample is checked against the input the model file declares, before exporting it."""
    from PIL import Image

    from edgequant.errors import DataError
    from edgequant.pipeline import build_recipe
    from tests.conftest import FMNIST_MODEL

    (tmp_path / "photos").mkdir()
    for name, size in (("a.png", 28), ("b.png", 28), ("c.png", 30)):
        Image.fromarray(np.zeros((size, size), np.uint8)).save(tmp_path / "photos" / name)
    recipe = eq.Recipe(
        model=eq.ModelSpec(path=FMNIST_MODEL),
        calibration=eq.DataSpec(source=eq.ImageFolderSource(path=tmp_path / "photos")),
        variants=[eq.Int8Variant(name="int8")],
        output_dir=tmp_path / "out",
    )
    progress = RecordingProgress()
    with pytest.raises(DataError, match=r"calibration sample 2 \(c.png\) from .*photos has shape \(30, 30, 1\)"):
        build_recipe(recipe, progress=progress)
    assert progress.tasks == ["check calibration data"]  # no export, no conversion


def test_recipe_check_reports_rule_and_file_errors_together(tmp_path, capsys):
    from tests.conftest import FMNIST_MODEL

    recipe, lines = check_errors(tmp_path, capsys, f"model: {{path: {FMNIST_MODEL}}}\n"
                                 "devices: [host, rpi9]\n"
                                 "variants: [{name: q, mode: qat}]\n")
    assert [line.split(": ")[3] for line in lines] == ["devices[0]", "devices[1]", "variants[0].mode"]
    assert "device 'host' is this machine, measured natively" in lines[0]
    assert "unknown device 'rpi9'" in lines[1]
    assert "QAT needs labelled training data" in lines[2]
