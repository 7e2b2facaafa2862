"""Bad input, one case per defect of issues 15 and 10: refused early, with one clear line and exit 2.

Every case runs the real CLI and asserts its exit code, exactly one `edgequant: error:` line
naming what is wrong, no traceback, and, where a build is involved, that the artifacts of
an earlier good build in the same output directory are byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgequant.cli import main
from tests.conftest import FMNIST_MODEL, REPO
from tests.test_bad_input import GOOD as BASE

SEEDS = REPO / "tests" / "fuzz_corpus" / "tflite"

GOOD = BASE.replace("variants:\n", "benchmark: {runs: 3, warmup: 1}\nvariants:\n").replace(
    "{name: int8, mode: int8}", "{name: int8, mode: int8, analyse_layers: false}")
CALIBRATION = "{type: fashion-mnist, split: train}"
GATED = "  - {name: int8, mode: int8, analyse_layers: false, gates: {max_accuracy_drop_points: 5}}"


# --- what the callable cases call (importable as tests.test_bad_input_matrix:NAME) ---------------------


def exits(**_):
    sys.exit(0)
    yield  # a generator, as a calibration callable is


def raises(**_):
    raise RuntimeError("the camera is unplugged")


def returns_none(**_):
    return None


NOT_CALLABLE = 3


def endless(**_):
    while True:
        yield np.zeros((28, 28, 1), dtype=np.float32)


def good_samples(**_):
    for i in range(8):
        yield np.full((28, 28, 1), i / 8, dtype=np.float32)


# --- helpers ------------------------------------------------------------------------------------------


def run(capsys, argv: list) -> tuple[int, list[str]]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, [line for line in err.splitlines() if line.startswith("edgequant: error: ")]


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def tflite_with(edit: Callable, seed: str = "float32.tflite") -> bytes:
    """A seed model changed through the schema's object API and packed again (a well-formed flatbuffer)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf((SEEDS / seed).read_bytes(), 0)
    edit(model)
    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def lambda_model(folder: Path, fmt: str) -> Path:
    """A tiny model with a Lambda layer, saved by Keras 3 (.keras) or tf_keras (.h5)."""
    if fmt == "keras":
        import keras

        path = folder / "lambda.keras"
        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                  keras.layers.Lambda(lambda x: x * 2.0, name="double"), keras.layers.Dense(10)])
    else:
        import tf_keras

        path = folder / "lambda.h5"
        model = tf_keras.Sequential([tf_keras.Input((28, 28, 1)), tf_keras.layers.Flatten(),
                                     tf_keras.layers.Lambda(lambda x: x * 2.0, name="double"), tf_keras.layers.Dense(10)])
    model.save(path)
    return path


@pytest.fixture(scope="module")
def earlier_build(tmp_path_factory) -> Path:
    """A good build, whose output directory every failing build below must leave byte-identical."""
    folder = tmp_path_factory.mktemp("earlier")
    (folder / "good.yaml").write_text(GOOD)
    assert main(["build", str(folder / "good.yaml"), "-o", str(folder / "out")]) == 0
    return folder / "out"


@dataclass
class Case:
    command: str  # "check" (recipe check), "build", or a full command given by argv()
    expected: str  # a regex the error line must match
    recipe: Callable[[Path], str] | None = None  # writes its files into the folder, returns the recipe text
    argv: Callable[[Path], list] | None = None
    trust: bool = False


def npy(folder: Path, name: str, array) -> str:
    np.save(folder / name, array, allow_pickle=False)
    return str(folder / name)


def with_calibration(source: str, samples: int | None = 20) -> str:
    text = GOOD.replace(CALIBRATION, source, 1)
    return text.replace("  samples: 20\n", f"  samples: {samples}\n" if samples else "")


def with_evaluation(source: str) -> str:
    return GOOD.replace("  - {name: int8, mode: int8, analyse_layers: false}", GATED) + f"evaluation:\n  source: {source}\n"


def images(folder: Path, shapes: list[tuple]) -> str:
    from PIL import Image

    (folder / "photos").mkdir()
    for i, shape in enumerate(shapes):
        Image.fromarray(np.zeros(shape, dtype=np.uint8)).save(folder / "photos" / f"{chr(97 + i)}.png")
    return f"{{type: images, path: {folder / 'photos'}}}"


def bomb(folder: Path) -> str:
    from PIL import Image

    (folder / "photos").mkdir()
    Image.new("1", (12_000, 12_000)).save(folder / "photos" / "bomb.png")  # 144 Mpixel in a few kB
    return f"{{type: images, path: {folder / 'photos'}}}"


def callable_source(target: str, samples: int | None = 4) -> str:
    source = f"{{type: callable, target: '{target}'}}"
    return with_calibration(source, samples)


def cross_field_line(folder: Path) -> str:
    return GOOD.replace("  - {name: int8, mode: int8, analyse_layers: false}",
                        "  - {name: int8, mode: int8, analyse_layers: false, gates: {max_latency_ms: {rpi4: 1}}}")


def corrupt_seed(edit: Callable, seed: str = "float32.tflite"):
    def argv(folder: Path) -> list:
        (folder / "bad.tflite").write_bytes(tflite_with(edit, seed))
        return ["inspect", folder / "bad.tflite"]
    return argv


def set_attr(path: str, value):
    def edit(model):
        *parents, last = path.split(".")
        target = model
        for part in parents:
            target = target[int(part)] if part.isdigit() else getattr(target, part)
        setattr(target, last, value)
    return edit


def unknown_opcode(model):
    model.operatorCodes[0].builtinCode = 4000  # no such builtin: the interpreter finds no kernel
    model.operatorCodes[0].deprecatedBuiltinCode = 127


def estimate_on(edit: Callable):
    def argv(folder: Path) -> list:
        (folder / "bad.tflite").write_bytes(tflite_with(edit))
        return ["devices", "estimate", folder / "bad.tflite", "--device", "rpi4"]
    return argv


def compare_on_empty(folder: Path) -> list:
    npy(folder, "empty.npy", np.zeros((0, 8, 8, 1), dtype=np.float32))
    return ["compare", SEEDS / "float32.tflite", SEEDS / "int8.tflite", "--data", folder / "empty.npy"]


def output_dir_is_file(folder: Path) -> str:
    (folder / "taken").write_text("a file where the output directory should go")
    return GOOD + f"output_dir: {folder / 'taken'}\n"


def npz_object(folder: Path) -> str:
    np.savez(folder / "d.npz", x=np.array([{"a": 1}, None], dtype=object))
    return with_calibration(f"{{type: npz, path: {folder / 'd.npz'}}}")


def zero_byte_npy(folder: Path) -> str:
    (folder / "empty.npy").write_bytes(b"")
    return with_calibration(f"{{type: npy, path: {folder / 'empty.npy'}}}")


def yaml_deep(depth: int) -> str:
    return "model: " + "[" * depth + "]" * depth + "\nvariants: []\n"


ALIAS_BOMB = """\
model: {path: MODEL}
calibration:
  source:
    type: callable
    target: 'tests.test_bad_input_matrix:good_samples'
    kwargs:
      a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  samples: 4
variants: [{name: int8, mode: int8}]
""".replace("MODEL", str(FMNIST_MODEL))

CASES: dict[str, Case] = {
    # issue 15, item 6: nothing measured is not a pass
    "6-zero-evaluation-samples": Case("build", r"evaluation: evaluation data from .*empty.npy holds no samples", lambda f: with_evaluation(
        f"{{type: npy, path: {npy(f, 'empty.npy', np.zeros((0, 28, 28, 1), np.float32))}, "
        f"labels: {npy(f, 'nolabels.npy', np.zeros(0, np.int64))}}}")),
    "6-fractional-labels": Case("build", r"evaluation sample 0 from .*x.npy: label 0\.5 is not a class id", lambda f: with_evaluation(
        f"{{type: npy, path: {npy(f, 'x.npy', np.zeros((4, 28, 28, 1), np.float32))}, "
        f"labels: {npy(f, 'y.npy', np.array([0.5, 1, 2, 3]))}}}")),
    "6-zero-calibration-samples": Case("build", r"calibration: calibration data from .*empty.npy holds no samples", lambda f: with_calibration(
        f"{{type: npy, path: {npy(f, 'empty.npy', np.zeros((0, 28, 28, 1), np.float32))}}}")),
    "6-compare-on-zero-samples": Case("", r"comparison data from .*empty.npy holds no samples", argv=compare_on_empty),
    # item 7
    "7-duplicate-key": Case("check", r"recipe.yaml:7:3: not valid YAML: duplicate key 'samples' \(first at line 6\)",
                            lambda f: GOOD.replace("  samples: 20\n", "  samples: 20\n  samples: 30\n")),
    # item 8: user code is contained and bounded
    "8-callable-sys-exit": Case("build", r"calibration: tests.test_bad_input_matrix:exits: failed to produce sample 0: "
                                r"it called sys.exit\(0\)", lambda f: callable_source("tests.test_bad_input_matrix:exits"), trust=True),
    "8-callable-without-samples": Case("check", r"calibration: a callable source needs `samples`",
                                       lambda f: callable_source("tests.test_bad_input_matrix:endless", samples=None), trust=True),
    # item 9: strict types
    "9-complex-calibration-data": Case("build", r"complex.npy: holds complex64 values", lambda f: with_calibration(
        f"{{type: npy, path: {npy(f, 'complex.npy', np.ones((4, 28, 28, 1), np.complex64))}}}")),
    "9-samples-true": Case("check", r"calibration.samples: Input should be a valid integer, got true",
                           lambda f: GOOD.replace("samples: 20", "samples: true")),
    # item 10: recipe check finds what the files can tell
    "10-unknown-device": Case("check", r"recipe.yaml:\d+:\d+: devices\[0\]: unknown device 'rpi9'", lambda f: GOOD + "devices: [rpi9]\n"),
    "10-unlabelled-data-under-accuracy-gate": Case("check", r"evaluation: .*x.npy yields samples without labels", lambda f: with_evaluation(
        f"{{type: npy, path: {npy(f, 'x.npy', np.zeros((4, 28, 28, 1), np.float32))}}}")),
    "10-variant-name-too-long": Case("check", r"variants\[0\].name: String should have at most 100 characters",
                                     lambda f: GOOD.replace("name: float32, mode", f"name: {'v' * 300}, mode")),
    # item 11: a corrupt file is exit 2 from every command
    "11-inspect-file-the-runtime-rejects": Case("", r"bad.tflite: the LiteRT interpreter cannot load this model",
                                                argv=corrupt_seed(unknown_opcode)),
    "11-devices-estimate-on-corrupt-file": Case("", r"bad.tflite: the LiteRT interpreter cannot load this model",
                                                argv=estimate_on(unknown_opcode)),
    # item 12: crashes that are now one line
    "12-non-utf8-recipe": Case("check", r"recipe.yaml:2:15: not UTF-8 text \(byte 0xff\)", lambda f: "name: x\nmodel: {path: \udcff}\n"),
    "12-yaml-nested-5000-deep": Case("check", r"not valid YAML: nested deeper than 50 levels", lambda f: yaml_deep(5000)),
    "12-samples-over-maxsize": Case("check", r"calibration.samples: Input should be less than or equal to 9223372036854775807",
                                    lambda f: GOOD.replace("samples: 20", f"samples: {sys.maxsize + 1}")),
    "12-output-dir-is-a-file": Case("check", r"output_dir: .*taken: exists and is not a directory", output_dir_is_file),
    "12-npz-object-array": Case("build", r"d.npz: cannot read array 'x' without pickle", npz_object),
    "12-npy-0d": Case("build", r"scalar.npy: a single value, not samples stacked along axis 0",
                      lambda f: with_calibration(f"{{type: npy, path: {npy(f, 'scalar.npy', np.float32(1))}}}")),
    "12-npy-zero-bytes": Case("build", r"empty.npy: an empty file, not a .npy array", zero_byte_npy),
    "12-decompression-bomb-image": Case("build", r"bomb.png: refused: more pixels than Pillow's decompression-bomb limit",
                                        lambda f: with_calibration(bomb(f))),
    "12-callable-raises": Case("build", r"raises: failed to call: it raised RuntimeError: the camera is unplugged",
                               lambda f: callable_source("tests.test_bad_input_matrix:raises"), trust=True),
    "12-callable-returns-none": Case("build", r"returns_none: returned NoneType, not an iterable of samples",
                                     lambda f: callable_source("tests.test_bad_input_matrix:returns_none"), trust=True),
    "12-callable-not-callable": Case("build", r"NOT_CALLABLE: is a int, not a function",
                                     lambda f: callable_source("tests.test_bad_input_matrix:NOT_CALLABLE"), trust=True),
    "12-tflite-index-out-of-range": Case("", r"bad.tflite: corrupt .tflite file \(model input 999 is out of range",
                                         argv=corrupt_seed(set_attr("subgraphs.0.inputs", [999]))),
    "12-tflite-opcode-index-out-of-range": Case("", r"corrupt .tflite file \(operator 0's opcode index 77 is out of range",
                                                argv=corrupt_seed(set_attr("subgraphs.0.operators.0.opcodeIndex", 77))),
    "12-yaml-alias-bomb-in-kwargs": Case("check", r"recipe.yaml:8:14: not valid YAML: aliases \(\*name\) are not allowed",
                                         lambda f: ALIAS_BOMB, trust=True),
    # item 13: a recipe is code, refused unless trusted
    "13-callable-source-untrusted-check": Case("check", r"calibration.source.type: a callable data source runs "
                                               r"tests.test_bad_input_matrix:good_samples from the recipe; allow it with --trust-code",
                                               lambda f: callable_source("tests.test_bad_input_matrix:good_samples")),
    "13-callable-source-untrusted-build": Case("build", r"allow it with --trust-code",
                                               lambda f: callable_source("tests.test_bad_input_matrix:good_samples")),
    "13-lambda-layer-keras3": Case("check", r"model.path: .*lambda.keras: Lambda layer\(s\) double run Python code stored in the "
                                   r"file when the model loads; allow it with --trust-code",
                                   lambda f: GOOD.replace(str(FMNIST_MODEL), str(lambda_model(f, "keras")))),
    "13-lambda-layer-tf-keras-h5": Case("build", r"lambda.h5: Lambda layer\(s\) double run Python code .* --trust-code",
                                        lambda f: GOOD.replace(str(FMNIST_MODEL), str(lambda_model(f, "h5")))),
    # smaller: a recipe-level rule points at its own line
    "15-cross-field-error-at-its-line": Case("check", r"recipe.yaml:10:78: variants\[1\].gates.max_latency_ms.rpi4: .* not measured",
                                             cross_field_line),
    # issue 10, item 3: a bad image is named by its file, before the export
    "10-3-bad-image-named-by-file": Case("build", r"calibration sample 1 \(b.png\) from .*photos has shape \(32, 32, 1\)",
                                         lambda f: with_calibration(images(f, [(28, 28), (32, 32)]))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, capsys, request):
    case = CASES[name]
    if case.argv is not None:
        argv = case.argv(tmp_path)
    else:
        recipe = tmp_path / "recipe.yaml"
        text = case.recipe(tmp_path)
        recipe.write_bytes(text.encode("utf-8", "surrogateescape"))
        argv = ["recipe", "check", recipe] if case.command == "check" else ["build", recipe]
        if case.trust:
            argv.append("--trust-code")
    out = before = None
    if case.command == "build":
        out = request.getfixturevalue("earlier_build")
        before = tree_hashes(out)
        argv += ["-o", out]
    code, errors = run(capsys, argv)
    assert code == 2, errors
    assert len(errors) == 1, errors
    assert re.search(case.expected, errors[0]), errors[0]
    if out is not None:
        assert tree_hashes(out) == before  # same files, same bytes: nothing half-written
        assert not [p for p in out.parent.iterdir() if p.name.startswith(".staging")]


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only file system (a tmpfs mounted ro): permissions alone do not stop root, which CI runs as."""
    import subprocess

    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("command", ["check", "build"])
def test_read_only_output_dir(command, read_only_dir, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(GOOD + f"output_dir: {read_only_dir / 'out'}\n")
    code, errors = run(capsys, ["recipe", "check", recipe] if command == "check" else ["build", recipe])
    assert code == 2 and len(errors) == 1, errors
    assert re.search(rf"recipe.yaml:11:1: output_dir: {read_only_dir}/out: cannot write in {read_only_dir} "
                     r"\(read-only or no permission\)", errors[0]), errors[0]


def test_python_api_refuses_empty_calibration():
    """The Python API's own calibration path: no samples is an error, not an unquantized model."""
    import keras

    import edgequant as eq
    from edgequant.errors import DataError

    model = keras.saving.load_model(FMNIST_MODEL)
    with pytest.raises(DataError, match="the calibration argument holds no samples"):
        eq.quantize(model, "int8", calibration=np.zeros((0, 28, 28, 1), np.float32))
