"""Quantize a Keras model from Python, in memory, and check the result against float32."""

import keras

import edgequant as eq

model = keras.saving.load_model("recipes/fashion_mnist/fashion_mnist_cnn.keras")
calibration = eq.DataSpec(source=eq.FashionMnistSource(split="train"), preprocess=eq.Preprocess(scale=1 / 255),
                          samples=100)
evaluation = eq.DataSpec(source=eq.FashionMnistSource(split="test"), preprocess=eq.Preprocess(scale=1 / 255),
                         samples=1000)

tflite_bytes, report = eq.quantize(model, "int8", calibration=calibration, evaluation=evaluation, report=True)
int8 = report.variant("int8")
print(f"int8: {len(tflite_bytes) / 1024:.1f} KiB, top-1 {int8.evaluation.top1:.2%}, "
      f"agreement with float32 {int8.evaluation.agreement:.2%}")
