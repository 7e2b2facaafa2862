"""Coverage-guided fuzzing of the recipe loader and `recipe check`, with atheris (libFuzzer).

    nice -n 19 python benchmarks/fuzz_recipe.py [--seconds 600] [--corpus DIR]

Each input is written as a recipe file beside links to the shipped models and photos
(so that mutated seeds reach the file checks, not only the YAML parser) and checked with
`edgequant recipe check`, without --trust-code. Only exit codes 0 and 2 are accepted;
any other code, a traceback or an exception stops the run and saves the input
(libFuzzer's crash-* file). Every 1000 executions it prints the exit codes seen so far.
`tests/test_bad_input_fuzz_corpus.py` replays tests/fuzz_corpus/recipe in CI.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from fuzz_common import command_line, fuzz, run_cli  # noqa: E402

SEED_CORPUS = REPO / "tests" / "fuzz_corpus" / "recipe"


def workspace(root: Path | None = None) -> Path:
    """A folder laid out like recipes/: the shipped models and the face photos are reachable by their relative paths."""
    root = root or Path(tempfile.mkdtemp(prefix="edgequant-fuzz-recipe-"))
    (root / "recipes").mkdir()
    for model_dir in ("fashion_mnist", "fer_emotion", "wide_range"):
        (root / "recipes" / model_dir).symlink_to(REPO / "recipes" / model_dir)
    (root / "calibration_sets").symlink_to(REPO / "calibration_sets")
    return root / "recipes"


def check_one(data: bytes, folder: Path) -> int:
    recipe = folder / "fuzz.yaml"
    recipe.write_bytes(data)
    return run_cli(["recipe", "check", str(recipe)])


def main() -> None:
    args, libfuzzer_args = command_line(__doc__)

    import atheris

    with atheris.instrument_imports(include=["edgequant", "yaml"]):
        import edgequant.cli  # noqa: F401
        import edgequant.recipe.loader  # noqa: F401
        import edgequant.recipe_check  # noqa: F401

    folder = workspace()
    fuzz("fuzz_recipe", SEED_CORPUS, lambda data: check_one(data, folder), seconds=args.seconds, max_len=4096,
         corpus=args.corpus, libfuzzer_args=libfuzzer_args)


if __name__ == "__main__":
    main()
