"""Replay the fuzzers' corpus: every input ends in a documented exit code (0 or 2), never an exception.

The corpus (tests/fuzz_corpus) holds the seeds of benchmarks/fuzz_recipe.py and
benchmarks/fuzz_tflite.py and the inputs their runs found; the fuzzers themselves run as benchmarks.
"""

from __future__ import annotations

import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

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
