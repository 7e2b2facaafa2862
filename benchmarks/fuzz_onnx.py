"""Coverage-guided fuzzing of ONNX files given to `edgequant recipe check`, with atheris (libFuzzer).

    nice -n 19 python benchmarks/fuzz_onnx.py [--seconds 600] [--corpus DIR]
    python benchmarks/fuzz_onnx.py --make-seeds     # rewrite tests/fuzz_corpus/onnx from tiny graphs

Each input is written as `model.onnx` beside a recipe that names it, and checked with
`edgequant recipe check` (which opens and validates the file with onnx, and runs nothing).
Only exit codes 0 and 2 are accepted; anything else stops the run and saves the input.
`tests/test_bad_input_fuzz_corpus.py` replays tests/fuzz_corpus/onnx in CI.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from fuzz_common import command_line, fuzz, run_cli  # noqa: E402

SEED_CORPUS = REPO / "tests" / "fuzz_corpus" / "onnx"
RECIPE = "model: {path: model.onnx}\nbenchmark: {enabled: false}\nvariants: [{name: float32, mode: float32}]\n"


def check_one(data: bytes, folder: Path) -> int:
    (folder / "model.onnx").write_bytes(data)
    (folder / "recipe.yaml").write_text(RECIPE)
    return run_cli(["recipe", "check", str(folder / "recipe.yaml")])


def make_seeds() -> None:
    """Tiny valid graphs (a convolution, a matrix product, two inputs) and cut-short copies of one."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def save(name: str, nodes, inputs, outputs, inits=()):
        graph = helper.make_graph(nodes, name, inputs, outputs, list(inits))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        (SEED_CORPUS / f"{name}.onnx").write_bytes(model.SerializeToString())

    SEED_CORPUS.mkdir(parents=True, exist_ok=True)
    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    save("conv_nchw", [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])],
         [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
         [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, 6, 6])], [w])
    m = numpy_helper.from_array(np.ones((4, 3), np.float32), "m")
    save("matmul_batch1", [helper.make_node("MatMul", ["x", "m"], ["y"])],
         [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
         [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [m])
    save("two_inputs", [helper.make_node("Add", ["a", "b"], ["y"])],
         [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4]),
          helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])],
         [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    full = (SEED_CORPUS / "conv_nchw.onnx").read_bytes()
    for cut in (0, 7, len(full) // 2):
        (SEED_CORPUS / f"conv_nchw_truncated_{cut}.onnx").write_bytes(full[:cut])


def main() -> None:
    parsed = command_line(__doc__, make_seeds)
    if parsed is None:
        return
    args, libfuzzer_args = parsed

    import atheris

    with atheris.instrument_imports(include=["edgequant"]):
        import edgequant.cli  # noqa: F401
        import edgequant.model.onnx_import  # noqa: F401
        import edgequant.recipe_check  # noqa: F401
    import onnx  # noqa: F401 - protobuf and the checker are native code: nothing to instrument

    folder = Path(tempfile.mkdtemp(prefix="edgequant-fuzz-onnx-"))
    fuzz("fuzz_onnx", SEED_CORPUS, lambda data: check_one(data, folder), seconds=args.seconds, max_len=8192,
         corpus=args.corpus, libfuzzer_args=libfuzzer_args)


if __name__ == "__main__":
    main()
