"""Quantization-aware training: the Python API as a training script uses it, the recipe variant,
the Keras 3 -> tf_keras rebuild, errors that name the layer, save and resume.

Everything runs for real (tfmot, TFLiteConverter, the LiteRT interpreter) on Fashion-MNIST
subsets. tfmot is imported in this pytest process: `edgequant.qat` resolves `tf.keras` before
tfmot can switch it and restores TF_USE_LEGACY_KERAS, which test_process_state_is_unchanged
checks in a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgequant.errors import BuildError, DataError, InputError
from edgequant.model.tflite_file import read_tflite
from edgequant.recipe.schema import DataSpec, Recipe
from tests.conftest import FMNIST_MODEL, REPO

SCALE = 1 / 255
TRAIN = {"source": {"type": "fashion-mnist", "split": "train"}, "preprocess": {"scale": SCALE}}


@pytest.fixture(scope="module")
def train_subset():
    """The first 3,000 Fashion-MNIST training images in [0, 1] and their labels."""
    from edgequant.data.stream import iter_batches

    x, y = next(iter_batches(DataSpec.model_validate(TRAIN), None, 3000))
    return x, y


@pytest.fixture(scope="module")
def keras3_model():
    import keras

    return keras.saving.load_model(FMNIST_MODEL, compile=False)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """QAT checkpoints go to a folder of the test's own."""
    monkeypatch.setenv("EDGEQUANT_CACHE_DIR", str(tmp_path / "cache"))


class RecordingProgress:
    """A Progress that records tasks and logs, and can stop the build (as Ctrl-C would) at a chosen task."""

    def __init__(self, interrupt_in: str | None = None):
        self.tasks: list[dict] = []
        self.logs: list[str] = []
        self.interrupt_in = interrupt_in

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None):
        record = {"description": description, "total": total, "advanced": 0}
        self.tasks.append(record)
        progress = self

        class _Task:
            def advance(self, n: int = 1) -> None:
                record["advanced"] += n
                if progress.interrupt_in and progress.interrupt_in in description:
                    raise KeyboardInterrupt

        yield _Task()

    def log(self, message: str) -> None:
        self.logs.append(message)


def assert_full_integer(tflite: bytes) -> None:
    """int8 model input/output, int8 activations, int8 weights with int32 biases, no float operator."""
    from edgequant.qat import float_operators

    model = read_tflite(tflite)
    assert [t.dtype for t in model.inputs] == ["int8"] and [t.dtype for t in model.outputs] == ["int8"]
    assert set(model.tensor_dtypes(constant=False)) == {"int8"}, model.tensor_dtypes(constant=False)
    assert set(model.tensor_dtypes(constant=True)) <= {"int8", "int32"}, model.tensor_dtypes(constant=True)
    assert float_operators(model) == []
    assert "DEQUANTIZE" not in model.op_counts()


def tflite_outputs(tflite: bytes, x: np.ndarray) -> np.ndarray:
    from edgequant.measure.evaluate import BatchRunner

    return BatchRunner(tflite)(x)


def tflite_top1(tflite: bytes, x: np.ndarray, y: np.ndarray) -> float:
    from edgequant.measure.evaluate import evaluate

    return evaluate({"qat": tflite}, [(x, y)], reference="qat")["qat"].top1


# --- the Python API in a training script ---------------------------------------------------------


def test_training_script_with_own_fit_exports_a_full_integer_model(keras3_model, train_subset, fmnist_test_set):
    import tf_keras

    from edgequant import qat

    x_train, y_train = train_subset
    qat_model = qat.prepare(keras3_model)

    class CountBatches(tf_keras.callbacks.Callback):
        batches = 0

        def on_train_batch_end(self, batch, logs=None):
            CountBatches.batches += 1

    tf_keras.utils.set_random_seed(0)
    qat_model.compile(optimizer=tf_keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    qat_model.fit(x_train, y_train, batch_size=64, epochs=1, verbose=0, callbacks=[CountBatches()])
    assert CountBatches.batches == 47  # ceil(3000 / 64): the user's own fit loop and callbacks ran

    tflite = qat.export(qat_model, input_type="int8", output_type="int8")
    assert_full_integer(tflite)

    # Held out: 2,000 test images. The float model scores ~90.6% on the test set and post-training
    # int8 loses ~0.1 point on it; one short QAT epoch at lr 1e-4 barely moves the weights. So the
    # QAT int8 model must stay within 1.5 points of the float model on the same images: a broken
    # fake-quant range or input scale costs tens of points, not one.
    x_test, y_test = fmnist_test_set[0][:2000], fmnist_test_set[1][:2000]
    float_top1 = float((np.argmax(keras3_model.predict(x_test, verbose=0), axis=1) == y_test).mean())
    qat_top1 = tflite_top1(tflite, x_test, y_test)
    assert qat_top1 >= float_top1 - 0.015, (qat_top1, float_top1)


def test_keras3_callbacks_drive_a_qat_fit(keras3_model, train_subset, tmp_path):
    """A Keras 3 user's callbacks on the tf_keras model `prepare` returns: the standard ones and a subclass."""
    import keras

    from edgequant import qat

    x, y = train_subset[0][:512], train_subset[1][:512]
    qat_model = qat.prepare(keras3_model)
    qat_model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches, self.epoch_logs = 0, []

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_logs.append(sorted(logs))

    recorder = Recorder()
    history = qat_model.fit(x, y, batch_size=64, epochs=6, validation_split=0.25, verbose=0, callbacks=[
        recorder,
        # No epoch can gain 1.0 of accuracy: it stops after the second epoch (patience 1).
        keras.callbacks.EarlyStopping(monitor="val_accuracy", min_delta=1.0, patience=1),
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "last.weights.h5"), save_weights_only=True),
        # No epoch lowers the loss by 10: it halves the learning rate after every epoch but the first.
        keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0),
    ])
    assert len(history.history["loss"]) == 2
    assert recorder.batches == 2 * 6  # 384 training samples / 64, two epochs
    assert recorder.epoch_logs[-1] == ["accuracy", "loss", "val_accuracy", "val_loss"]
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0] == "epoch,accuracy,loss,val_accuracy,val_loss" and len(rows) == 3
    assert float(qat_model.optimizer.learning_rate.numpy()) == pytest.approx(0.0005)
    saved = qat_model.get_weights()
    qat_model.load_weights(tmp_path / "last.weights.h5")
    for a, b in zip(saved, qat_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert qat_model.evaluate(x[:64], y[:64], verbose=0, callbacks=[recorder])[1] > 0.5

    steps = int(qat_model.optimizer.iterations.numpy())
    with pytest.raises(InputError, match=r"keras\.callbacks\.BackupAndRestore cannot drive a tf_keras QAT model: "
                                         r"use tf_keras\.callbacks\.BackupAndRestore"):
        qat_model.fit(x, y, epochs=1, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "b"))])
    assert int(qat_model.optimizer.iterations.numpy()) == steps  # refused before any training step


def test_save_and_resume_keeps_weights_ranges_and_optimizer_state(keras3_model, train_subset, tmp_path):
    from edgequant import qat

    x, y = train_subset[0][:512], train_subset[1][:512]
    qat_model = qat.prepare(keras3_model)
    qat_model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    qat_model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    saved = qat.save(qat_model, tmp_path / "qat.h5")

    resumed = qat.load(saved)
    assert int(resumed.optimizer.iterations.numpy()) == 8  # 512 / 64 steps, restored with the Adam slots
    np.testing.assert_array_equal(resumed.predict(x[:32], verbose=0), qat_model.predict(x[:32], verbose=0))
    resumed.fit(x, y, batch_size=64, epochs=1, verbose=0)
    assert int(resumed.optimizer.iterations.numpy()) == 16
    assert_full_integer(qat.export(resumed))

    with pytest.raises(InputError, match=r"qat\.keras: save a QAT model as \.h5"):
        qat.save(qat_model, tmp_path / "qat.keras")


def test_a_tf_keras_model_goes_in_as_it_is():
    import tf_keras

    from edgequant import qat

    model = tf_keras.Sequential([tf_keras.Input((28, 28, 1)), tf_keras.layers.Conv2D(4, 3, activation="relu"),
                                 tf_keras.layers.Flatten(), tf_keras.layers.Dense(10, activation="softmax")])
    assert qat.to_tf_keras(model) is model
    qat_model = qat.prepare(model)
    assert qat.is_qat_model(qat_model) and not qat.is_qat_model(model)
    assert qat.prepare(qat_model) is qat_model

    # Annotated while building (tfmot's quantize_annotate_layer): prepare applies the annotations.
    annotated = tf_keras.Sequential([tf_keras.Input((28, 28, 1)), tf_keras.layers.Flatten(),
                                     qat.annotate(tf_keras.layers.Dense(10, activation="softmax"))])
    assert [type(layer).__name__ for layer in qat.prepare(annotated).layers][-1] == "QuantizeWrapperV2"


# --- Keras 3 -> tf_keras -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".keras", ".h5"], ids=["keras3-dot-keras", "keras3-h5"])
def test_keras3_model_is_rebuilt_in_tf_keras_with_equal_outputs(keras3_model, fmnist_test_set, tmp_path, suffix):
    from edgequant.model.source_model import load_keras_model, source_kind
    from edgequant.qat import to_tf_keras

    path = tmp_path / f"model{suffix}"
    keras3_model.save(path)
    kind = source_kind(path)
    assert kind == ("keras" if suffix == ".keras" else "h5-keras3")
    source = load_keras_model(path, kind)
    rebuilt = to_tf_keras(source)
    assert type(rebuilt).__module__.startswith("tf_keras.")
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in source.layers]
    x = fmnist_test_set[0][:500]
    # Same float32 kernels on both sides: outputs (probabilities) agree to 1e-5.
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), source.predict(x, verbose=0), rtol=0, atol=1e-5)


def test_functional_graph_with_branches_is_rebuilt():
    import keras
    from keras import layers

    from edgequant.qat import to_tf_keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3), name="img")
    a = layers.Conv2D(4, 3, padding="same", activation="relu", name="left")(inputs)
    b = layers.Conv2D(4, 3, padding="same", name="right")(inputs)
    merged = layers.Concatenate()([layers.Add()([a, b]), layers.LeakyReLU(negative_slope=0.1)(a)])
    merged = layers.BatchNormalization()(layers.DepthwiseConv2D(3, padding="same")(merged))
    outputs = layers.Dense(5, kernel_regularizer=keras.regularizers.L2(1e-4),
                           kernel_constraint=keras.constraints.MaxNorm(2))(layers.Flatten()(merged))
    model = keras.Model(inputs, outputs)
    bn = next(layer for layer in model.layers if isinstance(layer, layers.BatchNormalization))
    bn.set_weights([np.random.default_rng(0).uniform(0.5, 2, 8).astype("float32") for _ in range(4)])

    rebuilt = to_tf_keras(model)
    x = np.random.default_rng(2).normal(size=(16, 8, 8, 3)).astype("float32")
    # Un-normalised outputs here (~1e1): a relative tolerance, 1e-5 of the largest output.
    expected = np.asarray(model(x, training=False))
    np.testing.assert_allclose(np.asarray(rebuilt(x, training=False)), expected, rtol=0,
                               atol=1e-5 * np.abs(expected).max())
    assert rebuilt.get_layer("leaky_re_lu").alpha == pytest.approx(0.1)  # Keras 3 negative_slope -> alpha


# --- errors that name the layer ------------------------------------------------------------------


def _keras3(*layer_list, shape=(28, 28, 1)):
    import keras

    return keras.Sequential([keras.Input(shape), *layer_list])


def test_unsupported_layers_are_named_with_what_to_do():
    import keras
    from keras import layers

    from edgequant import qat

    with pytest.raises(InputError, match=r"layer 'scale_in' \(Rescaling\) is not supported by tfmot.*OutputQuantizeConfig"):
        qat.prepare(_keras3(layers.Rescaling(1 / 255, name="scale_in"), layers.Flatten(), layers.Dense(10)))
    with pytest.raises(InputError, match=r"layer 'norm' \(LayerNormalization\) is not supported"):
        qat.prepare(_keras3(layers.Flatten(), layers.Dense(8), layers.LayerNormalization(name="norm")))
    with pytest.raises(InputError, match=r"layer 'conv' \(Conv2D\) uses activation 'selu'"):
        qat.prepare(_keras3(layers.Conv2D(4, 3, activation="selu", name="conv")))
    with pytest.raises(InputError, match=r"uses activation 'relu6'.*layers\.ReLU\(6\.0\)"):
        qat.prepare(_keras3(layers.Conv2D(4, 3, activation="relu6")))

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(10)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(InputError, match=r"subclassed Keras model \(Net\).*keras\.Model\(inputs, outputs\)"):
        qat.prepare(net)

    import tf_keras

    class TfNet(tf_keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf_keras.layers.Dense(10)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(InputError, match=r"subclassed tf_keras model \(TfNet\)"):
        qat.prepare(TfNet())

    inner = keras.Sequential([keras.Input((4,)), layers.Dense(4)], name="block")
    outer_in = keras.Input((4,))
    outer = keras.Model(outer_in, layers.Dense(2)(inner(outer_in)))
    with pytest.raises(InputError, match=r"layer 'block' is a nested model"):
        qat.prepare(outer)

    with pytest.raises(InputError, match=r"the model has no layer 'dense_9'; its layers are"):
        qat.prepare(_keras3(layers.Flatten(), layers.Dense(10, name="head")), layers=["dense_9"])


def test_output_quantize_config_keeps_a_rescaling_model_full_integer():
    from keras import layers

    from edgequant import qat

    model = _keras3(layers.Rescaling(1 / 255, name="scale_in"), layers.Conv2D(4, 3, activation="relu"),
                    layers.Flatten(), layers.Dense(10, activation="softmax"))
    qat_model = qat.prepare(model, configs={"scale_in": qat.OutputQuantizeConfig()})
    tflite = qat.export(qat_model)
    assert_full_integer(tflite)
    assert read_tflite(tflite).op_counts()["MUL"] == 1  # the Rescaling, in int8

    # The config names reload inside qat.quantize_scope (qat.load uses it).
    with qat.quantize_scope():
        import tf_keras

        clone = tf_keras.models.clone_model(qat_model)
    assert qat.is_qat_model(clone)


def test_layers_left_float_make_export_refuse_unless_asked():
    from keras import layers

    from edgequant import qat

    model = _keras3(layers.Conv2D(4, 3, activation="relu", name="conv"), layers.Flatten(),
                    layers.Dense(10, activation="softmax", name="head"))
    qat_model = qat.prepare(model, layers=["head"])
    wrapped = [layer.name for layer in qat_model.layers if type(layer).__name__ == "QuantizeWrapperV2"]
    assert "quant_head" in wrapped and not any("conv" in name for name in wrapped)  # tfmot may add pass-throughs
    with pytest.raises(BuildError, match=r"not full-integer: .*CONV_2D#\d+.*full_integer=False"):
        qat.export(qat_model)
    mixed = qat.export(qat_model, "float32", "float32", full_integer=False)
    assert "CONV_2D" in " ".join(qat.float_operators(read_tflite(mixed)))
    x = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(tflite_outputs(mixed, x).sum(), 1.0, atol=0.02)  # it runs: softmax sums to 1


# --- the recipe variant --------------------------------------------------------------------------


def _qat_recipe(tmp_path, model_path=FMNIST_MODEL, **qat_settings) -> Recipe:
    training = dict(TRAIN, samples=1024)
    variant = {"name": "qat", "mode": "qat", "training": training, "epochs": 2, "batch_size": 128, **qat_settings}
    return Recipe.model_validate({
        "name": "fmnist_qat_test",
        "model": {"path": str(model_path)},
        "benchmark": {"enabled": False},
        "output_dir": str(tmp_path / "out"),
        "variants": [variant],
    })


def test_recipe_qat_variant_end_to_end_with_progress(tmp_path):
    from edgequant.pipeline import build_recipe

    progress = RecordingProgress()
    result = build_recipe(_qat_recipe(tmp_path), progress=progress)
    tflite = result.path("qat").read_bytes()
    assert_full_integer(tflite)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [a["mode"] for a in manifest["artifacts"]] == ["qat"]

    epochs = [t for t in progress.tasks if "epoch" in t["description"]]
    assert [t["description"] for t in epochs] == ["fine-tune qat (qat): epoch 1/2", "fine-tune qat (qat): epoch 2/2"]
    assert all(t["total"] == 8 and t["advanced"] == 8 for t in epochs)  # 1024 samples / 128 per batch
    assert any("2 epoch(s) of 1024 samples" in m for m in progress.logs)
    assert not any((tmp_path / "cache" / "qat").glob("*/state.json"))  # checkpoints removed after success


def test_interrupted_fine_tune_resumes_after_its_last_epoch(tmp_path):
    from edgequant.pipeline import build_recipe

    recipe = _qat_recipe(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        build_recipe(recipe, progress=RecordingProgress(interrupt_in="epoch 2/2"))
    states = list((tmp_path / "cache" / "qat").glob("*/state.json"))
    assert len(states) == 1 and json.loads(states[0].read_text())["epochs_done"] == 1
    assert not (tmp_path / "out" / "qat.tflite").exists()

    progress = RecordingProgress()
    result = build_recipe(recipe, progress=progress)
    assert any("resuming after epoch 1" in m for m in progress.logs), progress.logs
    assert any("1 epoch(s) of 1024 samples trained (resumed after epoch 1 of 2)" in m for m in progress.logs), progress.logs
    assert [t["description"] for t in progress.tasks if "epoch" in t["description"]] == [
        "fine-tune qat (qat): epoch 2/2"]
    assert_full_integer(result.path("qat").read_bytes())
    assert not states[0].exists()


def test_savedmodel_source_cannot_do_qat(tmp_path):
    from keras import layers

    from edgequant.pipeline import build_recipe

    saved = tmp_path / "saved"
    _keras3(layers.Flatten(), layers.Dense(10, activation="softmax")).export(str(saved), verbose=False)
    with pytest.raises(InputError, match=r"QAT fine-tunes Keras layers, and .*saved is a SavedModel"):
        build_recipe(_qat_recipe(tmp_path, model_path=saved))


def test_training_data_must_be_labelled_and_is_shuffled_in_bounded_blocks(tmp_path):
    from edgequant.qat.training import shuffled_batches

    samples = np.arange(100, dtype=np.float32).reshape(100, 1, 1, 1)
    np.save(tmp_path / "x.npy", samples)
    np.save(tmp_path / "y.npy", np.arange(100))
    labelled = DataSpec.model_validate({"source": {"type": "npy", "path": str(tmp_path / "x.npy"),
                                                   "labels": str(tmp_path / "y.npy")}})
    batches = list(shuffled_batches(labelled, None, 10, seed=0, block=32))
    labels = np.concatenate([y for _, y in batches])
    assert sorted(labels.tolist()) == list(range(100))  # every sample once per epoch
    assert labels.tolist() != list(range(100))  # ... in a shuffled order
    assert all(len(x) <= 10 for x, _ in batches)
    assert max(abs(int(y) - i) for i, y in enumerate(labels)) < 32 + 10  # only within blocks: bounded memory

    unlabelled = DataSpec.model_validate({"source": {"type": "npy", "path": str(tmp_path / "x.npy")}})
    with pytest.raises(DataError, match=r"QAT needs labelled training data; .*x\.npy yields samples without labels"):
        list(shuffled_batches(unlabelled, None, 10, seed=0))


# --- process state -------------------------------------------------------------------------------


def test_process_state_is_unchanged():
    """`import edgequant(.qat)` touches nothing; using QAT leaves tf.keras = Keras 3 and the environment as it was."""
    code = "\n".join([
        "import os, sys",
        "import edgequant, edgequant.qat",
        "assert 'tensorflow' not in sys.modules and 'tensorflow_model_optimization' not in sys.modules",
        "import keras, tensorflow as tf",
        "from edgequant import qat",
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])",
        "qat.prepare(model)",
        "assert 'tensorflow_model_optimization' in sys.modules",
        "assert os.environ.get('TF_USE_LEGACY_KERAS') is None, os.environ.get('TF_USE_LEGACY_KERAS')",
        "assert tf.keras.version().startswith('3.'), tf.keras.version()",
        "assert len(tf.lite.TFLiteConverter.from_keras_model(model).convert()) > 500",  # Keras 3 still converts
        "print('ok')",
    ])
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
