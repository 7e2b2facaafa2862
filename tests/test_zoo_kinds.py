"""The outside-model zoo's other kinds of model (recipes/zoo/), built for real: recurrent layers (LSTM, a
bidirectional GRU behind Masking), two inputs (deepcut), three outputs of different kinds (MTCNN's ONet),
dynamic axes (a 1-D CNN over any length, MTCNN's PNet over any image size), a dense per-pixel output (HED
edges) and a custom layer.

For each model and each variant, every output the report names is checked against a LiteRT loop written
here (ai_edge_litert's Interpreter, one sample per invoke at the data's own shape): agreement where the output
is class probabilities, cosine and MSE everywhere; and the host latency is timed at the evaluation data's shape.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from edgequant.report.schema import Report
from tests.zoo_models import (  # noqa: F401  (pytest fixtures)
    ZOO_RECIPES,
    agreement,
    build_zoo,
    independent_run,
    mean_cosine,
    mse,
    zoo,
    zoo_ready,
)

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Case:
    recipe: str
    evaluation: object  # () -> the evaluation data: one array, or one per input name
    classes: tuple[str, ...] = ()  # outputs that are class probabilities (agreement measured); others: values
    trust_code: bool = False
    variants: tuple[str, ...] = ("float32", "dynamic", "int8")
    not_built: tuple[tuple[str, str], ...] = ()  # (variant, the report's reason): the others still ship


def _npy(path):
    return lambda: np.load(path, allow_pickle=False)


def _npz(path):
    def load():
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    return load


ROWS = zoo.FASHION / "rows_evaluation.npy"
CASES = [
    Case("fashion_lstm", _npy(ROWS), classes=("output_0",)),
    # TFLite's converter segfaults on the int8 of a masked bidirectional GRU: that variant alone is lost
    Case("fashion_bigru", _npy(ROWS), classes=("output_0",), variants=("float32", "dynamic"),
         not_built=(("int8", "the converter crashed (signal 11)"),)),
    Case("fashion_cnn1d", _npy(ROWS), classes=("output_0",)),
    Case("fashion_attention", _npy(ROWS), classes=("output_0",), trust_code=True),
    Case("deepcut", _npz(zoo.THAI_EVALUATION)),
    Case("mtcnn_onet", _npy(zoo.FACES / "onet_evaluation.npy"), classes=("softmax_2",)),
    Case("mtcnn_pnet", _npy(zoo.FACES / "pnet_evaluation.npy"), classes=("softmax",)),
    Case("hed", _npy(zoo.HED_PHOTOS / "photos_evaluation.npy")),
]
CASE_IDS = [c.recipe for c in CASES]


_BUILDS: dict[str, object] = {}


@contextlib.contextmanager
def _importable(folder):
    """Modules in `folder` importable here and in child processes, as `PYTHONPATH=folder` makes them for a user."""
    saved_path, saved_env = list(sys.path), os.environ.get("PYTHONPATH")
    sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), saved_env]))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        if saved_env is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = saved_env


@pytest.fixture(scope="session")
def zoo_builds(zoo_ready, tmp_path_factory):
    """Builds each zoo recipe once per session, when a test first asks for it."""
    def build(case: Case):
        if case.recipe not in _BUILDS:
            try:
                with _importable(ZOO_RECIPES):  # zoo_layers, the module fashion_attention's custom_objects names
                    _BUILDS[case.recipe] = build_zoo(case.recipe, tmp_path_factory.mktemp(case.recipe),
                                                     trust_code=case.trust_code, devices=False)
            except Exception as e:  # a second test of the same model gets the same error without building again
                _BUILDS[case.recipe] = e
        if isinstance(_BUILDS[case.recipe], Exception):
            raise _BUILDS[case.recipe]
        return _BUILDS[case.recipe]
    return build


def _report(build) -> Report:
    return Report.model_validate_json((build.output_dir / "report.json").read_text())


def _count(data) -> int:
    return len(next(iter(data.values()))) if isinstance(data, dict) else len(data)


def _per_output(evaluation) -> dict:
    """The report's figures for each output, by output name."""
    return {o.name: o for o in evaluation.per_output}


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_output_of_every_variant_equals_an_independent_interpreter_loop(case, zoo_builds):
    build = zoo_builds(case)
    report = _report(build)
    data = case.evaluation()
    assert [v.name for v in report.variants] == list(case.variants)
    assert [(n.name, n.reason) for n in report.not_built] == list(case.not_built)
    reference = independent_run(build.path("float32"), data)
    for variant in case.variants:
        e = report.variant(variant).evaluation
        assert e.samples == _count(data)
        outputs = independent_run(build.path(variant), data)
        figures = _per_output(e)
        assert sorted(figures) == sorted(outputs), "every output is named and measured"
        for name, y in outputs.items():
            f = figures[name]
            assert f.kind == ("classes" if name in case.classes else "values"), name
            assert f.cosine == pytest.approx(mean_cosine(y, reference[name]), abs=1e-5), (variant, name)
            assert f.mse == pytest.approx(mse(y, reference[name]), rel=1e-4, abs=1e-9), (variant, name)
            if name in case.classes:
                assert f.agreement == pytest.approx(agreement(y, reference[name]), abs=1e-9), (variant, name)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_latency_is_timed_at_the_evaluation_datas_shape(case, zoo_builds):
    report = _report(zoo_builds(case))
    data = case.evaluation()
    expected = sorted([1, *array.shape[1:]] for array in (data.values() if isinstance(data, dict) else [data]))
    for variant in case.variants:
        host = next(lat for lat in report.variant(variant).latency if not lat.estimate)
        assert host.ms > 0
        assert sorted(host.details["input_shapes"]) == expected, variant  # batch 1, the data's own shape


def test_mtcnn_onet_tflite_computes_what_the_onnx_model_computes(zoo_builds):
    """The recipe's data is in the converted model's layout (N, 48, 3, 48); the same faces in the ONNX
    model's own NHWC layout, through onnxruntime, give the same three outputs as the float32 .tflite."""
    import onnxruntime

    build = zoo_builds(next(c for c in CASES if c.recipe == "mtcnn_onet"))
    faces = np.load(zoo.FACES / "onet_evaluation.onnx.npy", allow_pickle=False)
    session = onnxruntime.InferenceSession(str(zoo.MTCNN / "onet.onnx"), providers=["CPUExecutionProvider"])
    onnx_outputs = session.run(None, {session.get_inputs()[0].name: faces})
    tflite_outputs = independent_run(build.path("float32"), np.load(zoo.FACES / "onet_evaluation.npy"))
    by_width = {y.shape[-1]: y for y in tflite_outputs.values()}
    assert sorted(by_width) == [2, 4, 10]  # face probabilities, box offsets, landmarks
    for y in onnx_outputs:
        np.testing.assert_allclose(by_width[y.shape[-1]], y, atol=1e-4)
