"""`recipe check` refuses the Keras-3-only int8 fixes on a tf_keras model, with the build's own message.

Before issue 23 the check passed them and the build refused them a minute later.
"""

from __future__ import annotations

import yaml

from edgequant.int8_fixes import keras3_fixes_refused
from edgequant.recipe.schema import Int8Variant


def test_recipe_check_refuses_equalize_on_a_tf_keras_h5_with_the_builds_message(tmp_path, capsys):
    import numpy as np
    import tf_keras

    from edgequant.cli import main

    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "m.h5")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).random((8, 4), dtype=np.float32))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"path": "m.h5"}, "calibration": {"source": {"type": "npy", "path": "calib.npy"}},
        "variants": [{"name": "int8", "mode": "int8", "equalize": True},
                     {"name": "ranges", "mode": "int8", "ranges": "mse"}],  # works on any model: not refused
    }))
    assert main(["recipe", "check", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert str(keras3_fixes_refused(Int8Variant(name="int8"))) in err
    assert "'ranges'" not in err
