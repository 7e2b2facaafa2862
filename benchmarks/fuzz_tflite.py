"""Coverage-guided fuzzing of the .tflite reader behind `edgequant inspect`, with atheris (libFuzzer).

    nice -n 19 python benchmarks/fuzz_tflite.py [--seconds 600] [--corpus DIR]
    python benchmarks/fuzz_tflite.py --make-seeds     # rewrite tests/fuzz_corpus/tflite from tiny real models

Each input is written as a .tflite file and inspected with `edgequant inspect --json`:
edgequant's flatbuffer reader, then the real LiteRT interpreter's verifier. Only exit
codes 0 and 2 are accepted; anything else stops the run and saves the input. Every 1000
executions it prints the exit codes seen so far. `tests/test_bad_input_fuzz_corpus.py`
replays tests/fuzz_corpus/tflite in CI.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from fuzz_common import command_line, fuzz, run_cli  # noqa: E402

SEED_CORPUS = REPO / "tests" / "fuzz_corpus" / "tflite"


def check_one(data: bytes, folder: Path) -> int:
    model = folder / "fuzz.tflite"
    model.write_bytes(data)
    return run_cli(["inspect", "--json", str(model)])


def make_seeds() -> None:
    """Small real models in every mode edgequant writes, plus truncations of one (a few kB each)."""
    import keras
    import numpy as np

    from edgequant.api import quantize

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    calibration = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    SEED_CORPUS.mkdir(parents=True, exist_ok=True)
    for mode, options in [("float32", {}), ("float16", {}), ("dynamic", {}), ("int8", {}),
                          ("int8", {"input_type": "uint8", "output_type": "float32"}), ("int16x8", {})]:
        data = quantize(model, mode, calibration=calibration if mode.startswith("int") else None, **options)
        name = mode + ("_uint8_io" if options else "")
        (SEED_CORPUS / f"{name}.tflite").write_bytes(data)
    full = (SEED_CORPUS / "int8.tflite").read_bytes()
    for cut in (8, 64, len(full) // 2):
        (SEED_CORPUS / f"int8_truncated_{cut}.tflite").write_bytes(full[:cut])


def main() -> None:
    parsed = command_line(__doc__, make_seeds)
    if parsed is None:
        return
    args, libfuzzer_args = parsed

    import atheris

    with atheris.instrument_imports(include=["edgequant", "ai_edge_litert.schema_py_generated", "flatbuffers"]):
        import ai_edge_litert.schema_py_generated  # noqa: F401

        import edgequant.cli  # noqa: F401
        import edgequant.model.tflite_file  # noqa: F401
    import edgequant.model.runtime  # noqa: F401 - the interpreter is native code: nothing to instrument

    folder = Path(tempfile.mkdtemp(prefix="edgequant-fuzz-tflite-"))
    fuzz("fuzz_tflite", SEED_CORPUS, lambda data: check_one(data, folder), seconds=args.seconds, max_len=65536,
         corpus=args.corpus, libfuzzer_args=libfuzzer_args)


if __name__ == "__main__":
    main()
