"""A recipe is code: what runs the author's Python is refused by default and works when opted in."""

from __future__ import annotations

import pytest

import edgequant as eq
from edgequant.errors import InputError
from edgequant.model.tflite_file import read_tflite
from tests.test_bad_input_matrix import lambda_model, run

RECIPE = """\
model: {{path: {model}}}
calibration:
  source: {{type: callable, target: 'tests.test_bad_input_matrix:good_samples'}}
  samples: 8
benchmark: {{enabled: false}}
variants:
  - {{name: float32, mode: float32}}
  - {{name: int8, mode: int8, analyse_layers: false}}
{extra}"""


@pytest.mark.slow
def test_callable_source_and_lambda_layer_build_when_trusted(tmp_path, capsys):
    """A tf_keras .h5 with a Lambda layer, calibrated by a callable: refused, then built with --trust-code."""
    model = lambda_model(tmp_path, "h5")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(model=model, extra=""))
    code, errors = run(capsys, ["recipe", "check", recipe])
    assert code == 2 and len(errors) == 2  # both, in one run, in file order
    assert "model.path" in errors[0] and "Lambda layer(s) double" in errors[0] and "--trust-code" in errors[0]
    assert "calibration.source.type: a callable data source" in errors[1] and "--trust-code" in errors[1]

    assert run(capsys, ["recipe", "check", recipe, "--trust-code"]) == (0, [])
    code, errors = run(capsys, ["build", recipe, "--trust-code", "-o", tmp_path / "out"])
    assert (code, errors) == (0, [])
    int8 = read_tflite(tmp_path / "out" / "int8.tflite")
    assert int8.inputs[0].dtype == "int8" and int8.inputs[0].quantization is not None  # calibrated on the callable

    recipe.write_text(RECIPE.format(model=model, extra="trust_code: true\n"))  # a recipe cannot grant itself trust
    code, errors = run(capsys, ["recipe", "check", recipe])
    assert code == 2 and any("trust_code: a recipe cannot grant itself trust" in e for e in errors)


def test_python_api_needs_trust_code_for_lambda_layers(tmp_path):
    model = lambda_model(tmp_path, "keras")
    with pytest.raises(InputError, match=r"Lambda layer\(s\) double run Python code .*trust_code=True in Python"):
        eq.quantize(model, "float32")
    assert read_tflite(eq.quantize(model, "float32", trust_code=True)).inputs[0].shape == (1, 28, 28, 1)


def test_python_api_needs_trust_code_for_callable_sources(tmp_path):
    from tests.conftest import FMNIST_MODEL

    recipe = eq.Recipe(
        model=eq.ModelSpec(path=FMNIST_MODEL),
        calibration=eq.DataSpec(source={"type": "callable", "target": "tests.test_bad_input_matrix:good_samples"},
                                samples=8),
        variants=[eq.Int8Variant(name="int8")],
        output_dir=tmp_path / "out",
    )
    with pytest.raises(InputError, match="calibration.source.type: a callable data source runs .*--trust-code"):
        eq.build(recipe)
    assert not (tmp_path / "out").exists()


# --- the trust rule, tried as an attacker would -----------------------------------------------------------
# A recipe someone sent asks for trust in every way YAML allows, and names code with a visible effect:
# a shell command that creates a file. Neither `recipe check` nor `build` may run it unless the person
# running edgequant opts in, and `recipe check` runs it even then never.

ATTACK = """\
{before}model: {{path: {model}}}
calibration:
  source: {{type: callable, target: "os:system", kwargs: {{command: "touch {marker}"}}}}
  samples: 8
benchmark: {{enabled: false}}
variants:
  - {{name: int8, mode: int8, analyse_layers: false}}
{after}"""

ASKING_FOR_TRUST = {
    "key": ("", "trust_code: true\n"),
    "key as a string": ("", "trust_code: 'yes'\n"),
    "key first": ("trust_code: true\n", ""),
    "anchor": ("", "trust_code: &yes true\n"),
    "alias": ("defaults: &trust {trust_code: true}\n", "<<: *trust\n"),
    "merge key": ("", "<<: {trust_code: true}\n"),
    "environment-looking value": ("", "trust_code: ${EDGEQUANT_TRUST_CODE}\n"),
    "environment variable as a key": ("", "EDGEQUANT_TRUST_CODE: '1'\n"),
    "nested in the data section": ("", "evaluation: {trust_code: true, source: {type: fashion-mnist}}\n"),
    "under another key": ("", "x: {trust_code: true}\n"),
}


def side_effect_lambda_model(folder: Path, marker: Path) -> Path:
    """A tf_keras .h5 whose Lambda layer creates `marker` whenever the model is loaded (its code runs)."""
    import tf_keras

    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x * 2.0)[1]")  # noqa: S307
    model = tf_keras.Sequential([tf_keras.Input((28, 28, 1)), tf_keras.layers.Flatten(),
                                 tf_keras.layers.Lambda(touch, name="touch"), tf_keras.layers.Dense(10)])
    path = folder / "touch.h5"
    model.save(path)
    marker.unlink()  # building the model ran it once, here, by the test itself
    return path


@pytest.fixture(scope="module")
def attack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attack")
    marker = folder / "PWNED"
    return folder, marker, side_effect_lambda_model(folder, marker)


@pytest.mark.parametrize("model_kind", ["keras", "lambda h5"])
@pytest.mark.parametrize("how", sorted(ASKING_FOR_TRUST))
def test_a_recipe_cannot_grant_itself_trust(attack, capsys, monkeypatch, how, model_kind):
    """Every way a recipe can ask for trust: refused with exit 2 by check and build; nothing runs."""
    from tests.conftest import FMNIST_MODEL

    folder, marker, lambda_h5 = attack
    monkeypatch.delenv("EDGEQUANT_TRUST_CODE", raising=False)
    before, after = ASKING_FOR_TRUST[how]
    model = FMNIST_MODEL if model_kind == "keras" else lambda_h5
    recipe = folder / "sent.yaml"
    recipe.write_text(ATTACK.format(before=before, after=after, model=model, marker=marker))
    for command in (["recipe", "check", recipe], ["build", recipe, "-o", folder / "out"]):
        code, errors = run(capsys, command)
        assert code == 2 and errors, (command, errors)
        assert not marker.exists(), f"{how}: {command[0]} ran the recipe's code"
    assert not (folder / "out").exists()


def test_recipe_check_runs_no_code_even_when_trusted(attack, capsys, monkeypatch):
    """With the opt-in from outside (flag or environment), check accepts the callable and the Lambda, unrun."""
    folder, marker, lambda_h5 = attack
    recipe = folder / "trusted.yaml"
    recipe.write_text(ATTACK.format(before="", after="", model=lambda_h5, marker=marker))
    monkeypatch.delenv("EDGEQUANT_TRUST_CODE", raising=False)
    code, errors = run(capsys, ["recipe", "check", recipe])
    assert code == 2 and len(errors) == 2 and all("--trust-code" in e for e in errors)
    assert run(capsys, ["recipe", "check", recipe, "--trust-code"]) == (0, [])
    monkeypatch.setenv("EDGEQUANT_TRUST_CODE", "1")
    assert run(capsys, ["recipe", "check", recipe]) == (0, [])
    assert not marker.exists()


def test_the_environment_variable_is_an_opt_in(attack, capsys, monkeypatch):
    """EDGEQUANT_TRUST_CODE=1 lets the build run the callable (the marker shows the test above would see it)."""
    from tests.conftest import FMNIST_MODEL

    folder, marker, _ = attack
    recipe = folder / "env.yaml"
    recipe.write_text(ATTACK.format(before="", after="", model=FMNIST_MODEL, marker=marker))
    monkeypatch.setenv("EDGEQUANT_TRUST_CODE", "1")
    code, errors = run(capsys, ["build", recipe, "-o", folder / "env-out"])
    assert marker.exists()  # os.system ran; it returns an int, not samples: refused after it ran
    assert code == 2 and "os:system: returned int, not an iterable of samples" in errors[0]
    marker.unlink()
