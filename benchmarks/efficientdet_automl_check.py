"""Check benchmarks/efficientdet_lite.py against automl's own EfficientDet-Lite code.

    python benchmarks/efficientdet_automl_check.py

automl's efficientdet (google/automl, Apache-2.0) ships inside the `tflite-model-maker==0.4.3` wheel on
PyPI (`tensorflow_examples/lite/model_maker/third_party/efficientdet`). This script takes that wheel with
`pip download --no-deps`, and `gin-config` (which automl imports) with `pip install --target`, both into a
temporary folder, builds automl's EfficientDet-Lite0 and Lite2 with tf_keras (`TF_USE_LEGACY_KERAS=1`, in a
child process), converts them to .tflite, and compares each with edgequant's rebuild: parameter count and
the type and output shape of every compute operator. The post-process (our rebuild's concatenation and the detection op)
is left out of both. Exits 1 if they differ.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

WHEEL = "tflite-model-maker==0.4.3"
AUTOML = "tensorflow_examples.lite.model_maker.third_party.efficientdet"
COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MAX_POOL_2D", "RESIZE_NEAREST_NEIGHBOR")

# Run in a child process: tf_keras (automl's Keras 2 API) must be chosen before TensorFlow is imported.
AUTOML_BUILD = """
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
sys.path[:0] = sys.argv[1:3]
import tensorflow as tf
from {automl}.keras import efficientdet_keras
from {automl} import hparams_config
out = {{}}
for name in ("efficientdet-lite0", "efficientdet-lite2"):
    config = hparams_config.get_efficientdet_config(name)
    config.is_training_bn = False
    model = efficientdet_keras.EfficientDetNet(config=config)
    side = config.image_size
    model.build((1, side, side, 3))
    fn = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec((1, side, side, 3))])
    path = os.path.join(sys.argv[3], name + ".tflite")
    open(path, "wb").write(tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()],
                                                                          model).convert())
    out[name] = {{"params": int(model.count_params()), "tflite": path}}
print(json.dumps(out))
""".format(automl=AUTOML)


def compute_ops(path: Path) -> Counter:
    """(operator type, output shape) of every compute operator: equal for two files, they do the same work."""
    from edgequant.model.tflite_file import read_tflite

    info = read_tflite(path)
    return Counter((op.op_type, tuple(info.tensors[op.outputs[0]].shape))
                   for op in info.operators if op.op_type in COMPUTE_OPS)


def by_type(ops: Counter) -> dict[str, int]:
    return dict(Counter(op for op, _ in ops.elements()))


def ours(name: str, folder: Path) -> tuple[int, Counter]:
    import efficientdet_lite
    import tensorflow as tf

    model = efficientdet_lite.build(name)
    path = folder / f"{name}.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return int(model.count_params()), compute_ops(path)


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "download", "--no-deps", WHEEL, "-d", str(scratch / "wheel")], check=True)
        wheel = next((scratch / "wheel").glob("*.whl"))
        subprocess.run([sys.executable, "-m", "zipfile", "-e", str(wheel), str(scratch / "automl")], check=True)
        subprocess.run([*pip, "install", "--target", str(scratch / "gin"), "gin-config"], check=True)
        built = subprocess.run([sys.executable, "-c", AUTOML_BUILD, str(scratch / "automl"), str(scratch / "gin"),
                                str(scratch)], check=True, capture_output=True, text=True)
        automl = json.loads(built.stdout.strip().splitlines()[-1])
        same = True
        for name in ("efficientdet_lite0", "efficientdet_lite2"):
            model = automl[name.replace("_", "-")]
            theirs = model["params"], compute_ops(Path(model["tflite"]))
            mine = ours(name, scratch)
            for who, (params, ops) in (("automl", theirs), ("ours  ", mine)):
                print(f"{name:18s} {who} {params:,} parameters {by_type(ops)}")
            same &= theirs == mine
    print("same architecture" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
