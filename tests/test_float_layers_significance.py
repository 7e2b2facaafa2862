"""float_layers: auto keeps a step only for a gain beyond the noise of its selection samples (issue 23: +694 KiB
shipped for a one-sample gain on 40 samples). Real analysis, real interpreters, Fashion-MNIST."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgequant.quantization.mixed_precision import SIGNIFICANCE, quality, sign_test
from tests.conftest import REPO

WIDE_RANGE_MODEL = REPO / "recipes" / "wide_range" / "wide_range_cnn.keras"


def test_sign_test_is_mcnemars_exact_test_on_the_samples_that_differ():
    old = np.array([1, 1, 0, 0, 1, 0, 1, 1, 0, 1], dtype=float)
    one_more = old.copy()
    one_more[2] = 1  # one sample gained, none lost: as likely as a coin landing heads
    assert sign_test(one_more, old) == 0.5
    four_more = np.ones(10)  # the 4 misses gained, none lost
    assert sign_test(four_more, old) == pytest.approx(0.5**4)  # 4 gained, none lost
    mixed = old.copy()
    mixed[[2, 3, 5]], mixed[0] = 1, 0  # 3 gained, 1 lost: P(X >= 3 | Binom(4, 1/2)) = 5/16
    assert sign_test(mixed, old) == pytest.approx(5 / 16)
    assert sign_test(old, old) == 1.0 and sign_test(old, one_more) == 1.0
    fractions = np.linspace(0.5, 1.0, 12)  # a dense output's per-sample share of matching positions
    assert sign_test(fractions + 0.01, fractions) == pytest.approx(0.5**12)
    assert math.isclose(sign_test(fractions, fractions + 0.01), 1.0)


@pytest.mark.slow
def test_auto_does_not_ship_float_layers_for_a_one_sample_gain(tmp_path):
    from edgequant.data.idx import load_fashion_mnist
    from edgequant.measure.evaluate import BatchRunner, evaluate
    from edgequant.model.source_model import export_model
    from edgequant.process.progress import NullProgress
    from edgequant.quantization.convert import convert_variant
    from edgequant.quantization.layer_error import QuantizationAnalysis
    from edgequant.quantization.mixed_precision import ReferenceRunner, ScoredRunner, search_float_layers
    from edgequant.recipe.schema import Float32Variant, Int8Variant
    from edgequant.report.schema import StepPrice
    from edgequant.stages.evaluation import evaluation_report

    train, _ = load_fashion_mnist("train")
    test, labels = load_fashion_mnist("test")
    exported = export_model(WIDE_RANGE_MODEL, tmp_path)
    reference = convert_variant(exported.saved_model_dir, Float32Variant(name="float32"))
    analysis = QuantizationAnalysis(exported.saved_model_dir, Int8Variant(name="auto", float_layers="auto"),
                                    lambda: iter(train[:100]), train[200:216])
    plain = analysis.quantized_model()
    agrees = BatchRunner(plain)(test[:1000]).argmax(1) == BatchRunner(reference)(test[:1000]).argmax(1)
    # 40 selection samples on which plain int8 disagrees with float32 once: no step can gain more than one
    chosen = np.concatenate([np.flatnonzero(agrees)[:39], np.flatnonzero(~agrees)[:1]])
    x, y = test[chosen], labels[chosen]

    def judge(model: bytes):
        ref = ReferenceRunner(reference)
        scored = ScoredRunner(model, ref)
        results = evaluate({"candidate": scored, "float32": ref}, [(x, y)], reference="float32")
        return evaluation_report(results["candidate"], results["float32"]), False, scored.sample_scores()

    _, report = search_float_layers(analysis, judge=judge, price=lambda model: StepPrice(), max_layers=3,
                                    float_ops=[], progress=NullProgress(), label="auto")
    steps = report.steps
    assert steps[0].evaluation.agreement == pytest.approx(39 / 40)
    assert any(quality(s.evaluation) > quality(steps[0].evaluation) for s in steps[1:])  # a gain, of one sample
    assert all(s.p_value >= SIGNIFICANCE for s in steps[1:])
    assert report.shipped_step == 0 and report.float_layers == []
    assert "no step was significantly more faithful to float32" in report.outcome
