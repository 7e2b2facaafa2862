"""Replay the fuzzers' corpus: every input ends in a documented exit code (0 or 2), never an exception.

The corpus (tests/fuzz_corpus) holds the seeds of benchmarks/fuzz_recipe.py, fuzz_tflite.py, fuzz_onnx.py
and fuzz_quantize.py and the inputs their runs found; the fuzzers themselves run as benchmarks.
"""

from __future__ import annotations

import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import fuzz_onnx  # noqa: E402
import fuzz_quantize  # noqa: E402
import fuzz_recipe  # noqa: E402
import fuzz_tflite  # noqa: E402
from fuzz_common import replay  # noqa: E402


def test_recipe_corpus_gives_only_documented_exit_codes(tmp_path):
    folder = fuzz_recipe.workspace(tmp_path)
    codes = replay(fuzz_recipe.SEED_CORPUS, lambda data: fuzz_recipe.check_one(data, folder))
    assert set(codes) <= {0, 2}
    assert codes[0] >= 5 and codes[2] >= 15  # the shipped recipes pass, the broken ones are refused


def test_tflite_corpus_gives_only_documented_exit_codes(tmp_path):
    codes = replay(fuzz_tflite.SEED_CORPUS, lambda data: fuzz_tflite.check_one(data, tmp_path))
    assert set(codes) <= {0, 2}
    assert codes[0] >= 6 and codes[2] >= 3  # the real models load, the truncated ones are refused


def test_onnx_corpus_gives_only_documented_exit_codes(tmp_path):
    """`recipe check` opens the .onnx file: empty and cut-short ones are refused there, not by the build."""
    pytest.importorskip("onnx")
    codes = replay(fuzz_onnx.SEED_CORPUS, lambda data: fuzz_onnx.check_one(data, tmp_path))
    assert set(codes) <= {0, 2}
    assert codes[0] >= 2 and codes[2] >= 4  # the two one-input graphs pass; two inputs and the truncated ones do not


@pytest.mark.slow
def test_quantize_corpus_gives_only_documented_exit_codes(tmp_path):
    folder = fuzz_quantize.workspace(tmp_path)
    codes = replay(fuzz_quantize.SEED_CORPUS, lambda data: fuzz_quantize.check_one(data, folder))
    assert set(codes) <= {0, 2}
    assert codes[0] >= 5 and codes[2] >= 8  # the good argument lines build; the broken data and arguments are refused
