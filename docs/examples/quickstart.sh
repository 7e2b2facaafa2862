# Quantize the project's Fashion-MNIST CNN to int8: calibrated on 100 training images,
# evaluated against float32 on the 10,000 test images, timed on this host.
edgequant quantize recipes/fashion_mnist/fashion_mnist_cnn.keras --int8 \
    --calib fashion-mnist:train --samples 100 --eval fashion-mnist:test -o build/quickstart

# What the artifact holds: tensors, op counts, quantization parameters.
edgequant inspect build/quickstart/int8.tflite

# The command wrote the recipe that repeats it: edit it to add gates or devices, then build it.
edgequant build build/quickstart/recipe.yaml
