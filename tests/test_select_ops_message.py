"""A model with an op that has no builtin TFLite kernel fails in one line naming the op (issue 23 item 4).

Before, the message was the last line of an MLIR dump; "TF Select ops: MaxPool3D" was only in the log.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml


@pytest.mark.slow
def test_a_maxpool3d_model_is_refused_in_one_line_naming_the_op(tmp_path, capsys):
    import keras

    from edgequant.cli import main

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 8, 8, 1)), keras.layers.Conv3D(2, 3, padding="same"),
                              keras.layers.MaxPool3D(2), keras.layers.Flatten(), keras.layers.Dense(3)])
    model.save(tmp_path / "unet3d.keras")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((4, 4, 8, 8, 1), dtype=np.float32))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"path": "unet3d.keras"}, "evaluation": {"source": {"type": "npy", "path": "x.npy"}},
        "benchmark": {"enabled": False}, "variants": [{"name": "float32", "mode": "float32"}],
    }))
    assert main(["build", str(recipe)]) == 3
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("edgequant: error: ") and "TFLite has no builtin kernel for MaxPool3D" in last
    assert "loc(" not in last and "\\n" not in last


def test_the_ops_are_read_from_the_converters_error_text():
    from edgequant.quantization.convert import ops_without_builtin_kernel

    text = ("<unknown>:0: error: failed while converting: 'main': \nSome ops are not supported by the native "
            "TFLite runtime, you can enable TF kernels fallback using TF Select. See instructions: "
            "https://www.tensorflow.org/lite/guide/ops_select \nTF Select ops: MaxPool3D, Erf\nDetails:\n"
            "\ttf.MaxPool3D(tensor<1x4x8x8x2xf32>) -> (tensor<1x2x4x4x2xf32>)\n")
    assert ops_without_builtin_kernel(text) == ["MaxPool3D", "Erf"]
    assert ops_without_builtin_kernel("error: something else") == []
