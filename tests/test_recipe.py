"""The recipe format: shipped recipes, JSON Schema, Python objects, hashing."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert modes == {"float32", "float16", "dynamic", "int8", "int16x8", "qat"}


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
