"""Coverage-guided fuzzing of `edgequant quantize`: its arguments and the .npy/.npz data it reads, with atheris.

    nice -n 19 python benchmarks/fuzz_quantize.py [--seconds 600] [--corpus DIR]
    python benchmarks/fuzz_quantize.py --make-seeds     # rewrite tests/fuzz_corpus/quantize

An input is one line of arguments, then the bytes of a data file: `{data}` in the line is the
data file's path (.npz if the bytes are a zip archive, else .npy), `{out}` the output folder.
The model is a tiny Keras CNN (8x8x1 input, written once per run), so an input that passes
every check builds in seconds. Only exit codes 0 and 2 are accepted; anything else stops the
run and saves the input. On a busy machine a build can take minutes: pass -timeout=600 after the options.
`tests/test_bad_input_fuzz_corpus.py` replays tests/fuzz_corpus/quantize in CI.
"""

from __future__ import annotations

import io
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from fuzz_common import command_line, fuzz, run_cli  # noqa: E402

SEED_CORPUS = REPO / "tests" / "fuzz_corpus" / "quantize"
MODEL = "tiny.keras"


def workspace(root: Path | None = None) -> Path:
    """A folder with the tiny model the inputs quantize."""
    import keras

    root = root or Path(tempfile.mkdtemp(prefix="edgequant-fuzz-quantize-"))
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(2, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.save(root / MODEL)
    return root


def check_one(data: bytes, folder: Path) -> int:
    line, _, payload = data.partition(b"\n")
    suffix = ".npz" if payload.startswith(b"PK") else ".npy"
    for old in folder.glob("data.*"):
        old.unlink()
    shutil.rmtree(folder / "out", ignore_errors=True)
    (folder / f"data{suffix}").write_bytes(payload)
    text = line.decode("utf-8", errors="replace").replace("{data}", str(folder / f"data{suffix}"))
    try:
        words = shlex.split(text.replace("{out}", str(folder / "out")))
    except ValueError:  # unbalanced quotes: what a shell would refuse before edgequant runs
        words = text.split()
    return run_cli(["quantize", str(folder / MODEL), "--force", "--no-bench", *words])  # the host timing adds nothing here


def make_seeds() -> None:
    """Argument lines over real data files: uint8 and float images, labels, wrong shapes, a .npz, cut short."""
    import numpy as np

    def npy(array) -> bytes:
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        return buf.getvalue()

    def npz(**arrays) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    seeds = {
        "int8_uint8": ("--int8 --calib {data} --samples 4 -o {out}", npy(images)),
        "int8_float_scale": ("--int8 --calib {data} --scale 1 --samples 4 -o {out}", npy(images.astype(np.float32) / 255)),
        "dynamic_eval": ("--dynamic --eval {data} -o {out}", npy(images)),
        "int16x8_npz": ("--int16x8 --calib {data} --samples 3 -o {out}", npz(x=images, y=np.arange(6))),
        "float16_no_data": ("--float16 -o {out}", b""),
        "wrong_shape": ("--int8 --calib {data} -o {out}", npy(rng.random((4, 5, 5, 3), dtype=np.float32))),
        "one_value": ("--int8 --calib {data} -o {out}", npy(np.float32(1.0))),
        "strings": ("--int8 --calib {data} -o {out}", npy(np.array(["a", "b"]))),
        "cut_short": ("--int8 --calib {data} -o {out}", npy(images)[:70]),
        "scale_nan": ("--int8 --calib {data} --scale nan -o {out}", npy(images)),
        "samples_zero": ("--int8 --calib {data} --samples 0 -o {out}", npy(images)),
        "npz_missing_key": ("--int8 --calib {data} -o {out}", npz(images=images)),
        "nan_data": ("--int8 --calib {data} -o {out}", npy(np.full((2, 8, 8, 1), np.nan, np.float32))),
    }
    SEED_CORPUS.mkdir(parents=True, exist_ok=True)
    for name, (line, payload) in seeds.items():
        (SEED_CORPUS / name).write_bytes(line.encode() + b"\n" + payload)


def main() -> None:
    parsed = command_line(__doc__, make_seeds)
    if parsed is None:
        return
    args, libfuzzer_args = parsed

    import atheris

    with atheris.instrument_imports(include=["edgequant"]):
        import edgequant.cli  # noqa: F401
        import edgequant.data.sources  # noqa: F401
        import edgequant.quick  # noqa: F401
    folder = workspace()
    fuzz("fuzz_quantize", SEED_CORPUS, lambda data: check_one(data, folder), seconds=args.seconds, max_len=4096,
         corpus=args.corpus, libfuzzer_args=libfuzzer_args)


if __name__ == "__main__":
    main()
