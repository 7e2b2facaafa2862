"""make_converter reads a SavedModel once for all its conversions: the bytes must be TensorFlow's own."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgequant.quantization.convert import calibrate_only, configure, make_converter
from edgequant.recipe.schema import DynamicVariant, Float16Variant, Float32Variant, Int8Variant, Int16x8Variant
from tests.zoo_models import zoo, zoo_ready  # noqa: F401  (a pytest fixture)


def tf_own_bytes(saved_model, variant, representative=None, *, calibrated=False) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    configure(converter, variant, representative)
    converter._experimental_calibrate_only = calibrated
    return bytes(converter.convert())


def read_once_bytes(saved_model, variant, representative=None) -> bytes:
    converter = make_converter(saved_model)
    configure(converter, variant, representative)
    return bytes(converter.convert())


@pytest.mark.slow
def test_every_mode_of_an_outside_saved_model_is_byte_identical_to_tfs_own_conversion(zoo_ready):  # noqa: F811
    # basic-pitch (PyPI, Apache-2.0): a SavedModel edgequant did not make, with three outputs
    chords = np.load(zoo.CHORDS, allow_pickle=False)[:2]
    representative = lambda: iter(chords)  # noqa: E731
    variants = [Float32Variant(name="float32"), Float16Variant(name="float16"), DynamicVariant(name="dynamic"),
                Int8Variant(name="int8"),  # (TF cannot make int16x8 of it: NEG, SQRT... have no 16x8 kernels)
                Int8Variant(name="camera", per_channel=False, input_type="int8", output_type="float32")]
    for variant in variants:  # the first reads the SavedModel, the others convert from what it read
        assert read_once_bytes(zoo.BASIC_PITCH, variant, representative) == tf_own_bytes(
            zoo.BASIC_PITCH, variant, representative), variant.name
    int8 = variants[3]
    assert calibrate_only(zoo.BASIC_PITCH, int8, representative) == tf_own_bytes(
        zoo.BASIC_PITCH, int8, representative, calibrated=True)


def test_a_saved_model_exported_again_to_the_same_folder_is_read_again(tmp_path):
    import keras

    variants = [Float32Variant(name="float32"), Int16x8Variant(name="int16x8")]
    samples = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
    representative = lambda: iter(samples)  # noqa: E731
    folder = tmp_path / "saved_model"
    converted = []
    for filters in (3, 5):
        model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(filters, 3, activation="relu"),
                                  keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
        if folder.exists():
            shutil.rmtree(folder)
        model.export(str(folder), verbose=False)
        for variant in variants:
            converted.append(read_once_bytes(folder, variant, representative))
            assert converted[-1] == tf_own_bytes(folder, variant, representative), variant.name
    assert converted[:2] != converted[2:]
