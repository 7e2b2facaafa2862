"""Shared fixtures: the real Fashion-MNIST example, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
FMNIST_RECIPE = REPO / "recipes" / "fashion_mnist.yaml"
FMNIST_MODEL = REPO / "recipes" / "fashion_mnist" / "fashion_mnist_cnn.keras"


@pytest.fixture(scope="session")
def fmnist_build(tmp_path_factory):
    """The example recipe built for real (all five post-training variants) into a temporary folder."""
    from edgequant.pipeline import build_recipe

    return build_recipe(FMNIST_RECIPE, output_dir=tmp_path_factory.mktemp("fmnist_build"))


@pytest.fixture(scope="session")
def fmnist_int8_tflite(fmnist_build) -> Path:
    return fmnist_build.path("int8")


@pytest.fixture(scope="session")
def fmnist_float32_tflite(fmnist_build) -> Path:
    return fmnist_build.path("float32")


@pytest.fixture(scope="session")
def fmnist_test_set() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 Fashion-MNIST test images as float32 in [0, 1] (N, 28, 28, 1), and their labels."""
    from edgequant.data.idx import load_fashion_mnist

    return load_fashion_mnist("test")
